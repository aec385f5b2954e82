"""Train and evaluate a grid of rate points, gathered into one Dataset for the RD plots.

The command line ``python -m taskcodecs.sweep``; what the points are, how they are named and
what ``sweep.nc`` holds: :mod:`taskcodecs.sweeps.sweep` (local runs) and
:mod:`taskcodecs.sweeps.launch` (SLURM job arrays with submitit).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from infra import cli
from infra.config import ConfigError, parse_overrides
from infra.io import check_writable, write_json
from infra.locks import exclusive_lock
from taskcodecs.sweeps import launch
from taskcodecs.sweeps.sweep import (
    commands,
    gather,
    gather_again,
    parse_bases,
    parse_floats,
    plan,
    run_point,
    validate_overrides,
)

log = logging.getLogger("taskcodecs.sweeps.sweep")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m taskcodecs.sweep`` argument parser (every option documented)."""
    parser = argparse.ArgumentParser(prog="python -m taskcodecs.sweep",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="an experiment of the family to sweep")
    rates = parser.add_argument_group("rate points (at least one of)")
    rates.add_argument("--rate-weights", help="comma-separated, e.g. 1e-3,3e-3 (with "
                       "--rate-targets: one value, the initial weight)")
    rates.add_argument("--rate-targets", help="comma-separated estimated bits per pixel, e.g. "
                       "0.05,0.1: rate-targeted points (taskcodecs.training.rate_control)")
    parser.add_argument("--reward-weights", help="base families: comma-separated, > 0")
    parser.add_argument("--methods", help="comma-separated methods of the family")
    parser.add_argument("--bases", help="enhancement families: label=RUN_DIR,...")
    parser.add_argument("--out", help="sweep folder (runs/, sweep.json, sweep.nc)")
    parser.add_argument("--warm-start", type=int, default=None, metavar="STEPS",
                        help="train each curve's lowest-rate point from scratch and every "
                             "next point from the previous one's weights for STEPS steps")
    parser.add_argument("--split", default="val", help="split to evaluate (default val)")
    parser.add_argument("--eval-limit", type=cli.positive_int, default=None,
                        help="evaluate the first N images")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate the overrides and print each point's public commands "
                             "(python -m taskcodecs.train ... && python -m taskcodecs.evaluate "
                             "...); nothing runs")
    parser.add_argument("--gather", metavar="OUT", help="only (re)build OUT/sweep.nc from the "
                        "finished points of OUT/sweep.json")
    launch.add_arguments(parser)
    cli.add_overrides(parser, "train overrides; slurm_*=VALUE items go to submitit")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line; errors and interrupts follow :mod:`infra.cli` (exit 2 / 130)."""
    return cli.run(_main, argv)


def _main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.gather and not (args.config and (args.rate_weights or args.rate_targets)
                                and args.out):
        parser.error("--config, --rate-weights or --rate-targets, and --out are required "
                     "(or --gather OUT)")
    cli.setup_logging()
    out = Path(args.gather or args.out)
    if args.gather:
        with exclusive_lock(out, f"sweep folder {out}"):
            ds = gather_again(out)
        print(f"{out / 'sweep.nc'} (dims {dict(ds.sizes)})")
        return 0
    items, slurm = launch.split_cluster_items(args.overrides)
    if slurm and args.launcher != "submitit":
        raise ConfigError(f"{', '.join(slurm)}: slurm_* parameters need --launcher submitit")
    overrides = parse_overrides(items)
    for key in ("out", "resume", "rate_weight", "reward_weight", "init_from", "rate_target_bpp"):
        if key in overrides:
            raise ConfigError(f"{key}= is set by the sweep for each point; leave it out")
    points = plan(args.config, parse_floats(args.rate_weights, "--rate-weights"),
                  parse_floats(args.reward_weights, "--reward-weights"),
                  [m.strip() for m in (args.methods or "").split(",") if m.strip()],
                  parse_bases(args.bases, overrides), out,
                  parse_floats(args.rate_targets, "--rate-targets"), args.warm_start)
    validate_overrides(points, overrides)
    if args.dry_run:
        for point in points:
            print(commands(point, overrides, args.split, args.eval_limit))
        return 0
    check_writable(out)
    cli.on_interrupt(f"the finished points under {out / 'runs'} are kept; rerun the same "
                     "command to continue" + (" (submitted jobs keep running)"
                                              if args.launcher == "submitit" else ""))
    with exclusive_lock(out, f"sweep folder {out}"):
        write_json(out / "sweep.json", {"config": args.config, "overrides": overrides,
                                        "split": args.split, "eval_limit": args.eval_limit,
                                        "points": [asdict(p) for p in points]})
        if args.launcher == "submitit":
            failures = launch.launch_sweep(points, overrides, out, args, slurm)
            if failures:
                print("error: some points did not finish (re-run the same command to resume "
                      "them):\n  " + "\n  ".join(failures), file=sys.stderr)
                return 1
            if args.no_wait:
                print(f"submitted; when the jobs are done: python -m taskcodecs.sweep --gather {out}")
                return 0
        else:
            for i, point in enumerate(points, 1):
                log.info("point %d/%d: %s", i, len(points), Path(point.run_dir).name)
                run_point(point, overrides, args.split, args.eval_limit)
        ds = gather(points, out, args.config)
    print(f"{len(points)} points -> {out / 'sweep.nc'} (dims {dict(ds.sizes)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
