"""The training config: :class:`TrainConfig`, every field a ``key=value`` override.

Each experiment of :mod:`taskcodecs.experiments.table` is a YAML file holding one of these;
:func:`taskcodecs.experiments.table.load_experiment` reads it. Invalid values raise
:class:`~infra.config.ConfigError` naming the field and what was expected, when the
config is built (before anything runs): counts and step budgets >= 1, every float finite
(NaN and inf are refused), seeds in [0, 2**63).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from infra.config import ConfigError, check_loss_weights


@dataclass
class SyntheticData:
    """The synthetic scenes a tiny preset generates when ``data_root`` holds no data."""

    train: int = 16  # training scenes
    val: int = 4  # validation scenes
    height: int = 64  # pixels
    width: int = 128  # pixels
    seed: int = 0  # scene seed

    def __post_init__(self) -> None:
        for name in ("train", "val", "height", "width"):
            if getattr(self, name) < 1:
                raise ConfigError(f"synthetic.{name} must be >= 1, got {getattr(self, name)}")
        check_seed_value(self.seed, "synthetic.seed")


def check_seed_value(seed: int, name: str = "seed") -> None:
    """A seed is an integer in [0, 2**63); 0 is a seed like any other."""
    if not 0 <= seed < 2**63:
        raise ConfigError(f"{name} must be an integer in [0, 2**63) (0 is a seed), got {seed}")


@dataclass
class TrainConfig:
    """Everything one training run needs; every field is a ``key=value`` override.

    Loss weights: ``rate_weight`` multiplies bits per pixel in the loss, ``reward_weight``
    the base's reconstruction reward (0 = baseline). Both are passed to the model; None
    means "not used by this kind of run" (references; ``reward_weight`` for enhancements).
    """

    experiment: str = ""  # set by --config; the table entry this config belongs to (role, family, method)
    model: str | None = None  # registry name (taskcodecs.experiments.registry); None for references
    model_overrides: dict[str, Any] = field(default_factory=dict)  # registry config fields, e.g. model_overrides.latent_ch=64
    task: Literal["depth", "detection", "segmentation"] | None = None  # references only
    rate_weight: float | None = None  # multiplies bits per pixel in the loss
    reward_weight: float | None = None  # bases: the reconstruction reward (0 = baseline)
    # rate targeting (taskcodecs.training.rate_control): adapt rate_weight so the run lands on this
    # estimated rate, bits per original-image pixel (base: bpp_base, enhancement: bpp_total)
    rate_target_bpp: float | None = None  # bits/pixel; null: a fixed rate_weight
    rate_tolerance: float = 0.1  # relative: on target when |R_val / R* - 1| <= this
    rate_gain: float = 0.02  # dual-ascent step on ln(rate_weight) per unit of ln(R / R*)
    # data ------------------------------------------------------------------------------
    dataset: Literal["cityscapes", "coco"] = "cityscapes"
    data_root: str | None = None  # None or a folder without data: synthetic scenes
    train_split: str = "train"  # dataset split to train on
    val_split: str = "val"  # dataset split to select checkpoints on
    scale: float = 1.0  # Cityscapes resize factor (1.0 = full resolution)
    targets: list[str] = field(default_factory=list)  # Cityscapes targets to load
    augment: bool = True  # the paper's augmentation on the training split
    paper_filter: bool = True  # COCO: the paper's image filter
    voc_only: bool = False  # COCO: keep images with a VOC class (reconstruction runs)
    synthetic: SyntheticData | None = None  # tiny presets: scenes to generate if no data
    synthetic_cache: str | None = None  # default: <parent of out>/synthetic-cache
    render_synthetic: bool = False  # render the synthetic scenes into a data_root without data
    # optimisation -----------------------------------------------------------------------
    batch_size: int = 8  # per process
    val_batch_size: int = 1  # per process
    lr: float = 1e-4  # Adam learning rate
    lr_schedule: Literal["constant", "cosine"] = "constant"  # taskcodecs.training.lr_schedule
    warmup_steps: int = 0  # linear warm-up from lr / warmup_steps
    lr_min_ratio: float = 0.05  # cosine: the final lr as a fraction of lr
    clip: float = 1.0  # max gradient norm; 0 disables clipping
    max_steps: int = 100_000  # optimizer steps (the run stops here at the latest)
    val_every: int = 1000  # steps between validation rounds (and checkpoints)
    val_limit: int | None = None  # validation images per round (None: the whole split)
    patience: int | None = 10  # validation rounds without improvement before stopping
    log_every: int = 50  # steps between log lines (train.log, log.csv, TensorBoard)
    seed: int = 0  # in [0, 2**63); 0 is a seed
    # runs ---------------------------------------------------------------------------------
    out: str | None = None  # run directory (default: runs/EXPERIMENT)
    base: str | None = None  # enhancements: the frozen base's run directory
    base_checkpoint: Literal["best", "last"] = "best"  # which checkpoint of base
    init_from: str | None = None  # start from this run's best weights (standalone-refit)
    resume: str | None = None  # continue this run directory from its last checkpoint
    # hardware -----------------------------------------------------------------------------
    device: str = "auto"  # auto | cpu | cuda | cuda:K
    amp: Literal["none", "bf16", "fp16"] = "none"  # autocast (fp16: + grad scaler); taskcodecs.training.precision
    compile: bool = False  # torch.compile the transforms (entropy model and task nets stay eager)
    compile_backend: str = "inductor"  # torch.compile backend, e.g. inductor, aot_eager
    channels_last: bool = False  # CUDA memory format; a no-op (with a warning) on CPU
    num_workers: int = 2  # data-loader processes (0: in the main process)
    find_unused_parameters: bool = False  # DDP option, for models with unused branches

    def __post_init__(self) -> None:
        check_loss_weights(self, ("rate_weight", "reward_weight"))
        for name in ("lr", "clip", "scale"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value}")
        check_seed_value(self.seed)
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
            if name in self.model_overrides:  # one way in: the top-level field reaches the loss
                raise ConfigError(f"model_overrides.{name}: set the top-level {name}= instead "
                                  "(it is the one the loss uses)")
        if self.warmup_steps < 0 or not 0 <= self.lr_min_ratio <= 1:
            raise ConfigError(f"warmup_steps must be >= 0 and lr_min_ratio in [0, 1], got "
                              f"{self.warmup_steps} and {self.lr_min_ratio}")
        if self.rate_target_bpp is not None:
            if not self.rate_target_bpp > 0:
                raise ConfigError(f"rate_target_bpp must be > 0 bits per pixel (or null), got "
                                  f"{self.rate_target_bpp}")
            if not self.rate_weight:
                raise ConfigError("rate_target_bpp adapts rate_weight, starting from it: give a "
                                  f"rate_weight > 0 (got {self.rate_weight})")
        if not 0 < self.rate_tolerance < 1 or not self.rate_gain > 0:
            raise ConfigError(f"rate_tolerance must be in (0, 1) and rate_gain > 0, got "
                              f"{self.rate_tolerance} and {self.rate_gain}")

    @property
    def run_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / (self.experiment or "run")


def config_keys(cls: type = TrainConfig, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, comment) of every ``key=value`` override of ``cls``, nested
    dataclasses (``synthetic``) expanded to ``synthetic.train`` etc.; the comment is the one
    written after the field in the source (empty if none)."""
    import dataclasses
    import inspect
    import re

    comments: dict[str, str] = {}
    try:
        for line in inspect.getsource(cls).splitlines():
            match = re.match(r"\s+(\w+):[^#]*#\s*(.*)$", line)
            if match:
                comments[match.group(1)] = match.group(2).strip()
    except (OSError, TypeError):  # no source (a frozen build): types and defaults only
        pass
    nested = {"synthetic": SyntheticData}
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = repr(f.default_factory())  # type: ignore[misc]
        else:
            default = "(required)"
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        rows.append((prefix + f.name, kind, default, comments.get(f.name, "")))
        if f.name in nested:
            rows.extend(config_keys(nested[f.name], prefix=f"{prefix}{f.name}."))
    return rows


def config_keys_help(values: Mapping[str, Any] | None = None, source: str = "") -> str:
    """The ``train --help`` epilog section: one line per config key (type, default, note).

    With ``values`` (an experiment's resolved config as a nested dict, ``source`` naming it)
    each key shows that value instead of TrainConfig's default.
    """
    rows = config_keys()
    width = max(len(key) for key, *_ in rows)
    if values is None:
        lines = ["config keys (key=value overrides; type = default  # note; the defaults are "
                 "TrainConfig's, an experiment's YAML sets its own):"]
    else:
        lines = [f"config keys (key=value overrides; type = value  # note; the values are "
                 f"{source}, resolved):"]
    for key, kind, default, note in rows:
        if values is not None:
            node: Any = values
            for part in key.split("."):
                node = node.get(part) if isinstance(node, Mapping) else None
            expanded = any(other.startswith(key + ".") for other, *_ in rows)
            default = "(keys below)" if expanded and node is not None else repr(node)
        lines.append(f"  {key:<{width}}  {kind} = {default}" + (f"  # {note}" if note else ""))
    return "\n".join(lines)
