"""Checkpoints: safetensors weights plus a JSON metadata file. Never pickle.

A checkpoint ``NAME`` is two files written atomically side by side:

    NAME.safetensors   flat {key: tensor} of every state dict, keys prefixed by group
                       ("model.g_a.0.weight", "optimizer.state.3.exp_avg", ...)
    NAME.json          metadata: format version, codec identifier, step, config, anything
                       JSON-serializable, plus non-tensor optimizer fields

Weights are stored unwrapped: ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes
are stripped on save and on load, so a checkpoint loads into a bare model whatever wrapped it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from taskcodecs.io import atomic_write, read_json, write_json

FORMAT_VERSION = 1
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or does not match the model it is loaded into."""


def unwrap_key(key: str) -> str:
    """Strip DDP / torch.compile wrapper prefixes from a state-dict key."""
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module inside DDP / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def clean_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Unwrapped keys, contiguous CPU tensors that do not share memory (safetensors needs this)."""
    return {unwrap_key(k): v.detach().cpu().contiguous().clone() for k, v in state.items()}


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    return path.with_suffix(".safetensors"), path.with_suffix(".json")


def _flatten_optimizer(opt_state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into tensors (for safetensors) and JSON."""
    tensors: dict[str, torch.Tensor] = {}
    meta_state: dict[str, dict[str, Any]] = {}
    for pid, entry in opt_state["state"].items():
        meta_state[str(pid)] = {}
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"state.{pid}.{name}"] = value.detach().cpu().contiguous().clone()
                meta_state[str(pid)][name] = {"tensor": True}
            else:
                meta_state[str(pid)][name] = {"value": value}
    return tensors, {"state": meta_state, "param_groups": opt_state["param_groups"]}


def _unflatten_optimizer(tensors: Mapping[str, torch.Tensor], meta: Mapping) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for pid, entry in meta["state"].items():
        state[int(pid)] = {
            name: (tensors[f"state.{pid}.{name}"] if spec.get("tensor") else spec["value"])
            for name, spec in entry.items()
        }
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module | Mapping[str, torch.Tensor],
    metadata: Mapping[str, Any] | None = None,
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    extra_tensors: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``path``.safetensors and ``path``.json atomically; returns the weights path.

    ``metadata`` must be JSON-serializable. ``optimizers`` are saved by name so that
    training resumes exactly; ``extra_tensors`` (RNG states, say) are stored under ``extra.``.
    """
    weights_path, meta_path = _paths(path)
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    tensors = {f"model.{k}": v for k, v in clean_state_dict(state).items()}
    meta: dict[str, Any] = {"format_version": FORMAT_VERSION, **dict(metadata or {})}
    meta["optimizers"] = {}
    for name, opt in (optimizers or {}).items():
        opt_tensors, opt_meta = _flatten_optimizer(opt.state_dict())
        tensors.update({f"optimizer.{name}.{k}": v for k, v in opt_tensors.items()})
        meta["optimizers"][name] = opt_meta
    for name, value in (extra_tensors or {}).items():
        tensors[f"extra.{name}"] = value.detach().cpu().contiguous().clone()
    try:  # fail before touching disk: weights and metadata are replaced together or not at all
        json.dumps(meta)
    except (TypeError, ValueError) as err:
        raise TypeError(f"checkpoint metadata for {weights_path} is not JSON-serializable: {err}") from err
    atomic_write(weights_path, lambda tmp: save_file(tensors, str(tmp)))
    write_json(meta_path, meta)
    return weights_path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of checkpoint ``path``."""
    _, meta_path = _paths(path)
    try:
        meta = read_json(meta_path)
    except (FileNotFoundError, ValueError) as err:
        raise CheckpointError(f"checkpoint metadata: {err}") from err
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_path}: not a checkpoint of format version {FORMAT_VERSION} "
            f"(found {meta.get('format_version') if isinstance(meta, dict) else meta!r})"
        )
    return meta


def load_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module | None = None,
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    strict: bool = True,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load weights (into ``model`` if given) and optimizer states; returns a dict with
    ``metadata``, ``state_dict`` (unwrapped model weights) and ``extra`` tensors."""
    weights_path, _ = _paths(path)
    meta = read_metadata(path)
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: weights file not found")
    try:
        tensors = load_file(str(weights_path), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{weights_path}: not a readable safetensors file ({err})") from err
    state = {unwrap_key(k[6:]): v for k, v in tensors.items() if k.startswith("model.")}
    extra = {k[6:]: v for k, v in tensors.items() if k.startswith("extra.")}
    if model is not None:
        target = unwrap_model(model)
        missing, unexpected = target.load_state_dict(state, strict=False)
        if strict and (missing or unexpected):
            raise CheckpointError(
                f"{weights_path}: weights do not match {type(target).__name__}: "
                f"missing {list(missing)[:8]}, unexpected {list(unexpected)[:8]}"
            )
    for name, opt in (optimizers or {}).items():
        if name not in meta.get("optimizers", {}):
            raise CheckpointError(f"{weights_path}: no optimizer state named {name!r}")
        prefix = f"optimizer.{name}."
        opt_tensors = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        opt_state = _unflatten_optimizer(opt_tensors, meta["optimizers"][name])
        if len(opt_state["param_groups"]) != len(opt.param_groups):
            raise CheckpointError(
                f"{weights_path}: optimizer {name!r} has {len(opt.param_groups)} parameter "
                f"groups, the checkpoint {len(opt_state['param_groups'])}"
            )
        for saved, current in zip(opt_state["param_groups"], opt.param_groups):
            for key, value in saved.items():  # JSON turned tuples (Adam's betas) into lists
                if isinstance(current.get(key), tuple) and isinstance(value, list):
                    saved[key] = tuple(value)
        opt.load_state_dict(opt_state)
    return {"metadata": meta, "state_dict": state, "extra": extra}
