"""Benchmark: batched probe fitting vs one after another; closed-form ridge vs scikit-learn.

    python benchmarks/probes.py            # 5 timed runs of each contender, medians
    python benchmarks/probes.py --quick    # about a minute: smaller data and budgets
    (add --threads 1 on a loaded machine: oversubscribed OpenMP threads can stall for
    seconds, which makes single runs 10-50x slower at random)

(a) ``batched_probes_vs_sequential``: K = 8 probes of the family mlp-64 (4 refit seeds x
    {null, conditional}) on a latent grid shaped like a ``make demo`` base latent
    (Z [N, 32, 4, 8], standardized), N = 512 samples (quick: 128), split 60/20/20 as
    ``vinfo.estimate`` does, with a dense categorical target (8 classes at 16 x 32 pixels,
    stride 4). Budget of the demo's probes: full batch, at most 150 Adam steps (quick: 60),
    lr 3e-3, validation every 10 steps, patience 3. Contenders, timed interleaved: the
    probes fitted one after another with ``vinfo.fit.loop.fit_probe`` (``batched=False``)
    and in one batched call (``vinfo.fit.batched.fit_probes``). Printed: both times, each
    probe's validation loss (nats/pixel), I_V per contender (bits/pixel, with its 95%
    paired-bootstrap interval on the evaluation split), the largest difference of val_nats
    and ``ratio batched_probes_vs_sequential=`` (sequential median / batched median).
    Two more regimes are printed for information (3 runs each, no ratio line): the same
    probes on per-sample vectors (Z [N, 32], 10 classes) and on the grid with minibatches
    of 8 samples.
(b) ``ridge_vs_sklearn``: the linear-Gaussian rung's solve on float64 data of its size
    on a latent grid: rows = 50 000 latent positions (quick: 10 000), 192 latent channels
    (+ the unpenalised intercept), 768 outputs (3 channels x 16²); alpha = 1.
    ``vinfo.fit.ridge.ridge_solve`` vs ``sklearn.linear_model.Ridge(alpha, solver="auto")``,
    timed interleaved; the largest |difference| of coefficients and intercepts (also for
    alpha = 0) and ``ratio ridge_vs_sklearn=`` (sklearn median / ours median).

Targets: batched >= 4, ridge >= 1 with differences <= 1e-6.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import interleaved, machine, median, parser, print_ratio  # noqa: E402

from vinfo.fit.batched import ProbeJob, fit_probes  # noqa: E402
from vinfo.fit.loop import FitResult  # noqa: E402
from vinfo.fit.ridge import ridge_solve  # noqa: E402
from vinfo.fit.settings import FitSettings  # noqa: E402
from vinfo.fit.splits import Split, head_tail, make_splits  # noqa: E402
from vinfo.probes.families import parse_family  # noqa: E402
from vinfo.probes.probe import ProbeData, split_stats  # noqa: E402
from vinfo.probes.targets import Target, make_target  # noqa: E402
from vinfo.stats.bootstrap import paired_interval  # noqa: E402
from vinfo.stats.pvi import per_unit  # noqa: E402

LN2 = math.log(2.0)


def grid_data(n: int, seed: int = 0) -> ProbeData:
    """Z [n, 32, 4, 8]; Y [n, 1, 16, 32]: the argmax of 8 linear scores of Z, upsampled x4,
    plus pixel noise."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 32, 4, 8)).astype(np.float32)
    scores = np.einsum("kc,nchw->nkhw", rng.normal(size=(8, 32)) / 4, z)
    scores = np.repeat(np.repeat(scores, 4, 2), 4, 3) + rng.normal(size=(n, 8, 16, 32))
    y = torch.from_numpy(scores.argmax(1)[:, None].astype(np.int64))
    return ProbeData(torch.from_numpy(z), y, torch.ones_like(y, dtype=torch.bool), 4)


def vector_data(n: int, seed: int = 0) -> ProbeData:
    """Z [n, 32]; Y [n, 1]: the argmax of 10 linear scores of Z plus noise."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 32)).astype(np.float32)
    scores = z @ rng.normal(size=(32, 10)) / 4 + rng.normal(size=(n, 10))
    y = torch.from_numpy(scores.argmax(1)[:, None].astype(np.int64))
    return ProbeData(torch.from_numpy(z), y, torch.ones_like(y, dtype=torch.bool), None)


def jobs_for(n: int, seeds: list[int]) -> tuple[Split, list[ProbeJob]]:
    """The evaluation split and (null, conditional) jobs per refit seed, as run_family."""
    split = make_splits(n, 0, 0.6, 0.2)[0]
    jobs = []
    for seed in seeds:
        fit, val = head_tail(split.partition(0, seed, 0.25), len(split.pool), 0.25)
        jobs += [ProbeJob(fit, val, seed, null=True), ProbeJob(fit, val, seed)]
    return split, jobs


def estimate(results: list[FitResult], target: Target, data: ProbeData, split: Split
             ) -> tuple[float, tuple[float, float]]:
    """I_V (bits per unit, seed mean) on the evaluation split and its paired-bootstrap
    interval, from (null, conditional) result pairs."""
    pvi, vinfo_seed, count = [], [], None
    for null, cond in zip(results[0::2], results[1::2]):
        nll = []
        for fit in (null, cond):
            stats = split_stats(fit.probe, target, data, split.eval_idx, 256)
            scale = target.profile(stats.stat.sum(0), stats.count.sum(0))
            nll.append(target.nll_from_stat(stats.stat, stats.count, scale))
            count = stats.count
        vinfo_seed.append(float(per_unit(nll[0], count) - per_unit(nll[1], count)) / LN2)
        pvi.append((nll[0] - nll[1]) / LN2)
    pvi_sums = torch.stack(pvi).mean(0).numpy()
    return float(np.mean(vinfo_seed)), paired_interval(pvi_sums, count.numpy(), 1000, 0)


def probes_benchmark(quick: bool, runs: int) -> float:
    n, steps = (128, 60) if quick else (512, 150)
    settings = FitSettings(max_steps=steps, lr=3e-3, eval_every=10, patience=3)
    spec = parse_family("mlp-64")
    data = grid_data(n)
    target = make_target("categorical", data.y, data.mask, 8)
    split, jobs = jobs_for(n, [0, 1, 2, 3])
    print(f"(a) K = {len(jobs)} probes of mlp-64 (4 seeds x {{null, cond}}), Z {list(data.z.shape)}"
          f", Y {list(data.y.shape)} categorical (8 classes), fit {len(jobs[0].fit_idx)} / val "
          f"{len(jobs[0].val_idx)} / eval {len(split.eval_idx)} samples; full batch, "
          f"max_steps {steps}, lr 3e-3, eval_every 10, patience 3")
    found: dict[str, list[FitResult]] = {}

    def contender(name: str, batched: bool):
        def run() -> None:
            found[name] = fit_probes(spec, target, data, jobs,
                                     dataclasses.replace(settings, batched=batched))
        return run

    seconds = interleaved({"sequential (fit_probe x 8)": contender("sequential", False),
                           "batched (fit_probes)": contender("batched", True)}, runs)
    seq_s, bat_s = (median(v) for v in seconds.values())
    print(f"median: sequential {seq_s:.3f} s, batched {bat_s:.3f} s")
    print("probe            val nats/pixel: sequential  batched   (kept step / steps run)")
    for job, s, b in zip(jobs, found["sequential"], found["batched"]):
        kind = "null" if job.null else "cond"
        print(f"  seed {job.seed} {kind}   {s.val_nats:.6f}  {b.val_nats:.6f}   "
              f"({s.best_step}/{s.steps_run} vs {b.best_step}/{b.steps_run})")
    diff = max(abs(s.val_nats - b.val_nats) for s, b in zip(found["sequential"], found["batched"]))
    for name in ("sequential", "batched"):
        value, (low, high) = estimate(found[name], target, data, split)
        print(f"I_V {name:<10}: {value:.4f} bits/pixel, 95% interval [{low:.4f}, {high:.4f}] "
              f"(width {high - low:.4f})")
    print(f"largest |val_nats difference|: {diff:.2e} nats/pixel")
    return seq_s / bat_s


def fitter(spec, target, data, jobs, settings):
    """A contender: fit the jobs' probes with these settings."""
    return lambda: fit_probes(spec, target, data, jobs, settings)


def regimes(quick: bool, runs: int) -> None:
    """For information: the same K = 8 probes where per-step work is small."""
    settings = FitSettings(max_steps=40 if quick else 100, lr=3e-3, eval_every=10, patience=3)
    cases = [("vectors Z [512, 32], 10 classes, full batch", vector_data(512), 10, settings),
             ("grid as (a), N 512, minibatches of 8", grid_data(512), 8,
              dataclasses.replace(settings, batch_size=8))]
    for label, data, classes, budget in cases:
        target = make_target("categorical", data.y, data.mask, classes)
        _, jobs = jobs_for(data.z.shape[0], [0, 1, 2, 3])
        contenders = {name: fitter(parse_family("mlp-64"), target, data, jobs,
                                   dataclasses.replace(budget, batched=batched))
                      for name, batched in (("sequential", False), ("batched", True))}
        seconds = interleaved(contenders, runs, log=lambda _line: None)
        seq_s, bat_s = (median(v) for v in seconds.values())
        print(f"  {label}, max_steps {budget.max_steps}: sequential {seq_s:.3f} s, batched "
              f"{bat_s:.3f} s, sequential / batched = {seq_s / bat_s:.2f} (median of {runs})")


def ridge_benchmark(quick: bool, runs: int) -> float:
    from sklearn.linear_model import Ridge

    rows, features, outputs, alpha = (10_000 if quick else 50_000), 192, 768, 1.0
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, features)) + rng.normal(size=features)
    y = x @ (rng.normal(size=(features, outputs)) / 10) + rng.normal(size=(rows, outputs))
    print(f"(b) ridge: x [{rows}, {features}] float64 (+ intercept), y [{rows}, {outputs}], "
          f"alpha {alpha}")
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    seconds = interleaved({
        "sklearn Ridge(solver='auto')": lambda: Ridge(alpha=alpha, solver="auto").fit(x, y),
        "vinfo.fit.ridge.ridge_solve": lambda: ridge_solve(xt, yt, alpha)}, runs)
    sk_s, ours_s = (median(v) for v in seconds.values())
    for a in (alpha, 0.0):
        ref = Ridge(alpha=a, solver="auto").fit(x, y)
        weight, intercept = ridge_solve(xt, yt, a)
        diff = max(np.abs(weight.numpy() - ref.coef_.T).max(),
                   np.abs(intercept.numpy() - ref.intercept_).max())
        print(f"alpha {a}: largest |difference| of coefficients and intercepts {diff:.2e}")
    print(f"median: sklearn {sk_s:.3f} s, ours {ours_s:.3f} s")
    return sk_s / ours_s


def main() -> None:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--threads", type=int,
                     help="threads of torch and of numpy's BLAS (default: their own)")
    args = cli.parse_args()
    limits = contextlib.nullcontext()
    if args.threads:
        from threadpoolctl import threadpool_limits  # a scikit-learn dependency

        torch.set_num_threads(args.threads)
        limits = threadpool_limits(args.threads)
    runs = args.runs or 5
    print(machine())
    with limits:
        batched_ratio = probes_benchmark(args.quick, runs)
        print("other regimes (for information):")
        regimes(args.quick, 3)
        ridge_ratio = ridge_benchmark(args.quick, runs)
    print(f"load average after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print_ratio("batched_probes_vs_sequential", batched_ratio)
    print_ratio("ridge_vs_sklearn", ridge_ratio)


if __name__ == "__main__":
    main()
