"""COCO 2017 object detection, read from the official layout, with the paper's filters.

Layout under ``root``::

    <split>2017/<file_name>                    images (jpg or png), e.g. train2017/, val2017/
    annotations/instances_<split>2017.json     the official instances annotations

Each item is ``(image, target)``:

    image    float32 [3, H, W] in [0, 1] (grayscale and CMYK images converted to RGB)
    target   boxes     float32 [K, 4] (x1, y1, x2, y2) in pixels, clamped to the image
             labels    int64 [K]: raw COCO category ids (1..90, with gaps); torchvision's
                       COCO detectors use these ids with num_classes=91
             image_id  int
             area      float32 [K]: the annotations' ``area`` (segment area, pixels²)
             iscrowd   int64 [K]: all 0 -- crowd annotations are dropped from the target

Boxes of zero width or height (after clamping) are dropped from the target too. The full
annotations, crowd regions included, stay in :attr:`CocoDetection.coco_api` for evaluation.

Filters, applied per image to its non-crowd annotations:

- ``paper_filter`` (the paper's training filter): keep an image if it has at least one
  non-crowd annotation, not all of its boxes are ≤ 1 px wide or high (the rule of
  torchvision's detection references), and the sum of the annotations' ``area`` exceeds
  1000 px². Evaluating on the full val2017 needs ``paper_filter=False``.
- ``voc_only`` (the reconstruction runs): keep an image only if one of its non-crowd
  annotations is one of the 20 PASCAL VOC classes (:data:`~taskcodecs.data.labels.VOC_COCO_IDS`).

Augmentation: horizontal flip of image and boxes with probability 0.5, drawn from
``np.random.default_rng([seed, epoch, index])`` (call :meth:`CocoDetection.set_epoch`).

The JSON is read and checked here (required keys, types, ids) before a pycocotools index is
built from it; segmentation polygons are dropped on load (box detection only, and they are
most of the memory of train2017). Missing ``iscrowd`` defaults to 0, missing ``area`` to the
box area. An image's ``file_name`` must stay inside ``<split>2017/``: an absolute name, or
one with a ``..`` component, is refused (no file outside the dataset is ever opened).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from infra.io import read_json
from infra.seeding import check_seed
from taskcodecs.data.errors import DatasetError
from taskcodecs.data.labels import VOC_COCO_IDS
from taskcodecs.data.transforms import (
    draw_flip,
    hflip,
    hflip_boxes,
    open_rgb_image,
    rgb_to_tensor,
)

MIN_ANNOTATED_AREA = 1000.0  # px², the paper filter's threshold on the summed annotation area
_REQUIRED_TOP = ("images", "annotations", "categories")
_REQUIRED_IMAGE = ("id", "file_name")
_REQUIRED_ANNOTATION = ("id", "image_id", "bbox", "category_id")


# ---------------------------------------------------------------------------------------------
# Annotation file: read, check, index
# ---------------------------------------------------------------------------------------------


def _require(record: Any, keys: Sequence[str], what: str, path: Path) -> None:
    if not isinstance(record, dict):
        raise DatasetError(f"{path}: {what} must be a JSON object, got {type(record).__name__}")
    missing = [key for key in keys if key not in record]
    if missing:
        raise DatasetError(f"{path}: {what} lacks required key(s) {missing}")


def _is_box(bbox: Any) -> bool:
    return (isinstance(bbox, list) and len(bbox) == 4
            and all(isinstance(v, int | float) and math.isfinite(v) for v in bbox))


def _check_file_name(name: Any, i: int, path: Path) -> None:
    """An image's ``file_name`` must stay inside its split folder: relative, without ``..``."""
    if not isinstance(name, str) or not name.strip():
        raise DatasetError(f"{path}: images[{i}] file_name must be a non-empty string, "
                           f"got {name!r}")
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts or "\0" in name or ":" in parts[0]:
        raise DatasetError(f"{path}: images[{i}] file_name {name!r} points outside the image "
                           "folder (absolute, or with '..'); file names are relative to "
                           "<split>2017/")


def load_annotations(path: str | os.PathLike) -> dict:
    """Read an ``instances_*.json`` file and check it; returns the cleaned dataset dict.

    Raises :class:`DatasetError` naming the file when it is missing, truncated or corrupt,
    lacks required keys, has malformed boxes, duplicate ids, or annotations pointing to
    unknown images or categories.
    """
    path = Path(path)
    try:
        data = read_json(path)
    except (FileNotFoundError, ValueError) as err:
        raise DatasetError(f"COCO annotation file unreadable: {err}") from err
    _require(data, _REQUIRED_TOP, "the annotation JSON", path)
    for key in _REQUIRED_TOP:
        if not isinstance(data[key], list):
            raise DatasetError(f"{path}: '{key}' must be a list, got {type(data[key]).__name__}")

    image_ids: set[int] = set()
    for i, image in enumerate(data["images"]):
        _require(image, _REQUIRED_IMAGE, f"images[{i}]", path)
        if image["id"] in image_ids:
            raise DatasetError(f"{path}: images[{i}] repeats image id {image['id']}")
        _check_file_name(image["file_name"], i, path)
        image_ids.add(image["id"])
    category_ids = set()
    for i, category in enumerate(data["categories"]):
        _require(category, ("id",), f"categories[{i}]", path)
        category_ids.add(category["id"])

    annotations, annotation_ids = [], set()
    for i, ann in enumerate(data["annotations"]):
        _require(ann, _REQUIRED_ANNOTATION, f"annotations[{i}]", path)
        where = f"annotations[{i}] (id {ann['id']})"
        if ann["id"] in annotation_ids:
            raise DatasetError(f"{path}: {where} repeats an annotation id")
        if not _is_box(ann["bbox"]):
            raise DatasetError(f"{path}: {where} bbox must be 4 numbers [x, y, w, h], "
                               f"got {ann['bbox']!r}")
        if ann["image_id"] not in image_ids:
            raise DatasetError(f"{path}: {where} refers to image id {ann['image_id']}, "
                               "which is not in 'images'")
        if ann["category_id"] not in category_ids:
            raise DatasetError(f"{path}: {where} has category id {ann['category_id']}, "
                               "which is not in 'categories'")
        annotation_ids.add(ann["id"])
        clean = {key: value for key, value in ann.items() if key != "segmentation"}
        clean.setdefault("iscrowd", 0)
        clean.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))
        annotations.append(clean)
    return {"images": data["images"], "annotations": annotations,
            "categories": data["categories"]}


def coco_index(dataset: dict) -> COCO:
    """A ``pycocotools.coco.COCO`` index over a dataset dict, built without printing."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def keep_image(annotations: Sequence[dict], paper_filter: bool, voc_only: bool) -> bool:
    """Whether an image with these annotations passes the filters (module docstring)."""
    solid = [ann for ann in annotations if not ann.get("iscrowd", 0)]
    if paper_filter:
        if not solid:
            return False
        if all(min(ann["bbox"][2], ann["bbox"][3]) <= 1 for ann in solid):
            return False
        if sum(ann["area"] for ann in solid) <= MIN_ANNOTATED_AREA:
            return False
    if voc_only and not any(ann["category_id"] in VOC_COCO_IDS for ann in solid):
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------


class CocoDetection(Dataset):
    """COCO 2017 detection items ``(image, target)`` for one split ("train" or "val")."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        paper_filter: bool = True,
        voc_only: bool = False,
        augment: bool = False,
        seed: int = 0,
        *,
        flip_probability: float = 0.5,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.paper_filter = bool(paper_filter)
        self.voc_only = bool(voc_only)
        self.augment = bool(augment)
        self.seed = check_seed(seed)
        self.epoch = 0
        self.flip_probability = float(flip_probability)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: COCO root folder not found")
        self.image_dir = self.root / f"{split}2017"
        if not self.image_dir.is_dir():
            present = sorted(p.name for p in self.root.iterdir() if p.is_dir())
            raise DatasetError(f"{self.image_dir}: split folder not found; {self.root} has: "
                               f"{', '.join(present) or 'nothing'}")
        self.annotation_path = self.root / "annotations" / f"instances_{split}2017.json"

        self._full = coco_index(load_annotations(self.annotation_path))
        if not self._full.imgs:
            raise DatasetError(f"{self.annotation_path}: no images found in 'images'")
        self.image_ids = [
            image_id for image_id in sorted(self._full.imgs)
            if keep_image(self._full.imgToAnns[image_id], self.paper_filter, self.voc_only)
        ]
        if not self.image_ids:
            raise DatasetError(
                f"{self.annotation_path}: none of its {len(self._full.imgs)} images pass the "
                f"filters (paper_filter={self.paper_filter}, voc_only={self.voc_only})"
            )
        self._coco_api: COCO | None = None

    @property
    def coco_api(self) -> COCO:
        """pycocotools index of the kept images and all their annotations (crowd included)."""
        if self._coco_api is None:
            if len(self.image_ids) == len(self._full.imgs):
                self._coco_api = self._full
            else:
                kept = set(self.image_ids)
                self._coco_api = coco_index({
                    "images": [self._full.imgs[i] for i in self.image_ids],
                    "annotations": [a for a in self._full.dataset["annotations"]
                                    if a["image_id"] in kept],
                    "categories": self._full.dataset["categories"],
                })
        return self._coco_api

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose augmentation draws the items use."""
        self.epoch = check_seed(epoch, "epoch")

    def image_path(self, index: int) -> Path:
        """The file of item ``index``."""
        return self.image_dir / self._full.imgs[self.image_ids[index]]["file_name"]

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} COCO images")
        image_id = self.image_ids[index]
        record = self._full.imgs[image_id]
        path = self.image_path(index)
        if not path.is_file():
            raise DatasetError(f"{path}: image file not found (image id {image_id} in "
                               f"{self.annotation_path})")
        pil_image = open_rgb_image(path, "image")
        expected = (record.get("width"), record.get("height"))
        if None not in expected and tuple(pil_image.size) != expected:
            raise DatasetError(f"{path}: image is {pil_image.width}x{pil_image.height} (WxH) but "
                               f"{self.annotation_path} says {expected[0]}x{expected[1]}")
        image = rgb_to_tensor(pil_image)
        target = self._target(image_id, width=pil_image.width, height=pil_image.height)
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            if draw_flip(rng, self.flip_probability):
                image = hflip(image)
                target["boxes"] = hflip_boxes(target["boxes"], pil_image.width)
        return image, target

    def _target(self, image_id: int, width: int, height: int) -> dict:
        """Non-crowd annotations as xyxy boxes clamped to the image, degenerate ones dropped."""
        anns = [a for a in self._full.imgToAnns[image_id] if not a["iscrowd"]]
        xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(-1, 4)
        boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return {
            "boxes": boxes[keep].float(),
            "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64)[keep],
            "image_id": int(image_id),
            "area": torch.tensor([a["area"] for a in anns], dtype=torch.float32)[keep],
            "iscrowd": torch.zeros(int(keep.sum()), dtype=torch.int64),
        }


def detection_collate(batch: Sequence[tuple[torch.Tensor, dict]]) -> tuple[list, list]:
    """Batch of (image, target) -> (list of images, list of targets); sizes may differ."""
    images = [image for image, _ in batch]
    targets = [target for _, target in batch]
    return images, targets
