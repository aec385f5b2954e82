"""Benchmark: training steps per second of every tiny experiment, through the real trainer.

    python benchmarks/train_throughput.py            # all 19 tiny experiments, 5 windows each
    python benchmarks/train_throughput.py --quick    # one experiment per family kind
    python benchmarks/train_throughput.py --device cuda   # where a GPU is present

Each experiment is trained with :func:`taskcodecs.training.run.train` on its own config (the tiny
preset's batch size, data loader workers, synthetic 64x128 scenes), with ``log_every=M``: a
first window of M steps is warm-up, then ``--runs`` windows of M steps are timed from the
``elapsed_s`` column of the run's ``log.csv`` (what a user's run writes; logging and the
TensorBoard flush included, validation excluded: it only runs after the last window). The
figure is the median over windows of M / window seconds, in training steps per second, and
images per second (steps x batch size). Enhancements train over a depth/detection base
trained first for one window; standalone-refit starts from the scalable run, as its config
requires. Nothing here has a target, so no ``ratio`` line is printed.
"""

from __future__ import annotations

import csv
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import timing  # noqa: E402

import infra  # noqa: E402,F401 - hides known third-party warnings (infra.cli.KNOWN_WARNINGS)
from taskcodecs.experiments.table import get_experiment, list_experiments  # noqa: E402
from taskcodecs.training.run import resolve_config, train  # noqa: E402

QUICK = ("tiny-depth-base-proposed", "tiny-detection-base-proposed",
         "tiny-cityscapes-reconstruction-scalable", "tiny-cityscapes-segmentation-scalable")


def order(names: list[str]) -> list[str]:
    """Bases first, then enhancements (scalable before standalone-refit), then references."""
    rank = {"base": 0, "enhancement": 1, "reference": 2}
    return sorted(names, key=lambda n: (rank[get_experiment(n).role],
                                        get_experiment(n).method == "standalone-refit", n))


def windows(run_dir: Path) -> list[float]:
    """Seconds of each logging window after the first (train rows of log.csv)."""
    with (run_dir / "log.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["phase"] == "train"]
    elapsed = [float(r["elapsed_s"]) for r in rows]
    return [b - a for a, b in zip(elapsed, elapsed[1:])]


def main() -> None:
    p = timing.parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=None, help="steps per window (default 10; quick 5)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    args = p.parse_args()
    logging.disable(logging.INFO)
    per_window = args.steps or (5 if args.quick else 10)
    runs = args.runs or 5
    names = order(list(QUICK) if args.quick else list_experiments("tiny"))
    print(f"machine: {timing.machine()}")
    print(f"{len(names)} tiny experiments, {per_window} steps per window, 1 warm-up + {runs} "
          f"timed windows each, device {args.device}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        common = {"synthetic_cache": str(tmp / "cache"), "log_every": per_window,
                  "max_steps": per_window * (runs + 1), "val_every": 10**9, "patience": None,
                  "device": args.device}
        runs_of: dict[str, Path] = {}
        for name in names:
            exp = get_experiment(name)
            overrides = {**common, "out": str(tmp / name)}
            if exp.role == "enhancement":
                base = f"tiny-{exp.base_family}-baseline"
                if base not in runs_of:  # a base for it, one window of training
                    runs_of[base] = train(resolve_config(base, {
                        **common, "max_steps": per_window, "out": str(tmp / base)}))
                overrides["base"] = str(runs_of[base])
                if exp.method == "standalone-refit":
                    scalable = name.replace("standalone-refit", "scalable")
                    if scalable not in runs_of:
                        runs_of[scalable] = train(resolve_config(scalable, {
                            **common, "max_steps": per_window, "base": overrides["base"],
                            "out": str(tmp / scalable)}))
                    overrides["init_from"] = str(runs_of[scalable])
            cfg = resolve_config(name, overrides)
            start = time.perf_counter()
            if (tmp / name).exists():  # trained above as a dependency: train a fresh copy
                cfg.out = str(tmp / f"{name}-timed")
            runs_of.setdefault(name, train(cfg))
            seconds = windows(Path(cfg.out))
            if not seconds:
                print(f"{name:<52} no trainable parameters (validates once)")
                continue
            rate = timing.median([per_window / s for s in seconds])
            results.append((name, rate, rate * cfg.batch_size, cfg.batch_size))
            print(f"{name:<52} {rate:7.2f} steps/s  {rate * cfg.batch_size:7.2f} images/s  "
                  f"(batch {cfg.batch_size}; windows "
                  f"{', '.join(f'{s:.2f}' for s in seconds)} s; wall {time.perf_counter() - start:.0f} s)")
    print("\n| experiment | steps/s | images/s | batch |\n|---|---|---|---|")
    for name, rate, images, batch in results:
        print(f"| {name} | {rate:.2f} | {images:.2f} | {batch} |")


if __name__ == "__main__":
    main()
