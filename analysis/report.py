"""The analysis report: a runs directory (+ vinfo results) → one HTML file and Markdown.

    python -m analysis.report RUNS_DIR --out DIR [--vinfo baseline=DIR --vinfo proposed=DIR]
                                                 [--bd-method akima|pchip|cubic]

In:  RUNS_DIR scanned for ``*/eval.nc`` (analysis.runs); optional ``vinfo.nc`` files (or
     folders of them) per base, labelled ``LABEL=PATH``.
Out: ``DIR/report.html`` (self-contained: figures as base64 PNG, inline CSS, no scripts or
     links; opens offline), ``DIR/report.md`` with ``DIR/figures/*.png``; all written
     atomically. Sections: the results table (proposed vs baseline at matched base rate,
     every number with a paired-bootstrap interval: :mod:`analysis.results_table`), runs,
     figures, BD-rates, the gap, missing, conventions.

Everything is computed from the runs found: delete a run directory and its point is gone;
a method with no runs is named in the "Missing" section instead of being drawn.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import matplotlib.style

from analysis.bdrate import METHODS, RDCurveWarning, bd_rate
from analysis.figures import DATASET_NAMES, FigureResult, all_figures
from analysis.gap import STANDALONE, gap_figure, gap_rows, load_vinfo
from analysis.gap_probe import PROBE_GAP_TEXT, probe_gap_rows, probe_gap_table
from analysis.references import standalone_reference
from analysis.report_tables import (
    bd_table,
    gap_table,
    ladder_table,
    runs_overview,
    vinfo_sources,
)
from analysis.results_layout import ResultsTable
from analysis.results_table import results_table
from analysis.runs import METRICS, Curve, Run, curve, load_runs, runs_table, select
from analysis.uncertainty import DEFAULT_BOOT
from infra import cli
from infra.io import check_writable
from infra.reportdoc import TABLE_CSS, Bullets, Image, Section, figure_png, write_document

CONVENTIONS = [
    "Rate: bits per pixel of the original full-resolution image, from the real bitstream "
    "(bpp_actual: bytes × 8 / pixels, headers included). Scalable and standalone points are at "
    "base + enhancement rate; direct points at the base rate alone.",
    "Points: every run found is one point (per-image values averaged over the evaluation "
    "images, read at the run's top layer); no run is selected or dropped.",
    "BD-rate: the test curve's rate relative to the reference at equal quality, averaged over "
    "the quality interval both cover (the overlap column); negative = the test saves rate. "
    "For RMSE (lower is better) quality is negated before fitting; the value is unaffected, "
    "only the monotonicity check's direction changes. The cubic column is the original "
    "VCEG-M33 fit (needs >= 4 points per curve).",
    "Conditional coding gain: standalone minus scalable total rate at matched quality, rate "
    "interpolated in quality with PCHIP and averaged over the common quality interval (bpp).",
    "Standalone-independent reference: our own standalone-independent runs on that base where "
    "they exist; else a CompressAI zoo codec trained on the same images, its curve shifted "
    "right by the base's actual rate (base + independent CompressAI stream; the table's "
    "source column says which).",
]


def bd_comparisons(runs: list[Run], method: str = "akima") -> tuple[list[dict], list[str]]:
    """Every BD-rate the paper reports, as far as the runs allow; and what could not be done.

    Proposed vs baseline: the base tasks, and direct/scalable on each secondary target (one
    row per proposed reward_weight). Scalable vs each standalone flavour, per base.
    """
    rows: list[dict] = []
    missing: list[str] = []
    for task in ("detection", "depth"):
        dataset = "coco" if task == "detection" else "cityscapes"
        _versus_baseline(runs, task, dataset, None, f"{task} base", method, rows, missing)
    for task, dataset in (("reconstruction", "coco"), ("reconstruction", "cityscapes"),
                          ("segmentation", "cityscapes")):
        target = f"{DATASET_NAMES[dataset]} {task}"
        if not select(runs, task=task, dataset=dataset) and not (
                task == "reconstruction" and select(runs, dataset=dataset, role="base")):
            missing.append(f"no {target} runs: its BD-rates are not computed")
            continue
        for enh in ("direct", "scalable"):
            _versus_baseline(runs, task, dataset, enh, f"{target}, {enh}", method, rows, missing)
        for variant in sorted({r.base_variant for r in select(runs, task=task, dataset=dataset,
                                                               method="scalable")}):
            scalable = curve(runs, task=task, method="scalable", dataset=dataset,
                             base_variant=variant)
            for flavour in STANDALONE:
                ref = standalone_reference(runs, task, dataset, variant, flavour).curve
                name = f"{target} on the {variant} base: scalable vs {flavour}"
                _compare(name, ref, scalable, method, rows, missing)
    return rows, missing


def _versus_baseline(runs: list[Run], task: str, dataset: str, enh: str | None, name: str,
                     method: str, rows: list[dict], missing: list[str]) -> None:
    """Curves on each proposed base against the baseline base (``enh`` None: the base task)."""
    ref_method, test_method = ("baseline", "proposed") if enh is None else (enh, enh)
    proposed = sorted({r.base_variant for r in runs if r.dataset == dataset
                       and r.base_variant.startswith("proposed")})
    if not proposed:
        missing.append(f"{name}: no runs on a proposed base: BD-rate vs baseline not computed")
    ref = curve(runs, task=task, method=ref_method, dataset=dataset, base_variant="baseline")
    for variant in proposed:
        test = curve(runs, task=task, method=test_method, dataset=dataset, base_variant=variant)
        _compare(f"{name}: {variant} vs baseline", ref, test, method, rows, missing)


def _compare(name: str, ref: Curve | None, test: Curve | None, method: str, rows: list[dict],
             missing: list[str]) -> None:
    if ref is None or test is None:
        test_name, _, ref_name = name.rpartition(": ")[2].partition(" vs ")
        lacking = " and ".join(n for n, c in ((ref_name, ref), (test_name, test)) if c is None)
        missing.append(f"{name}: no runs for {lacking}: BD-rate not computed")
        return
    metric = METRICS[ref.metric]
    try:
        with warnings.catch_warnings():  # kept in result.warnings, shown in the table
            warnings.simplefilter("ignore", RDCurveWarning)
            result = bd_rate(ref.rate, ref.quality, test.rate, test.quality, method=method,
                             higher_is_better=metric.higher_is_better)
    except ValueError as err:
        missing.append(f"{name}: BD-rate not computed: {err}")
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RDCurveWarning)
            cubic = bd_rate(ref.rate, ref.quality, test.rate, test.quality, method="cubic",
                            higher_is_better=metric.higher_is_better)
        cubic_text = f"{cubic.percent:+.2f}"
    except ValueError as err:
        cubic_text = "n/a (< 4 points)" if min(len(ref), len(test)) < 4 else f"n/a ({err})"
    rows.append({"comparison": name, "metric": metric.label, "reference": ref, "test": test,
                 "result": result, "cubic": cubic_text})


def build_sections(runs: list[Run], runs_dir: Path, vinfo: dict[str, dict], method: str,
                   n_boot: int = DEFAULT_BOOT, verdicts: bool = True,
                   probe_gap: tuple[list[dict], list[str]] = ([], []),
                   ) -> tuple[list[Section], list[dict], ResultsTable]:
    """The report's sections (tables, figures as PNG, text), the BD-rate rows and the
    results table (``verdicts=False``: a smoke test, no verdict anywhere).

    Draws the figures: call inside ``matplotlib.style.context("default")`` for output that
    does not depend on the user's matplotlib settings.
    """
    results = results_table(runs, vinfo, n_boot=n_boot, bd_method=method, verdicts=verdicts)
    figures = all_figures(runs)
    bd_rows, bd_missing = bd_comparisons(runs, method)
    gap, gap_missing = gap_rows(runs, method)
    gap_fig = gap_figure(gap, vinfo, results.gains)
    missing = [m for f in figures for m in f.missing] + bd_missing + gap_missing + gap_fig.missing
    missing += probe_gap[1]  # issue 20 item 4: the gap, probe side (analysis.gap_probe)
    missing += [f"run {r.name}: its base {r.base_ref!r} was not found; drawn as 'unknown base'"
                for r in runs if r.role == "enhancement" and r.base_method is None]
    missing += [f"run {r.name}: its eval.nc has no base-layer rate, so its 'total' rate is the "
                "enhancement rate alone" for r in runs
                if r.role == "enhancement" and r.bpp and "base" not in r.bpp]
    counts = ", ".join(f"{m}: {n}" for m, n in runs_table(runs)["method"].value_counts()
                       .sort_index().items()) if runs else "none"
    header = Section("1. Runs", [
        f"Runs directory: {runs_dir} — {len(runs)} run(s) with an eval.nc ({counts}). "
        f"Generated {datetime.now(UTC).isoformat(timespec='seconds')}. BD-rate method: {method}.",
        *runs_overview(runs)])
    lead = Section("Results: proposed vs baseline at matched base rate", [
        results.title + ". Negative BD-rate = less rate at equal quality; a difference is "
        "distinguishable from zero when its interval excludes 0.",
        results.report_table(), *results.notes, *results.conclusions,
        "Compared pairs: points per curve, whether each curve is monotone, the quality span "
        "of each curve (dB or mIoU points), the overlap of their quality ranges, the BD-rate.",
        results.pairs_table()])
    return [
        lead,
        header,
        Section("2. Figures", [_image(f) for f in figures]),
        Section("3. BD-rates", [bd_table(bd_rows)] if bd_rows else ["No BD-rate could be "
                                                                     "computed (see Missing)."]),
        Section("4. The gap: information available vs usable", [
            "Available: the base rate R(Ŷ_b) and the conditional coding gain (bits per "
            "original-image pixel). Usable: I_V(Ŷ_b → Y) per probe family (units as in the "
            "vinfo.nc, usually bits per target pixel).", gap_table(gap),
            *([ladder_table(vinfo), vinfo_sources(vinfo)] if vinfo else []),
            *([PROBE_GAP_TEXT, probe_gap_table(probe_gap[0])] if probe_gap[0] else []),
            _image(gap_fig)]),
        Section("5. Missing", [Bullets(list(dict.fromkeys(missing)))] if missing else
                ["Nothing missing: every figure and number could be computed."]),
        Section("6. Conventions", list(CONVENTIONS)),
    ], bd_rows, results


def write_report(runs_dir: str | Path, out_dir: str | Path,
                 vinfo: dict[str, str | Path] | None = None, method: str = "akima",
                 title: str = "Task-compatible representations: analysis report",
                 n_boot: int = DEFAULT_BOOT, verdicts: bool = True) -> dict:
    """Write report.html, report.md and figures/*.png into ``out_dir``.

    ``vinfo``: base label → vinfo.nc file or folder; ``n_boot``: bootstrap resamples of the
    results table; ``verdicts=False``: a smoke test of the pipeline, whose results table
    gives no verdict (:func:`analysis.results_table.results_table`). Returns {"html": Path, "markdown": Path, "figures": [Path], "bd_rates":
    [{"comparison": str, "result": BDResult, ...}], "results": ResultsTable}. Raises
    RunsError / VinfoInputError (ValueError) naming the file for unreadable input.
    """
    if method not in METHODS:
        raise ValueError(f"unknown BD-rate method {method!r}; expected one of {METHODS}")
    runs = load_runs(runs_dir)
    loaded = {label: load_vinfo(path) for label, path in (vinfo or {}).items()}
    with matplotlib.style.context("default"):
        sections, bd_rows, results = build_sections(runs, Path(runs_dir), loaded, method, n_boot,
                                                    verdicts, probe_gap_rows(vinfo or {}))
    paths = write_document(out_dir, title, sections, css=CSS)
    figures = [path for key, path in paths.items() if key not in ("html", "markdown")]
    return {"html": paths["html"], "markdown": paths["markdown"], "figures": figures,
            "bd_rates": bd_rows, "results": results}


def _image(result: FigureResult) -> Image:
    return Image(result.name, figure_png(result.figure), result.caption, result.title)


# --- rendering -------------------------------------------------------------------------------

# Every cell left-aligned (the tables carry no left_columns); replaces reportdoc's default CSS,
# keeping its table rules (a wide table scrolls in its own container, never past the page).
CSS = """
body { font-family: system-ui, Helvetica, Arial, sans-serif; max-width: 80rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h2 { border-bottom: 1px solid #ddd; margin-top: 2rem; }
table { border-collapse: collapse; font-size: .8rem; margin: .8rem 0; }
th, td { border: 1px solid #ccc; padding: .2rem .45rem; text-align: left; }
th { background: #f3f3f3; } figure img { max-width: 100%; }
figcaption { font-size: .85rem; color: #555; }
""" + TABLE_CSS


# --- command line ------------------------------------------------------------------------------

def _vinfo_arg(text: str) -> tuple[str, str]:
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"--vinfo expects LABEL=PATH (e.g. baseline=runs/vinfo"
                                         f"-baseline), got {text!r}")
    return label, path


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; errors and interrupts follow :mod:`infra.cli` (exit 2 / 130)."""
    return cli.run(_main, argv)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs_dir", help="folder scanned recursively for */eval.nc")
    parser.add_argument("--out", required=True, help="output folder for report.html/.md")
    parser.add_argument("--vinfo", action="append", type=_vinfo_arg, default=[],
                        metavar="LABEL=PATH", help="vinfo.nc file or folder for one base")
    parser.add_argument("--bd-method", default="akima", choices=METHODS,
                        help="BD-rate curve fit (analysis.bdrate): akima or pchip (piecewise "
                             "interpolants, bjontegaard package) or cubic (VCEG-M33, >= 4 "
                             "points per curve); default akima")
    args = parser.parse_args(argv)
    check_writable(args.out)
    cli.on_interrupt(f"nothing was written to {args.out} (its files are replaced whole)")
    paths = write_report(args.runs_dir, args.out, dict(args.vinfo), args.bd_method)
    print(f"report: {paths['html']}\nmarkdown: {paths['markdown']}")
    for line in _headline(paths["bd_rates"]):
        print(line)
    return 0


def _headline(bd_rows: list[dict]) -> list[str]:
    return [f"BD-rate {row['comparison']}: {row['result'].percent:+.2f}% "
            f"({row['result'].method})" for row in bd_rows]


if __name__ == "__main__":
    sys.exit(main())
