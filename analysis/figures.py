"""The paper's figures, drawn from whatever runs were found.

    results = all_figures(runs)        # list of FigureResult(name, title, figure, caption, missing)
    results[0].figure.savefig("detection_rd.png")

In:  :class:`analysis.runs.Run` objects (``load_runs``).
Out: ``matplotlib.figure.Figure`` objects (Agg canvas, no pyplot state):

- ``detection_rd``: box mAP@[.5:.95] (%) vs base rate — baseline vs proposed detection bases,
  the codec-free detector as a horizontal line.
- ``depth_rd``: disparity RMSE (pixels, lower is better) vs base rate — the same for depth.
- ``reconstruction_coco`` / ``reconstruction_cityscapes``: PSNR (dB) vs total rate —
  direct (the base's own g_a), scalable, standalone-refit, standalone-independent, per base
  (the independent one: our runs, else a CompressAI codec + the base's rate,
  :mod:`analysis.references`).
- ``segmentation_cityscapes``: mIoU (%) vs total rate — direct, scalable, standalones, and
  the codec-free segmentation model as a line.

Rates are always bits per pixel of the original full-resolution image (``bpp_actual``: real
bitstream bytes); "total" = base + enhancement. Colour = which base (baseline / proposed at
each reward_weight), line style = method. A method with no runs is not drawn: the axes say
"no runs found for …" and the same sentence is returned in ``FigureResult.missing``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.references import standalone_reference
from analysis.runs import (
    BASE_METHODS,
    METRICS,
    TASK_METRIC,
    Run,
    base_variants,
    curve,
    select,
)

RATE_LABEL = "rate (bits per pixel of the original full-resolution image)"
TOTAL_RATE_LABEL = "total rate, base + enhancement\n(bits per pixel of the original full-resolution image)"
ENHANCEMENT_STYLE = {  # method → (line style, marker)
    "direct": (":", "^"),
    "scalable": ("-", "o"),
    "standalone-refit": ("--", "s"),
    "standalone-independent": ("-.", "D"),
}
BASE_STYLE = {"baseline": ("-", "o"), "proposed": ("-", "s")}
PROPOSED_COLOURS = ("tab:orange", "tab:red", "tab:purple", "tab:brown", "tab:pink")
DATASET_NAMES = {"coco": "COCO", "cityscapes": "Cityscapes"}


@dataclass
class FigureResult:
    name: str  # file stem, e.g. "depth_rd"
    title: str
    figure: Figure
    caption: str
    missing: list[str] = field(default_factory=list)


def all_figures(runs: list[Run]) -> list[FigureResult]:
    """Every figure of the paper, in the paper's order (each built from the runs found)."""
    return [
        base_task_figure(runs, "detection"),
        base_task_figure(runs, "depth"),
        reconstruction_figure(runs, "coco"),
        reconstruction_figure(runs, "cityscapes"),
        segmentation_figure(runs),
    ]


def base_task_figure(runs: list[Run], task: str) -> FigureResult:
    """Base-task RD: ``task`` "detection" (mAP) or "depth" (RMSE) vs base rate."""
    metric = METRICS[TASK_METRIC[task]]
    dataset = "coco" if task == "detection" else "cityscapes"
    title = f"{task.capitalize()} base ({DATASET_NAMES[dataset]}): baseline vs proposed"
    fig, ax = _new_figure(title, RATE_LABEL, metric.label)
    colours = _colours(runs)
    missing: list[str] = []
    for method in BASE_METHODS:
        variants = sorted({r.base_variant for r in select(runs, task=task, method=method)})
        for variant in variants:
            c = curve(runs, task=task, method=method, base_variant=variant)
            if c is not None:
                _plot(ax, c, metric.scale, colours[variant], *BASE_STYLE[method], c.label)
        if not variants:
            missing.append(f"no runs found for the {method} {task} base")
    missing += _reference_lines(ax, runs, task, metric.name)
    caption = (f"{metric.label} of the {task} base task vs the base rate; one point per run. "
               "The dashed horizontal line is the task model without a codec.")
    return _finish(fig, ax, f"{task}_rd", title, caption, missing, metric.higher_is_better)


def reconstruction_figure(runs: list[Run], dataset: str) -> FigureResult:
    """Reconstruction from the base on ``dataset``: PSNR vs total rate, per method and base."""
    name = DATASET_NAMES[dataset]
    title = f"Reconstruction from the base ({name}): direct, scalable, standalone"
    return _enhancement_figure(runs, "reconstruction", dataset, f"reconstruction_{dataset}",
                               title, reference=False)


def segmentation_figure(runs: list[Run]) -> FigureResult:
    """Cityscapes segmentation: mIoU vs total rate, per method and base; codec-free line."""
    title = "Segmentation from the depth base (Cityscapes): mIoU vs total rate"
    return _enhancement_figure(runs, "segmentation", "cityscapes", "segmentation_cityscapes",
                               title, reference=True)


def _enhancement_figure(runs: list[Run], task: str, dataset: str, name: str, title: str,
                        reference: bool) -> FigureResult:
    metric = METRICS[TASK_METRIC[task]]
    fig, ax = _new_figure(title, TOTAL_RATE_LABEL, metric.label)
    colours = _colours(runs)
    variants = [v for v in base_variants(runs, dataset) if v]
    missing: list[str] = []
    for method, (style, marker) in ENHANCEMENT_STYLE.items():
        drawn, lacking = 0, []
        for variant in variants:
            c = standalone_reference(runs, task, dataset, variant, method).curve
            if c is None:
                lacking.append(variant)
            else:
                _plot(ax, c, metric.scale, colours[variant], style, marker, c.label)
                drawn += 1
        if drawn == 0:
            missing.append(f"no runs found for {method} {task}")
        else:
            missing += [f"no {method} {task} runs on the {v} base" for v in lacking]
    if reference:
        missing += _reference_lines(ax, runs, task, metric.name)
    caption = (f"{metric.label} vs total rate (base + enhancement; direct = base only). "
               "Colour: which base; line style: method (solid scalable, dotted direct, dashed "
               "standalone-refit, dash-dot standalone-independent).")
    return _finish(fig, ax, name, title, caption, missing)


# --- drawing helpers ---------------------------------------------------------------------------

def _new_figure(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(9.0, 4.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _colours(runs: list[Run]) -> dict[str, str]:
    """A fixed colour per base variant: baseline blue, proposed variants warm colours."""
    colours = {"baseline": "tab:blue", "unknown base": "tab:gray"}
    proposed = sorted({r.base_variant for r in runs} - set(colours) - {""})
    colours.update({v: PROPOSED_COLOURS[i % len(PROPOSED_COLOURS)] for i, v in enumerate(proposed)})
    return colours


def _plot(ax: Axes, c, scale: float, colour: str, style: str, marker: str, label: str) -> None:
    """One curve; with the 95% interval of each point's image means as error bars."""
    ax.plot(c.rate, c.quality * scale, linestyle=style, marker=marker, color=colour,
            label=f"{label} ({len(c)} run{'s' if len(c) != 1 else ''})", markersize=5)
    if c.quality_err is not None and np.isfinite(c.quality_err).any():
        ax.errorbar(c.rate, c.quality * scale, xerr=np.nan_to_num(c.rate_err),
                    yerr=np.nan_to_num(c.quality_err) * scale, fmt="none", ecolor=colour,
                    elinewidth=0.8, capsize=2, alpha=0.7)


def _reference_lines(ax: Axes, runs: list[Run], task: str, metric: str) -> list[str]:
    refs = [r for r in select(runs, task=task, method="uncompressed") if metric in r.metrics]
    for run in refs:
        value = run.metrics[metric] * METRICS[metric].scale
        ax.axhline(value, color="black", linestyle="--", linewidth=1,
                   label=f"uncompressed (no codec): {value:.4g}")
    return [] if refs else [f"no runs found for the uncompressed {task} reference"]


def _finish(fig: Figure, ax: Axes, name: str, title: str, caption: str,
            missing: list[str], higher_is_better: bool = True) -> FigureResult:
    """Legend outside the axes (right); "no runs found" lines inside, in the corner RD curves
    leave empty (lower right when higher is better, upper right for errors such as RMSE)."""
    if not ax.lines:
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    if missing:
        x, y, va, ha = ((0.5, 0.5, "center", "center") if not ax.lines else
                        (0.98, 0.02, "bottom", "right") if higher_is_better else
                        (0.98, 0.98, "top", "right"))
        ax.text(x, y, "\n".join(missing), transform=ax.transAxes, va=va, ha=ha, fontsize=7,
                color="dimgray", bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none"})
    if ax.lines:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    prefixed = [f"{title}: {m}" for m in missing]
    return FigureResult(name, title, fig, caption, prefixed)
