"""The compared pairs of RD curves behind the results table (:mod:`analysis.results_table`):
the runs of each curve (per seed), their paired-bootstrap statistics (BD-rate, coding gain at
matched quality), the health checks a pair must pass before it gets a verdict, and each
pair's description (:class:`~analysis.results_layout.Pair`).

Health before verdicts (DESIGN.md §7). A compared pair of curves gets a verdict ("saves
rate" / "costs rate", "the reward helps" / "costs") only when every check holds:

- **bases matched** (comparisons across bases): the base rate that carries information,
  R(Ŷ_b) = ``bpp_payload`` (the bytes the coder wrote, without the container header, which is
  fixed given the size), of the proposed base minus the baseline's has an interval covering
  0, or lies within ±MATCH_TOLERANCE (5 %) of the baseline's. (Training targets the
  forward-pass estimate, the only rate the loss sees; with the autoregressive context it
  under-states what the coder codes by 26-55 % at the demo's rates, by a different amount per
  base, so bases on the same estimated rate can differ in payload: benchmarks/RESULTS.md,
  "One rate, said". Eval files without ``bpp_payload`` are matched on the estimate.)
- **points**: each curve (each seed's) has >= MIN_POINTS (4) points;
- **monotone**: each curve's quality rises with its rate;
- **no collapsed point** (PSNR curves): no point below its base's own reconstruction (the
  base layer's g_a, same images), nor more than COLLAPSE_MARGIN_DB (2 dB) below its curve's
  trend (:func:`collapsed_points`);
- **span** (mIoU curves): each curve spans >= MIN_SPAN (10 mIoU points): on a flatter curve
  a BD-rate (a rate difference at equal quality) is ill-conditioned;
- **overlap**: the two curves' quality ranges overlap on >= MIN_OVERLAP (50 %) of their union
  (every seed's pair).

The first is the results table's to find (its base rows set ``bases_failed``); the
others are :meth:`ComparedCurves.health`'s.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np

from analysis.bdrate import RDCurveWarning, bd_rate
from analysis.gap import rate_gain_at_matched_quality
from analysis.health import MIN_OVERLAP, MIN_POINTS, MIN_SPAN, Health, collapsed_points
from analysis.results_layout import Pair
from analysis.runs import METRICS, Curve, Run
from analysis.uncertainty import Estimate, Point, Samples, bootstrap, curve_at, load_samples


class ComparedCurves:
    """The runs of a results table as curves to compare: their samples (loaded once), the
    runs of each curve, the statistics, the health checks and the description of a pair."""

    def __init__(self, runs: list[Run], n_boot: int, confidence: float, seed: int,
                 bd_method: str) -> None:
        self.runs, self.n_boot, self.confidence, self.seed = runs, n_boot, confidence, seed
        self.bd_method = bd_method
        self.samples: dict[str, Samples] = {}
        self.seeds = sorted({int(r.config.get("seed") or 0) for r in runs if r.role != "reference"})
        self.proposed = _proposed_variant(runs)
        self.bases_failed: str | None = None  # why the bases are not matched (None: matched)

    def sample(self, run: Run) -> Samples:
        if run.name not in self.samples:
            self.samples[run.name] = load_samples(run)
        return self.samples[run.name]

    def of_seed(self, seed: int) -> list[Run]:
        return [r for r in self.runs if int(r.config.get("seed") or 0) == seed]

    def enhancement_runs(self, seed: int, task: str, dataset: str, method: str,
                         variant: str) -> list[Run]:
        return [r for r in self.of_seed(seed) if r.task == task and r.dataset == dataset
                and r.method == method and r.base_variant == variant
                and math.isfinite(r.bpp_total)]

    # .............................................................. statistics

    def points(self, runs: list[Run], metric: str, images: list[str],
               rate: str = "actual") -> list[Point]:
        return [Point(self.sample(r), metric, images, rate) for r in runs]

    def interval(self, stats: list[Callable], n_images: int) -> Estimate:
        return bootstrap(stats, n_images, self.n_boot, self.confidence, self.seed)

    def bd_stat(self, ref: list[Point], test: list[Point], higher: bool) -> Callable:
        def stat(idx):
            (r0, q0), (r1, q1) = curve_at(ref, idx), curve_at(test, idx)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RDCurveWarning)
                return bd_rate(r0, q0, r1, q1, method=self.bd_method, higher_is_better=higher)
        return stat

    def gain_stat(self, standalone: list[Point], scalable: list[Point], metric: str) -> Callable:
        def stat(idx):
            curves = []
            for label, pts in (("standalone", standalone), ("scalable", scalable)):
                rate, quality = curve_at(pts, idx)
                sign = 1.0 if METRICS[metric].higher_is_better else -1.0
                curves.append(Curve(label, label, "", metric, rate, sign * quality, ()))
            return rate_gain_at_matched_quality(*curves)[0]
        return stat

    def health(self, curves: list, metric: str, images: list[str],
               across_bases: bool) -> Health:
        """The checks of the module docstring over every seed's pair of curves."""
        failed = []
        if across_bases and self.bases_failed:
            failed.append(self.bases_failed)
        counts = [(len(ref), len(test)) for ref, test in curves]
        if min(min(c) for c in counts) < MIN_POINTS:
            failed.append(f"too few points ({', '.join(f'{a} vs {b}' for a, b in counts)}; "
                          f"need >= {MIN_POINTS} per curve)")
        higher = METRICS[metric].higher_is_better
        bad_mono, collapsed, overlaps, narrow = [], [], [], []
        least, scale = MIN_SPAN.get(metric), METRICS[metric].scale
        for seed, (ref, test) in zip(self.seeds_of(curves), curves):
            shown = []
            for side, runs in (("reference", ref), ("test", test)):
                rates, quality = curve_at(self.points(runs, metric, images), None)
                shown.append(quality)
                if not np.all(np.diff(quality) * (1 if higher else -1) > 0):
                    bad_mono.append(f"{side} seed {seed}")
                if least is not None and np.ptp(quality) < least:
                    narrow.append(f"{side} seed {seed} {scale * np.ptp(quality):.3g}")
                if metric == "psnr":
                    order = sorted(runs, key=lambda r: self.points([r], metric, images)[0]
                                   .at(None)[0])
                    base = np.array([self._base_psnr(r, images) for r in order])
                    collapsed += [f"{side} seed {seed}: {c}"
                                  for c in collapsed_points(rates, quality, base)]
            lows, highs = [q.min() for q in shown], [q.max() for q in shown]
            union = max(highs) - min(lows)
            overlaps.append(max(0.0, min(highs) - max(lows)) / union if union > 0 else 0.0)
        if bad_mono:
            failed.append(f"not monotone ({', '.join(bad_mono)})")
        if collapsed:
            failed.append(f"collapsed point ({'; '.join(collapsed)})")
        if narrow:
            failed.append(f"quality span too narrow ({', '.join(narrow)}; need >= "
                          f"{scale * least:.3g} {METRICS[metric].label.split(' (')[0]} points)")
        if overlaps and min(overlaps) < MIN_OVERLAP:
            failed.append(f"quality ranges overlap on {100 * min(overlaps):.0f}% "
                          f"(need >= {100 * MIN_OVERLAP:.0f}%)")
        return Health(tuple(failed))

    def seeds_of(self, curves: list) -> list[int]:
        return [int(ref[0].config.get("seed") or 0) for ref, _ in curves]

    def _base_psnr(self, run: Run, images: list[str]) -> float:
        """Mean PSNR (dB) of the base layer's own reconstruction in ``run``'s eval.nc on
        ``images`` (NaN where not evaluated)."""
        samples = self.sample(run)
        if "psnr_base" not in samples.values:
            return math.nan
        where = {name: i for i, name in enumerate(samples.images)}
        values = samples.values["psnr_base"][[where[name] for name in images]]
        return float(np.mean(values)) if np.isfinite(values).all() else math.nan

    def pair(self, name: str, curves: list, metric: str, images: list[str],
             est: Estimate) -> Pair:
        ref, test = curves[0]
        scale = METRICS[metric].scale
        shown = [curve_at(self.points(side, metric, images), None) for side in (ref, test)]
        higher = METRICS[metric].higher_is_better
        mono = tuple(bool(np.all(np.diff(q) * (1 if higher else -1) > 0)) for _, q in shown)
        lows, highs = [q.min() for _, q in shown], [q.max() for _, q in shown]
        union = max(highs) - min(lows)
        overlap = max(0.0, min(highs) - max(lows)) / union if union > 0 else 0.0
        note = f"{len(curves)} seeds, per-seed curves" if len(curves) > 1 else ""
        if est.failed > 0.05:
            note = (note + "; " if note else "") + (f"{100 * est.failed:.0f}% of resamples "
                                                    "gave no BD-rate")
        return Pair(name, f"{len(ref)} points", f"{len(test)} points", (len(ref), len(test)),
                    mono, overlap, tuple(float((q.max() - q.min()) * scale) for _, q in shown),
                    est, note)


def _proposed_variant(runs: list[Run]) -> str | None:
    variants = sorted({r.base_variant for r in runs if r.role == "enhancement"
                       and r.base_variant.startswith("proposed")})
    return variants[0] if variants else None

