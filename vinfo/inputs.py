"""Reading and checking (representation, target) arrays, and the embedded default inputs.

Inputs::

    Z  representations   [N, D] vectors, or [N, C_z, h, w] latent grids; finite real
                         numbers (complex and object arrays are refused, never cast)
    Y  targets           [N] or [N, D] per sample, or [N, C, H, W] dense ([N, H, W] is read
                         as one channel) with H = s·h and W = s·w for one integer stride s

A latent grid with a per-sample target is flattened to [N, C_z·h·w] (the vector ladder).
Target kinds: ``categorical`` (integers 0..K-1), ``gaussian`` and ``laplace`` (real values),
``discretized`` (integers 0..255, e.g. 8-bit images). ``ignore_value`` marks values that count
for no model (the segmentation ignore index, invalid disparity); they are exempt from the
kind's checks. Files: ``.npy``; ``.npz`` (its one array, or the one named by ``key``); ``.nc``
(its one data variable, or ``key``). Every problem raises :class:`VinfoInputError` naming the
file or array and what was expected.

The embedded default (:func:`default_inputs`) is a case with known information: synthetic
street scenes as 8-bit targets and Z = a planted code of them (:func:`planted_block_code`,
I(Y;Z) <= 3/64 bits per pixel), so the first run of ``python -m vinfo.estimate`` shows the
ladder detecting information whose bound it is told.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vinfo.errors import VinfoInputError
from vinfo.probes.targets import KINDS


@dataclass
class Inputs:
    """Checked inputs: ``z`` float32 [N, D] or [N, C_z, h, w]; ``y`` [N, C] or [N, C, H, W]
    (int64 for categorical/discretized, float32 otherwise); ``mask`` bool like ``y``;
    ``stride`` s for dense targets (None otherwise); ``num_classes`` K (categorical)."""

    z: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    stride: int | None
    num_classes: int
    z_shape: tuple[int, ...]
    y_shape: tuple[int, ...]

    @property
    def dense(self) -> bool:
        return self.stride is not None


def load_array(path: str | os.PathLike, key: str = "", role: str = "array") -> np.ndarray:
    """Read ``path`` (.npy, .npz, .nc) as a NumPy array; ``role`` names it in errors."""
    path = Path(path)
    if not path.is_file():
        raise VinfoInputError(f"{role} file {path}: not found")
    if path.stat().st_size == 0:
        raise VinfoInputError(f"{role} file {path}: the file is empty")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                array = archive[_pick(list(archive.files), key, path, role)]
        elif suffix == ".nc":
            import xarray as xr

            with xr.open_dataset(path) as ds:
                array = ds[_pick(list(ds.data_vars), key, path, role)].values
        else:
            raise VinfoInputError(f"{role} file {path}: unsupported extension {suffix!r}; "
                                  "expected .npy, .npz or .nc")
    except VinfoInputError:
        raise
    except Exception as err:  # a corrupt or truncated file, pickled objects, ...
        raise VinfoInputError(
            f"{role} file {path}: cannot be read ({type(err).__name__}: {err})") from err
    return np.asarray(array)


def _pick(names: list[str], key: str, path: Path, role: str) -> str:
    if key:
        if key not in names:
            raise VinfoInputError(f"{role} file {path}: no array {key!r}; it holds {names}")
        return key
    if len(names) != 1:
        raise VinfoInputError(f"{role} file {path}: holds {len(names)} arrays {names}; "
                              "name the one to use (--representations-key / --targets-key)")
    return names[0]


def check_inputs(
    z: np.ndarray, y: np.ndarray, target_kind: str, *, ignore_value: float | None = None,
    num_classes: int | None = None, z_name: str = "representations Z",
    y_name: str = "targets Y",
) -> Inputs:
    """Validate and normalise a (Z, Y) pair; see the module docstring for the rules."""
    if target_kind not in KINDS:
        raise VinfoInputError(f"unknown target kind {target_kind!r}; expected one of "
                              f"{', '.join(KINDS)}")
    if num_classes is not None and (isinstance(num_classes, bool) or
                                    int(num_classes) != num_classes or num_classes < 2):
        raise VinfoInputError(f"num_classes (--num-classes) must be an integer >= 2, got "
                              f"{num_classes!r}")
    z, y = np.asarray(z), np.asarray(y)
    for name, a in ((z_name, z), (y_name, y)):
        if a.size == 0:
            raise VinfoInputError(f"{name}: empty array of shape {a.shape}")
        if np.issubdtype(a.dtype, np.complexfloating):  # never cast silently to the real part
            raise VinfoInputError(f"{name}: complex values (dtype {a.dtype}); expected real "
                                  "numbers (pass the real part or magnitude explicitly)")
        if a.dtype == object:
            raise VinfoInputError(f"{name}: an object array (dtype object); expected a numeric "
                                  "array (objects are never unpickled or converted)")
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise VinfoInputError(f"{name}: expected numbers, got dtype {a.dtype}")
        if np.issubdtype(a.dtype, np.inexact) and not np.isfinite(a).all():
            bad = np.argwhere(~np.isfinite(a))[0]
            raise VinfoInputError(f"{name}: {int((~np.isfinite(a)).sum())} NaN/inf values, the "
                                  f"first at index {tuple(int(i) for i in bad)}")
    if z.ndim not in (2, 4):
        raise VinfoInputError(f"{z_name}: expected [N, D] or [N, C, h, w], got shape {z.shape}")
    if y.ndim not in (1, 2, 3, 4):
        raise VinfoInputError(f"{y_name}: expected [N], [N, D] or [N, C, H, W], "
                              f"got shape {y.shape}")
    if z.shape[0] != y.shape[0]:
        raise VinfoInputError(f"{z_name} has {z.shape[0]} samples but {y_name} has {y.shape[0]} "
                              f"(shapes {z.shape} and {y.shape})")
    z_shape, y_shape = tuple(z.shape), tuple(y.shape)
    y = y.reshape(y.shape[0], 1) if y.ndim == 1 else y
    y = y[:, None] if y.ndim == 3 else y
    stride = None
    if y.ndim == 4:
        if z.ndim != 4:
            raise VinfoInputError(f"{y_name} is dense {y_shape} but {z_name} is a vector "
                                  f"{z_shape}; dense targets need a latent grid [N, C, h, w]")
        (h, w), (big_h, big_w) = z.shape[2:], y.shape[2:]
        if big_h % h or big_w % w or big_h // h != big_w // w:
            raise VinfoInputError(f"{y_name} of size {big_h}x{big_w} is not one integer multiple "
                                  f"of the {z_name} grid {h}x{w} (need H = s·h and W = s·w)")
        stride = big_h // h
    elif z.ndim == 4:
        z = z.reshape(z.shape[0], -1)
    mask = np.ones(y.shape, dtype=bool) if ignore_value is None else (y != ignore_value)
    if not mask.any():
        raise VinfoInputError(f"{y_name}: every value equals the ignore value {ignore_value}")
    valid = y[mask]
    if target_kind in ("categorical", "discretized"):
        if np.issubdtype(valid.dtype, np.floating) and not np.all(valid == np.round(valid)):
            raise VinfoInputError(f"{y_name}: {target_kind} targets must be integers, found "
                                  f"{valid[valid != np.round(valid)][0]!r}")
        y = np.where(mask, y, 0).astype(np.int64)
        valid = y[mask]
    if target_kind == "discretized" and (valid.min() < 0 or valid.max() > 255):
        raise VinfoInputError(f"{y_name}: discretized targets must lie in 0..255 (8-bit values), "
                              f"found range {valid.min()}..{valid.max()}")
    classes = 0
    if target_kind == "categorical":
        if valid.min() < 0:
            raise VinfoInputError(f"{y_name}: class labels must be >= 0, found {valid.min()}")
        classes = int(num_classes) if num_classes else int(valid.max()) + 1
        if valid.max() >= classes:
            raise VinfoInputError(f"{y_name}: label {valid.max()} >= num_classes {classes}")
    if valid.min() == valid.max():
        what = "class" if target_kind == "categorical" else "value"
        raise VinfoInputError(f"{y_name}: all valid targets are one {what} ({valid.flat[0]!r}); "
                              "there is nothing to predict")
    z = _as_finite_float32(z, z_name)  # checked after the cast: 1e300 is inf in float32
    y = y if target_kind in ("categorical", "discretized") else _as_finite_float32(y, y_name)
    return Inputs(z, y, mask, stride, classes, z_shape, y_shape)


def _as_finite_float32(a: np.ndarray, name: str) -> np.ndarray:
    """``a`` as float32, refused if a value is not finite there (overflows beyond ±3.4e38)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = a.astype(np.float32)
    bad = ~np.isfinite(out)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise VinfoInputError(f"{name}: {int(bad.sum())} values are not finite in float32 (the "
                              f"dtype the probes use: |value| <= {np.finfo(np.float32).max:.3g}), "
                              f"the first at index {first} ({a[first]!r}); rescale the data")
    return out


def patch_representation(images: np.ndarray, pool: int = 4, block: int = 4) -> np.ndarray:
    """Fixed representation of uint8 images [N, 3, H, W]: average ``pool`` x ``pool`` patches
    in [0, 1], then space-to-depth by ``block``:
    -> [N, 3·block², H/(pool·block), W/(pool·block)]."""
    n, c, h, w = images.shape
    x = images.astype(np.float32) / 255.0
    x = x.reshape(n, c, h // pool, pool, w // pool, pool).mean(axis=(3, 5))
    h2, w2 = x.shape[2] // block, x.shape[3] // block
    x = x.reshape(n, c, h2, block, w2, block).transpose(0, 1, 3, 5, 2, 4)
    return np.ascontiguousarray(x.reshape(n, c * block * block, h2, w2))


def planted_block_code(images: np.ndarray, n_train: int, block: int = 8) -> np.ndarray:
    """A code with known information: one bit per ``block`` x ``block`` block and channel of
    uint8 images [N, C, H, W], "the block's mean is above the median of that block over the
    first ``n_train`` images" -> Z [N, C, H/block, W/block] in {0, 1}. Z is a function of Y,
    so I(Y;Z) = H(Z) <= C·(H/block)·(W/block) bits per image (C/block² bits per pixel)."""
    n, c, h, w = images.shape
    if h % block or w % block:
        raise VinfoInputError(f"planted code: image size {h}x{w} is not a multiple of the "
                              f"block {block}")
    means = images.reshape(n, c, h // block, block, w // block, block).mean(axis=(3, 5))
    median = np.median(means[:n_train], axis=0, keepdims=True)
    return (means > median).astype(np.float32)


@dataclass
class DefaultInputs:
    """The embedded default's inputs: ``z``, ``y``, the leading ``fit_samples`` (the train
    scenes), ``rate_bits`` per sample (the planted code's bound) and a ``source`` line."""

    z: np.ndarray
    y: np.ndarray
    fit_samples: int
    rate_bits: np.ndarray
    source: str


def default_inputs(
    data_dir: str | os.PathLike, *, train: int, val: int, height: int, width: int, seed: int
) -> DefaultInputs:
    """The embedded default, a case with known information: synthetic street scenes (Y: the
    8-bit RGB images [N, 3, H, W], ``discretized``) and Z = :func:`planted_block_code` of them
    (one bit per 8 x 8 block and channel, [N, 3, H/8, W/8]). I(Y;Z) <= R = 3/64 bits per
    pixel, given as the representation's rate; the train scenes fit the probes (the probing
    protocol), the val scenes select and evaluate.

    The scenes live in ``data_dir/scenes-<train>+<val>-<H>x<W>-seed<seed>`` (Cityscapes
    layout), generated unless ``dataset.json`` there says they already are; one folder per
    setting, so files of another setting never mix in.
    """
    from PIL import Image

    if height % 16 or width % 16:
        raise VinfoInputError(f"default dataset: height {height} and width {width} must be "
                              "multiples of 16")
    root = Path(data_dir) / f"scenes-{train}+{val}-{height}x{width}-seed{seed}"
    if not _generated_with(root, train=train, val=val, height=height, width=width, seed=seed):
        from vinfo.adapter.scenes import generate_dataset

        generate_dataset(root, train=train, val=val, height=height, width=width, seed=seed,
                         overwrite=True)
    images = [p for split in ("train", "val")
              for p in sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))]
    if not images:
        raise VinfoInputError(f"default dataset: no images under {root / 'leftImg8bit'}")
    y = np.stack([np.asarray(Image.open(p).convert("RGB")).transpose(2, 0, 1)
                  for p in images]).astype(np.int64)
    z = planted_block_code(y, train)
    bits = float(z[0].size)
    source = (f"embedded default: synthetic scenes 3x{height}x{width} ({train} train + {val} "
              f"val); Z = one bit per 8x8 block and channel (block mean above the train "
              f"median), a function of Y: I(Y;Z) <= {bits:g} bits/image = "
              f"{bits / (height * width):.4f} bits/pixel")
    return DefaultInputs(z, y, train, np.full(len(y), bits), source)


def _generated_with(root: Path, *, train: int, val: int, height: int, width: int,
                    seed: int) -> bool:
    """True if ``root/dataset.json`` says the dataset there was generated with these values."""
    from infra.io import read_json

    try:
        info = read_json(root / "dataset.json")
        return (info["seed"], info["height"], info["width"]) == (seed, height, width) and (
            info["splits"]["train"]["images"], info["splits"]["val"]["images"]) == (train, val)
    except (OSError, ValueError, KeyError, TypeError):
        return False
