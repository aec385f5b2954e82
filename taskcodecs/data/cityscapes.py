"""Cityscapes: images with disparity and semantic labels, read from the official layout.

Layout under ``root`` (``<stem>`` is e.g. ``aachen_000000_000019``)::

    leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png     8-bit RGB image
    gtFine/<split>/<city>/<stem>_gtFine_labelIds.png      8-bit labelIds
    disparity/<split>/<city>/<stem>_disparity.png         16-bit disparity

Each item is a dict:

    image           float32 [3, H, W] in [0, 1]; after colour jitter when augmenting (the
                    jittered image is also the reconstruction target, so there is one image)
    disparity       float32 [1, H, W] in pixels: (p − 1) / 256 where the PNG value p > 0,
                    0 where p = 0                                     (if requested)
    disparity_mask  bool [1, H, W]: p > 0, the pixels with a disparity  (if requested)
    labels          int64 [H, W]: train ids 0..18, everything else the ignore index 19
                                                                      (if requested)
    name            the stem, e.g. "aachen_000000_000019"
    index           the item's position in the dataset

``scale`` ≠ 1 resizes everything to round(scale·H) × round(scale·W): the image bilinearly
(antialiased), labels, disparity and its mask nearest-neighbour, and the disparity *values*
are multiplied by the width ratio, since a disparity in pixels scales with the resolution
(scale 0.5 halves every disparity).

Augmentation (the paper's): horizontal flip with probability 0.5 of image and targets
together, then colour jitter of the image only (brightness, contrast, saturation factors in
[0.5, 1.5], random order). The randomness of item ``index`` comes from
``np.random.default_rng([seed, epoch, index])``, so the same (seed, epoch, index) gives the
same sample in any worker; call :meth:`CityscapesDataset.set_epoch` every epoch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from infra.seeding import check_seed
from taskcodecs.data.errors import DatasetError
from taskcodecs.data.labels import label_ids_to_train_ids
from taskcodecs.data.transforms import (
    ColorJitter,
    draw_flip,
    hflip,
    open_image,
    open_rgb_image,
    resize_disparity,
    resize_image,
    resize_nearest,
    rgb_to_tensor,
    scaled_size,
)

TARGETS = ("disparity", "labels")
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"
DISPARITY_SUFFIX = "_disparity.png"
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # "I": older Pillow's 16-bit PNG
_MODE_NAMES = {"1": "1-bit", "L": "8-bit grayscale", "P": "8-bit palette", "RGB": "8-bit RGB",
               "RGBA": "8-bit RGBA", "LA": "8-bit grayscale+alpha", "F": "32-bit float"}


def decode_disparity(raw: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """16-bit Cityscapes disparity values p -> (disparity [1, H, W] in pixels, mask [1, H, W]).

    disparity = (p − 1) / 256 where p > 0; p = 0 marks "no disparity" (mask False, value 0).
    """
    raw = torch.from_numpy(raw.astype(np.int64))
    mask = raw > 0
    disparity = torch.where(mask, (raw - 1).float() / 256.0, torch.zeros((), dtype=torch.float32))
    return disparity[None], mask[None]


def _split_dir(root: Path, folder: str, split: str) -> Path:
    """``root/folder/split``, or a DatasetError saying which folders do exist."""
    parent = root / folder
    if not parent.is_dir():
        present = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise DatasetError(
            f"{parent}: folder not found (a Cityscapes root has leftImg8bit/, gtFine/ and "
            f"disparity/; {root} contains: {', '.join(present) or 'nothing'})"
        )
    split_dir = parent / split
    if not split_dir.is_dir():
        present = sorted(p.name for p in parent.iterdir() if p.is_dir())
        raise DatasetError(
            f"{split_dir}: split folder not found; {parent} has: {', '.join(present) or 'nothing'}"
        )
    return split_dir


def _check_same_size(path: Path, image: Image.Image, image_path: Path, reference: Image.Image):
    if image.size != reference.size:
        raise DatasetError(
            f"{path}: size {image.width}x{image.height} (WxH) does not match its image "
            f"{image_path} ({reference.width}x{reference.height})"
        )


class CityscapesDataset(Dataset):
    """Cityscapes items (see the module docstring) for one split: "train", "val" or "test".

    ``targets`` picks what is loaded besides the image: any of "disparity" and "labels"
    (a root without a ``disparity/`` folder works with ``targets=("labels",)``).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        augment: bool = False,
        scale: float = 1.0,
        seed: int = 0,
        *,
        targets: Sequence[str] = TARGETS,
        flip_probability: float = 0.5,
        jitter: tuple[float, float, float] = (0.5, 0.5, 0.5),
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.augment = bool(augment)
        self.seed = check_seed(seed)
        self.epoch = 0
        self.targets = tuple(targets)
        self.flip_probability = float(flip_probability)
        self.jitter = tuple(float(s) for s in jitter)
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown:
            raise ValueError(f"unknown Cityscapes targets {unknown}; choose from {TARGETS}")
        if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        self.scale = float(scale)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: Cityscapes root folder not found")

        image_dir = _split_dir(self.root, "leftImg8bit", split)
        self.image_paths = sorted(
            image_dir.glob(f"*/*{IMAGE_SUFFIX}"), key=lambda p: p.relative_to(image_dir).as_posix()
        )
        if not self.image_paths:
            raise DatasetError(
                f"{image_dir}: no images found (expected <city>/<stem>{IMAGE_SUFFIX} files)"
            )
        self.names = [p.name[: -len(IMAGE_SUFFIX)] for p in self.image_paths]
        self.label_paths = self._counterparts("gtFine", LABEL_SUFFIX, "labelIds PNG", "labels")
        self.disparity_paths = self._counterparts(
            "disparity", DISPARITY_SUFFIX, "disparity PNG", "disparity"
        )

    def _counterparts(self, folder: str, suffix: str, what: str, target: str) -> list[Path]:
        """The target file of every image, checked to exist ([] if the target is not loaded)."""
        if target not in self.targets:
            return []
        try:
            split_dir = _split_dir(self.root, folder, self.split)
        except DatasetError as err:
            hint = f"to load without {target}, leave it out of targets="
            raise DatasetError(f"{err} ({hint})") from None
        paths = [split_dir / p.parent.name / f"{name}{suffix}"
                 for p, name in zip(self.image_paths, self.names)]
        missing = [(image, path) for image, path in zip(self.image_paths, paths)
                   if not path.is_file()]
        if missing:
            image, path = missing[0]
            raise DatasetError(
                f"{path}: {what} not found for image {image} "
                f"({len(missing)} of {len(paths)} images in split {self.split!r} lack one)"
            )
        return paths

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose augmentation draws the items use."""
        self.epoch = check_seed(epoch, "epoch")

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} Cityscapes images")
        item = self._load(index)
        if self.augment:
            item = self._augmented(item, np.random.default_rng([self.seed, self.epoch, index]))
        item["name"] = self.names[index]
        item["index"] = index
        return item

    def _load(self, index: int) -> dict:
        """Decode image and requested targets of one item, checked and resized to ``scale``."""
        image_path = self.image_paths[index]
        pil_image = open_rgb_image(image_path, "image")
        item = {"image": rgb_to_tensor(pil_image)}
        if "disparity" in self.targets:
            path = self.disparity_paths[index]
            raw = open_image(path, "disparity PNG")
            if raw.mode not in _SIXTEEN_BIT_MODES:
                raise DatasetError(
                    f"{path}: disparity PNG must be 16-bit grayscale, got PIL mode {raw.mode!r} "
                    f"({_MODE_NAMES.get(raw.mode, 'not 16-bit')})"
                )
            _check_same_size(path, raw, image_path, pil_image)
            values = np.asarray(raw).astype(np.int64)
            if values.min() < 0 or values.max() > 65535:
                raise DatasetError(f"{path}: disparity values outside 0..65535 (not a 16-bit PNG)")
            item["disparity"], item["disparity_mask"] = decode_disparity(values)
        if "labels" in self.targets:
            path = self.label_paths[index]
            label_image = open_image(path, "labelIds PNG")
            if label_image.mode not in ("L", "P", *_SIXTEEN_BIT_MODES):
                raise DatasetError(
                    f"{path}: expected a single-channel labelIds PNG, got PIL mode "
                    f"{label_image.mode!r} (is this the *_gtFine_color.png?)"
                )
            _check_same_size(path, label_image, image_path, pil_image)
            try:
                train_ids = label_ids_to_train_ids(np.asarray(label_image))
            except ValueError as err:
                raise DatasetError(f"{path}: {err}") from err
            item["labels"] = torch.from_numpy(train_ids.astype(np.int64))
        if self.scale != 1.0:
            item = self._resized(item)
        return item

    def _resized(self, item: dict) -> dict:
        size = scaled_size(*item["image"].shape[-2:], self.scale)
        item["image"] = resize_image(item["image"], size)
        if "disparity" in item:
            item["disparity"], item["disparity_mask"] = resize_disparity(
                item["disparity"], item["disparity_mask"], size
            )
        if "labels" in item:
            item["labels"] = resize_nearest(item["labels"], size)
        return item

    def _augmented(self, item: dict, rng: np.random.Generator) -> dict:
        """Flip image and targets together, then jitter the image (draws: flip, jitter)."""
        flip = draw_flip(rng, self.flip_probability)
        jitter = ColorJitter.draw(rng, *self.jitter)
        if flip:
            item = {key: hflip(value) for key, value in item.items()}
        item["image"] = jitter(item["image"])
        return item
