"""Codec checkpoints: a registry codec saved with its name, full config and codec id, and
rebuilt from them.

    save_codec(model, "runs/x/best", {"step": 100})
    model = load_codec("runs/x/best")             # rebuilt from the metadata, eval mode

Checkpoints written by :func:`save_codec` carry ``model_name``, ``model_config`` (every
config field, so the exact model is rebuilt through :func:`taskcodecs.experiments.registry.create_model`)
and ``codec_id`` in their JSON metadata; the file format is :mod:`taskcodecs.runs.checkpoint`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from infra.config import ConfigError, config_to_dict
from taskcodecs.experiments.registry import create_model
from taskcodecs.models.protocol import check_codec
from taskcodecs.runs.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)


def save_codec(
    model: nn.Module,
    path: str | os.PathLike,
    metadata: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Path:
    """Write ``path``.safetensors/.json with the registry name, full config and codec id in the
    metadata (plus ``metadata``); ``kwargs`` go to :func:`taskcodecs.runs.checkpoint.save_checkpoint`
    (``optimizers``, ``extra_tensors``). Returns the weights path."""
    check_codec(model, "save_codec needs a registry codec;")
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
    unverified: bool = False,
) -> nn.Module:
    """Rebuild the codec of checkpoint ``path`` from its metadata and load its weights, in
    eval mode. ``expect``: a registry name or codec id the checkpoint must hold. Anything
    else than a codec checkpoint of a registered architecture raises :class:`CheckpointError`,
    so does a checkpoint that cannot be verified (no weights manifest or record checksum)
    unless ``unverified`` (then it loads with a warning)."""
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
    load_weights(model, path, map_location=map_location, unverified=unverified)
    return model.eval()


def _without_pretrained(config: Any) -> Any:
    """The config with every ``pretrained`` flag off: the checkpoint holds all weights, so
    rebuilding must not fetch torchvision's (training-only fields, outside the codec id)."""
    if isinstance(config, Mapping):
        return {k: (False if k == "pretrained" else _without_pretrained(v)) for k, v in config.items()}
    return config


def load_weights(model: nn.Module, path: str | os.PathLike, map_location: str | torch.device = "cpu",
                 unverified: bool = False) -> dict:
    """Load the weights of checkpoint ``path`` into ``model``, checking first that the
    checkpoint holds the same codec (codec id); returns the checkpoint's metadata.
    ``unverified``: as in :func:`load_codec`."""
    meta = read_metadata(path)
    stored = meta.get("codec_id")
    ours = getattr(model, "codec_id", None)
    if stored is not None and ours is not None and stored != ours:
        raise CheckpointError(
            f"{path}: holds codec {stored}, cannot load it into codec {ours} (another architecture)"
        )
    try:
        load_checkpoint(path, model, map_location=map_location, unverified=unverified)
    except RuntimeError as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(
            f"{path}: weights do not fit {type(model).__name__} {ours}: {str(err).splitlines()[0]}"
        ) from err
    return meta
