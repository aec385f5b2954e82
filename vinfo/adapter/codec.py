"""The codec adapter: a trained base codec run + a Cityscapes-layout dataset -> (Ŷ_b, target)
pairs for :func:`vinfo.api.estimate` (DESIGN §5: vinfo's one narrow door into taskcodecs).

Data flow, per dataset image (in sorted order, the first ``limit``)::

    PNG ─CityscapesDataset(scale)─▶ x [3, H0, W0] ─crop to multiples of m─▶ x [3, H, W]
        ─8-bit round─▶ x8 ─codec.compress─▶ bytes ─codec.decompress(layers="base")─▶ ŷ_b [C, h, w]
                                             └─ len(bytes)·8 / (H·W) = actual bits per pixel

    reconstruction  Y = x8                       uint8   [N, 3, H, W]  "discretized"
    segmentation    Y = train ids, 19 = ignore   int64   [N, H, W]     "categorical" (K = 19)
    depth           Y = disparity in pixels,     float32 [N, 1, H, W]  "gaussian" | "laplace"
                        -1 where there is none (ignore_value = -1: vinfo masks it out of the
                        null and the conditional fits alike; NaN is not an input vinfo accepts)

Choices made here:

* Z is ŷ_b as the *decoder* reconstructs it from the bytes, so the representation is exactly
  what a receiver of the base layer has.
* ``scale`` (default: the run's training ``scale``) resizes the dataset images as training did.
  The codec pads bottom/right to a multiple m of its padding (32 for the half-resolution depth
  base); the adapter instead crops each image bottom/right to H = m·⌊H0/m⌋, W = m·⌊W0/m⌋ before
  coding, so the codec adds no padding, ŷ_b covers exactly Y, and H = s·h, W = s·w with one
  stride s (vinfo's requirement). The rate is then per pixel of the cropped, coded image.
* The image is rounded to 8 bits before coding (a no-op at scale 1), so the codec's input is
  exactly Y/255 for the reconstruction target.
* ``representation_bpp`` is the mean over images of the whole container's bytes (header
  included) · 8 / (H·W): bits per pixel of the coded original image, the codec's actual rate.
  The *bound* R(Ŷ_b) (``representation_bits``, the capped I_V and the MDE-vs-rate flag) is
  the base layer's payload alone (``payload_bytes_per_image``: flag byte, rANS stream, end
  check), without the container header: the header is fixed given the image size, so it
  carries no information about the image and only loosens the bound (about 23 bytes, 0.02
  bits/pixel at 64x128, a third of a tiny base's rate).

Refused with :class:`vinfo.inputs.VinfoInputError` (the message names the path): a run directory
that is not a base codec run (enhancement or reference runs), a missing checkpoint, a missing
dataset or split, a dataset without the target (depth without ``disparity/``), images of
different sizes. A missing run directory raises ``infra.config.ConfigError``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taskcodecs.coding.bitstream import unpack
from taskcodecs.data.cityscapes import CityscapesDataset
from taskcodecs.data.errors import DatasetError
from taskcodecs.data.labels import IGNORE_INDEX
from taskcodecs.runs.checkpoint import CheckpointError
from taskcodecs.runs.links import read_run
from taskcodecs.runs.run_model import load_run_model
from vinfo.errors import VinfoInputError

TARGETS = ("reconstruction", "segmentation", "depth")
DEPTH_IGNORE = -1.0  # disparity is >= 0 where it exists
_DATASET_TARGETS = {"reconstruction": (), "segmentation": ("labels",), "depth": ("disparity",)}


@dataclass
class CodecPairs:
    """(representation, target) pairs from a codec run, ready for ``vinfo.estimate``.

    ``Z`` float32 [N, C, h, w] decoded ŷ_b; ``Y`` (see the module docstring); rates in bits per
    pixel of the coded H x W image; ``image_pixels`` = ``target_pixels`` = H·W per sample.
    """

    Z: np.ndarray
    Y: np.ndarray
    target_kind: str
    representation_bpp: float  # bits per pixel of the coded image, mean over images
    image_pixels: int
    target_pixels: int
    source: str
    codec_id: str
    run_dir: str
    ignore_value: float | None = None
    num_classes: int | None = None
    bytes_per_image: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    payload_bytes_per_image: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    names: list[str] = field(default_factory=list)
    fit_samples: int = 0  # the probing protocol: the leading samples from the fit split

    @property
    def representation_bits(self) -> np.ndarray:
        """[N] the bound R(Ŷ_b) per image in bits: the base payload, header excluded."""
        return self.payload_bytes_per_image * 8.0

    def attrs(self) -> dict[str, Any]:
        """The attributes the estimate and its report need (rate conversion, provenance)."""
        return {"image_pixels": self.image_pixels, "target_pixels": self.target_pixels,
                "source": self.source, "codec_id": self.codec_id, "run_dir": self.run_dir}

    def estimate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``vinfo.estimate(Z, Y, **kwargs)``."""
        return {"target_kind": self.target_kind, "representation_bpp": self.representation_bpp,
                "representation_bits": self.representation_bits, "attrs": self.attrs(),
                "ignore_value": self.ignore_value, "num_classes": self.num_classes,
                "fit_samples": self.fit_samples}


def _target_kind(target: str, target_kind: str | None) -> str:
    if target not in TARGETS:
        raise VinfoInputError(f"unknown codec target {target!r}; expected one of "
                              f"{', '.join(TARGETS)}")
    allowed = {"reconstruction": ("discretized",), "segmentation": ("categorical",),
               "depth": ("gaussian", "laplace")}[target]
    if target_kind is None:
        return allowed[0]
    if target_kind not in allowed:
        raise VinfoInputError(f"target {target!r} takes target kind {' or '.join(allowed)}, "
                              f"not {target_kind!r}")
    return target_kind


def _load_base(run_dir: Path, checkpoint: str) -> tuple[torch.nn.Module, Any, Any]:
    """The base codec of ``run_dir`` (eval mode), its config and table row."""
    cfg, exp = read_run(run_dir)  # ConfigError naming the directory if it is not a run
    if exp.role != "base":
        raise VinfoInputError(
            f"run {run_dir}: is {exp.role} run {exp.name!r}; the codec adapter needs a base "
            "codec run (…-depth-base-… or …-detection-base-…), whose base layer is Ŷ_b")
    try:
        model, cfg, exp, _ = load_run_model(run_dir, checkpoint)
    except CheckpointError as err:
        raise VinfoInputError(f"run {run_dir}: cannot load the {checkpoint} checkpoint: "
                              f"{err}") from err
    for method in ("compress", "decompress", "padding_multiple", "codec_id"):
        if not hasattr(model, method):
            raise VinfoInputError(f"run {run_dir}: model {type(model).__name__} is not a base "
                                  f"codec (it has no {method})")
    return model, cfg, exp


def _open_dataset(root: Path, split: str, target: str, scale: float) -> CityscapesDataset:
    if not root.is_dir():
        raise VinfoInputError(f"dataset {root}: folder not found (expected a Cityscapes-layout "
                              "root with leftImg8bit/, and gtFine/ or disparity/ per target)")
    try:
        return CityscapesDataset(root, split, augment=False, scale=scale,
                                 targets=_DATASET_TARGETS[target])
    except (DatasetError, ValueError) as err:
        raise VinfoInputError(f"dataset {root} (split {split!r}, target {target!r}): "
                              f"{err}") from err


def _crop(t: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return t[..., :height, :width]


def coding_unit_size(item: dict, multiple: int, root: Path, scale: float
                     ) -> tuple[int, int, int, int]:
    """(height0, width0, height, width): an image's size and the largest multiple of the
    codec's coding unit inside it (what is coded); an image smaller than one unit is an
    error naming it."""
    height0, width0 = item["image"].shape[-2:]
    height, width = height0 // multiple * multiple, width0 // multiple * multiple
    if height == 0 or width == 0:
        raise VinfoInputError(f"dataset {root}: image {item['name']} of {height0}x{width0} "
                              f"(at scale {scale}) is smaller than the codec's "
                              f"{multiple}-pixel coding unit")
    return height0, width0, height, width


def _code_split(codec: Any, dataset: CityscapesDataset, count: int, target: str, root: Path,
                scale: float, size0: tuple[int, int] | None, out: dict[str, list]
                ) -> tuple[int, int] | None:
    """Code the first ``count`` images of ``dataset`` into ``out`` (zs, ys, sizes, names);
    returns the original image size (every image must have the first one's)."""
    multiple = int(codec.padding_multiple)
    for index in range(count):
        item = dataset[index]
        height0, width0, height, width = coding_unit_size(item, multiple, root, scale)
        if size0 is None:
            size0 = (height0, width0)
        elif (height0, width0) != size0:
            raise VinfoInputError(f"dataset {root}: image {item['name']} is {height0}x{width0} "
                                  f"but the first is {size0[0]}x{size0[1]}; vinfo needs one "
                                  "size for all images")
        image8 = (_crop(item["image"], height, width).clamp(0, 1) * 255).round().to(torch.uint8)
        data = codec.compress(image8.float() / 255)
        decoded = codec.decompress(data, layers="base")
        out["zs"].append(decoded["y_hat"]["base"][0].detach().cpu().numpy().astype(np.float32))
        out["sizes"].append(len(data))
        out["payloads"].append(unpack(data, layers=[]).layer_sizes["base"])
        out["names"].append(str(item["name"]))
        if target == "reconstruction":
            out["ys"].append(image8.numpy())
        elif target == "segmentation":
            out["ys"].append(_crop(item["labels"], height, width).numpy().astype(np.int64))
        else:
            disparity = _crop(item["disparity"], height, width)
            mask = _crop(item["disparity_mask"], height, width)
            out["ys"].append(torch.where(mask, disparity, DEPTH_IGNORE).numpy()
                             .astype(np.float32))
    return size0


def extract_codec_pairs(
    run_dir: str | os.PathLike,
    dataset_root: str | os.PathLike,
    target: str,
    split: str = "val",
    limit: int | None = None,
    checkpoint: str = "best",
    scale: float | None = None,
    *,
    target_kind: str | None = None,
    log: Callable[[str], None] | None = None,
    fit_split: str | None = None,
    fit_limit: int | None = None,
) -> CodecPairs:
    """Code every image of ``dataset_root``/``split`` with the base codec of ``run_dir`` and
    pair the decoded ŷ_b with the ``target`` (see the module docstring). ``limit``: the first
    N images; ``scale``: None for the run's training scale; ``target_kind``: for depth,
    "gaussian" (default) or "laplace".

    ``fit_split`` (the probing protocol, DESIGN §7): the images of that split (the first
    ``fit_limit``) are coded too and come *first*; ``fit_samples`` says how many, and
    ``vinfo.estimate(..., fit_samples=pairs.fit_samples)`` fits every probe on them and
    selects and evaluates on ``split``."""
    kind = _target_kind(target, target_kind)
    if limit is not None and limit < 1:
        raise VinfoInputError(f"limit: expected a positive number of images, got {limit}")
    run_dir, root = Path(run_dir), Path(dataset_root)
    codec, cfg, exp = _load_base(run_dir, checkpoint)
    scale = float(cfg.scale if scale is None else scale)
    multiple = int(codec.padding_multiple)
    start = time.perf_counter()
    out: dict[str, list] = {"zs": [], "ys": [], "sizes": [], "payloads": [], "names": []}
    size0, n_fit = None, 0
    if fit_split is not None:
        fitting = _open_dataset(root, fit_split, target, scale)
        n_fit = len(fitting) if fit_limit is None else min(fit_limit, len(fitting))
        size0 = _code_split(codec, fitting, n_fit, target, root, scale, size0, out)
    dataset = _open_dataset(root, split, target, scale)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    size0 = _code_split(codec, dataset, count, target, root, scale, size0, out)
    zs, ys, sizes, names = out["zs"], out["ys"], out["sizes"], out["names"]
    Z, Y = np.stack(zs), np.stack(ys)
    pixels = int(Y.shape[-2] * Y.shape[-1])
    bytes_per_image = np.asarray(sizes, dtype=np.int64)
    bpp = float(np.mean(bytes_per_image * 8.0 / pixels))
    crop = "" if size0 == Y.shape[-2:] else (
        f", cropped bottom/right from {size0[0]}x{size0[1]} to multiples of {multiple}")
    what = {"reconstruction": "8-bit RGB image", "depth": f"disparity in pixels ({kind}; "
            f"{DEPTH_IGNORE:g} = none)", "segmentation": f"train ids ({IGNORE_INDEX} = ignore)"}
    source = (f"codec run {run_dir} ({exp.name}, {checkpoint} checkpoint, codec "
              f"{codec.codec_id}): Z = decoded base latent ŷ_b {list(Z.shape[1:])}, "
              f"{bpp:.4f} bits/pixel actual; Y = {what[target]}; dataset {root} split {split!r}, "
              f"{count} images of {Y.shape[-2]}x{Y.shape[-1]} at scale {scale:g}{crop}"
              + (f"; probes fit on split {fit_split!r} ({n_fit} images, first)" if n_fit
                 else ""))
    if log is not None:
        log(f"coded {count + n_fit} images with {codec.codec_id} in {time.perf_counter() - start:.1f} s: "
            f"{bpp:.4f} bits/pixel, Z {list(Z.shape)}, Y {list(Y.shape)}")
    return CodecPairs(
        Z=Z, Y=Y, target_kind=kind, representation_bpp=bpp, image_pixels=pixels,
        target_pixels=pixels, source=source, codec_id=str(codec.codec_id), run_dir=str(run_dir),
        ignore_value={"segmentation": float(IGNORE_INDEX), "depth": DEPTH_IGNORE}.get(target),
        num_classes=IGNORE_INDEX if target == "segmentation" else None,
        bytes_per_image=bytes_per_image, names=names, fit_samples=n_fit,
        payload_bytes_per_image=np.asarray(out["payloads"], dtype=np.int64))
