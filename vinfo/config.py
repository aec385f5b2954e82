"""The estimator's configuration: :class:`VinfoConfig`, its checks and the embedded default.

    cfg = resolve_config(families="ar-linear,ar-mlp-64", seeds=[0, 1, 2])
    settings = fit_settings(cfg)          # the families' training budget (vinfo.fit.settings)

Every field is a YAML key (``--config FILE``), a ``key=value`` override on the command line
and a keyword argument of :func:`vinfo.api.estimate`. Families and their budgets are
part of V, so they are part of the config that every estimate writes (``config.yaml``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from infra.config import ConfigError, apply_overrides
from vinfo.adapter.scenes import SyntheticData
from vinfo.fit.settings import FitSettings


@dataclass
class DefaultData(SyntheticData):
    """The scenes the no-argument default generates (the training presets' synthetic-data
    fields, smaller by default) and where they go."""

    train: int = 64
    val: int = 40
    height: int = 32
    width: int = 64
    data_dir: str = ""  # "" = <out>/synthetic-data


@dataclass
class VinfoConfig:
    """Everything that defines an estimate. Families and budgets are part of V."""

    target_kind: Literal["categorical", "gaussian", "laplace", "discretized"] = "categorical"
    families: list[str] = field(default_factory=list)  # empty: the default ladder
    seed: int = 0  # the evaluation split and the bootstrap
    seeds: list[int] = field(default_factory=lambda: [0, 1])  # refits (the interval's top level)
    fit_fraction: float = 0.6
    val_fraction: float = 0.2  # evaluation: the rest
    guard_fraction: float = 0.5  # of the validation samples: the guard's (not selection's)
    folds: int = 1  # > 1: K-fold cross-fitting, every sample gets an out-of-fold PVI
    fit_samples: int = 0  # > 0: the probing protocol, the first N samples (the train split)
    #                       fit every probe; the rest select/guard (select_fraction) and evaluate
    select_fraction: float = 0.4  # the protocol: share of the non-fit samples that select
    stock_references: bool = True  # 8-bit image targets: PNG/WebP/JPEG-XL lossless beside the null
    bootstrap: int = 1000
    confidence: float = 0.95
    device: str = "cpu"  # probes and data ("cuda", "cuda:1"); closed forms run in float64
    # the training budget of every family (part of V): defaults from vinfo.fit.settings.FitSettings
    max_steps: int = FitSettings.max_steps
    step_limit: int = FitSettings.step_limit  # 0: 8 x max_steps
    lr: float = FitSettings.lr
    batch_size: int = FitSettings.batch_size  # 0: full batch
    eval_every: int = FitSettings.eval_every
    patience: int = FitSettings.patience
    closed_form_linear: bool = FitSettings.closed_form_linear
    eval_batch_size: int = FitSettings.eval_batch_size
    synthesis_widths: list[int] = field(
        default_factory=lambda: list(FitSettings.synthesis_widths))
    synthesis_blocks: int = FitSettings.synthesis_blocks
    batched: bool = FitSettings.batched  # a family's probes fitted together (vinfo.fit.batched)
    ridge_alpha: float = FitSettings.ridge_alpha  # linear-Gaussian closed form: L2 penalty
    context_width: int = FitSettings.context_width  # autoregressive families (probes.autoregressive)
    context_kernel: int = FitSettings.context_kernel
    context_layers: int = FitSettings.context_layers
    z_features: int = FitSettings.z_features
    null_steps: int = FitSettings.null_steps  # the shared autoregressive null's budget
    null_lr: float = FitSettings.null_lr
    null_crop: int = FitSettings.null_crop  # the null trains on random crops (0: whole targets)
    null_batch_size: int = FitSettings.null_batch_size  # its samples (crops) per step
    null_warmup_steps: int = FitSettings.null_warmup_steps  # its warm-up (-1: as warmup_steps)
    null_eval_every: int = FitSettings.null_eval_every  # its evaluation interval (0: eval_every)
    mixtures: int = FitSettings.mixtures
    label_embedding: int = FitSettings.label_embedding
    warmup_steps: int = FitSettings.warmup_steps  # -1: max_steps // 5
    num_classes: int | None = None
    ignore_value: float | None = None
    discretized_dist: Literal["logistic", "gaussian"] = "logistic"
    curves: bool = True  # loss-data curves and prequential MDL (one set of prefix fits)
    curve_points: int = 5
    curve_min_size: int = 8
    map_examples: int = 4
    representations: str = ""
    targets: str = ""
    representations_key: str = ""
    targets_key: str = ""
    out: str = "runs/vinfo-default"
    source: str = ""
    default_data: DefaultData = field(default_factory=DefaultData)


# The embedded default (no inputs given, vinfo.inputs.default_inputs): a planted code of known
# information, small so that it runs in about a minute on one CPU thread.
DEFAULT_RUN = {"target_kind": "discretized", "seeds": [0],
               "families": ["ar-linear", "ar-mlp-64", "ar-cnn-1x32"], "null_steps": 300,
               "max_steps": 200, "curves": False, "map_examples": 2}


def resolve_config(config: VinfoConfig | None = None, **overrides: Any) -> VinfoConfig:
    """``config`` (or the defaults) with keyword overrides; ``families`` may be a comma string."""
    if isinstance(overrides.get("families"), str):
        overrides["families"] = [f for f in overrides["families"].split(",") if f.strip()]
    overrides = {k: (list(v) if isinstance(v, tuple) else v) for k, v in overrides.items()
                 if v is not None or k in ("num_classes", "ignore_value")}
    return apply_overrides(config or VinfoConfig(), overrides)


def fit_settings(cfg: VinfoConfig) -> FitSettings:
    """The config's training budget as :class:`FitSettings`, field by field (by name)."""
    values = {f.name: getattr(cfg, f.name) for f in fields(FitSettings)}
    return FitSettings(**{**values, "synthesis_widths": tuple(values["synthesis_widths"])})


def check_config(cfg: VinfoConfig) -> None:
    """Value checks the types alone do not catch; ConfigError names the key."""
    if cfg.fit_fraction <= 0 or cfg.val_fraction <= 0 or cfg.fit_fraction + cfg.val_fraction >= 1:
        raise ConfigError(f"fit_fraction {cfg.fit_fraction} and val_fraction {cfg.val_fraction} "
                          "must be positive with a sum below 1 (the rest is evaluation)")
    if not 0 <= cfg.guard_fraction < 1:
        raise ConfigError(f"guard_fraction: expected a share in [0, 1) of the validation "
                          f"samples, got {cfg.guard_fraction}")
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds) or min(cfg.seeds) < 0:
        raise ConfigError(f"seeds: expected distinct non-negative integers, got {cfg.seeds}")
    if cfg.fit_samples < 0:
        raise ConfigError(f"fit_samples: expected 0 (off) or the number of leading train "
                          f"samples, got {cfg.fit_samples}")
    if cfg.fit_samples and cfg.folds > 1:
        raise ConfigError("fit_samples (the probing protocol) and folds > 1 exclude each other")
    if not 0 < cfg.select_fraction < 1:
        raise ConfigError(f"select_fraction: expected a share in (0, 1), got "
                          f"{cfg.select_fraction}")
    if cfg.seed < 0:
        raise ConfigError(f"seed: expected a non-negative integer (0 is a seed), got {cfg.seed}")
    if len(set(cfg.families)) != len(cfg.families):
        raise ConfigError(f"families: each family once, got {cfg.families}")
    if not 0 < cfg.confidence < 1:
        raise ConfigError(f"confidence: expected a value in (0, 1), got {cfg.confidence}")
    for key, low in (("folds", 1), ("bootstrap", 0), ("max_steps", 1), ("step_limit", 0),
                     ("batch_size", 0), ("eval_every", 1), ("patience", 1),
                     ("eval_batch_size", 1), ("curve_points", 1), ("curve_min_size", 2),
                     ("map_examples", 0), ("synthesis_blocks", 0), ("context_width", 1),
                     ("mixtures", 1), ("label_embedding", 1), ("warmup_steps", -1),
                     ("context_layers", 0), ("null_steps", 1), ("null_crop", 0),
                     ("null_batch_size", 0), ("null_warmup_steps", -1),
                     ("null_eval_every", 0),
                     ("z_features", 1)):
        if getattr(cfg, key) < low:
            raise ConfigError(f"{key}: expected an integer >= {low}, got {getattr(cfg, key)}")
    if 0 < cfg.step_limit < cfg.max_steps:
        raise ConfigError(f"step_limit {cfg.step_limit}: the budget's limit must be 0 (8 x "
                          f"max_steps) or at least max_steps ({cfg.max_steps})")
    if cfg.context_kernel < 3 or cfg.context_kernel % 2 == 0:
        raise ConfigError(f"context_kernel: expected an odd size >= 3, got {cfg.context_kernel}")
    for key in ("lr", "null_lr"):
        if not (math.isfinite(getattr(cfg, key)) and getattr(cfg, key) > 0):
            raise ConfigError(f"{key}: expected a positive learning rate, got "
                              f"{getattr(cfg, key)}")
    if not (math.isfinite(cfg.ridge_alpha) and cfg.ridge_alpha >= 0):
        raise ConfigError(f"ridge_alpha: expected a finite number >= 0, got {cfg.ridge_alpha}")
