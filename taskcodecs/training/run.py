"""Train one experiment: ``python -m taskcodecs.train --config NAME [key=value ...]``.

    python -m taskcodecs.train --config tiny-depth-base-proposed --out runs/depth max_steps=200
    python -m taskcodecs.train --config tiny-cityscapes-reconstruction-scalable \\
        base=runs/depth out=runs/recon rate_weight=0.01
    python -m taskcodecs.train resume=runs/recon max_steps=400      # continue a run
    torchrun --standalone --nproc_per_node=2 -m taskcodecs.train --config ...   # DDP

NAME is an experiment of :mod:`taskcodecs.experiments` (or a YAML path); every
:class:`~taskcodecs.experiments.train_config.TrainConfig` field is a ``key=value`` override. Multi-node
launch flags are in :mod:`taskcodecs.training.distributed`.

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
``data_root`` without a dataset is otherwise refused (exit 2, naming it). The log says where
the scenes were rendered and how many.

Errors (a bad value, an unwritable ``out``, a run directory another process is training
in) print one line and exit 2; Ctrl-C exits 130 saying what was kept (:mod:`infra.cli`).
A resume continues from the newest checkpoint that verifies (:mod:`taskcodecs.runs.resume`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infra import cli
from infra.config import ConfigError, apply_overrides, parse_overrides
from taskcodecs.experiments.table import (
    EXPERIMENTS,
    list_experiments,
    load_experiment,
    preset_chain,
    preset_values,
)
from taskcodecs.experiments.train_config import TrainConfig, config_keys_help
from taskcodecs.runs.checkpoint import read_metadata_or_none
from taskcodecs.runs.links import checkpoint_path, read_run, resolve_links
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
    "TermMeans", "Trainer", "log", "loss_mode", "main", "resolve_config", "train",
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


def main(argv: list[str] | None = None) -> int:
    """The command line; errors and interrupts follow :mod:`infra.cli` (exit 2 / 130)."""
    return cli.run(_main, argv)


def build_parser(config: str | None = None) -> argparse.ArgumentParser:
    """The ``python -m taskcodecs.train`` argument parser; the epilog lists the experiments
    and every config key with its type and default, or, for ``config`` an experiment name
    (``--config NAME --help``), with that experiment's resolved value and parent chain."""
    if config in EXPERIMENTS:
        keys = config_keys_help(preset_values(config), " <- ".join(preset_chain(config)))
    else:
        keys = config_keys_help()
    parser = argparse.ArgumentParser(prog="python -m taskcodecs.train",
                                     description=__doc__.split("\n\n")[0],
                                     epilog=textwrap.fill("experiments: " + ", ".join(
                                         list_experiments()), 100, subsequent_indent="  ",
                                         break_on_hyphens=False) + "\n\n" + keys,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="experiment name (taskcodecs.experiments) or YAML path")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="run directory (the same as out=DIR; default runs/<experiment>)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides (the keys below), e.g. data_root=DIR "
                             "max_steps=N seed=N rate_weight=X reward_weight=X base=RUN_DIR "
                             "resume=RUN_DIR")
    return parser


def _with_out(overrides: list[str], out: str | None) -> list[str]:
    """``--out DIR`` as the ``out=DIR`` override (refused if ``out=`` says otherwise)."""
    if out is None:
        return overrides
    given = [o.split("=", 1)[1] for o in overrides if o.startswith("out=")]
    if given and any(Path(g).resolve() != Path(out).resolve() for g in given):
        raise ConfigError(f"--out {out} differs from out={given[0]}: give one of them")
    return [o for o in overrides if not o.startswith("out=")] + [f"out={out}"]


def _main(argv: list[str]) -> int:
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--config")
    args = build_parser(early.parse_known_args(argv)[0].config).parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    cli.setup_logging(logging.INFO if rank == 0 else logging.WARNING)
    overrides = _with_out(args.overrides, args.out)
    cfg = resolve_config(args.config, overrides)
    cli.on_interrupt(lambda: _kept(cfg.run_dir))
    train(cfg)
    return 0


def _kept(run_dir: Path) -> str:
    """What an interrupted training run leaves: its checkpoints, and how to continue."""
    last = read_metadata_or_none(checkpoint_path(run_dir, "last"))
    if last is None:
        return f"no checkpoint was written to {run_dir} yet"
    return (f"{run_dir} keeps its checkpoints (last at step {last.get('step')}); continue with "
            f"resume={run_dir}")


if __name__ == "__main__":
    sys.exit(main())
