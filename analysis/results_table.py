"""The results table: proposed vs baseline at matched base rate, every number with an interval.

    table = results_table(runs, vinfo={"baseline": load_vinfo(A), "proposed": load_vinfo(B)})
    print("\\n".join(table.text_lines()))          # what the demo prints first
    table.report_table()                           # the report's first section (a Table)
    table.pairs                                    # per compared pair: points, monotone, overlap

Rows (columns: baseline, proposed, proposed − baseline, and whether that difference is
distinguishable from zero; intervals: :mod:`analysis.uncertainty`, paired over evaluation
images and, where a preset trains several, over seeds):

1. the matched base rate R(Ŷ_b): actual, payload (header excluded; the bases are matched on
   it) and estimated, bits per pixel of the base layer;
2. the base task at that rate (disparity RMSE in pixels, lower is better);
3. for each secondary target with scalable runs on both bases: the scalable BD-rate of the
   proposed base against the baseline base (%, negative = the reward saves rate);
4. for each base: the conditional coding gain, standalone-refit minus scalable total rate at
   matched quality (bits per pixel), and its BD-rate (%);
5. the V-information quantities of each base (:func:`vinfo_quantities`), with ΔI_V from the
   per-sample PVI of both bases on the same evaluation images (:func:`vinfo_difference`).

"Matched base rate": the bases the enhancement runs sit on; the table says whether they were
rate-targeted to the same bpp and what they achieved. Nothing here is tuned: the verdicts
come from the intervals alone, and only where the comparison is healthy.

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

Otherwise the row's verdict and the sentence below the table name the failed checks and give
no verdict (the number is shown for the record). And a verdict about a training method
needs the training variance in its interval: with **one training seed** the interval is over
images only, and every row says "1 seed: training variance not covered" instead of claiming
a distinguishable difference (:mod:`analysis.uncertainty`). ``verdicts=False`` (the demo's
``--quick`` smoke test) gives no verdict anywhere.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from analysis.bdrate import RDCurveWarning, bd_rate
from analysis.gap import rate_gain_at_matched_quality
from analysis.health import (
    MATCH_TOLERANCE,
    MIN_OVERLAP,
    MIN_POINTS,
    MIN_SPAN,
    ONE_SEED,
    SMOKE,
    Health,
    bases_matched,
    collapsed_points,
    verdict_text,
)
from analysis.runs import METRICS, Curve, Run
from analysis.uncertainty import (
    DEFAULT_BOOT,
    DEFAULT_CONFIDENCE,
    Estimate,
    Point,
    Samples,
    bootstrap,
    common_images,
    curve_at,
    load_samples,
)
from analysis.vinfo_rows import vinfo_difference, vinfo_quantities
from infra.reportdoc import Table

TARGETS = (("reconstruction", "cityscapes", "Cityscapes reconstruction"),
           ("segmentation", "cityscapes", "Cityscapes segmentation"),
           ("reconstruction", "coco", "COCO reconstruction"))
SHORT = {"Cityscapes reconstruction": "CS recon.", "Cityscapes segmentation": "CS segm.",
         "COCO reconstruction": "COCO recon."}
BASE_TASK = {"cityscapes": "depth", "coco": "detection"}


@dataclass
class Row:
    quantity: str
    unit: str
    baseline: str
    proposed: str
    difference: Estimate | None
    verdict: str


@dataclass
class Pair:
    """One compared pair of curves (per seed: points, monotone; pooled: overlap, BD)."""

    name: str
    reference: str
    test: str
    points: tuple[int, int]
    monotone: tuple[bool, bool]
    overlap: float  # fraction of the union of both quality ranges (seed 0's curves)
    span: tuple[float, float]  # quality span of each curve (display units)
    bd: Estimate | None
    note: str = ""
    health: str = ""  # "healthy" or the failed checks (Health.text); "" where not checked


@dataclass
class ResultsTable:
    title: str
    rows: list[Row] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    conclusions: list[str] = field(default_factory=list)
    # (target name or "base rate", base variant) -> estimate in bits/pixel (the gap figure)
    gains: dict[tuple[str, str], Estimate] = field(default_factory=dict)

    def report_table(self) -> Table:
        return Table(["quantity", "unit", "baseline", "proposed", "proposed − baseline",
                      "distinguishable from zero?"],
                     [[r.quantity, r.unit, r.baseline, r.proposed,
                       r.difference.text(sign=True) if r.difference else "–", r.verdict]
                      for r in self.rows])

    def pairs_table(self) -> Table:
        return Table(["compared pair", "points (ref, test)", "monotone (ref, test)",
                      "quality span (ref, test)", "overlap", "BD-rate (%) [interval]",
                      "health"],
                     [[p.name, f"{p.points[0]}, {p.points[1]}",
                       ", ".join("yes" if m else "NO" for m in p.monotone),
                       f"{p.span[0]:.3g}, {p.span[1]:.3g}", f"{100 * p.overlap:.0f}%",
                       (p.bd.text(sign=True) if p.bd else "not computed") + (
                           f" ({p.note})" if p.note else ""), p.health or "–"]
                      for p in self.pairs])

    def text_lines(self) -> list[str]:
        """The table as aligned text (the demo's summary), then the pairs, then the verdicts."""
        body = [[r.quantity + (f" ({r.unit})" if r.unit else ""), r.baseline, r.proposed,
                 r.difference.text(sign=True) if r.difference else "–", r.verdict]
                for r in self.rows]
        header = ["quantity", "baseline", "proposed", "proposed − baseline", "difference"]
        width = [max(len(row[j]) for row in [header, *body]) for j in range(4)]
        lines = [self.title]
        for row in [header, *body]:
            lines.append("  " + " | ".join(cell.ljust(width[j]) if j < 4 else cell
                                           for j, cell in enumerate(row)))
        lines += ["", "Compared pairs (points per curve, monotone, overlap, BD-rate [interval]):"]
        for p in self.pairs:
            lines.append(f"  {p.name}: {p.points[0]} vs {p.points[1]} points, monotone "
                         f"{'/'.join('yes' if m else 'NO' for m in p.monotone)}, overlap "
                         f"{100 * p.overlap:.0f}%, BD-rate "
                         + (p.bd.text(sign=True) + " %" if p.bd else "not computed")
                         + (f" ({p.note})" if p.note else "")
                         + (f"; health: {p.health}" if p.health else ""))
        lines += ["", *self.notes, *self.conclusions]
        return lines


# --- the table ---------------------------------------------------------------------------------

def results_table(runs: list[Run], vinfo: dict[str, dict[str, xr.Dataset]] | None = None,
                  n_boot: int = DEFAULT_BOOT, confidence: float = DEFAULT_CONFIDENCE,
                  seed: int = 0, bd_method: str = "akima", verdicts: bool = True) -> ResultsTable:
    """The table of the module docstring from whatever runs exist; ``verdicts=False``: the
    numbers only (a smoke test), every verdict cell and sentence says so."""
    builder = _Builder(runs, n_boot, confidence, seed, bd_method)
    table = builder.build(vinfo or {})
    if not verdicts:
        for row in table.rows:
            row.verdict = SMOKE
        table.conclusions = [f"This is a {SMOKE} about the reward (numbers from the smallest "
                             "sizes, not measurements)."]
    return table


class _Builder:
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

    # .............................................................. rows

    def build(self, vinfo: dict[str, dict[str, xr.Dataset]]) -> ResultsTable:
        proposed = self.proposed or "proposed"
        table = ResultsTable(
            f"Results: {proposed} vs baseline at matched base rate ({len(self.seeds)} seed(s); "
            f"{100 * self.confidence:g}% paired bootstrap intervals over the evaluation images"
            + (" and the seeds" if len(self.seeds) > 1 else "") + f", {self.n_boot} resamples)")
        if self.proposed is None:
            table.notes.append("No proposed base among the runs: nothing to compare.")
            return table
        found_target = False
        for task, dataset, name in TARGETS:
            if not any(self.enhancement_runs(s, task, dataset, "scalable", v) for s in self.seeds
                       for v in ("baseline", proposed)):
                continue
            if not found_target:
                self.base_rows(table, dataset, task)
                found_target = True
            self.versus_row(table, task, dataset, name)
            self.gain_rows(table, task, dataset, name)
        if not found_target:
            table.notes.append("No scalable runs on a baseline and a proposed base: the "
                               "rate-distortion rows are not computed.")
        self.vinfo_rows(table, vinfo)
        return table

    def matched_bases(self, seed: int, task: str, dataset: str) -> dict[str, Run]:
        """The base each variant's scalable runs sit on (the most common, per seed)."""
        out = {}
        for variant in ("baseline", self.proposed):
            bases = [r.base for r in self.enhancement_runs(seed, task, dataset, "scalable",
                                                            variant) if r.base is not None]
            if bases:
                name, _ = Counter(b.name for b in bases).most_common(1)[0]
                out[variant] = next(b for b in bases if b.name == name)
        return out

    def base_rows(self, table: ResultsTable, dataset: str, task: str) -> None:
        matched = {s: self.matched_bases(s, task, dataset) for s in self.seeds}
        seeds = [s for s in self.seeds if len(matched[s]) == 2]
        if not seeds:
            table.notes.append("The enhancement runs do not sit on one baseline and one "
                               "proposed base of the same seed: no base rows.")
            return
        pairs = [(matched[s]["baseline"], matched[s][self.proposed]) for s in seeds]
        images = common_images([self.sample(r) for pair in pairs for r in pair])
        targets = {_target(r) for pair in pairs for r in pair}
        how = (f"both rate-targeted to {targets.pop():g} bpp (estimated)"
               if len(targets) == 1 and None not in targets else
               "NOT rate-targeted to one rate: compare with care")
        table.notes.append(f"Matched base rate: the bases the enhancements sit on, {how}; "
                           f"{len(images)} evaluation images.")
        metric = METRICS[{"depth": "rmse", "detection": "map"}[BASE_TASK[dataset]]]
        task_unit = {"rmse": "pixels", "map": "1"}[metric.name]

        def mean_of(run: Run, what: str) -> Callable:
            values = self.points([run], metric.name if what == "q" else "psnr", images,
                                 what if what in ("estimated", "payload") else "actual")[0]
            return lambda idx: values.at(idx)[0 if what != "q" else 1]

        # the bases are matched on the rate that carries information, the payload the coder
        # wrote (header excluded); where an eval.nc predates bpp_payload, on the estimate
        match_on = "payload" if all(self.sample(r).rate_payload is not None
                                    for p in pairs for r in p) else "estimated"
        for label, what, unit, better in (
                ("base rate R(Ŷ_b), actual", "rate", "bits/pixel", None),
                ("base rate R(Ŷ_b), payload (header excluded)", "payload", "bits/pixel", None),
                ("base rate R(Ŷ_b), estimated", "estimated", "bits/pixel", None),
                (f"base task: {metric.label.split(' (')[0]} at that rate", "q", task_unit,
                 metric.higher_is_better)):
            if what == "payload" and match_on != "payload":
                continue
            if metric.name == "map" and what == "q":
                table.notes.append("Detection mAP is a dataset-level number: no per-image "
                                   "bootstrap; see the runs table.")
                continue
            per = {v: [mean_of(p[i], what) for p in pairs]
                   for i, v in enumerate(("baseline", self.proposed))}
            est = {v: self.interval(per[v], len(images)) for v in per}
            if what == "rate":
                table.gains.update({("base rate", v): e for v, e in est.items()})
            diff = self.interval([lambda idx, a=a, b=b: b(idx) - a(idx)
                                  for a, b in zip(per["baseline"], per[self.proposed])],
                                 len(images))
            matched = None
            if what in ("rate", "estimated", "payload"):
                matched = bases_matched(diff, est["baseline"].value)
                if what == match_on and not matched:
                    self.bases_failed = (f"bases not matched ({what} base rate: proposed − "
                                         f"baseline {diff.text(3, 'bpp', True)}, interval "
                                         f"excludes 0 and beyond ±{100 * MATCH_TOLERANCE:g}%)")
            table.rows.append(Row(label, unit, est["baseline"].text(), est[self.proposed].text(),
                                  diff, verdict_text(diff, better, rate=what != "q",
                                                 matched=matched)))

    def versus_row(self, table: ResultsTable, task: str, dataset: str, name: str) -> None:
        metric = METRICS["psnr" if task == "reconstruction" else "miou"]
        stats, curves = [], []
        for s in self.seeds:
            ref = self.enhancement_runs(s, task, dataset, "scalable", "baseline")
            test = self.enhancement_runs(s, task, dataset, "scalable", self.proposed)
            if len(ref) >= 2 and len(test) >= 2:
                curves.append((ref, test))
        label = f"{SHORT.get(name, name)}: scalable BD-rate, proposed vs baseline base"
        if not curves:
            table.rows.append(Row(label, "%", "–", "–", None, "not computed: needs >= 2 "
                                  "scalable points on each base"))
            return
        images = common_images([self.sample(r) for c in curves for side in c for r in side])
        for ref, test in curves:
            stats.append(self.bd_stat(self.points(ref, metric.name, images),
                                      self.points(test, metric.name, images), True))
        est = self.interval(stats, len(images))
        table.pairs.append(self.pair(f"{name}, scalable: {self.proposed} vs baseline",
                                     curves, metric.name, images, est))
        health = self.health(curves, metric.name, images, across_bases=True)
        table.pairs[-1].health = health.text()
        ref, test = curves[0]
        table.rows.append(Row(label, "%", f"{len(ref)} points", f"{len(test)} points", est,
                              verdict_text(est, False, bd=True, health=health)))
        # the same on estimated rates: without the container header and coder overhead,
        # which at tiny rates is a large, base-dependent share of the actual rate
        on_estimate = self.interval([self.bd_stat(self.points(r, metric.name, images,
                                                              "estimated"),
                                                  self.points(t, metric.name, images,
                                                              "estimated"), True)
                                     for r, t in curves], len(images))
        table.rows.append(Row(label + " (estimated rates)", "%", "", "", on_estimate,
                              verdict_text(on_estimate, False, bd=True, health=health)))
        shown = f"scalable BD-rate {est.text(3, '%', True)}"
        if not health.ok:
            table.conclusions.append(
                f"{name}: no verdict on the reward -- failed health checks: {health.text()} "
                f"({shown}, for the record, not a finding).")
        elif est.n_seeds < 2:
            table.conclusions.append(
                f"{name}: no verdict on the reward -- {ONE_SEED} ({shown} is an interval over "
                "the evaluation images only; it says nothing about a rerun's training).")
        elif est.excludes_zero:
            table.conclusions.append(
                f"{name}: the reward {'helps' if est.value < 0 else 'costs'} -- on the "
                f"proposed base the scalable codec needs {est.value:+.1f}% rate at equal "
                f"{metric.label.split(' (')[0]}, interval {est.text(3, '%', True)} over "
                f"{est.n_seeds} training seeds and the evaluation images.")
        else:
            table.conclusions.append(
                f"{name}: no effect of the reward distinguishable from zero on these runs "
                f"({shown}, over {est.n_seeds} training seeds and the evaluation images).")

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

    def gain_rows(self, table: ResultsTable, task: str, dataset: str, name: str) -> None:
        metric = METRICS["psnr" if task == "reconstruction" else "miou"]
        curves: dict[str, list] = {}
        for variant in ("baseline", self.proposed):
            for s in self.seeds:
                scal = self.enhancement_runs(s, task, dataset, "scalable", variant)
                alone = self.enhancement_runs(s, task, dataset, "standalone-refit", variant)
                if len(scal) >= 2 and len(alone) >= 2:
                    curves.setdefault(variant, []).append((alone, scal))
        if not curves:
            return
        images = common_images([self.sample(r) for c in curves.values() for pair in c
                                for side in pair for r in side])
        gains, bds, pts, health = {}, {}, {}, {}
        for variant, pairs in curves.items():
            health[variant] = self.health([(b, a) for a, b in pairs], metric.name, images,
                                          across_bases=False)
            pts[variant] = [(self.points(a, metric.name, images),
                             self.points(b, metric.name, images)) for a, b in pairs]
            gains[variant] = self.interval([self.gain_stat(a, b, metric.name)
                                            for a, b in pts[variant]], len(images))
            table.gains[(name, variant)] = gains[variant]
            bds[variant] = self.interval([self.bd_stat(a, b, metric.higher_is_better)
                                          for a, b in pts[variant]], len(images))
            table.pairs.append(self.pair(f"{name} on the {variant} base: scalable vs "
                                         "standalone-refit", pairs, metric.name, images,
                                         bds[variant]))
            table.pairs[-1].health = health[variant].text()
        diff = None
        if len(pts) == 2 and len(pts["baseline"]) == len(pts[self.proposed]):
            diff = self.interval([lambda idx, a=a, b=b: (self.gain_stat(*b, metric.name)(idx)
                                                         - self.gain_stat(*a, metric.name)(idx))
                                  for a, b in zip(pts["baseline"], pts[self.proposed])],
                                 len(images))
        cells = {v: gains[v].text() if v in gains else "–" for v in ("baseline", self.proposed)}
        both = Health(tuple(dict.fromkeys(
            ([self.bases_failed] if self.bases_failed else [])
            + [f"{v}: {c}" for v, h in health.items() for c in h.failed])))
        table.rows.append(Row(f"{SHORT.get(name, name)}: coding gain (refit − scalable rate)", "bits/pixel",
                              cells["baseline"],
                              cells[self.proposed], diff,
                              verdict_text(diff, True, health=both) if diff else "–"))
        table.rows.append(Row(f"{SHORT.get(name, name)}: BD-rate scalable vs refit", "%",
                              bds["baseline"].text(3) if "baseline" in bds else "–",
                              bds[self.proposed].text(3) if self.proposed in bds else "–",
                              None, "; ".join(f"{v}: {verdict_text(bds[v], False, bd=True, health=health[v])}"
                                              for v in bds)))

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

    def vinfo_rows(self, table: ResultsTable, vinfo: dict[str, dict[str, xr.Dataset]]) -> None:
        if "baseline" not in vinfo or not any(k != "baseline" for k in vinfo):
            if vinfo:
                table.notes.append("V-information: need estimates for a baseline and a "
                                   "proposed base.")
            return
        other = next(k for k in vinfo if k != "baseline")
        for key in sorted(set(vinfo["baseline"]) & set(vinfo[other])):
            a, b = vinfo["baseline"][key], vinfo[other][key]
            qa = {(q, f): (e, u) for q, f, e, u in vinfo_quantities(a)}
            for quantity, family, est_b, units in vinfo_quantities(b):
                if (quantity, family) not in qa:
                    continue
                est_a = qa[(quantity, family)][0]
                diff = (vinfo_difference(a, b, family, self.n_boot, self.confidence, self.seed)
                        if quantity.startswith("I_V(") else None)
                table.rows.append(Row(f"{quantity.replace('Y', key, 1)}, {family}", units,
                                      est_a.text(), est_b.text(), diff,
                                      verdict_text(diff, True) if diff else "–"))


def _proposed_variant(runs: list[Run]) -> str | None:
    variants = sorted({r.base_variant for r in runs if r.role == "enhancement"
                       and r.base_variant.startswith("proposed")})
    return variants[0] if variants else None


def _target(run: Run) -> float | None:
    value = run.config.get("rate_target_bpp")
    return None if value is None else float(value)
