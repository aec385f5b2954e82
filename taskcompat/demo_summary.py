"""The demo's printed summary (:mod:`taskcompat.demo`): the headline numbers of a finished demo,
read back from the files it wrote.

    print("\\n".join(summary_lines(result, settings)))    # result: what run_demo returns

In order: the results table (proposed vs baseline at matched base rate, every difference
with its interval), where the reports are, the runs (rates in actual bits per pixel), the
rate-targeting accuracy, the BD-rates, the gap (base rate vs conditional coding gain) and
the V-information ladders, a ladder that detected nothing said in words with its minimum
detectable effects; then what was not computed (the report's Missing section).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from infra.io import find_files
from taskcompat.demo_steps import DemoSettings
from vinfo.report.schema import trained_note


def _f(value: float, digits: int = 4) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def summary_lines(result: dict, settings: DemoSettings) -> list[str]:
    """The headline numbers of a finished demo, from the files it wrote: the results table
    first, then where things are, the runs, the rate targeting, BD-rates, gap and ladders."""
    from analysis.gap import gap_rows, load_vinfo
    from analysis.runs import METRICS, load_runs

    out, paths = result["out"], result["report"]
    runs = load_runs(out / "sweeps")
    smoke = ([f"SMOKE TEST of the pipeline (--quick): every stage ran at its smallest size "
              f"({settings.train_images} training scenes, {settings.recon_steps} steps per "
              "from-scratch point, 2 points per curve); the numbers below are not measurements "
              "and no verdict about the reward is given. `make demo` measures.", ""]
             if settings.smoke_test else [])
    lines = [*smoke, *paths["results"].text_lines(), "",
             f"Analysis report: {paths['html']} (Markdown: {paths['markdown']})",
             *(f"V-information report, {label} base: {nc.parent / 'report.html'}"
               for label, folder in result["vinfo_dirs"].items()
               for nc in find_files(folder, "vinfo.nc")),
             f"Runs: {len(runs)} evaluated runs under {out / 'sweeps'} (each RUN/eval.nc)", "",
             f"Rates are actual bitstream bits per pixel of the {settings.height}x"
             f"{settings.width} image (header included), means over the first "
             f"{settings.eval_images} val images; est. = -log2 likelihoods. Rate-targeted runs: "
             "target (estimated bpp) -> the selected checkpoint's validation estimate, final "
             "rate weight."]
    order = {"base": 0, "reference": 1, "enhancement": 2, "standalone": 3}
    for r in sorted(runs, key=lambda r: (order[r.role], r.task, r.method, r.base_variant,
                                         int(r.config.get("seed") or 0),
                                         -(r.rate_target or 0))):
        shown = [f"{METRICS[m].label.split(',')[0]} {_f(r.metrics[m] * METRICS[m].scale)}"
                 for m in ("rmse", "psnr", "miou") if math.isfinite(r.metrics.get(m, math.nan))]
        if r.role == "reference":
            lines.append(f"  {r.task} | uncompressed: the task model without a codec | no "
                         "bitstream | " + ", ".join(shown))
            continue
        where = {"base": r.base_variant, "standalone": f"CompressAI {r.method}, no base"}.get(
            r.role, f"{r.method} on {r.base_variant}")
        total = "" if r.role in ("base", "standalone") else " base+enh."
        seed = f" | seed {r.config.get('seed')}" if len(settings.seeds) > 1 else ""
        lines.append(f"  {r.task} | {where}{seed} | {_rate_text(r)} | "
                     f"{_f(r.bpp_total)} bpp{total} (est. {_f(r.bpp_estimated_total)}) | "
                     + ", ".join(shown))
    lines += _targeting_lines(runs)
    lines += ["", "BD-rates (negative = the test curve needs less rate for equal quality; "
              "intervals: the results table):"]
    for row in paths["bd_rates"]:
        res, metric = row["result"], METRICS[row["reference"].metric]
        low, high = (v * metric.scale for v in res.overlap)
        warn = f"; warning: {'; '.join(res.warnings)}" if res.warnings else ""
        lines.append(f"  {row['comparison']}: {res.percent:+.2f}% ({res.method}, "
                     f"{len(row['reference'])} vs {len(row['test'])} points, {metric.label} "
                     f"overlap {low:.4g} to {high:.4g}{warn})")
    if not paths["bd_rates"]:
        lines.append("  none could be computed (see the report's Missing section)")
    gaps, _ = gap_rows(runs)
    for g in gaps:
        gain = g.get("gain_standalone-refit_bpp", math.nan)
        usable = g.get("usable_standalone-refit", math.nan)
        flag = ("; ABOVE R(Ŷ_b): more than the base carries, so the refit reference is the "
                "weak part" if g.get("gain_standalone-refit_exceeds_rate") else "")
        lines.append(f"Gap, {g['target']}, {g['base']} base: R(Ŷ_b) {_f(g['base_bpp'])} bpp "
                     f"({g.get('base_rate_kind', '')}); conditional coding gain "
                     f"(standalone-refit - scalable at equal quality) {_f(gain)} bpp, usable "
                     f"fraction gain / R(Ŷ_b) {_f(usable)}{flag}" + _independent_text(g))
    lines += _vinfo_lines(result["vinfo_dirs"], load_vinfo)
    missing = _missing(Path(paths["markdown"]))
    failed = [m for m in missing if "not computed: " in m and "no runs" not in m]
    skipped = ["COCO", *([] if settings.segmentation else ["segmentation"])]
    if not settings.compressai_reference:  # else the CompressAI codec is the reference
        skipped.append("standalone-independent")
    elif settings.segmentation:  # a CompressAI codec reconstructs images: no seg. reference
        skipped.append("standalone-independent segmentation")
    lines += ["", *(f"Not computed: {m}" for m in failed),
              f"{len(missing) - len(failed)} more item(s) not computed for lack of runs "
              f"(experiments this preset does not run: {', '.join(skipped)}), listed in the report's "
              "Missing section."]
    return lines


def _independent_text(g: dict) -> str:
    """The gain vs the standalone-independent reference, its source named (or "")."""
    gain = g.get("gain_standalone-independent_bpp", math.nan)
    if not math.isfinite(gain):
        return ""
    return (f"; vs standalone-independent ({g['source_standalone-independent']}) {_f(gain)} "
            f"bpp, usable fraction {_f(g['usable_standalone-independent'])}"
            + ("; ABOVE R(Ŷ_b)" if g.get("gain_standalone-independent_exceeds_rate") else ""))


def _rate_text(run) -> str:
    if run.rate_target is None:
        return f"rate_weight {run.rate_weight:g}"
    return (f"target {run.rate_target:g} -> {_f(run.rate_selected_bpp)} bpp est. "
            f"({'on' if run.rate_on_target else 'OFF'} target), rate_weight "
            f"{_f(run.rate_weight_final)}")


def _targeting_lines(runs) -> list[str]:
    """Target vs achieved estimated rate, over every rate-targeted run."""
    targeted = [r for r in runs if r.rate_target is not None]
    if not targeted:
        return []
    errors = [abs(r.rate_selected_bpp / r.rate_target - 1) for r in targeted]
    eval_errors = [abs(r.bpp_estimated_total / r.rate_target - 1) for r in targeted]
    off = [r.name for r in targeted if not r.rate_on_target]
    tolerance = max(float(r.config.get("rate_tolerance", 0.1)) for r in targeted)
    return ["", f"Rate targeting: {len(targeted) - len(off)} of {len(targeted)} runs on target "
            f"(tolerance ±{100 * tolerance:g}% on the validation estimate); |achieved/target - "
            f"1|: median {100 * float(np.median(errors)):.1f}%, max "
            f"{100 * max(errors):.1f}% (validation); on the evaluation images median "
            f"{100 * float(np.median(eval_errors)):.1f}%, max {100 * max(eval_errors):.1f}%"
            + (f"; off target: {', '.join(off)}" if off else "")]


def _vinfo_lines(vinfo_dirs: dict[str, Path], load_vinfo) -> list[str]:
    lines = []
    loaded = {label: load_vinfo(folder) for label, folder in vinfo_dirs.items()}
    for key in sorted({k for by_key in loaded.values() for k in by_key}):
        first = next(by_key[key] for by_key in loaded.values() if key in by_key)
        a, units = first.attrs, first["vinfo"].attrs["units"]
        lines += ["", f"Ŷ_b -> {key}, in {units} of the {a['target_shape'][-2]}x"
                  f"{a['target_shape'][-1]} target ({a['target_kind']} likelihood; "
                  f"{a['n_eval']} held-out of {a['n_samples']} images; "
                  f"{100 * float(a['confidence']):g}% intervals over images and refits):"]
        for label, by_key in loaded.items():
            ds = by_key.get(key)
            if ds is None:
                continue
            rate = float(ds["rate_per_unit"]) if "rate_per_unit" in ds else math.nan
            lines.append(f"  {label} base: R(Ŷ_b) = {_f(rate)} {units} (base payload, header excluded); "
                         f"H_V(Y|∅) = {ds['h_null'].values[0]:.3f}")
            if "stock_jpegxl_bpp" in ds:
                lines.append(f"    null vs stock lossless on the same images: PNG "
                             f"{float(ds['stock_png_bpp']):.3f}, WebP "
                             f"{float(ds['stock_webp_bpp']):.3f}, JPEG-XL "
                             f"{float(ds['stock_jpegxl_bpp']):.3f} {units}: "
                             f"{ds.attrs.get('null_note', '')}")
            for i, family in enumerate(ds["family"].values):
                flags = [text for name, text in (
                    ("collapsed", "not detected"),
                    ("cap_binds", "ABOVE R(Ŷ_b): the null, not Ŷ_b, sets this number"),
                    ("mde_exceeds_rate", "MDE above R(Ŷ_b)"),
                    ("unconverged", "NOT CONVERGED: still improving by more than the MDE"))
                    if name in ds and bool(ds[name].values[i])]
                capped = ""
                if "vinfo_capped" in ds:
                    capped = (f"; capped I_V {ds['vinfo_capped'].values[i]:.4f} "
                              f"[{ds['vinfo_capped_low'].values[i]:.4f}, "
                              f"{ds['vinfo_capped_high'].values[i]:.4f}]")
                mde = (f", MDE {ds['vinfo_mde'].values[i]:.4f}" if "vinfo_mde" in ds else "")
                lines.append(
                    f"    {family}: H_V(Y|Ŷ_b) {ds['h_cond'].values[i]:.3f} "
                    f"[{ds['h_cond_low'].values[i]:.3f}, {ds['h_cond_high'].values[i]:.3f}]; "
                    f"I_V {ds['vinfo'].values[i]:.4f} [{ds['vinfo_low'].values[i]:.4f}, "
                    f"{ds['vinfo_high'].values[i]:.4f}]{mde}{capped}"
                    + (f" ({'; '.join(flags)})" if flags else "") + trained_note(ds, i))
            lines += _collapse_verdict(ds, rate, units)
    return lines


def _collapse_verdict(ds, rate: float, units: str) -> list[str]:
    """In words, when no family detected anything: how small an effect it would have seen."""
    if "collapsed" not in ds or not bool(np.all(ds["collapsed"].values)):
        return []
    mdes = ds["vinfo_mde"].values if "vinfo_mde" in ds else np.array([math.nan])
    low, high = float(np.nanmin(mdes)), float(np.nanmax(mdes))
    # a rung whose trained member hardly moved off the null has a tiny spread, so its MDE
    # says how still it stayed, not what it could detect: the range is said, not the minimum
    return [f"    -> not detected: no rung's interval lies above 0. This is not a measured zero: "
            f"on {ds.attrs.get('n_eval')} held-out images the rungs cannot see effects smaller "
            f"than their minimum detectable effects, {_f(low)} to {_f(high)} {units} (the "
            f"smallest is optimistic where its trained member hardly moved off the null), and "
            f"Ŷ_b carries at most R(Ŷ_b) = {_f(rate)} {units}."]


def _missing(markdown: Path) -> list[str]:
    """The items of the report's Missing section."""
    text = markdown.read_text(encoding="utf-8")
    section = text.split("## 5. Missing", 1)[-1].split("\n## ", 1)[0]
    return [line[2:] for line in section.splitlines() if line.startswith("- ")]
