"""Typed configs: dataclasses loaded from YAML, overridden by ``key=value`` or keyword arguments.

    cfg = load_config(TrainConfig, "taskcodecs/experiments/configs/tiny-depth-base.yaml",
                      ["max_steps=20", "optim.lr=3e-4"])      # command line
    cfg = load_config(TrainConfig, path, max_steps=20, optim={"lr": 3e-4})  # notebook
    save_config(cfg, run_dir / "config.yaml")

Rules
-----
* Every key must name a field; an unknown key is an error that lists the valid ones.
* Nested dataclasses are addressed with dots (``optim.lr``) or with a mapping.
* Values are checked against the field's annotation (int, float, bool, str, Optional,
  Literal, list/tuple, dict, nested dataclass). An int is accepted for a float field;
  nothing else is coerced silently. Command-line values are parsed as YAML scalars first
  (``max_steps=20`` is an int, ``name=null`` is None, ``sizes=[1,2]`` is a list).
* A YAML file may name a ``parent`` file and state only what differs from it
  (:func:`load_yaml`); the config built from it is complete, like any other.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from infra.io import atomic_write_text

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message names which and what was expected."""


# ---------------------------------------------------------------------------- type checking


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against annotation ``tp`` and return it (converted where lossless)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return _build(tp, value, prefix=f"{where}.")
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        items = list(value)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(items) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} items, got {value!r}")
            out = [_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(items, args))]
        else:
            item_tp = args[0] if args else Any
            out = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(items)]
        return tuple(out) if (origin is tuple or tp is tuple) else out
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_tp, val_tp = args if args else (Any, Any)
        return {
            _coerce(k, key_tp, f"{where} key"): _coerce(v, val_tp, f"{where}[{k!r}]")
            for k, v in value.items()
        }
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if tp is Path:
        if isinstance(value, str | os.PathLike):
            return str(value)
        raise ConfigError(f"{where}: expected a path, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _unknown(cls: type, key: str, prefix: str) -> ConfigError:
    valid = ", ".join(sorted(_fields(cls)))
    return ConfigError(f"unknown config key '{prefix}{key}' for {cls.__name__}; valid keys: {valid}")


def _build(cls: type[T], values: Mapping[str, Any], prefix: str = "") -> T:
    fields = _fields(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise _unknown(cls, key, prefix)
        kwargs[key] = _coerce(value, fields[key], f"{prefix}{key}")
    try:
        return cls(**kwargs)
    except TypeError as err:  # a required field without a value
        raise ConfigError(f"{cls.__name__}: {err}") from err


# ---------------------------------------------------------------------------- public API


def check_loss_weights(cfg: Any, names: Iterable[str]) -> None:
    """The one validation of a loss weight (``rate_weight``, ``reward_weight``, ...), wherever
    it is set (a training config or a model config): a finite number >= 0; None (unset)
    passes. Raises :class:`ConfigError` naming the field."""
    for name in names:
        value = getattr(cfg, name)
        if value is None:
            continue
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value}")
        if value < 0:
            raise ConfigError(f"{name} must be >= 0, got {value}")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain YAML/JSON-serializable data (tuples become lists)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, os.PathLike):
            return str(value)
        return value

    return plain(cfg)


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Turn ``["a=1", "optim.lr=3e-4"]`` into ``{"a": 1, "optim.lr": 0.0003}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        try:
            out[key] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            out[key] = text
    return out


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = nested
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {key!r} conflicts with a value given for {part!r}")
            node = child
        node[parts[-1]] = value
    return nested


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def apply_overrides(cfg: T, overrides: Mapping[str, Any] | Iterable[str] = (), **kwargs: Any) -> T:
    """A new config with ``overrides`` (``key=value`` strings or a mapping) and ``kwargs`` applied."""
    if isinstance(overrides, Mapping):
        flat = dict(overrides)
    else:
        flat = parse_overrides(overrides)
    flat.update(kwargs)
    merged = _merge(config_to_dict(cfg), _nest(flat))
    return _build(type(cfg), merged)


PARENT_KEY = "parent"


def load_yaml(path: str | os.PathLike,
              parent_dirs: Iterable[str | os.PathLike] = ()) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file, and resolve its parent chain.

    A file may name a parent (``parent: NAME``: ``NAME.yaml`` beside it or in one of
    ``parent_dirs``, or a YAML path relative to it) and state only what differs: the parent's
    values, then the file's own on top, mappings merged key by key (the way ``key.sub=value``
    overrides merge). Parents may have parents; a chain that loops, or a parent that cannot
    be found, is a :class:`ConfigError` naming the file. The result holds no ``parent`` key.
    """
    dirs = tuple(Path(d) for d in parent_dirs)
    return _load_chain(Path(path), dirs, ())


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """One YAML mapping as written (its ``parent`` not resolved), errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def _load_chain(path: Path, parent_dirs: tuple[Path, ...],
                children: tuple[Path, ...]) -> dict[str, Any]:
    data = read_yaml(path)
    if PARENT_KEY not in data:
        return _nest(data)
    parent = data.pop(PARENT_KEY)
    if not isinstance(parent, str) or not parent.strip():
        raise ConfigError(f"{path}: {PARENT_KEY} must name a preset or a YAML file, got {parent!r}")
    parent_path = _find_parent(path, parent, parent_dirs)
    chain = (*children, path)
    if any(parent_path.resolve() == p.resolve() for p in chain):
        loop = " -> ".join(str(p) for p in (*chain, parent_path))
        raise ConfigError(f"{chain[0]}: the chain of parents loops: {loop}")
    return _merge(_load_chain(parent_path, parent_dirs, chain), _nest(data))


def _find_parent(path: Path, parent: str, parent_dirs: tuple[Path, ...]) -> Path:
    name = parent if parent.endswith((".yaml", ".yml")) else f"{parent}.yaml"
    candidates = [path.parent / name] + [d / name for d in parent_dirs]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{path}: parent {parent!r} not found (looked for "
                      f"{', '.join(str(c) for c in dict.fromkeys(candidates))})")


def load_config(
    cls: type[T],
    path: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | Iterable[str] = (),
    *,
    parent_dirs: Iterable[str | os.PathLike] = (),
    **kwargs: Any,
) -> T:
    """Build ``cls`` from defaults, then the YAML file at ``path`` (its parent chain resolved,
    :func:`load_yaml`), then overrides, then kwargs."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = _nest(load_yaml(path, parent_dirs))
            cfg = _build(cls, values)
        except ConfigError as err:
            if str(err).startswith(str(path)):
                raise
            raise ConfigError(f"{path}: {err}") from err
    else:
        cfg = _build(cls, values)
    return apply_overrides(cfg, overrides, **kwargs)


def save_config(cfg: Any, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML, atomically."""
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
    return atomic_write_text(path, text)
