"""The model registry: the single source of codec names, their configs and their builders.

    list_models("tiny-*")                                   # names, sorted
    cfg = model_config("tiny-depth-base", reward_weight=0.1)   # typed dataclass, validated
    model = create_model("tiny-depth-base", reward_weight=0.1)
    enh = create_model("tiny-cityscapes-reconstruction-scalable", base=model)

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
live beside it: :func:`list_experiments` and :func:`load_experiment` (in
:mod:`taskcodecs.experiments.table`, which refers to the model names above).

Checkpoints of these codecs (``save_codec``/``load_codec``, rebuilt from their name and
config through :func:`create_model`) are :mod:`taskcodecs.runs.codecs`.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from infra.config import ConfigError, apply_overrides
from taskcodecs.coding.bitstream import codec_fingerprint
from taskcodecs.models.base import BaseCodec, BaseCodecConfig
from taskcodecs.models.common import architecture_dict, enhancement_codec_id, make_codec_id
from taskcodecs.models.compressai_codec import (
    ARCHITECTURES as COMPRESSAI_ARCHITECTURES,
)
from taskcodecs.models.compressai_codec import CompressAICodec, CompressAICodecConfig
from taskcodecs.models.enhancement import EnhancementCodec, EnhancementCodecConfig
from taskcodecs.models.names import MODES

__all__ = [
    "ModelSpec",
    "create_model",
    "list_models",
    "model_config",
    "register_model",
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


# ------------------------------------------------------------------------------ the entries

_PRESET_SIZES: dict[str, dict[str, Any]] = {
    # Shared sizes of f / g transforms per preset. "blocks" = residual blocks per stage of
    # f and of reconstruction decoders; task decoders always use 1.
    "tiny": {"latent_ch": 32, "widths": (8, 16, 32), "blocks": 1},
    "paper": {"latent_ch": 192, "widths": (24, 48, 192), "blocks": 3},
}
_BASES = {"depth": ("cityscapes", True, 1e-3), "detection": ("coco", False, 1.0)}
_TARGET_RATE = {"reconstruction": 1e-2, "segmentation": 1e-3}


def _build_base(config: BaseCodecConfig, name: str) -> BaseCodec:
    return BaseCodec(config, name=name, identify=identify_codec)


def _build_compressai(config: CompressAICodecConfig, name: str) -> CompressAICodec:
    return CompressAICodec(config, name=name, identify=identify_codec)


# CompressAI zoo architectures per preset: tiny trains on a CPU; paper = the zoo's sizes of
# qualities 1-5 (N = 128, M = 192)
_COMPRESSAI_SIZES = {"tiny": {"N": 16, "M": 24}, "paper": {"N": 128, "M": 192}}


def _build_enhancement(
    config: EnhancementCodecConfig, name: str, base: BaseCodec | None = None
) -> EnhancementCodec:
    """Without ``base``, the base is built, untrained, from the config's ``base_model``."""
    if base is None:
        base = create_model(config.base_model, **config.base_overrides)
    return EnhancementCodec(config, name=name, base=base, identify=identify_codec)


# ------------------------------------------------------------------------------ codec ids


def codec_id_from_config(name: str, config: Any) -> str:
    """The codec id that registry model ``name`` built from ``config`` has, without building
    it (an enhancement's base is resolved through the registry)."""
    base_name = getattr(config, "base_model", None)
    if base_name is None:
        return make_codec_id(name, architecture_dict(config))
    base_config = model_config(base_name, **getattr(config, "base_overrides", {}))
    return enhancement_codec_id(name, config, base_name, codec_id_from_config(base_name, base_config))


def identify_codec(fingerprint: bytes) -> str | None:
    """The codec id of the registry model, in its default config, whose bitstream
    fingerprint is ``fingerprint``; None if there is none. For error messages (it computes
    every registered model's id, so call it on mismatches only). The registry gives it to
    every codec it builds (``identify=``), so a model never looks the registry up itself."""
    for name in list_models():
        codec_id = codec_id_from_config(name, model_config(name))
        if codec_fingerprint(codec_id) == fingerprint:
            return codec_id
    return None


def _register_defaults() -> None:
    for preset, sizes in _PRESET_SIZES.items():
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

    for preset, sizes in _COMPRESSAI_SIZES.items():
        for architecture in COMPRESSAI_ARCHITECTURES:
            register_model(
                f"{preset}-compressai-{architecture}",
                CompressAICodecConfig(architecture=architecture, **sizes),
                _build_compressai,
                f"CompressAI {architecture} (compressai.models, N={sizes['N']}, "
                f"M={sizes['M']}): a standalone reconstruction codec ({preset} preset)",
            )


_register_defaults()
