"""Checkpoints: safetensors weights plus a JSON metadata file. Never pickle.

A checkpoint ``NAME`` is two files written atomically side by side:

    NAME.safetensors   flat {key: tensor} of every state dict, keys prefixed by group
                       ("model.g_a.0.weight", "optimizer.state.3.exp_avg", ...)
    NAME.json          metadata: format version, codec identifier, step, config, anything
                       JSON-serializable, plus non-tensor optimizer fields, the manifest
                       ``weights`` = {"file", "bytes", "sha256"} of NAME.safetensors, and
                       ``record_sha256``: the SHA-256 of the record's own canonical JSON
                       (every other field, key-sorted, compact)

Whole or nothing. The weights are written first, the metadata last: NAME.json is the
commit record of the pair. Every load checks the weights file against the manifest
(:func:`verify_checkpoint`), so a pair torn by a kill between the two renames (new weights
under old metadata), a truncated or emptied file or a missing half is a
:class:`CheckpointError` saying which file and why, never weights of one step read under
the record of another. The record checks itself too: a record whose ``record_sha256`` does
not match its content (an edited step, a flipped byte) is a :class:`CheckpointError`.

A record without a weights manifest or without its own checksum (written before either
existed, or with them removed) cannot be verified and is never trusted silently: verifying
or loading it is a :class:`CheckpointError` that says so, unless the caller passes
``unverified=True`` (the codec CLI: ``--unverified``), which loads it with a warning.

Weights are stored unwrapped: ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes
are stripped on save and on load, so a checkpoint loads into a bare model whatever wrapped it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from infra.io import atomic_write_bytes, read_json, write_json

FORMAT_VERSION = 1
RECORD_KEY = "record_sha256"  # the record's checksum of its own content
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or does not match the model it is loaded into."""


class UnverifiedCheckpointError(CheckpointError):
    """A checkpoint record without weights manifest or checksum: intact or not, unknowable."""


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
    try:  # fail before touching disk
        json.dumps(meta)
    except (TypeError, ValueError) as err:
        raise TypeError(f"checkpoint metadata for {weights_path} is not JSON-serializable: {err}") from err
    data = save(tensors)
    meta["weights"] = {"file": weights_path.name, "bytes": len(data),
                       "sha256": hashlib.sha256(data).hexdigest()}
    atomic_write_bytes(weights_path, data)
    write_record(meta_path, meta)  # last: the commit record of the pair
    return weights_path


def record_digest(meta: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``meta`` without its ``record_sha256``: what a record
    reads back as (JSON round trip), key-sorted and compact."""
    body = json.loads(json.dumps({k: v for k, v in meta.items() if k != RECORD_KEY}))
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_record(meta_path: str | os.PathLike, meta: Mapping[str, Any]) -> Path:
    """Write the checkpoint record ``meta`` to ``meta_path`` atomically, with its checksum
    (``record_sha256``) computed afresh."""
    body = {k: v for k, v in meta.items() if k != RECORD_KEY}
    return write_json(meta_path, {**body, RECORD_KEY: record_digest(body)})


def unverified_reason(meta: Mapping[str, Any]) -> str | None:
    """Why the record ``meta`` cannot be verified (no weights manifest, no record checksum),
    or None when it carries both."""
    missing = [what for key, what in (("weights", "no weights manifest"),
                                      (RECORD_KEY, "no record checksum")) if key not in meta]
    return " and ".join(missing) or None


def _check_verifiable(path: str | os.PathLike, meta: Mapping[str, Any], unverified: bool) -> None:
    reason = unverified_reason(meta)
    if reason is None:
        return
    _, meta_path = _paths(path)
    message = (f"{meta_path}: unverified checkpoint ({reason}: written before checkpoints "
               "verified themselves, or edited), so its weights cannot be checked")
    if not unverified:
        raise UnverifiedCheckpointError(f"{message}; load it only if you trust it, with "
                                        "unverified=True (codec CLI: --unverified)")
    _log.warning("%s; loading it anyway (unverified=True)", message)


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
    if RECORD_KEY in meta and meta[RECORD_KEY] != record_digest(meta):
        raise CheckpointError(f"{meta_path}: record does not match its own checksum "
                              f"({RECORD_KEY}): edited or corrupt since it was written")
    return meta


def _read_weights(path: str | os.PathLike, meta: Mapping[str, Any]) -> bytes:
    """The bytes of the weights file, checked against the metadata's manifest."""
    weights_path, meta_path = _paths(path)
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: weights file not found (its metadata "
                              f"{meta_path.name} is there: an interrupted write?)")
    try:
        data = weights_path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{weights_path}: cannot read ({err.strerror or err})") from err
    manifest = meta.get("weights")
    if manifest is None:  # unverifiable: only with unverified=True (_check_verifiable)
        return data
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{meta_path}: 'weights' must be a manifest "
                              f"{{file, bytes, sha256}}, found {manifest!r}")
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != manifest.get("bytes") or digest != manifest.get("sha256"):
        raise CheckpointError(
            f"{weights_path}: does not match its metadata {meta_path.name} (step "
            f"{meta.get('step', '?')}: {manifest.get('bytes')} bytes, sha256 "
            f"{str(manifest.get('sha256'))[:12]}...; the file: {len(data)} bytes, sha256 "
            f"{digest[:12]}...): a torn or interrupted write, or a corrupt file")
    return data


def verify_checkpoint(path: str | os.PathLike, unverified: bool = False) -> dict[str, Any]:
    """The metadata of checkpoint ``path`` once both files are checked: metadata readable and
    matching its own checksum, weights present, matching the manifest and parseable.
    CheckpointError says what failed; a record without manifest or checksum fails unless
    ``unverified``."""
    meta = read_metadata(path)
    _check_verifiable(path, meta, unverified)
    _parse_weights(_read_weights(path, meta), path)
    return meta


def _parse_weights(data: bytes, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    try:
        return load(data)
    except (SafetensorError, ValueError, RuntimeError) as err:
        weights_path, _ = _paths(path)
        raise CheckpointError(f"{weights_path}: not a readable safetensors file ({err})") from err


def read_metadata_or_none(path: str | os.PathLike) -> dict[str, Any] | None:
    """The metadata of checkpoint ``path``, or None if it is missing or unreadable."""
    try:
        return read_metadata(path)
    except CheckpointError:
        return None


def load_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module | None = None,
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    strict: bool = True,
    map_location: str | torch.device = "cpu",
    unverified: bool = False,
) -> dict[str, Any]:
    """Load weights (into ``model`` if given) and optimizer states; returns a dict with
    ``metadata``, ``state_dict`` (unwrapped model weights) and ``extra`` tensors. A checkpoint
    that cannot be verified is refused unless ``unverified`` (module docstring)."""
    weights_path, _ = _paths(path)
    meta = read_metadata(path)
    _check_verifiable(path, meta, unverified)
    tensors = _parse_weights(_read_weights(path, meta), path)
    if torch.device(map_location).type != "cpu":
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    state = {unwrap_key(k[6:]): v for k, v in tensors.items() if k.startswith("model.")}
    extra = {k[6:]: v for k, v in tensors.items() if k.startswith("extra.")}
    if model is not None:
        target = unwrap_model(model)
        try:
            missing, unexpected = target.load_state_dict(state, strict=False)
        except RuntimeError as err:  # shapes differ: weights of another architecture
            raise CheckpointError(f"{weights_path}: weights do not match {type(target).__name__}: "
                                  f"{' '.join(str(err).split())[:400]}") from err
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
