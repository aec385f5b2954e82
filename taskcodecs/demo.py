"""``make demo``: the end-to-end demonstration on the embedded synthetic scenes.

Stage 1 (this file, foundation): render a small synthetic dataset in the real Cityscapes and
COCO 2017 layouts, read it back through the real loaders and print what was seen.
Every line printed describes something this run actually did.

    python -m taskcodecs.demo [--out demo_output] [--train 24] [--val 8] [--height 128] [--width 256]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from taskcodecs.data.cityscapes import CityscapesDataset
from taskcodecs.data.coco import CocoDetection, detection_collate
from taskcodecs.data.labels import COCO_CATEGORIES, IGNORE_INDEX, TRAIN_CLASSES
from taskcodecs.data.synthetic import generate_dataset
from taskcodecs.io import read_json


def make_data(out: Path, train: int, val: int, height: int, width: int, seed: int) -> Path:
    """Generate the demo dataset unless an identical one is already there."""
    root = out / "data"
    wanted = {"seed": seed, "height": height, "width": width, "train": train, "val": val}
    summary_path = root / "dataset.json"
    if summary_path.is_file():
        summary = read_json(summary_path)
        if _describes(summary, wanted):
            print(f"[data] reusing {root} (same seed and sizes)")
            return root
    start = time.perf_counter()
    generate_dataset(root, train=train, val=val, height=height, width=width, seed=seed,
                     overwrite=True)
    print(f"[data] rendered {train}+{val} scenes of {height}x{width} px into {root} "
          f"in {time.perf_counter() - start:.1f} s")
    return root


def _describes(summary: dict, wanted: dict) -> bool:
    counts = {split: (summary.get("splits") or {}).get(split, {}).get("images")
              for split in ("train", "val")}
    return (summary.get("seed") == wanted["seed"]
            and summary.get("height") == wanted["height"]
            and summary.get("width") == wanted["width"]
            and counts == {"train": wanted["train"], "val": wanted["val"]})


def show_cityscapes(root: Path, batch_size: int) -> None:
    data = CityscapesDataset(root, "train", augment=True, seed=0)
    batch = next(iter(DataLoader(data, batch_size=batch_size, shuffle=False)))
    image, disp, mask, labels = (batch["image"], batch["disparity"], batch["disparity_mask"],
                                 batch["labels"])
    print(f"[cityscapes] {len(data)} training images; one augmented batch:")
    print(f"  image     {tuple(image.shape)} in [{image.min():.3f}, {image.max():.3f}]")
    valid = disp[mask]
    print(f"  disparity {tuple(disp.shape)} px, {mask.float().mean():.1%} valid, "
          f"range [{valid.min():.2f}, {valid.max():.2f}] px")
    counts = torch.bincount(labels.flatten(), minlength=IGNORE_INDEX + 1).double()
    shares = counts / counts.sum()
    top = torch.argsort(shares, descending=True)[:6]
    names = [(TRAIN_CLASSES[i] if i < IGNORE_INDEX else "ignore", shares[i].item()) for i in top]
    print("  labels    " + ", ".join(f"{n} {s:.1%}" for n, s in names))


def show_coco(root: Path, batch_size: int) -> None:
    data = CocoDetection(root, "train", paper_filter=True, augment=True, seed=0)
    images, targets = next(iter(DataLoader(data, batch_size=batch_size, collate_fn=detection_collate)))
    names = dict(COCO_CATEGORIES)
    boxes = [len(t["boxes"]) for t in targets]
    labels = torch.cat([t["labels"] for t in targets]).tolist()
    kinds = {names[c]: labels.count(c) for c in sorted(set(labels))}
    print(f"[coco] {len(data)} training images kept by the paper filters; one batch:")
    print(f"  images    {[tuple(i.shape) for i in images]}")
    print(f"  boxes     {boxes} per image; classes {kinds}")
    if labels:
        widths = torch.cat([t["boxes"][:, 2] - t["boxes"][:, 0] for t in targets])
        print(f"  box width median {float(np.median(widths.numpy())):.1f} px")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taskcodecs.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo_output"))
    parser.add_argument("--train", type=int, default=24)
    parser.add_argument("--val", type=int, default=8)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args(argv)
    root = make_data(args.out, args.train, args.val, args.height, args.width, args.seed)
    show_cityscapes(root, args.batch_size)
    show_coco(root, args.batch_size)
    print(f"[done] dataset at {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
