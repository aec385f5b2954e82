"""``make demo`` / ``make study``: the whole pipeline, end to end, on synthetic scenes, on a CPU.

    python -m taskcompat.demo [--out demo_output] [--study | --quick] [--threads 1] [--verbose]

Stages (:mod:`taskcompat.demo_steps`; every one cached, so a rerun does only what is missing):

1. data: 192 train + 40 val synthetic street scenes of 64x128 px (Cityscapes layout) in OUT/data
2. depth bases: baseline (reward_weight 0) and proposed (reward_weight 0.1), both
   *rate-targeted* to the same estimated base rate (0.03 bpp; :mod:`taskcodecs.training.rate_control`),
   evaluated through real bitstreams on the first 32 val images -> OUT/sweeps/depth-base/;
   the depth model without a codec (the figure's reference line) -> OUT/sweeps/depth-uncompressed/
3. reconstruction: the scalable reconstruction on each base at 5 total-rate targets (the
   lowest trained from scratch, each next one warm-started from it), and the standalone refit
   of each point (the conditional coding gain) -> OUT/sweeps/cityscapes-reconstruction/;
   (study) a CompressAI mbt2018-mean codec at the same total-rate targets, the
   standalone-independent reference (base + its stream) -> OUT/sweeps/compressai-reconstruction/
4. (study) the same for scalable segmentation -> OUT/sweeps/cityscapes-segmentation/
5. vinfo: the V-information ladders of both bases (:func:`demo_vinfo.vinfo_stage`), then
   the gap's probe side: I_V(Ŷ_b → Ŷ_e) of each base's middle reconstruction point, the
   number beside its operational coding gain (:func:`demo_vinfo.gap_probe_stage`, issue 20
   item 4) -> OUT/vinfo/LABEL/latent_gap/RUN/latent_gap.nc, in the report's gap section
6. report: OUT/report/report.html (+ .md, figures/), led by the results table
7. the results table, printed first: proposed vs baseline at matched base rate, every number
   with its paired-bootstrap interval (:mod:`analysis.results_table`), then the runs, the
   rate-targeting accuracy, the BD-rates and the V-information ladders (units always said)

``--study`` (``make study``) runs the same pipeline with 3 training seeds, more data, 3 base
rates, 5 reconstruction points and segmentation (into demo_output/study/); ``--quick`` every
stage at the smallest sizes (a smoke test of the pipeline: numbers meaningless, and its
summary says so and prints no verdict; demo_output/quick/).
``--threads`` sets ``torch.set_num_threads`` (default 1: on the 2-core dev machine one thread
was never much slower than two, and up to 8x faster while other jobs ran). An OUT folder made
with other settings is refused (exit 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from infra import cli
from infra.io import check_writable, find_files, write_json
from taskcompat.demo_steps import (
    DemoSettings,
    check_settings,
    enhancement_bases,
    make_data,
    train_bases,
    train_compressai,
    train_enhancements,
    train_reference,
)
from taskcompat.demo_vinfo import gap_probe_stage, vinfo_stage
from vinfo.report.schema import trained_note

log = logging.getLogger("taskcompat.demo")
QUIET = ("taskcodecs.training.run", "taskcodecs.sweeps.sweep", "taskcodecs.evaluation.evaluate", "taskcompat.demo.detail")


class _Console(logging.Handler):
    """Log lines to stderr through ``tqdm.write``, so they do not break the progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def _setup_logging(verbose: bool) -> None:
    handler = _Console()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    if not verbose:  # the run's own train.log keeps every line; the console gets the stages
        handler.addFilter(lambda r: r.levelno >= logging.WARNING
                          or not r.name.startswith(QUIET))
    handler.name = "taskcompat.demo"
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.name == handler.name]:  # main() called again
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    cli.filter_known_warnings()  # the one filter (compressai's torch.jit.script warning)


def run_demo(out: Path, settings: DemoSettings) -> dict:
    """Run every stage (module docstring) into ``out``; returns what the summary prints from."""
    check_settings(out, settings)
    write_json(out / "demo.json", {"settings": settings.as_dict()})
    times: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def stage(name: str, number: int, func, *args):
        log.info("[stage %d/6] %s", number, name)
        start, start_cpu = time.perf_counter(), time.process_time()
        result = func(*args)
        times[name] = times.get(name, 0.0) + time.perf_counter() - start
        cpu[name] = cpu.get(name, 0.0) + time.process_time() - start_cpu
        return result

    root = stage("synthetic scenes", 1, make_data, out, settings)
    chosen_by_seed, recon_points = {}, {}
    for seed in settings.seeds:
        bases = stage("depth bases", 2, train_bases, out, settings, root, seed)
        chosen_by_seed[seed] = enhancement_bases(bases, settings)
    stage("codec-free depth reference", 2, train_reference, out, settings, root)
    for seed, chosen in chosen_by_seed.items():
        recon_points[seed] = stage("scalable reconstruction", 3, train_enhancements, out,
                                   settings, root, chosen, seed)
        if settings.compressai_reference:
            stage("CompressAI reference", 3, train_compressai, out, settings, root, seed)
        if settings.segmentation:
            stage("scalable segmentation", 4, train_enhancements, out, settings, root, chosen,
                  seed, "segmentation")
    chosen = chosen_by_seed[settings.seeds[0]]
    vinfo_dirs = stage("V-information ladders", 5, vinfo_stage, out, settings, root, chosen)
    # issue 20 item 4: I_V(Ŷ_b → Ŷ_e) of each base's middle point, beside its coding gain
    stage("gap, probe side", 5, gap_probe_stage, out, settings, root,
          recon_points[settings.seeds[0]])

    def report():
        from analysis.report import write_report

        return write_report(out / "sweeps", out / "report", vinfo=vinfo_dirs,
                            n_boot=settings.bootstrap, verdicts=not settings.smoke_test)

    paths = stage("analysis report", 6, report)
    return {"out": out, "bases": chosen, "report": paths, "vinfo_dirs": vinfo_dirs,
            "times": times, "cpu": cpu}


# ---------------------------------------------------------------------------- the summary


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


def main(argv: list[str] | None = None) -> int:
    """The command line; errors and interrupts follow :mod:`infra.cli` (exit 2 / 130)."""
    return cli.run(_main, argv)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m taskcompat.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default demo_output/, with --quick "
                             "demo_output/quick/, with --study demo_output/study/)")
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true",
                        help="smallest sizes, every stage (a smoke test; numbers not meaningful)")
    preset.add_argument("--study", action="store_true",
                        help="make study: 3 seeds, more data and rate points, segmentation")
    parser.add_argument("--seed", type=cli.non_negative_int, default=None,
                        help="one training seed for every run instead of the preset's "
                             "(e.g. a second demo to check that its verdict survives a rerun; "
                             "use another --out)")
    parser.add_argument("--threads", type=cli.positive_int, default=1,
                        help="torch threads (default 1)")
    parser.add_argument("--verbose", action="store_true", help="show every training line")
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    torch.set_num_threads(args.threads)
    settings = (DemoSettings.quick() if args.quick else DemoSettings.study() if args.study
                else DemoSettings())
    if args.seed is not None:
        settings = dataclasses.replace(settings, seeds=(args.seed,))
    default = "quick" if args.quick else "study" if args.study else ""
    out = args.out or Path("demo_output") / default
    start = time.perf_counter()
    check_writable(out)
    cli.on_interrupt(f"the finished stages in {out} are kept; rerun the same command to "
                     "continue (every stage is cached)")
    result = run_demo(out, settings)
    took = time.perf_counter() - start
    stages = ", ".join(f"{k} {v:.0f} s (CPU {result['cpu'][k]:.0f} s)"
                       for k, v in result["times"].items())
    print(f"\n== demo finished in {took / 60:.1f} min ({stages}; {args.threads} thread(s); "
          f"load average {os.getloadavg()[0]:.2f}) ==")
    print("\n".join(summary_lines(result, settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
