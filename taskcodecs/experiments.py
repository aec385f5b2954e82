"""The experiment table: one named training config per experiment of the paper, two presets.

Every experiment ``NAME`` is a YAML file ``taskcodecs/configs/NAME.yaml`` holding a
:class:`TrainConfig`, plus a row of :data:`EXPERIMENTS` saying what kind of run it is
(a *base*, an *enhancement* on a frozen base, or a codec-free *reference*) and, for
enhancements, which kind of base it needs. Names are ``{preset}-{family}-{method}``:

======================================  =========================  =========================
family                                  methods                    role (needs)
======================================  =========================  =========================
depth-base           (Cityscapes)       baseline, proposed         base
detection-base       (COCO 2017)        baseline, proposed         base
coco-reconstruction                     scalable, direct,          enhancement (base=RUN_DIR
                                        standalone-refit,          of a detection base)
                                        standalone-independent
cityscapes-reconstruction               the same                   enhancement (depth base)
cityscapes-segmentation                 the same                   enhancement (depth base)
depth / detection / segmentation        uncompressed               reference (no codec)
======================================  =========================  =========================

``direct`` reconstruction is the base's own g_a: its run trains nothing (it validates and
saves once) so that evaluate and sweep treat it like the other methods. ``standalone-refit``
starts from a trained ``scalable`` run of the same family (``init_from=RUN_DIR``; its base
is reused) and refits only the entropy model with the side information zeroed.

The second half of this module builds a run's pieces from its config -- data (generating
synthetic scenes if asked), model (loading the frozen base), checkpoints -- for
:mod:`taskcodecs.train`, :mod:`taskcodecs.evaluate` and :mod:`taskcodecs.sweep`.

Presets: ``paper-…`` (real datasets at full resolution, the paper's network sizes) and
``tiny-…`` (synthetic scenes at 64x128, small networks; a CPU trains one in minutes).

    cfg = load_experiment("tiny-depth-base-proposed", ["max_steps=20"], seed=1)
    for name in list_experiments(preset="tiny"): ...
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import default_collate

from taskcodecs.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
    unwrap_model,
)
from taskcodecs.config import ConfigError, load_config
from taskcodecs.data.cityscapes import CityscapesDataset
from taskcodecs.data.coco import CocoDetection
from taskcodecs.data.synthetic import generate_dataset
from taskcodecs.models.tasks import build_task_model, depth_loss, detection_loss, segmentation_loss
from taskcodecs.rundir import RunDir

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
PRESETS = ("paper", "tiny")
Role = Literal["base", "enhancement", "reference"]


@dataclass
class SyntheticData:
    """The synthetic scenes a tiny preset generates when ``data_root`` holds no data."""

    train: int = 16
    val: int = 4
    height: int = 64
    width: int = 128
    seed: int = 0


@dataclass
class TrainConfig:
    """Everything one training run needs; every field is a ``key=value`` override.

    Loss weights: ``rate_weight`` multiplies bits per pixel in the loss, ``reward_weight``
    the base's reconstruction reward (0 = baseline). Both are passed to the model; None
    means "not used by this kind of run" (references; ``reward_weight`` for enhancements).
    """

    experiment: str = ""  # the table entry this config belongs to (role, family, method)
    model: str | None = None  # registry name (taskcodecs.registry); None for references
    model_overrides: dict[str, Any] = field(default_factory=dict)
    task: Literal["depth", "detection", "segmentation"] | None = None  # references only
    rate_weight: float | None = None
    reward_weight: float | None = None
    # data ------------------------------------------------------------------------------
    dataset: Literal["cityscapes", "coco"] = "cityscapes"
    data_root: str | None = None  # None or a folder without data: synthetic scenes
    train_split: str = "train"
    val_split: str = "val"
    scale: float = 1.0  # Cityscapes resize factor (1.0 = full resolution)
    targets: list[str] = field(default_factory=list)  # Cityscapes targets to load
    augment: bool = True  # the paper's augmentation on the training split
    paper_filter: bool = True  # COCO: the paper's image filter
    voc_only: bool = False  # COCO: keep images with a VOC class (reconstruction runs)
    synthetic: SyntheticData | None = None  # tiny presets: scenes to generate if no data
    synthetic_cache: str | None = None  # default: <parent of out>/synthetic-cache
    # optimisation -----------------------------------------------------------------------
    batch_size: int = 8  # per process
    val_batch_size: int = 1
    lr: float = 1e-4
    clip: float = 1.0  # max gradient norm; 0 disables clipping
    max_steps: int = 100_000
    val_every: int = 1000
    val_limit: int | None = None  # validation images per round (None: the whole split)
    patience: int | None = 10  # validation rounds without improvement before stopping
    log_every: int = 50
    seed: int = 0
    # runs ---------------------------------------------------------------------------------
    out: str | None = None  # run directory (default: runs/EXPERIMENT)
    base: str | None = None  # enhancements: the frozen base's run directory
    base_checkpoint: Literal["best", "last"] = "best"
    init_from: str | None = None  # start from this run's best weights (standalone-refit)
    resume: str | None = None  # continue this run directory from its last checkpoint
    # hardware -----------------------------------------------------------------------------
    device: str = "auto"  # auto | cpu | cuda | cuda:K
    amp: Literal["none", "bf16"] = "none"  # CUDA autocast; a no-op (with a warning) on CPU
    channels_last: bool = False  # CUDA memory format; a no-op (with a warning) on CPU
    num_workers: int = 2
    find_unused_parameters: bool = False  # DDP option, for models with unused branches

    def __post_init__(self) -> None:
        for name in ("batch_size", "val_batch_size", "max_steps", "val_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "scale"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.clip < 0:
            raise ConfigError(f"clip must be >= 0 (0: no clipping), got {self.clip}")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience must be >= 1 or null (never stop early), got {self.patience}")
        if self.val_limit is not None and self.val_limit < 1:
            raise ConfigError(f"val_limit must be >= 1 or null (whole split), got {self.val_limit}")
        for name in ("rate_weight", "reward_weight"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name} must be >= 0, got {value}")

    @property
    def run_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / (self.experiment or "run")


@dataclass(frozen=True)
class Experiment:
    """One row of the table: what kind of run ``name`` is."""

    name: str
    preset: str
    family: str
    method: str
    role: Role
    base_family: str | None  # enhancements: the family their frozen base must come from
    description: str

    @property
    def config_path(self) -> Path:
        return CONFIG_DIR / f"{self.name}.yaml"


_ROWS: tuple[tuple[str, str, Role, str | None, str], ...] = (
    ("depth-base", "baseline", "base", None,
     "Cityscapes depth base; g_a trained on a detached latent (reward_weight 0)"),
    ("depth-base", "proposed", "base", None,
     "Cityscapes depth base with the reconstruction reward (reward_weight > 0)"),
    ("detection-base", "baseline", "base", None,
     "COCO detection base; g_a trained on a detached latent (reward_weight 0)"),
    ("detection-base", "proposed", "base", None,
     "COCO detection base with the reconstruction reward (reward_weight > 0)"),
    *(
        (f"{dataset}-{target}", method, "enhancement", base, f"{method} {target} on {where}")
        for dataset, target, base, where, methods in (
            ("coco", "reconstruction", "detection-base", "COCO (VOC images) over a detection base",
             ("scalable", "direct", "standalone-refit", "standalone-independent")),
            ("cityscapes", "reconstruction", "depth-base", "Cityscapes over a depth base",
             ("scalable", "direct", "standalone-refit", "standalone-independent")),
            ("cityscapes", "segmentation", "depth-base", "Cityscapes over a depth base",
             ("scalable", "direct", "standalone-refit", "standalone-independent")),
        )
        for method in methods
    ),
    *(
        (task, "uncompressed", "reference", None,
         f"the {task} model on uncompressed images (no codec, no bitstream)")
        for task in ("depth", "detection", "segmentation")
    ),
)

EXPERIMENTS: dict[str, Experiment] = {
    f"{preset}-{family}-{method}": Experiment(
        f"{preset}-{family}-{method}", preset, family, method, role, base_family, description
    )
    for preset in PRESETS
    for family, method, role, base_family, description in _ROWS
}


def list_experiments(preset: str | None = None, role: str | None = None) -> list[str]:
    """Experiment names, sorted; optionally only one preset ("paper"/"tiny") or role."""
    return sorted(
        name for name, exp in EXPERIMENTS.items()
        if (preset is None or exp.preset == preset) and (role is None or exp.role == role)
    )


def get_experiment(name: str) -> Experiment:
    """The table row of ``name``; an unknown name lists the valid ones."""
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise ConfigError(
            f"unknown experiment {name!r}; valid names: {', '.join(list_experiments())}"
        ) from None


def sibling(name: str, method: str) -> str:
    """The experiment of the same preset and family with another ``method``."""
    exp = get_experiment(name)
    other = f"{exp.preset}-{exp.family}-{method}"
    if other not in EXPERIMENTS:
        methods = sorted(e.method for e in EXPERIMENTS.values()
                         if e.preset == exp.preset and e.family == exp.family)
        raise ConfigError(f"family {exp.family!r} has no method {method!r}; it has: {methods}")
    return other


def config_path(name_or_path: str | os.PathLike) -> Path:
    """A YAML path: an experiment name resolves to ``configs/NAME.yaml``; a path is kept."""
    text = str(name_or_path)
    if text in EXPERIMENTS:
        return EXPERIMENTS[text].config_path
    path = Path(text)
    if path.suffix not in (".yaml", ".yml") and not path.exists():
        get_experiment(text)  # raises ConfigError with the list of valid names
    return path


def load_experiment(
    name_or_path: str | os.PathLike,
    overrides: Mapping[str, Any] | Iterable[str] = (),
    **kwargs: Any,
) -> TrainConfig:
    """The :class:`TrainConfig` of an experiment name (or YAML path) with overrides applied."""
    cfg = load_config(TrainConfig, config_path(name_or_path), overrides, **kwargs)
    get_experiment(cfg.experiment)  # the YAML must name a table entry
    return cfg


# ============================================================================ building a run
# Data, model and checkpoints of a run, shared by train, evaluate and sweep. The registry is
# imported inside the functions that need it, so that it may import this module.


class RunKindError(ConfigError):
    """A run directory named by ``base=`` or ``init_from=`` is not the kind of run needed."""


CHECKPOINTS = "checkpoints"


def checkpoint_path(run_dir: str | os.PathLike, which: str = "best") -> Path:
    """``RUN_DIR/checkpoints/{best|last}`` (the stem; .safetensors/.json beside it)."""
    if which not in ("best", "last"):
        raise ConfigError(f"checkpoint must be 'best' or 'last', got {which!r}")
    return Path(run_dir) / CHECKPOINTS / which


def read_run(run_dir: str | os.PathLike) -> tuple[TrainConfig, Experiment]:
    """The resolved config and table row of a run directory (errors name the directory)."""
    cfg = RunDir(run_dir).load_config(TrainConfig)
    try:
        return cfg, get_experiment(cfg.experiment)
    except ConfigError as err:
        raise RunKindError(f"run {run_dir}: {err}") from err


def _describe(exp: Experiment) -> str:
    article = "an" if exp.role[0] in "aeiou" else "a"
    return f"{article} {exp.role} run of family {exp.family!r} ({exp.name})"


def check_links(cfg: TrainConfig) -> None:
    """Check the run directories ``cfg`` names (``base``, ``init_from``) before anything is
    written: RunKindError naming the directory, its kind and the expected kind."""
    exp = get_experiment(cfg.experiment)
    if exp.role == "enhancement":
        check_base_run(cfg, exp)
    elif cfg.base:
        raise RunKindError(f"base={cfg.base}: {exp.name} is a {exp.role} run; only enhancement "
                           "runs take a base")
    if cfg.init_from:
        check_init_run(cfg, exp)


def check_base_run(cfg: TrainConfig, exp: Experiment) -> Path:
    """The best (or ``base_checkpoint``) checkpoint of ``cfg.base``, checked to be a trained
    run of the base family ``exp`` needs, of the same preset; RunKindError otherwise."""
    wanted = f"a base run of family {exp.base_family!r} ({exp.preset} preset)"
    if not cfg.base:
        raise RunKindError(f"{exp.name} is an enhancement: name its frozen base as base=RUN_DIR, "
                           f"{wanted}")
    base_cfg, base_exp = read_run(cfg.base)
    if (base_exp.role, base_exp.family, base_exp.preset) != ("base", exp.base_family, exp.preset):
        raise RunKindError(f"base={cfg.base} is {_describe(base_exp)}; {exp.name} needs {wanted}")
    path = checkpoint_path(cfg.base, cfg.base_checkpoint)
    if not path.with_suffix(".json").is_file():
        raise RunKindError(f"base={cfg.base}: no {cfg.base_checkpoint} checkpoint at {path}.json "
                           "(has that run finished a validation round?)")
    return path


def check_init_run(cfg: TrainConfig, exp: Experiment) -> Path:
    """The best checkpoint of ``cfg.init_from``; for ``standalone-refit`` it must be a
    ``scalable`` run of the same family and preset (RunKindError otherwise)."""
    init_cfg, init_exp = read_run(cfg.init_from)
    if exp.method == "standalone-refit":
        wanted = sibling(exp.name, "scalable")
        if init_exp.name != wanted:
            raise RunKindError(f"init_from={cfg.init_from} is {_describe(init_exp)}; "
                               f"{exp.name} refits a {wanted} run")
    path = checkpoint_path(cfg.init_from, "best")
    if not path.with_suffix(".json").is_file():
        raise RunKindError(f"init_from={cfg.init_from}: no best checkpoint at {path}.json")
    return path


def resolve_links(cfg: TrainConfig) -> TrainConfig:
    """Fill what a config implies: a ``standalone-refit`` run takes its base from its
    ``init_from`` run unless ``base`` is given (and then both must agree)."""
    exp = get_experiment(cfg.experiment)
    if exp.method == "standalone-refit":
        if not cfg.init_from:
            raise RunKindError(f"{exp.name} refits a trained {sibling(exp.name, 'scalable')} run: "
                               "name it as init_from=RUN_DIR")
        init_cfg, _ = read_run(cfg.init_from)
        if cfg.base is None:
            return dataclasses.replace(cfg, base=init_cfg.base)
        if init_cfg.base and Path(init_cfg.base).resolve() != Path(cfg.base).resolve():
            raise RunKindError(f"init_from={cfg.init_from} was trained on base {init_cfg.base}, "
                               f"not on base={cfg.base}")
    return cfg


# ---------------------------------------------------------------------------- data


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
    """The data root of ``cfg``, generating synthetic scenes there first if the config has a
    ``synthetic`` section and no dataset is found (only where ``is_main``; other ranks must
    wait on a barrier and call again)."""
    if cfg.data_root and has_dataset(cfg.data_root, cfg.dataset):
        return Path(cfg.data_root)
    if cfg.synthetic is None:
        where = f"data_root={cfg.data_root}" if cfg.data_root else "data_root is not set"
        raise ConfigError(f"{where}: no {cfg.dataset} dataset found (expected "
                          f"{'leftImg8bit/' if cfg.dataset == 'cityscapes' else 'annotations/'} "
                          "in it); point data_root at the real dataset (see the README section on training the paper experiments)")
    root = synthetic_dir(cfg)
    if has_dataset(root, cfg.dataset) or not is_main:
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
    return root


def build_dataset(cfg: TrainConfig, root: str | os.PathLike, split: str, train: bool,
                  targets: Iterable[str] | None = None) -> CityscapesDataset | CocoDetection:
    """The dataset of ``split``; augmentation only when ``train`` and ``cfg.augment``."""
    augment = train and cfg.augment
    if cfg.dataset == "cityscapes":
        return CityscapesDataset(root, split, augment=augment, scale=cfg.scale, seed=cfg.seed,
                                 targets=tuple(cfg.targets if targets is None else targets))
    return CocoDetection(root, split, paper_filter=cfg.paper_filter, voc_only=cfg.voc_only,
                         augment=augment, seed=cfg.seed)


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


# ---------------------------------------------------------------------------- models


class ReferenceModel(nn.Module):
    """The task model alone on uncompressed images (the "uncompressed" reference).

    No codec and no bitstream (``codec_id`` is None). The dict contract of the codecs::

        depth         batch["image"] -> task model -> {"disparity" (B, 1, H, W) pixels}
        detection     train mode: {"task_losses"}; eval mode: {"detections"} (boxes in px)
        segmentation  {"segmentation": {"out", "aux"} (B, 19, H, W) logits}

    ``loss(batch, out)`` -> {"loss": d, "distortion": d}, d the task loss the codec runs use
    (masked disparity RMSE, the detector's summed losses, 20 CE + 20 CE aux).
    """

    codec_id = None

    def __init__(self, task: str, preset: str, **task_kwargs: Any) -> None:
        super().__init__()
        self.task, self.preset = task, preset
        self.registry_name = f"{preset}-{task}-uncompressed"
        self.task_model = build_task_model(task, preset, **task_kwargs)

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        image = batch["image"]
        if self.task == "depth":
            return {"disparity": self.task_model(image)["out"]}
        if self.task == "segmentation":
            logits = self.task_model(image)
            return {"segmentation": {
                key: value if value.shape[-2:] == image.shape[-2:]
                else F.interpolate(value, size=image.shape[-2:], mode="bilinear", align_corners=False)
                for key, value in logits.items()}}
        images = list(image.unbind(0))
        if self.task_model.training:
            return {"task_losses": self.task_model(images, batch["targets"])}
        return {"detections": self.task_model(images)}

    def loss(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        if self.task == "depth":
            d = depth_loss(out["disparity"], batch["disparity"], batch["disparity_mask"])
        elif self.task == "segmentation":
            d = segmentation_loss(out["segmentation"], batch["labels"])
        else:
            d = detection_loss(out["task_losses"])
        return {"loss": d, "distortion": d}


def build_model(cfg: TrainConfig) -> nn.Module:
    """The untrained model of ``cfg`` (a codec from the registry, with its frozen base loaded
    from ``cfg.base`` for enhancements; or the codec-free reference), initialised from
    ``cfg.init_from`` if given. Loss weights not None are passed as config overrides."""
    exp = get_experiment(cfg.experiment)
    if exp.role == "reference":
        if cfg.task is None:
            raise ConfigError(f"{exp.name}: a reference run needs task=depth|detection|segmentation")
        return ReferenceModel(cfg.task, exp.preset, **cfg.model_overrides)
    if cfg.model is None:
        raise ConfigError(f"{exp.name}: model= must name a registry codec")
    from taskcodecs.registry import create_model, load_codec, load_weights

    overrides = dict(cfg.model_overrides)
    for name in ("rate_weight", "reward_weight"):
        if getattr(cfg, name) is not None:
            overrides[name] = getattr(cfg, name)
    if exp.role == "enhancement":
        base = load_codec(check_base_run(cfg, exp))
        model = create_model(cfg.model, base=base, **overrides)
    else:
        model = create_model(cfg.model, **overrides)
    if cfg.init_from:
        path = check_init_run(cfg, exp)
        if hasattr(model, "init_from"):
            model.init_from(load_codec(path))
        else:
            load_weights(model, path)
    return model


def load_run_model(
    run_dir: str | os.PathLike, which: str = "best"
) -> tuple[nn.Module, TrainConfig, Experiment, dict[str, Any]]:
    """(model in eval mode with the ``which`` checkpoint's weights, the run's config, its
    table row, the checkpoint's metadata)."""
    cfg, exp = read_run(run_dir)
    path = checkpoint_path(run_dir, which)
    if not path.with_suffix(".json").is_file():
        raise CheckpointError(f"run {run_dir}: no {which} checkpoint ({path}.json not found)")
    if exp.role == "reference":
        model = ReferenceModel(cfg.task, exp.preset, **cfg.model_overrides)
        load_checkpoint(path, model)
    else:
        from taskcodecs.registry import load_codec

        model = load_codec(path)
    return model.eval(), cfg, exp, read_metadata(path)


def save_run_checkpoint(path: str | os.PathLike, model: nn.Module, metadata: Mapping[str, Any],
                        **kwargs: Any) -> Path:
    """A codec through ``registry.save_codec`` (so ``load_codec`` and the codec CLI read it),
    a reference model through ``checkpoint.save_checkpoint``; kwargs: optimizers, extra_tensors."""
    model = unwrap_model(model)
    if getattr(model, "codec_id", None) is None:
        return save_checkpoint(path, model, dict(metadata), **kwargs)
    from taskcodecs.registry import save_codec

    return save_codec(model, path, metadata, **kwargs)
