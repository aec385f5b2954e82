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
rate" / "costs rate", "the reward helps" / "costs") only when every check of
:mod:`analysis.compared_curves` holds (bases matched, points, monotone, no collapsed point,
span, overlap).
Otherwise the row's verdict and the sentence below the table name the failed checks and give
no verdict (the number is shown for the record). And a verdict about a training method
needs the training variance in its interval: with **one training seed** the interval is over
images only, and every row says "1 seed: training variance not covered" instead of claiming
a distinguishable difference (:mod:`analysis.uncertainty`). ``verdicts=False`` (the demo's
``--quick`` smoke test) gives no verdict anywhere.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import xarray as xr

from analysis.compared_curves import ComparedCurves
from analysis.health import MATCH_TOLERANCE, ONE_SEED, SMOKE, Health, bases_matched, verdict_text
from analysis.results_layout import ResultsTable, Row
from analysis.runs import METRICS, Run
from analysis.uncertainty import DEFAULT_BOOT, DEFAULT_CONFIDENCE, common_images
from analysis.vinfo_rows import vinfo_difference, vinfo_quantities

TARGETS = (("reconstruction", "cityscapes", "Cityscapes reconstruction"),
           ("segmentation", "cityscapes", "Cityscapes segmentation"),
           ("reconstruction", "coco", "COCO reconstruction"))
SHORT = {"Cityscapes reconstruction": "CS recon.", "Cityscapes segmentation": "CS segm.",
         "COCO reconstruction": "COCO recon."}
BASE_TASK = {"cityscapes": "depth", "coco": "detection"}


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


class _Builder(ComparedCurves):
    """The rows of the module docstring, from the compared curves of the runs."""

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



def _target(run: Run) -> float | None:
    value = run.config.get("rate_target_bpp")
    return None if value is None else float(value)
