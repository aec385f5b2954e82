"""Train one run in this process: :func:`train` (a config in, a run directory out) and
:func:`resolve_config` (what ``--config NAME`` + ``key=value`` overrides, or ``resume=RUN_DIR``,
resolve to). The command line over them is :mod:`taskcodecs.train`.

    from taskcodecs.training.run import resolve_config, train
    run_dir = train(resolve_config("tiny-depth-base-proposed", {"out": "runs/depth"}))

The loop, the selection rule (``checkpoints/best`` = the lowest validation objective, the
run's own training loss; early stopping after ``patience`` rounds) and exact resume are
described and implemented in :mod:`taskcodecs.training.trainer`. What a run writes -- run directory
(``out``) with config, provenance, train.log, log.csv, tensorboard/ and
checkpoints/{best,last}; rank 0 alone writes -- is in :mod:`taskcodecs.training.outputs`, as is
the debug output (``TASKCODECS_DEBUG_WEIGHT_HASH=DIR``: each rank's final weight hash).

Synthetic data: a config with a ``synthetic`` section (the tiny presets) and no
``data_root`` generates the scenes (rank 0, once) into ``synthetic_cache`` if given, else
``<parent of out>/synthetic-cache/<H>x<W>-train<N>-val<M>-seed<S>`` (shared by sibling runs);
into a ``data_root`` that holds no dataset only with ``render_synthetic=true``. A
``data_root`` without a dataset is otherwise refused (naming it). The log says where
the scenes were rendered and how many. A resume continues from the newest checkpoint that
verifies (:mod:`taskcodecs.runs.resume`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infra.config import ConfigError, apply_overrides, parse_overrides
from taskcodecs.experiments.table import load_experiment
from taskcodecs.experiments.train_config import TrainConfig
from taskcodecs.runs.links import read_run, resolve_links
from taskcodecs.training import distributed as D
from taskcodecs.training.outputs import (
    DEBUG_HASH_ENV,
    CsvLog,
    TermMeans,
    log,
    weights_sha256,
)
from taskcodecs.training.selection import SELECTION_RULE, loss_mode
from taskcodecs.training.trainer import TRAIN_STREAM, VALIDATION_STREAM, Trainer

__all__ = [
    "DEBUG_HASH_ENV", "SELECTION_RULE", "TRAIN_STREAM", "VALIDATION_STREAM", "CsvLog",
    "TermMeans", "Trainer", "log", "loss_mode", "resolve_config", "train",
    "weights_sha256",
]


def train(cfg: TrainConfig) -> Path:
    """Train ``cfg`` in this process (joining the torchrun group if launched by torchrun);
    returns the run directory."""
    info = D.setup(cfg.device)
    try:
        return Trainer(cfg, info).run()
    finally:
        D.teardown()


def resolve_config(config: str | None, overrides: list[str] | Mapping[str, Any]) -> TrainConfig:
    """The config a command line asks for: ``--config NAME`` + overrides, or the config of
    ``resume=RUN_DIR`` + overrides; a refit's base filled in, ``out`` made explicit."""
    flat = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(overrides)
    resume = flat.pop("resume", None)
    if resume:
        cfg, exp = read_run(resume)
        if config and config not in (exp.name, str(Path(resume) / "config.yaml")):
            raise ConfigError(f"--config {config} differs from the experiment of resume={resume} "
                              f"({exp.name}); leave --config out when resuming")
        if "out" in flat and Path(str(flat["out"])).resolve() != Path(resume).resolve():
            raise ConfigError(f"out={flat['out']} differs from resume={resume}: a resumed run "
                              "continues in its own directory")
        cfg = apply_overrides(cfg, flat, resume=str(resume), out=str(resume))
    else:
        if not config:
            raise ConfigError("give --config NAME (an experiment or YAML file) or resume=RUN_DIR")
        cfg = load_experiment(config, flat)
        cfg = apply_overrides(cfg, {"out": str(cfg.run_dir)})
    return resolve_links(cfg)
