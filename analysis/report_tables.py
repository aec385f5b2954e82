"""The analysis report's tables: the runs, the BD-rates, the gap and the V-information ladders,
each built from what :mod:`analysis.report` computed (cells formatted, units said).

    runs_overview(runs)       # the runs table (one short label per run) and the run folders
    bd_table(bd_rows)         # one row per BD-rate comparison (analysis.report.bd_comparisons)
    gap_table(gap_rows)       # available vs usable per base and target (analysis.gap.gap_rows)
    ladder_table(vinfo)       # R(Ŷ_b), H_V, I_V per target, family and base
    vinfo_sources(vinfo)      # where each ladder comes from
"""

from __future__ import annotations

import math

from analysis.gap import LADDER_QUANTITIES, STANDALONE, ladder_rows
from analysis.runs import METRICS, Run
from infra.reportdoc import Bullets, Table


def _fmt(value: object, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


TASK_SHORT = {"depth": "depth", "detection": "det", "reconstruction": "recon",
              "segmentation": "seg"}
METHOD_SHORT = {"standalone-refit": "refit", "standalone-independent": "indep",
                "uncompressed": "no-codec", "scalable": "scal"}


def run_label(run: Run, seeds: bool = False) -> str:
    """A short label of a run for wide tables: task/method[/base]/rate[/seed]."""
    parts = [TASK_SHORT.get(run.task, run.task), METHOD_SHORT.get(run.method, run.method)]
    if run.role == "enhancement":
        parts.append("prop" if run.base_variant.startswith("proposed") else run.base_variant[:4])
    if run.rate_target is not None:
        parts.append(f"t{run.rate_target:g}")
    elif run.rate_weight is not None:
        parts.append(f"λ{run.rate_weight:.3g}")
    if seeds:
        parts.append(f"s{run.config.get('seed')}")
    return "/".join(parts)


def runs_overview(runs: list[Run]) -> list[Table | Bullets | str]:
    """The runs, one row each, narrow enough for a 1400 px window: a short label (the run
    folder in its tooltip and in the list below), only the metric columns some run has."""
    if not runs:
        return ["No runs found (no */eval.nc under the runs directory)."]
    seeds = len({r.config.get("seed") for r in runs}) > 1
    metrics = [m for m in METRICS if any(m in r.metrics for r in runs)]
    header = ["#", "run", "base", "λ (final)", "target → val. (bpp)", "bpp base", "bpp enh.",
              "bpp total", "total (est.)", *(METRICS[m].label.split(",")[0] for m in metrics)]
    rows, titles = [], {}
    for i, r in enumerate(runs):
        target = ("–" if r.rate_target is None else
                  f"{r.rate_target:g} → {_fmt(r.rate_selected_bpp, 3)}"
                  + ("" if r.rate_on_target else " (off)"))
        rows.append([str(i + 1), run_label(r, seeds),
                     ("prop" + r.base_variant.removeprefix("proposed")) if
                     r.base_variant.startswith("proposed") else (r.base_variant or "–"),
                     _fmt(r.rate_weight_final, 3), target, _fmt(r.bpp.get("base")),
                     _fmt(r.bpp_enhancement), _fmt(r.bpp_total), _fmt(r.bpp_estimated_total),
                     *(_fmt(r.metrics[m] * METRICS[m].scale) if m in r.metrics else "–"
                       for m in metrics)])
        titles[(i, 1)] = f"{r.name} ({r.experiment})"
    folders = Bullets([f"#{i + 1} {run_label(r, seeds)}: {r.name} ({r.experiment}, "
                       f"reward_weight {_fmt(r.reward_weight)})" for i, r in enumerate(runs)],
                      collapsed="Run folders (the long name of each run)")
    return [Table(header, rows, titles=titles), folders]


def bd_table(rows: list[dict]) -> Table:
    header = ["comparison", "reference", "test", "BD-rate (%)", "method", "quality overlap",
              "cubic (%)", "warnings"]
    body = []
    for row in rows:
        result, metric = row["result"], METRICS[row["reference"].metric]
        low, high = (v * metric.scale for v in result.overlap)
        body.append([row["comparison"], f"{row['reference'].label} ({len(row['reference'])} pts)",
                     f"{row['test'].label} ({len(row['test'])} pts)", f"{result.percent:+.2f}",
                     result.method, f"{metric.label}: {low:.4g} to {high:.4g}", row["cubic"],
                     "; ".join(result.warnings) or "–"])
    return Table(header, body)


def gap_table(rows: list[dict]) -> Table | str:
    if not rows:
        return "No base with secondary-task runs: the gap table is empty (see Missing)."
    header = ["base", "target", "R(Ŷ_b) (bpp)", "base runs",
              *(f"gain vs {f} (bpp; / R(Ŷ_b))" for f in STANDALONE),
              *(f"BD-rate scalable vs {f} (%)" for f in STANDALONE),
              "standalone-independent source"]
    body = []
    for r in rows:
        rate = _fmt(r["base_bpp"]) if r["base_runs"] <= 1 else (
            f"{_fmt(r['base_bpp'])} (range {_fmt(r['base_bpp_min'])}–{_fmt(r['base_bpp_max'])})")
        bds = [f"{r[f'bd_scalable_vs_{f}'].percent:+.2f} ({r[f'bd_scalable_vs_{f}'].method})"
               if r[f"bd_scalable_vs_{f}"] is not None else "–" for f in STANDALONE]
        if r.get("base_rate_kind"):
            rate += f" ({r['base_rate_kind']})"
        gains = [_gain_cell(r, f) for f in STANDALONE]
        source = r.get("source_standalone-independent") or "–"
        if math.isfinite(r.get("independent_base_shift_bpp", math.nan)):
            source += f" (base rate added: {_fmt(r['independent_base_shift_bpp'])} bpp actual)"
        body.append([r["base"], r["target"], rate, str(r["base_runs"]), *gains, *bds, source])
    return Table(header, body)


def _gain_cell(row: dict, flavour: str) -> str:
    """"gain (gain / R(Ŷ_b))", flagged where the gain exceeds what the base carries."""
    gain = row[f"gain_{flavour}_bpp"]
    if not math.isfinite(gain):
        return _fmt(gain)
    flag = ("; ABOVE R(Ŷ_b): the reference is the weak part"
            if row.get(f"gain_{flavour}_exceeds_rate") else "")
    return f"{_fmt(gain)} ({_fmt(row[f'usable_{flavour}'])}{flag})"


def ladder_table(vinfo: dict[str, dict]) -> Table:
    """One row per (target, family, base): R(Ŷ_b) next to H_V(Y|Ŷ_b), I_V and the capped
    I_V, in one unit (bits per target pixel for the codec adapter's targets)."""
    body = []
    for r in ladder_rows(vinfo):
        for label in vinfo:
            if f"{label}: I_V" not in r:
                continue
            body.append([r["vinfo"], r["family"], label, r.get(f"{label}: R(Ŷ_b)", "–"),
                         *(r.get(f"{label}: {title}", "–") for _, title in LADDER_QUANTITIES),
                         r.get(f"{label}: flags", "")])
    units = next((r["units"] for r in ladder_rows(vinfo)), "bits/unit")
    return Table(["target", "family", "base", f"R(Ŷ_b) [{units}]",
                  *(f"{title} [interval] [{units}]" for _, title in LADDER_QUANTITIES),
                  "flags"], body)


def vinfo_sources(vinfo: dict[str, dict]) -> Bullets:
    """Where each ladder comes from: file, source, confidence, the representation's rate."""
    items = []
    for label, by_key in vinfo.items():
        for key, ds in by_key.items():
            attrs = ds.attrs
            rate = (f", representation rate {float(attrs['representation_bpp']):.4g} bits per "
                    "original-image pixel" if "representation_bpp" in attrs else "")
            items.append(f"{label} base, '{key}': {attrs.get('path')} (source: "
                         f"{attrs.get('source', 'not recorded')}; unit: "
                         f"{attrs.get('unit', 'not recorded')}; confidence "
                         f"{attrs.get('confidence', 'not recorded')}{rate})")
    return Bullets(items)
