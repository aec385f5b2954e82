"""The run directories a run refers to, checked before anything is written.

A run directory holds ``config.yaml`` (its :class:`~taskcodecs.experiments.train_config.TrainConfig`)
and ``checkpoints/{best,last}``. An enhancement names its frozen base as ``base=RUN_DIR``
(a base run of the family its table row asks for, same preset); ``standalone-refit`` names
the ``scalable`` run it refits as ``init_from=RUN_DIR`` and reuses that run's base. Every
mismatch is a :class:`RunKindError` naming the directory, what it is and what was expected.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from infra.config import ConfigError
from taskcodecs.experiments.table import Experiment, get_experiment, sibling
from taskcodecs.experiments.train_config import TrainConfig
from taskcodecs.runs.rundir import RunDir


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
