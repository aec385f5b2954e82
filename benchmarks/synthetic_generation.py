"""Benchmark: render the synthetic street-scene dataset (600 images of 128x256).

    python benchmarks/synthetic_generation.py            # 600 images, median of 3 runs
    python benchmarks/synthetic_generation.py --quick    # 60 images, one run

Each run writes a fresh dataset (500 train + 100 val; quick: 50 + 10) into a temporary folder
with ``generate_dataset`` and the default number of workers, all files included (PNGs, camera
and COCO JSON, dataset.json). Prints seconds per run, the median, images per second and a last
line ``ratio synthetic_600_under_60s=VALUE`` with VALUE = 60 s / seconds for 600 images (in
quick mode the 60-image time times 10); above 1 means the 60 s target is met.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import infra.seeding  # noqa: F401  (imports torch once, outside the timed region)
from taskcodecs.data.synthetic import generate_dataset

TARGET_IMAGES, TARGET_SECONDS = 600, 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 images, one run")
    parser.add_argument("--runs", type=int, default=None, help="runs (default 3; quick 1)")
    parser.add_argument("--workers", type=int, default=None, help="default: min(2, cpus)")
    args = parser.parse_args()
    train, val = (50, 10) if args.quick else (500, 100)
    runs = args.runs or (1 if args.quick else 3)
    images = train + val
    seconds = []
    for run in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            generate_dataset(Path(tmp) / "synth", train=train, val=val, height=128, width=256,
                             seed=run, workers=args.workers)
            seconds.append(time.perf_counter() - start)
        print(f"run {run}: {images} images of 128x256 in {seconds[-1]:.2f} s")
    median = statistics.median(seconds)
    per_600 = median * TARGET_IMAGES / images
    print(f"median: {median:.2f} s for {images} images, {images / median:.1f} images/s, "
          f"{per_600:.2f} s per {TARGET_IMAGES} images"
          + (" (extrapolated)" if images != TARGET_IMAGES else ""))
    print(f"ratio synthetic_600_under_60s={TARGET_SECONDS / per_600:.3f}")


if __name__ == "__main__":
    main()
