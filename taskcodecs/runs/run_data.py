"""The data of a run: its dataset folder (generating synthetic scenes there if the config
asks), the datasets of its splits, batch collation and moving batches to the device.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import default_collate

from infra.config import ConfigError
from taskcodecs.data.cityscapes import CityscapesDataset
from taskcodecs.data.coco import CocoDetection
from taskcodecs.data.errors import DatasetError
from taskcodecs.data.synthetic import generate_dataset
from taskcodecs.experiments.train_config import SyntheticData, TrainConfig


def has_dataset(root: str | os.PathLike, kind: str) -> bool:
    """Whether ``root`` holds a dataset of ``kind`` (its top-level folder exists)."""
    marker = "leftImg8bit" if kind == "cityscapes" else "annotations"
    return (Path(root) / marker).is_dir()


def synthetic_dir(cfg: TrainConfig) -> Path:
    """Where the synthetic scenes of ``cfg`` live: ``data_root`` if set, else
    ``synthetic_cache`` (default ``<parent of out>/synthetic-cache``) / a folder named by
    the generation parameters, shared by every run that asks for the same scenes."""
    if cfg.data_root:
        return Path(cfg.data_root)
    syn = cfg.synthetic or SyntheticData()
    key = f"{syn.height}x{syn.width}-train{syn.train}-val{syn.val}-seed{syn.seed}"
    cache = Path(cfg.synthetic_cache) if cfg.synthetic_cache else cfg.run_dir.resolve().parent / "synthetic-cache"
    return cache / key


def ensure_data(cfg: TrainConfig, is_main: bool = True, log: logging.Logger | None = None) -> Path:
    """The data root of ``cfg``, generating synthetic scenes first where the config asks for
    them and none are there yet (only where ``is_main``; other ranks must wait on a barrier
    and call again).

    A ``data_root`` that holds no dataset is refused (:class:`ConfigError` naming it: a
    mistyped path never trains on scenes rendered in its place) unless ``render_synthetic``
    asks to render the config's ``synthetic`` scenes there. Without ``data_root``, a config
    with a ``synthetic`` section (the tiny presets) renders them into :func:`synthetic_dir`
    (``synthetic_cache`` or the preset's default location). Rendering is logged: where, how
    many."""
    if cfg.data_root and has_dataset(cfg.data_root, cfg.dataset):
        return Path(cfg.data_root)
    marker = "leftImg8bit/" if cfg.dataset == "cityscapes" else "annotations/"
    if cfg.data_root and not (cfg.render_synthetic and cfg.synthetic is not None):
        given = Path(cfg.data_root)
        state = "does not exist" if not given.exists() else f"holds no {marker}"
        hint = ("point data_root at the real dataset (see the README section on training the "
                "paper experiments)" if cfg.synthetic is None else
                "point data_root at a dataset, leave it unset for the preset's synthetic "
                "scenes, or add render_synthetic=true to render them into it")
        raise ConfigError(f"data_root={given}: no {cfg.dataset} dataset found ({given} "
                          f"{state}; expected {marker} in it); {hint}")
    if cfg.synthetic is None:
        raise ConfigError(f"data_root is not set: no {cfg.dataset} dataset found; point "
                          "data_root at the real dataset (see the README section on training "
                          "the paper experiments)")
    root = synthetic_dir(cfg)
    if has_dataset(root, cfg.dataset) or not is_main:
        if is_main and log is not None:
            log.info("data: the synthetic scenes of this config, rendered before, at %s", root)
        return root
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"data_root={root}: folder is not empty but holds no {cfg.dataset} "
                          "dataset; choose an empty folder for the synthetic scenes")
    syn = cfg.synthetic
    if log is not None:
        log.info("no %s dataset at %s: generating %d+%d synthetic scenes of %dx%d (seed %d)",
                 cfg.dataset, root, syn.train, syn.val, syn.height, syn.width, syn.seed)
    # generate beside the target, then rename: a crash never leaves half a dataset behind
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    generate_dataset(tmp, train=syn.train, val=syn.val, height=syn.height, width=syn.width,
                     seed=syn.seed, workers=1, overwrite=True)
    try:
        if root.exists():
            root.rmdir()  # empty, checked above
        os.replace(tmp, root)
    except OSError:  # another process finished first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
        if not has_dataset(root, cfg.dataset):
            raise
    if log is not None:
        log.info("rendered %d synthetic scenes (%d train + %d val, %dx%d, seed %d) into %s",
                 syn.train + syn.val, syn.train, syn.val, syn.height, syn.width, syn.seed, root)
    return root


def existing_data(cfg: TrainConfig) -> Path:
    """The data root of a trained run's ``cfg`` for reading (evaluation): never generates.

    A missing or empty folder is a :class:`DatasetError` that says how to get the data back:
    for synthetic scenes the exact ``taskcodecs.data.synthetic`` command that regenerates
    them (byte-identical: the generator is deterministic), else where the real dataset goes.
    """
    root = Path(cfg.data_root) if cfg.data_root or cfg.synthetic is None else synthetic_dir(cfg)
    if cfg.data_root is None and cfg.synthetic is None:
        raise DatasetError(f"data_root is not set and the run has no synthetic scenes: point "
                           f"data_root= at the {cfg.dataset} dataset")
    if has_dataset(root, cfg.dataset):
        return root
    marker = "leftImg8bit/" if cfg.dataset == "cityscapes" else "annotations/"
    state = "does not exist" if not root.exists() else f"holds no {marker}"
    if cfg.synthetic is not None:
        syn = cfg.synthetic
        how = (f"regenerate the run's synthetic scenes with: python -m taskcodecs.data.synthetic "
               f"--out {root} --train {syn.train} --val {syn.val} --height {syn.height} "
               f"--width {syn.width} --seed {syn.seed}")
    else:
        how = f"put the {cfg.dataset} dataset there or give the run's config another data_root"
    raise DatasetError(f"{root}: no {cfg.dataset} dataset ({root} {state}); {how}")


def build_dataset(cfg: TrainConfig, root: str | os.PathLike, split: str, train: bool,
                  targets: Iterable[str] | None = None) -> CityscapesDataset | CocoDetection:
    """The dataset of ``split``; augmentation only when ``train`` and ``cfg.augment``."""
    augment = train and cfg.augment
    if cfg.dataset == "cityscapes":
        return CityscapesDataset(root, split, augment=augment, scale=cfg.scale, seed=cfg.seed,
                                 targets=tuple(cfg.targets if targets is None else targets))
    return CocoDetection(root, split, paper_filter=cfg.paper_filter, voc_only=cfg.voc_only,
                         augment=augment, seed=cfg.seed)


CHECK_ALL_ITEMS = 256  # splits up to this size are decoded whole before a run starts


def check_items(dataset: CityscapesDataset | CocoDetection, what: str,
                limit: int = CHECK_ALL_ITEMS) -> None:
    """Decode the items of ``dataset`` before a run starts (every one for a split of at most
    ``limit`` images, else the first), so a corrupt file, a size mismatch or a wrong target
    format fails now, naming the file, not after the run directory was created. A file
    deeper in a larger split is checked when it is read."""
    n = len(dataset)
    if n == 0:
        raise DatasetError(f"{what}: no images")
    for index in range(n if n <= limit else 1):
        dataset[index]


def collate_for(kind: str) -> Callable[[list], dict[str, Any]]:
    """The batch collate function of a dataset kind: a dict with ``image`` [B, 3, H, W]."""
    return collate_cityscapes if kind == "cityscapes" else collate_coco


def collate_cityscapes(items: list[dict]) -> dict[str, Any]:
    """Cityscapes item dicts -> one dict of stacked tensors (names as a list)."""
    _check_sizes([item["image"] for item in items], [item["name"] for item in items])
    return default_collate(items)


def collate_coco(items: list[tuple]) -> dict[str, Any]:
    """COCO (image, target) pairs -> {"image" [B,3,H,W], "targets" [dicts], "image_id" [ints]}.

    Images of one batch must share a size (the codecs code a batch as one tensor); COCO's
    sizes vary, so the paper detection presets use ``batch_size=1`` per process."""
    images = [image for image, _ in items]
    targets = [{"boxes": t["boxes"], "labels": t["labels"]} for _, t in items]
    ids = [int(t["image_id"]) for _, t in items]
    _check_sizes(images, [f"COCO image id {i}" for i in ids])
    return {"image": torch.stack(images), "targets": targets, "image_id": ids}


def _check_sizes(images: list, names: list) -> None:
    sizes = {tuple(image.shape[-2:]) for image in images}
    if len(sizes) > 1:
        raise ValueError(f"images of one batch differ in size ({sorted(sizes)}: {names}); "
                         "use batch_size=1 for datasets whose image sizes vary")


def move_to_device(batch: Any, device: Any, channels_last: bool = False) -> Any:
    """Tensors of a (nested) batch moved to ``device``; ``image`` in channels_last if asked."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        out = {k: move_to_device(v, device) for k, v in batch.items()}
        if channels_last and isinstance(out.get("image"), torch.Tensor):
            out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
        return out
    if isinstance(batch, list | tuple):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch
