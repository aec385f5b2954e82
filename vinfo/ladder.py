"""The V-information ladder of several bases and targets, one estimate (job) per base x target.

    python -m vinfo.ladder --bases baseline=sweeps/depth/runs/A,proposed=sweeps/depth/runs/B \\
        --targets reconstruction,segmentation --dataset /data/cityscapes --out vinfo \\
        [--launcher submitit --partition gpu --gpus-per-node 1 --timeout-min 240] \\
        [--families linear,mlp-64,cnn-3x64,synthesis --limit 500 ...] [key=value ...]

Each (base, target) is ``python -m vinfo.estimate --codec RUN --dataset DIR --target T
--out OUT/LABEL/TARGET`` plus every option this command does not know itself (passed to
:mod:`vinfo.estimate` unchanged: ``--families``, ``--seeds``, ``--limit``, ``--device``,
``key=value`` overrides, ...). ``OUT/LABEL/TARGET/vinfo.nc`` marks a pair done: a re-run
skips it, so an interrupted ladder is resumed with the same command (a pair that was cut off
is estimated again from the start: the estimator keeps no partial state). The layout is
the one ``python -m analysis.report ... --vinfo LABEL=OUT/LABEL`` reads.

``--launcher local`` (default) runs the pairs one after another in this process;
``--launcher submitit`` runs each as a job of a SLURM job array, with the launcher options
and ``slurm_*=VALUE`` items of :mod:`taskcodecs.sweeps.launch` (job logs in ``OUT/submitit/``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from infra import cli
from infra.config import ConfigError
from vinfo.adapter.jobs import launch, parse_bases

TARGETS = ("reconstruction", "segmentation", "depth")


def pair_argv(run: str, dataset: str, target: str, out: Path, extra: list[str]) -> list[str]:
    """The ``vinfo.estimate`` arguments of one (base, target) pair."""
    return ["--codec", run, "--dataset", dataset, "--target", target, "--out", str(out), *extra]


def main(argv: list[str] | None = None) -> int:
    """The command line; errors and interrupts follow :mod:`infra.cli` (exit 2 / 130)."""
    return cli.run(_main, argv)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m vinfo.ladder",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--bases", required=True, help="label=RUN_DIR,... (base codec runs)")
    parser.add_argument("--targets", required=True, help=f"comma-separated: {', '.join(TARGETS)}")
    parser.add_argument("--dataset", required=True, help="Cityscapes-layout dataset root")
    parser.add_argument("--out", required=True, help="OUT/LABEL/TARGET/vinfo.nc per pair")
    launch.add_arguments(parser)
    args, extra = parser.parse_known_args(argv)
    extra, slurm = launch.split_cluster_items(extra)
    out = Path(args.out)
    bases = parse_bases(args.bases, {})
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    bad = [t for t in targets if t not in TARGETS] or ([] if targets else ["(none)"])
    if bad:
        raise ConfigError(f"--targets: {', '.join(bad)} (expected some of {', '.join(TARGETS)})")
    missing = [f"{label}={run}" for label, run in bases.items() if not Path(run).is_dir()]
    if missing:
        raise ConfigError(f"--bases: run directory not found: {', '.join(missing)}")
    if slurm and args.launcher != "submitit":
        raise ConfigError(f"{', '.join(slurm)}: slurm_* parameters need --launcher submitit")
    pairs = [(f"{label}-{target}", out / label / target,
              pair_argv(run, args.dataset, target, out / label / target, extra))
             for label, run in bases.items() for target in targets]
    if args.launcher == "submitit":
        executor = launch.make_executor(args, out / "submitit", f"vinfo-{out.resolve().name}",
                                        slurm)
        tasks = [launch.Task(key, launch.MainJob("vinfo.cli", a, str(where / "vinfo.nc"),
                                                 str(out / "jobs"), key), where / "vinfo.nc")
                 for key, where, a in pairs]
        failures = launch.run_tasks(tasks, executor, out / "jobs", not args.no_wait,
                                    args.poll_s)
    else:
        from vinfo.cli import main as estimate_main

        failures = []
        for key, where, a in pairs:
            if (where / "vinfo.nc").is_file():
                print(f"{key}: done ({where / 'vinfo.nc'})")
            elif estimate_main(a) != 0:
                failures.append(f"{key}: python -m vinfo.estimate {' '.join(a)} failed")
    if failures:
        print("error: some pairs did not finish (re-run the same command):\n  "
              + "\n  ".join(failures), file=sys.stderr)
        return 1
    state = "submitted" if args.launcher == "submitit" and args.no_wait else "done"
    print(f"{len(pairs)} pairs {state}: " + ", ".join(str(where) for _, where, _ in pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
