"""The synthetic street-scene dataset: rendered scenes written in the real Cityscapes and COCO
2017 layouts, so the real loaders read it unchanged.

Scene model (see :mod:`taskcodecs.data.scene`). A straight street along +z: an asphalt road
(|x| <= 3.5-7.5 m) with dashed centre line, edge lines and sometimes a crosswalk; raised
sidewalks with tiled paving and kerbs on both sides; rows of box buildings with window
grids (gaps, green strips, hedges, a farther row, sometimes a cross building closing the
street); trees, lamp posts, traffic signs and traffic lights; parked and moving cars,
sometimes a crossing car, a bus or a truck, pedestrians on the sidewalks and crossing, parked
bicycles -- objects at about 4-70 m, occluding each other. Shading: sky light plus a
Lambertian sun from a random direction (sometimes overcast) with shadows from the street's
building rows and from objects, distance fog, a sky with clouds.

Camera. Pinhole at 1.2-1.6 m height, pitch -3.4..+1.7 deg, yaw +-6.9 deg, on the road.
Intrinsics scale Cityscapes' with the image: fx = fy = 2262.52 * width / 2048 px,
u0 = 1096.98 * width / 2048, v0 = 513.137 * height / 1024; stereo baseline 0.209313 m.
Depth is z-depth in metres; disparity = baseline * fx / depth in pixels.

File layout (``<stem>`` = ``<city>_<index:06d>_000019``; cities: train ``synthtown``,
``raycastville``, val ``voxelheim``; COCO image id = index + 1)::

    dataset.json                                   summary (below), sorted keys
    leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png        RGB, 8 bit
    gtFine/<split>/<city>/<stem>_gtFine_labelIds.png         labelIds, 8 bit (mode L)
    gtFine/<split>/<city>/<stem>_gtFine_instanceIds.png      16 bit
    disparity/<split>/<city>/<stem>_disparity.png            16 bit
    camera/<split>/<city>/<stem>_camera.json                 Cityscapes camera format
    <split>2017/<id:012d>.png                                the same bytes as leftImg8bit
    annotations/instances_<split>2017.json                   COCO instances (compact JSON)

Encodings. labelIds: Cityscapes labelIds (:mod:`taskcodecs.data.labels`); every pixel is
labelled (sky 23 where no surface is hit). instanceIds: labelId * 1000 + k for person, car,
truck, bus and bicycle pixels (k counts that class's visible objects from 0 in scene
order), the labelId elsewhere. Disparity: p = round(disparity * 256) + 1 clipped to 65535;
p = 0 is invalid: sky, and surfaces farther than ``MAX_VALID_DEPTH_M`` (400 m). COCO: one
annotation per object (person, bicycle, car, bus, truck, traffic light) whose visible mask has
at least ``MIN_INSTANCE_PIXELS`` (10) pixels; smaller ones stay in the Cityscapes PNGs but are
left out of COCO. bbox [x, y, w, h] and area are those of the visible mask, segmentation is
its RLE (pycocotools, counts as str), iscrowd 0; categories are all 80 COCO categories.

dataset.json: generator name and version, seed, image size, camera intrinsics and
baseline, per split the image and instance counts, the fraction of pixels of each of the 19
Cityscapes train classes (plus ``ignore``), the range of valid depth (m) and disparity (px),
and the COCO instance count per category name.

Determinism. Image i of a split is rendered from its own generator,
``np.random.default_rng(SeedSequence([seed, split_code, i]))`` (train 0, val 1), never from
global state, so the files do not depend on the number of worker processes. PNGs are
written by PIL with fixed settings and no metadata, JSON with sorted keys; all writes are
atomic (:mod:`infra.io`). The same seed gives byte-identical files.

CLI::

    python -m taskcodecs.data.synthetic --out DIR --train N --val M --height H --width W \\
        --seed S [--workers K] [--overwrite]
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image

from infra.io import atomic_write_bytes, atomic_write_text, write_json
from taskcodecs.data.labels import (
    COCO_CATEGORIES,
    IGNORE_INDEX,
    LABEL_ID,
    LABEL_TO_TRAIN,
    TRAIN_CLASSES,
)
from taskcodecs.data.scene import CITYSCAPES_BASELINE_M, camera_intrinsics, generate_scene

GENERATOR_VERSION = "1.0"
SPLITS = ("train", "val")
SPLIT_CODES = {"train": 0, "val": 1}
CITIES = {"train": ("synthtown", "raycastville"), "val": ("voxelheim",)}
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 4096  # pixels, height and width
MIN_INSTANCE_PIXELS = 10
MAX_VALID_DEPTH_M = 400.0
PNG_COMPRESS_LEVEL = 3
INSTANCE_LABELS = frozenset(LABEL_ID[n] for n in ("person", "rider", "car", "truck", "bus",
                                                  "caravan", "trailer", "train", "motorcycle",
                                                  "bicycle"))
COCO_NAMES = dict(COCO_CATEGORIES)


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of image ``index`` of ``split``: a function of (seed, split, index) only."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLIT_CODES[split], index]))


def image_stem(split: str, index: int) -> tuple[str, str]:
    """(city, Cityscapes file stem) of image ``index`` of ``split``."""
    cities = CITIES[split]
    city = cities[index % len(cities)]
    return city, f"{city}_{index:06d}_000019"


def coco_file_name(index: int) -> str:
    return f"{index + 1:012d}.png"


def encode_disparity(depth: np.ndarray, fx: float, baseline: float) -> np.ndarray:
    """Depth (m, inf = sky) -> Cityscapes disparity PNG values (uint16, 0 = invalid)."""
    depth = np.asarray(depth, np.float64)
    valid = np.isfinite(depth) & (depth > 0) & (depth <= MAX_VALID_DEPTH_M)
    disparity = baseline * fx / np.where(valid, depth, 1.0)  # pixels
    values = np.minimum(np.round(disparity * 256) + 1, 65535)
    return np.where(valid, values, 0).astype(np.uint16)


def instance_ids(label_ids: np.ndarray, object_map: np.ndarray, objects) -> np.ndarray:
    """Cityscapes instanceIds (uint16): labelId * 1000 + k on instance classes, else labelId."""
    out = label_ids.astype(np.uint16)
    counters: dict[int, int] = {}
    present = np.unique(object_map[object_map >= 0])
    for k in present:
        label = objects[k].label_id
        if label in INSTANCE_LABELS:
            counters[label] = counters.get(label, -1) + 1
            out[object_map == k] = label * 1000 + counters[label]
    return out


def coco_annotations(object_map: np.ndarray, objects) -> list[dict[str, Any]]:
    """COCO annotations (without ids) of the visible objects with >= MIN_INSTANCE_PIXELS."""
    annotations = []
    counts = np.bincount(object_map.reshape(-1) + 1, minlength=len(objects) + 1)[1:]
    for k in np.nonzero(counts >= MIN_INSTANCE_PIXELS)[0]:
        rle = mask_utils.encode(np.asfortranarray((object_map == k).astype(np.uint8)))
        annotations.append({
            "category_id": int(objects[k].coco_id),
            "bbox": [float(v) for v in mask_utils.toBbox(rle)],
            "area": int(counts[k]),
            "iscrowd": 0,
            "segmentation": {"size": [int(s) for s in rle["size"]],
                             "counts": rle["counts"].decode("ascii")},
        })
    return annotations


def png_bytes(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 RGB / uint8 gray (mode L) / uint16 gray array, no metadata."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _render_and_write(task: tuple[str, str, int, int, int, int]) -> dict[str, Any]:
    """Render image ``index`` of ``split``, write its files, return its summary."""
    out, split, index, seed, height, width = task
    root = Path(out)
    scene = generate_scene(image_rng(seed, split, index), height, width)
    cam = scene.camera
    city, stem = image_stem(split, index)
    rgb_png = png_bytes(scene.rgb)
    disparity = encode_disparity(scene.depth, cam.fx, cam.baseline)
    files = {
        f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png": rgb_png,
        f"{split}2017/{coco_file_name(index)}": rgb_png,
        f"gtFine/{split}/{city}/{stem}_gtFine_labelIds.png": png_bytes(scene.label_ids),
        f"gtFine/{split}/{city}/{stem}_gtFine_instanceIds.png": png_bytes(
            instance_ids(scene.label_ids, scene.object_map, scene.objects)),
        f"disparity/{split}/{city}/{stem}_disparity.png": png_bytes(disparity),
    }
    for name, data in files.items():
        atomic_write_bytes(root / name, data)
    write_json(root / f"camera/{split}/{city}/{stem}_camera.json", {
        "extrinsic": {"baseline": cam.baseline, "pitch": round(cam.pitch, 6), "roll": 0.0,
                      "x": 0.0, "y": 0.0, "yaw": round(cam.yaw, 6),
                      "z": round(cam.position[1], 6)},
        "intrinsic": {"fx": cam.fx, "fy": cam.fy, "u0": cam.u0, "v0": cam.v0},
    })
    valid = disparity > 0
    return {
        "label_counts": np.bincount(scene.label_ids.reshape(-1), minlength=256),
        "annotations": coco_annotations(scene.object_map, scene.objects),
        "depth": (float(scene.depth[valid].min()), float(scene.depth[valid].max()))
        if valid.any() else None,
        "disparity": (int(disparity[valid].min()), int(disparity[valid].max()))
        if valid.any() else None,
    }


def _check_args(out: Path, train: int, val: int, height: int, width: int, workers: int,
                overwrite: bool) -> None:
    for name, value in (("train", train), ("val", val), ("workers", workers)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) \
                or not MIN_IMAGE_SIZE <= value <= MAX_IMAGE_SIZE:
            raise ValueError(f"{name} must be an integer in [{MIN_IMAGE_SIZE}, "
                             f"{MAX_IMAGE_SIZE}] pixels, got {value!r}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: output path exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"{out}: output directory is not empty (choose a new or empty "
                         "directory, or pass overwrite=True / --overwrite)")


def generate_dataset(out: str | os.PathLike, *, train: int, val: int, height: int, width: int,
                     seed: int, workers: int | None = None,
                     overwrite: bool = False) -> dict[str, Any]:
    """Render ``train`` + ``val`` scenes of ``height`` x ``width`` pixels into ``out``.

    ``workers`` processes render in parallel (default min(2, cpu count)); the files are the
    same for any number. ``out`` must be new or empty unless ``overwrite`` (files are then
    replaced, nothing is deleted). Returns the summary also written to ``dataset.json``.
    """
    from infra.seeding import check_seed  # imports torch: keep it out of the workers

    seed = check_seed(seed)
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    out = Path(out)
    _check_args(out, train, val, height, width, workers, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    tasks = [(str(out), split, i, seed, height, width)
             for split, count in (("train", train), ("val", val)) for i in range(count)]
    workers = min(workers, len(tasks))
    if workers == 1:
        results = [_render_and_write(task) for task in tasks]
    else:
        # fork (as torch's DataLoader does on Linux): spawn would re-import the caller's
        # __main__ (and torch with it) in every worker; workers touch only numpy and PIL.
        context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
        with context.Pool(workers, initializer=_default_signals) as pool:
            chunk = max(1, min(8, len(tasks) // (4 * workers)))
            results = list(pool.imap(_render_and_write, tasks, chunksize=chunk))
    summary = _summarise(out, tasks, results, seed, height, width)
    write_json(out / "dataset.json", summary)
    return summary


def _default_signals() -> None:
    """In a forked worker: the parent's handlers do not apply. SIGTERM (the pool's own
    shutdown) ends the worker quietly; SIGINT is the parent's to handle."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _summarise(out: Path, tasks, results, seed: int, height: int, width: int) -> dict[str, Any]:
    """Write the COCO annotation files and build the dataset.json summary."""
    intrinsics = camera_intrinsics(height, width)
    categories = [{"id": cid, "name": name, "supercategory": "none"}
                  for cid, name in COCO_CATEGORIES]
    summary: dict[str, Any] = {
        "generator": "taskcodecs.data.synthetic", "version": GENERATOR_VERSION, "seed": seed,
        "height": height, "width": width,
        "camera": {**intrinsics, "baseline_m": CITYSCAPES_BASELINE_M},
        "min_instance_pixels": MIN_INSTANCE_PIXELS, "max_valid_depth_m": MAX_VALID_DEPTH_M,
        "disparity_encoding": "p = round(disparity_px * 256) + 1 (max 65535); p = 0 invalid",
        "splits": {}, "class_pixel_frequencies": {}, "depth_range": {},
        "coco_instance_counts": {},
    }
    for split in SPLITS:
        rows = [(task, res) for task, res in zip(tasks, results) if task[1] == split]
        images, annotations = [], []
        for (_, _, index, *_), res in rows:
            images.append({"id": index + 1, "file_name": coco_file_name(index),
                           "height": height, "width": width})
            for ann in res["annotations"]:
                annotations.append({**ann, "id": len(annotations) + 1, "image_id": index + 1})
        coco = {"info": {"description": "taskcodecs synthetic street scenes",
                         "version": GENERATOR_VERSION, "seed": seed},
                "licenses": [], "images": images, "annotations": annotations,
                "categories": categories}
        # compact, like the official files (and written by json's fast C encoder)
        atomic_write_text(out / "annotations" / f"instances_{split}2017.json",
                          json.dumps(coco, sort_keys=True, separators=(",", ":")) + "\n")
        counts = np.sum([res["label_counts"] for _, res in rows], axis=0)
        per_train = np.bincount(LABEL_TO_TRAIN, weights=counts, minlength=IGNORE_INDEX + 1)
        total = float(counts.sum())
        freq = {name: float(per_train[i] / total) for i, name in enumerate(TRAIN_CLASSES)}
        freq["ignore"] = float(per_train[IGNORE_INDEX] / total)
        summary["class_pixel_frequencies"][split] = freq
        depths = [res["depth"] for _, res in rows if res["depth"] is not None]
        disps = [res["disparity"] for _, res in rows if res["disparity"] is not None]
        summary["depth_range"][split] = {
            "min_depth_m": min(d[0] for d in depths), "max_depth_m": max(d[1] for d in depths),
            "min_disparity_px": (min(d[0] for d in disps) - 1) / 256,
            "max_disparity_px": (max(d[1] for d in disps) - 1) / 256,
        } if depths else None
        per_category: dict[str, int] = {}
        for ann in annotations:
            name = COCO_NAMES[ann["category_id"]]
            per_category[name] = per_category.get(name, 0) + 1
        summary["coco_instance_counts"][split] = per_category
        summary["splits"][split] = {"images": len(rows), "instances": len(annotations),
                                    "cities": list(CITIES[split])}
    return summary


def main(argv: list[str] | None = None) -> int:
    """The command line; errors and interrupts follow :mod:`infra.cli` (exit 2 / 130)."""
    from infra import cli  # light: no torch

    return cli.run(_main, argv)


def _main(argv: list[str]) -> int:
    from infra import cli

    parser = argparse.ArgumentParser(
        prog="python -m taskcodecs.data.synthetic",
        description="Render synthetic street scenes in the Cityscapes and COCO 2017 layouts.")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--train", required=True, type=cli.positive_int, help="training images")
    parser.add_argument("--val", required=True, type=cli.positive_int, help="validation images")
    parser.add_argument("--height", required=True, type=cli.positive_int, help="pixels")
    parser.add_argument("--width", required=True, type=cli.positive_int, help="pixels")
    parser.add_argument("--seed", required=True, type=cli.seed, help="integer seed (0 is a seed)")
    parser.add_argument("--workers", type=cli.positive_int, default=None,
                        help="worker processes (default: min(2, cpu count))")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty directory, replacing files")
    args = parser.parse_args(argv)
    cli.on_interrupt(f"{args.out} holds a partial dataset (dataset.json, written last, is "
                     "missing); rerun the command with --overwrite")
    summary = generate_dataset(args.out, train=args.train, val=args.val,
                               height=args.height, width=args.width, seed=args.seed,
                               workers=args.workers, overwrite=args.overwrite)
    splits = ", ".join(f"{k}: {v['images']} images, {v['instances']} instances"
                       for k, v in summary["splits"].items())
    print(f"wrote {args.out} ({splits})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
