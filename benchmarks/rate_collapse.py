"""Collapsed points of rate-targeted training from scratch (the controller's anti-windup).

    python benchmarks/rate_collapse.py --out bench_out/rate_collapse            # 24 runs
    python benchmarks/rate_collapse.py --controller plain --out DIR             # the old controller
    python benchmarks/rate_collapse.py --quick --out DIR                        # a smoke test

For every training seed it trains the demo's two depth bases (baseline, proposed; rate-
targeted to 0.03 bpp est., 250 steps, tolerance ±20 %, with the same controller), then on each base one *from-scratch* rate-targeted
scalable reconstruction per target (default 0.045, 0.06, 0.1, 0.16 bpp est., total =
base + enhancement; 700 steps, the demo's from-scratch budget), starting the controller where
the demo and the study do (0.06 is their lowest target, λ 100; 0.045 the earlier demo's,
λ 600, where the plain controller collapsed; 0.1 and 0.16 at 20 and 5). Seeds x bases x
targets = 3 x 2 x 4 = 24 runs by default, each evaluated through real bitstreams on the
first 32 val images (:func:`taskcodecs.evaluation.evaluate.evaluate_run`).

A point is **collapsed** when its PSNR (dB, decoded enhancement, mean over the evaluation
images) is below its base's own reconstruction (the base's g_a, same images), or more than
2 dB below its curve's trend: the least-squares line (slope >= 0) of PSNR against ln(estimated total
bpp) through the *other* points of the same base and seed that are not below their base
(leave-one-out; needs >= 2 of them; above their rates capped at their best PSNR). Printed: one row per run (target, selected validation rate, final and largest
λ, rates, PSNR, the base's PSNR, the trend, collapsed or not), the count, and the machine.
Everything lands in OUT (runs, ``rate_collapse.json``); a rerun reuses every evaluated run.

Runs go ``--jobs`` at a time (default 2), one torch thread each (``--threads``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# the demo's from-scratch starts (taskcompat/demo_steps.py) and the earlier demo's 0.045
INITIAL_WEIGHTS = {0.045: 600.0, 0.06: 100.0, 0.1: 20.0, 0.16: 5.0}
TREND_MARGIN_DB = 2.0


@dataclass(frozen=True)
class Job:
    """One training run (a base, or a scalable reconstruction over ``base``)."""

    kind: str  # "base" | "scalable"
    method: str  # baseline | proposed (the base's method)
    seed: int
    target: float  # estimated bpp: base rate (bases) or total rate (scalable)
    weight: float  # the controller's initial λ
    steps: int
    run_dir: str
    base: str | None
    data_root: str
    eval_images: int
    threads: int
    controller: str  # "anti-windup" | "plain"


def _work(job: Job) -> dict:
    """Train (unless evaluated already) and evaluate one job; returns its row."""
    import functools

    import torch
    import xarray as xr

    torch.set_num_threads(job.threads)
    from taskcodecs.evaluation.evaluate import evaluate_run
    from taskcodecs.training import trainer
    from taskcodecs.training.rate_control import RateController
    from taskcodecs.training.run import resolve_config, train

    if job.controller == "plain":
        trainer.RateController = functools.partial(RateController, anti_windup=False)
    elif job.controller == "bounded-only":  # anti-windup rule (ii) alone
        trainer.RateController = functools.partial(RateController, conditional=False)
    run = Path(job.run_dir)
    start = time.perf_counter()
    trained = not (run / "eval.nc").is_file()
    if trained:
        overrides = {"data_root": job.data_root, "max_steps": job.steps, "num_workers": 0,
                     "val_every": min(50, job.steps), "log_every": min(25, job.steps),
                     "seed": job.seed, "rate_target_bpp": job.target, "rate_weight": job.weight,
                     "out": str(run)}
        if job.kind == "base":
            config = f"tiny-depth-base-{job.method}"
            if job.method == "proposed":
                overrides["reward_weight"] = 0.1
        else:
            config = "tiny-cityscapes-reconstruction-scalable"
            overrides["base"] = job.base
        train(resolve_config(config, overrides))
        evaluate_run(run, split="val", checkpoint="best", limit=job.eval_images)
    seconds = time.perf_counter() - start
    with xr.open_dataset(run / "eval.nc") as ds:
        layer = "base" if job.kind == "base" else "enhancement"
        psnr = float(ds["psnr"].sel(layer=layer).mean())
        bpp_est = float(ds["bpp_estimated"].sel(layer=layer).mean())
        bpp_act = float(ds["bpp_actual"].sel(layer=layer).mean())
        base_psnr = float(ds["psnr"].sel(layer="base").mean())
    control = json.loads((run / "meta.json").read_text()).get("rate_control") or {}
    return {**asdict(job), "psnr": psnr, "base_layer_psnr": base_psnr, "bpp_estimated": bpp_est,
            "bpp_actual": bpp_act, "final_weight": control.get("final_rate_weight"),
            "max_weight": control.get("max_rate_weight"),
            "selected_val_bpp": control.get("selected_val_bpp"),
            "on_target": control.get("on_target"), "seconds": seconds if trained else None}


def _trend(points: list[tuple[float, float]], at: float) -> float:
    """The least-squares line PSNR = a + b ln(bpp) through ``points`` (slope b >= 0),
    evaluated at ``at``;
    above every point's rate, at most their best PSNR (a line through a collapsed low end
    would otherwise extrapolate far above what the codec can reach)."""
    xs = [math.log(b) for b, _ in points]
    ys = [p for _, p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = 0.0 if sxx == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    slope = max(slope, 0.0)  # a trend never falls with rate (a bad high point is no trend)
    line = my + slope * (math.log(at) - mx)
    return min(line, max(ys)) if at > max(b for b, _ in points) else line


def judge(rows: list[dict], base_psnr: dict[tuple[str, int], float]) -> list[dict]:
    """Adds ``base_psnr``, ``trend`` and ``collapsed`` (with ``why``) to every scalable row."""
    out = []
    for row in rows:
        key = (row["method"], row["seed"])
        # the trend through the other points of the curve that are not below their base
        others = [(r["bpp_estimated"], r["psnr"]) for r in rows
                  if (r["method"], r["seed"]) == key and r is not row
                  and r["psnr"] >= base_psnr[key]]
        trend = _trend(others, row["bpp_estimated"]) if len(others) >= 2 else math.nan
        why = []
        if row["psnr"] < base_psnr[key]:
            why.append(f"below the base's g_a ({base_psnr[key]:.2f} dB)")
        if math.isfinite(trend) and row["psnr"] < trend - TREND_MARGIN_DB:
            why.append(f"{trend - row['psnr']:.1f} dB below the trend")
        out.append({**row, "base_psnr": base_psnr[key], "trend": trend,
                    "collapsed": bool(why), "why": "; ".join(why)})
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def table(rows: list[dict]) -> str:
    lines = ["| base | seed | target (est.) | selected val. est. | λ start → final (max) | "
             "est. / act. total bpp | PSNR dB | base g_a dB | trend dB | collapsed | s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["method"], r["seed"], r["target"])):
        lines.append(
            f"| {r['method']} | {r['seed']} | {r['target']:g} | "
            f"{_fmt(r['selected_val_bpp'], '.4f')} ({'on' if r['on_target'] else 'OFF'}) | "
            f"{r['weight']:g} → {_fmt(r['final_weight'], '.3g')} ({_fmt(r['max_weight'], '.3g')}) | "
            f"{r['bpp_estimated']:.4f} / {r['bpp_actual']:.4f} | {r['psnr']:.2f} | "
            f"{r['base_psnr']:.2f} | {_fmt(r['trend'], '.2f')} | "
            f"{'**yes**: ' + r['why'] if r['collapsed'] else 'no'} | "
            f"{_fmt(r['seconds'], '.0f')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.timing import machine

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("bench_out/rate_collapse"))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--targets", default="0.045,0.06,0.1,0.16",
                   help="total-rate targets, estimated bpp (initial λ: the demo's)")
    p.add_argument("--steps", type=int, default=700, help="scalable steps (the demo's 700)")
    p.add_argument("--base-steps", type=int, default=250)
    p.add_argument("--eval-images", type=int, default=32)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--controller", choices=("anti-windup", "plain", "bounded-only"), default="anti-windup")
    p.add_argument("--methods", default="baseline,proposed", help="the bases' methods")
    p.add_argument("--scenes", default="192,40",
                   help="train,val synthetic scenes (the demo's; the study's: 384,64)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke test: 1 seed, 3 targets, 30 steps, 16 scenes")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    targets = [float(t) for t in args.targets.split(",")]
    if args.quick:
        seeds, targets, args.steps, args.base_steps, args.eval_images = [0], targets[:3], 30, 20, 4
    unknown = [t for t in targets if t not in INITIAL_WEIGHTS]
    if unknown:
        p.error(f"no initial weight for targets {unknown}; known: {sorted(INITIAL_WEIGHTS)}")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from taskcodecs.data.synthetic import generate_dataset

    started = time.perf_counter()
    print(machine(), flush=True)
    root = args.out / "data"
    train_n, val_n = (16, 8) if args.quick else tuple(int(n) for n in args.scenes.split(","))
    methods = args.methods.split(",")
    if not (root / "dataset.json").is_file():
        generate_dataset(root, train=train_n, val=val_n, height=64, width=128, seed=0,
                         overwrite=True)
    ctx = get_context("spawn")
    runs = args.out / args.controller  # bases too: the controller steers them as well
    common = {"data_root": str(root), "eval_images": args.eval_images, "threads": args.threads,
              "controller": args.controller}
    bases = {(m, s): Job("base", m, s, 0.03, 0.5 if m == "baseline" else 15.0, args.base_steps,
                         str(runs / "bases" / f"{m}-seed{s}"), None, **common)
             for s in seeds for m in methods}
    with ProcessPoolExecutor(args.jobs, mp_context=ctx) as pool:
        base_rows = list(pool.map(_work, bases.values()))
        for r in base_rows:
            print(f"base {r['method']} seed {r['seed']}: selected val. "
                  f"{_fmt(r['selected_val_bpp'], '.4f')} bpp est. "
                  f"({'on' if r['on_target'] else 'OFF'} target, λ {_fmt(r['final_weight'], '.3g')}"
                  f", max {_fmt(r['max_weight'], '.3g')}), eval {r['bpp_estimated']:.4f} bpp "
                  f"est., g_a {r['psnr']:.2f} dB, {_fmt(r['seconds'], '.0f')} s", flush=True)
        jobs = [Job("scalable", m, s, t, INITIAL_WEIGHTS[t], args.steps,
                    str(runs / f"{m}-seed{s}-target{t:g}"), bases[(m, s)].run_dir, **common)
                for s in seeds for m in methods for t in targets]
        rows = []
        for row in pool.map(_work, jobs):
            rows.append(row)
            print(f"{row['method']} seed {row['seed']} target {row['target']:g}: "
                  f"{row['bpp_estimated']:.4f} bpp est., {row['psnr']:.2f} dB, λ "
                  f"{_fmt(row['final_weight'], '.3g')} (max {_fmt(row['max_weight'], '.3g')}), "
                  f"{_fmt(row['seconds'], '.0f')} s", flush=True)
    base_psnr = {(r["method"], r["seed"]): r["psnr"] for r in base_rows}
    rows = judge(rows, base_psnr)
    collapsed = sum(r["collapsed"] for r in rows)
    print(table(rows))
    print(f"controller {args.controller}: {collapsed} collapsed of {len(rows)} from-scratch "
          f"runs; {sum(bool(r['on_target']) for r in rows)} on target; wall "
          f"{(time.perf_counter() - started) / 60:.1f} min")
    print(machine())
    name = f"rate_collapse-{args.controller}-seeds{'_'.join(map(str, seeds))}.json"
    (args.out / name).write_text(json.dumps(
        {"controller": args.controller, "bases": base_rows, "runs": rows,
         "collapsed": collapsed, "machine": machine()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
