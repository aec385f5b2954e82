"""Benchmark: does the default autoregressive ladder detect small, known information?

    python benchmarks/vinfo_power.py                     # 192 train + 48 val scenes, 3x64x128
    python benchmarks/vinfo_power.py --train 96 --val 24 --height 32 --width 64
    python benchmarks/vinfo_power.py --case independent  # Z independent of Y: I_V must be ~0

Targets: the synthetic street scenes (``taskcodecs.data.synthetic``, the demo's generator),
8-bit RGB. Representations (DESIGN §7, "probes fit on the training split"; the probing
protocol: the train scenes fit every probe, the val scenes select and evaluate):

- ``planted``: one bit per 8x8 block and colour channel, "the block's mean is above the
  median of that block over the train scenes": Z [N, 3, H/8, W/8] in {0, 1}. Z is a function
  of Y, so I(Y;Z) = H(Z) <= 3·(H/8)·(W/8) bits per image = 3/64 = 0.047 bits/pixel; the rate
  given to the estimator is that bound, R = 0.047 bits/pixel.
- ``independent``: the same bits drawn from another set of scenes (Z ⊥ Y).
- ``constant``: Z = 0 everywhere.
- ``exact``: a code k uniform on 0..3 is written into the scene's top-left pixel (all three
  channels = 64k + 32) and Z is k one-hot at latent cell (0, 0) (zeros elsewhere): k is
  independent of the scene and Y determines it, so I(Y;Z) = H(k) = 2 bits per image exactly;
  R = 2 bits per image.

Printed: the shared null's bits/pixel beside PNG, WebP lossless and JPEG-XL lossless on the
evaluation scenes; per rung I_V with its interval, the capped I_V, the MDE, collapsed/
unconverged flags; wall and CPU seconds (one thread).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

import infra  # noqa: E402,F401 - hides known third-party warnings (infra.cli.KNOWN_WARNINGS)
from vinfo.api import estimate  # noqa: E402


def scenes(root: Path, train: int, val: int, height: int, width: int, seed: int) -> np.ndarray:
    """[train + val, 3, H, W] uint8 synthetic scenes (train first), generated once."""
    from PIL import Image

    from vinfo.adapter.scenes import generate_dataset

    folder = root / f"scenes-{train}+{val}-{height}x{width}-seed{seed}"
    if not (folder / "dataset.json").is_file():
        generate_dataset(folder, train=train, val=val, height=height, width=width, seed=seed,
                         overwrite=True)
    paths = [p for split in ("train", "val")
             for p in sorted((folder / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))]
    return np.stack([np.asarray(Image.open(p).convert("RGB")).transpose(2, 0, 1)
                     for p in paths])


def block_bits(y: np.ndarray, n_train: int, block: int = 8) -> np.ndarray:
    """Z [N, C, H/b, W/b]: block mean above the train scenes' median of that block."""
    n, c, h, w = y.shape
    means = y.reshape(n, c, h // block, block, w // block, block).mean(axis=(3, 5))
    median = np.median(means[:n_train], axis=0, keepdims=True)
    return (means > median).astype(np.float32)


def exact_code(y: np.ndarray, seed: int = 0, block: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(Y with k written into pixel (0, 0), Z = one-hot k at latent cell (0, 0))."""
    n, _, h, w = y.shape
    k = np.random.default_rng(seed).integers(0, 4, size=n)
    y = y.copy()
    y[:, :, 0, 0] = (64 * k + 32)[:, None]
    z = np.zeros((n, 4, h // block, w // block), np.float32)
    z[np.arange(n), k, 0, 0] = 1.0
    return y, z


def planted_case(case: str, y: np.ndarray, n_train: int, other: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, float]:
    """(Y, Z, R in bits per image) of ``case`` (module docstring)."""
    if case == "exact":
        y, z = exact_code(y)
        return y, z, 2.0
    bits = block_bits(y, n_train)
    rate = float(bits[0].size)  # 3 (H/8) (W/8) bits: the bound of the planted code
    if case == "planted":
        return y, bits, rate
    if case == "independent":
        return y, block_bits(other, n_train), rate
    return y, np.zeros_like(bits), rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=("planted", "independent", "constant", "exact"),
                        default="planted")
    parser.add_argument("--train", type=int, default=192)
    parser.add_argument("--val", type=int, default=48)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--seeds", default="0,1", help="refit seeds")
    parser.add_argument("--families", default="", help="comma list (default: the ladder)")
    parser.add_argument("--data", default="runs/bench-scenes")
    parser.add_argument("--set", nargs="*", default=[], help="extra config key=value")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    y = scenes(Path(args.data), args.train, args.val, args.height, args.width, 0)
    other = scenes(Path(args.data), args.train, args.val, args.height, args.width, 1) \
        if args.case == "independent" else y
    y, z, rate = planted_case(args.case, y, args.train, other)
    extra = dict(kv.split("=", 1) for kv in args.set)
    extra = {k: (int(v) if v.lstrip("-").isdigit() else float(v)) for k, v in extra.items()}
    wall, cpu = time.perf_counter(), time.process_time()
    ds = estimate(z, y, "discretized", fit_samples=args.train,
                  seeds=[int(s) for s in args.seeds.split(",")],
                  families=args.families or [], curves=False, bootstrap=1000,
                  representation_bits=np.full(len(y), rate), log=print, **extra)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"\ncase {args.case}: {args.train} train + {args.val} val scenes 3x{args.height}x"
          f"{args.width}; R = {rate / (args.height * args.width):.4f} bits/pixel")
    print(f"null {float(ds['h_null'].values[0]):.3f} bits/pixel; stock: " + ", ".join(
        f"{k} {float(ds[f'stock_{k}_bpp']):.3f}" for k in ("png", "webp", "jpegxl")
        if f"stock_{k}_bpp" in ds) + f" (null/JPEG-XL {ds.attrs.get('null_vs_jpegxl', 0):.2f})")
    for i, fam in enumerate(ds.family.values):
        print(f"  {fam:14s} I_V {float(ds['vinfo'][i]):+.4f} [{float(ds['vinfo_low'][i]):+.4f},"
              f" {float(ds['vinfo_high'][i]):+.4f}] bits/pixel = "
              f"{float(ds['vinfo_per_image'][i]):+.1f} bits/image, MDE "
              f"{float(ds['vinfo_mde'][i]):.4f}, capped {float(ds['vinfo_capped'][i]):.4f}, "
              f"collapsed {bool(ds['collapsed'][i])}, unconverged "
              f"{bool(ds['unconverged'][i])}; trained members {float(ds['vinfo_trained'][i]):+.4f}"
              f" [{float(ds['vinfo_trained_low'][i]):+.4f}, "
              f"{float(ds['vinfo_trained_high'][i]):+.4f}]")
    print(f"time: {wall:.0f} s wall, {cpu:.0f} s CPU (one thread)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
