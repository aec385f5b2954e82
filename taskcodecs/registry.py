"""The model registry: the single source of codec names, their configs and checkpoints.

    list_models("tiny-*")                                   # names, sorted
    cfg = model_config("tiny-depth-base", reward_weight=0.1)   # typed dataclass, validated
    model = create_model("tiny-depth-base", reward_weight=0.1)
    enh = create_model("tiny-cityscapes-reconstruction-scalable", base=model)
    save_codec(model, "runs/x/best", {"step": 100})
    model = load_codec("runs/x/best")                        # rebuilt from the metadata

Names are ``{preset}-depth-base``, ``{preset}-detection-base`` and
``{preset}-{dataset}-{target}-{mode}`` for enhancements: dataset ``cityscapes`` (over a depth
base) or ``coco`` (over a detection base), target ``reconstruction`` or ``segmentation``
(Cityscapes only), mode ``scalable``, ``direct``, ``standalone-refit`` or
``standalone-independent``. ``paper-…`` presets have the paper's sizes (N = 192, widths
24/48/192, 3 residual blocks per stage in f and reconstruction decoders, 1 in task
decoders, torchvision's paper task heads); ``tiny-…`` presets (N = 32, widths 8/16/32, one
block per stage, tiny task heads) run a forward/backward at 64 x 128 on a CPU in about a
second.

Experiments (training configs, one per run of the paper, ``{preset}-{family}-{method}``)
live in the same registry: :func:`list_experiments` and :func:`load_experiment` (defined in
:mod:`taskcodecs.experiments`, which refers to the model names above).

Checkpoints written by :func:`save_codec` carry ``model_name``, ``model_config`` (every
config field, so the exact model is rebuilt) and ``codec_id`` in their JSON metadata.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from taskcodecs.checkpoint import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from taskcodecs.config import ConfigError, apply_overrides, config_to_dict
from taskcodecs.experiments import list_experiments, load_experiment
from taskcodecs.models.base import BaseCodec, BaseCodecConfig
from taskcodecs.models.enhancement import MODES, EnhancementCodec, EnhancementCodecConfig

__all__ = [
    "ModelSpec",
    "create_model",
    "list_experiments",
    "list_models",
    "load_codec",
    "load_experiment",
    "model_config",
    "register_model",
    "save_codec",
]


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: the default config and how to build a model from a config."""

    name: str
    config: Any  # a config dataclass instance (the defaults of this entry)
    build: Callable[..., nn.Module]  # build(config, name=..., **kwargs) -> model
    description: str = ""


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    config: Any,
    build: Callable[..., nn.Module],
    description: str = "",
    replace: bool = False,
) -> ModelSpec:
    """Add an entry; ``config`` is a dataclass instance, ``build(config, name=name, **kw)``."""
    if not isinstance(name, str) or not name or "@" in name:
        raise ValueError(f"model name must be a non-empty string without '@', got {name!r}")
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config must be a dataclass instance, got {config!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"model {name!r} is already registered (pass replace=True)")
    spec = ModelSpec(name, config, build, description)
    _REGISTRY[name] = spec
    return spec


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names, sorted; ``pattern`` is a shell-style wildcard ("tiny-*")."""
    names = sorted(_REGISTRY)
    return names if pattern is None else [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def _spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown model {name!r}{hint} (list_models() gives all {len(_REGISTRY)} names)"
        )
    return _REGISTRY[name]


def model_config(name: str, **overrides: Any) -> Any:
    """The typed config of ``name`` with ``overrides`` applied (dotted keys allowed for
    nested values); an unknown key raises :class:`ConfigError` naming it."""
    spec = _spec(name)
    return apply_overrides(spec.config, overrides)


def create_model(name: str, *, base: BaseCodec | None = None, **overrides: Any) -> nn.Module:
    """Build model ``name`` with config ``overrides``. Enhancements take their frozen base as
    ``base=`` (an instance, e.g. from :func:`load_codec`); without it the base is built,
    untrained, from the config's ``base_model``."""
    spec = _spec(name)
    config = model_config(name, **overrides)
    if base is not None:
        if not isinstance(config, EnhancementCodecConfig):
            raise TypeError(f"{name} is not an enhancement codec: it takes no base=")
        return spec.build(config, name=name, base=base)
    return spec.build(config, name=name)


# ------------------------------------------------------------------------------ checkpoints


def save_codec(
    model: nn.Module,
    path: str | os.PathLike,
    metadata: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Path:
    """Write ``path``.safetensors/.json with the registry name, full config and codec id in the
    metadata (plus ``metadata``); ``kwargs`` go to :func:`taskcodecs.checkpoint.save_checkpoint`
    (``optimizers``, ``extra_tensors``). Returns the weights path."""
    for attribute in ("registry_name", "config", "codec_id"):
        if not hasattr(model, attribute):
            raise TypeError(f"save_codec needs a registry codec; {type(model).__name__} has no {attribute}")
    meta = dict(metadata or {})
    meta.update({
        "model_name": model.registry_name,
        "model_config": config_to_dict(model.config),
        "codec_id": model.codec_id,
    })
    return save_checkpoint(path, model, meta, **kwargs)


def load_codec(
    path: str | os.PathLike,
    expect: str | None = None,
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """Rebuild the codec of checkpoint ``path`` from its metadata and load its weights, in
    eval mode. ``expect``: a registry name or codec id the checkpoint must hold. Anything
    else than a codec checkpoint of a registered architecture raises :class:`CheckpointError`."""
    meta = read_metadata(path)
    missing = [k for k in ("model_name", "model_config", "codec_id") if k not in meta]
    if missing:
        raise CheckpointError(
            f"{path}: not a codec checkpoint (metadata lacks {missing}; write it with save_codec)"
        )
    name, stored_id = meta["model_name"], meta["codec_id"]
    if expect is not None and expect not in (name, stored_id):
        raise CheckpointError(f"{path}: holds codec {stored_id}, expected {expect}")
    config = _without_pretrained(meta["model_config"])
    try:
        model = create_model(name, **config)
    except ConfigError as err:
        raise CheckpointError(f"{path}: cannot rebuild codec {stored_id}: {err}") from err
    if model.codec_id != stored_id:
        raise CheckpointError(
            f"{path}: holds codec {stored_id}, but its config rebuilds {model.codec_id} "
            "(the architecture of this registry entry changed since it was saved)"
        )
    load_weights(model, path, map_location=map_location)
    return model.eval()


def _without_pretrained(config: Any) -> Any:
    """The config with every ``pretrained`` flag off: the checkpoint holds all weights, so
    rebuilding must not fetch torchvision's (training-only fields, outside the codec id)."""
    if isinstance(config, Mapping):
        return {k: (False if k == "pretrained" else _without_pretrained(v)) for k, v in config.items()}
    return config


def load_weights(model: nn.Module, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load the weights of checkpoint ``path`` into ``model``, checking first that the
    checkpoint holds the same codec (codec id); returns the checkpoint's metadata."""
    meta = read_metadata(path)
    stored = meta.get("codec_id")
    ours = getattr(model, "codec_id", None)
    if stored is not None and ours is not None and stored != ours:
        raise CheckpointError(
            f"{path}: holds codec {stored}, cannot load it into codec {ours} (another architecture)"
        )
    try:
        load_checkpoint(path, model, map_location=map_location)
    except RuntimeError as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(
            f"{path}: weights do not fit {type(model).__name__} {ours}: {str(err).splitlines()[0]}"
        ) from err
    return meta


# ------------------------------------------------------------------------------ the entries

_PRESETS: dict[str, dict[str, Any]] = {
    # Shared sizes of f / g transforms per preset. "blocks" = residual blocks per stage of
    # f and of reconstruction decoders; task decoders always use 1.
    "tiny": {"latent_ch": 32, "widths": (8, 16, 32), "blocks": 1},
    "paper": {"latent_ch": 192, "widths": (24, 48, 192), "blocks": 3},
}
_BASES = {"depth": ("cityscapes", True, 1e-3), "detection": ("coco", False, 1.0)}
_TARGET_RATE = {"reconstruction": 1e-2, "segmentation": 1e-3}


def _build_base(config: BaseCodecConfig, name: str) -> BaseCodec:
    return BaseCodec(config, name=name)


def _build_enhancement(
    config: EnhancementCodecConfig, name: str, base: BaseCodec | None = None
) -> EnhancementCodec:
    return EnhancementCodec(config, name=name, base=base)


def _register_defaults() -> None:
    for preset, sizes in _PRESETS.items():
        blocks = sizes["blocks"]
        for task, (dataset, half, rate) in _BASES.items():
            base_name = f"{preset}-{task}-base"
            register_model(
                base_name,
                BaseCodecConfig(
                    task=task, preset=preset, latent_ch=sizes["latent_ch"], widths=sizes["widths"],
                    analysis_blocks=blocks, reconstruction_blocks=blocks, task_blocks=1,
                    half_resolution=half, rate_weight=rate,
                ),
                _build_base,
                f"{task} base codec ({dataset}, {preset} preset)",
            )
            targets = ("reconstruction", "segmentation") if task == "depth" else ("reconstruction",)
            for target in targets:
                for mode in MODES:
                    if target == "reconstruction" and mode == "direct":
                        description = f"reconstruction from the {task} base's own g_a (no bits)"
                    else:
                        description = f"{mode} {target} over a {task} base ({preset} preset)"
                    register_model(
                        f"{preset}-{dataset}-{target}-{mode}",
                        EnhancementCodecConfig(
                            target=target, mode=mode, base_model=base_name, preset=preset,
                            latent_ch=sizes["latent_ch"], widths=sizes["widths"],
                            analysis_blocks=blocks, side_blocks=blocks,
                            synthesis_blocks=blocks if target == "reconstruction" else 1,
                            rate_weight=_TARGET_RATE[target],
                        ),
                        _build_enhancement,
                        description,
                    )


_register_defaults()
