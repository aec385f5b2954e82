"""Train one experiment: ``python -m taskcodecs.train --config NAME [key=value ...]``.

    python -m taskcodecs.train --config tiny-depth-base-proposed --out runs/depth max_steps=200
    python -m taskcodecs.train --config tiny-cityscapes-reconstruction-scalable \\
        base=runs/depth out=runs/recon rate_weight=0.01
    python -m taskcodecs.train resume=runs/recon max_steps=400      # continue a run
    torchrun --standalone --nproc_per_node=2 -m taskcodecs.train --config ...   # DDP

NAME is an experiment of :mod:`taskcodecs.experiments` (or a YAML path); every
:class:`~taskcodecs.experiments.train_config.TrainConfig` field is a ``key=value`` override
(``--config NAME --help`` lists them with that experiment's resolved values). Multi-node
launch flags are in :mod:`taskcodecs.training.distributed`; what a run does and writes is in
:mod:`taskcodecs.training.run` (the functions this command line calls).

Errors (a bad value, an unwritable ``out``, a run directory another process is training
in, a ``data_root`` without a dataset) print one line and exit 2; Ctrl-C exits 130 saying
what was kept (:mod:`infra.cli`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from pathlib import Path

from infra import cli
from infra.config import ConfigError
from taskcodecs.experiments.table import EXPERIMENTS, list_experiments, preset_chain, preset_values
from taskcodecs.experiments.train_config import config_keys_help
from taskcodecs.runs.checkpoint import read_metadata_or_none
from taskcodecs.runs.links import checkpoint_path
from taskcodecs.training.run import resolve_config, train


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
    cli.add_overrides(parser, "config overrides (the keys below), e.g. data_root=DIR "
                      "max_steps=N seed=N rate_weight=X reward_weight=X base=RUN_DIR "
                      "resume=RUN_DIR")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line; errors and interrupts follow :mod:`infra.cli` (exit 2 / 130)."""
    return cli.run(_main, argv)


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


def _with_out(overrides: list[str], out: str | None) -> list[str]:
    """``--out DIR`` as the ``out=DIR`` override (refused if ``out=`` says otherwise)."""
    if out is None:
        return overrides
    given = [o.split("=", 1)[1] for o in overrides if o.startswith("out=")]
    if given and any(Path(g).resolve() != Path(out).resolve() for g in given):
        raise ConfigError(f"--out {out} differs from out={given[0]}: give one of them")
    return [o for o in overrides if not o.startswith("out=")] + [f"out={out}"]


def _kept(run_dir: Path) -> str:
    """What an interrupted training run leaves: its checkpoints, and how to continue."""
    last = read_metadata_or_none(checkpoint_path(run_dir, "last"))
    if last is None:
        return f"no checkpoint was written to {run_dir} yet"
    return (f"{run_dir} keeps its checkpoints (last at step {last.get('step')}); continue with "
            f"resume={run_dir}")


if __name__ == "__main__":
    sys.exit(main())
