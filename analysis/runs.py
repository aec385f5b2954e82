"""Runs on disk → one tidy row per run, and RD curves from those rows.

    runs = load_runs("runs/")            # every */eval.nc under runs/, recursively
    table = runs_table(runs)             # pandas DataFrame, one row per run
    c = curve(runs, task="depth", method="proposed")    # Curve: rate (bpp), quality

In:  a runs directory. Each run directory ``RUN/`` holds ``RUN/eval.nc`` (xarray, dims
     ``image`` and ``layer``; ``bpp_actual``/``bpp_estimated`` in bits per pixel of the original
     image; task metrics ``psnr`` dB, ``map`` and ``miou`` "1", ``rmse`` disparity pixels; every
     variable with a ``units`` attr; attrs ``config`` = the training config as JSON), and
     optionally ``config.json``/``meta.json``. The run's kind comes from its config's
     ``experiment`` name, ``{preset}-{family}-{method}``; families, methods and presets are
     those of ``taskcodecs.experiments.table`` (imported from there, no torch).
Out: :class:`Run` objects (a run is a point: delete its folder and the point is gone).

Reductions (one documented rule for every curve): a per-image variable is averaged over
images; a variable with a ``layer`` dim is read at the run's top layer ("enhancement" where
present, else "base"); rates are ``bpp_actual`` (real bitstream bytes) at the top layer.
``eval.nc`` stores rates *cumulatively* per layer (the ``enhancement`` value counts the bytes
of both layers, the stream cut after that layer), so scalable/standalone points sit at the
base + enhancement rate, and the enhancement layer's own rate is the difference. Every run found is a point; no run
is selected or dropped.

Here: loading a runs directory, the table and the curves. What a run is (:class:`Run`, the
metrics): :mod:`analysis.run_record`; reading one from its files: :mod:`analysis.run_files`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.run_files import attach_base, read_run
from analysis.run_record import (
    BASE_METHODS,
    BPP_UNITS,
    COMPRESSAI_METHODS,
    FAMILIES,
    METHODS,
    METRICS,
    REFERENCE_METHODS,
    TASK_METRIC,
    Metric,
    Run,
    RunsError,
    variant_label,
)
from infra.io import find_files

# the record's names stay importable from here (analysis.runs is the public module)
__all__ = [
    "BASE_METHODS", "BPP_UNITS", "COMPRESSAI_METHODS", "FAMILIES", "METHODS", "METRICS",
    "REFERENCE_METHODS", "TASK_METRIC", "Curve", "Metric", "Run", "RunsError", "base_variants",
    "curve", "load_runs", "runs_table", "select", "variant_label",
]


@dataclass(frozen=True)
class Curve:
    """RD points of one method (and base): rate in bits per original-image pixel."""

    label: str
    method: str
    base_variant: str
    metric: str
    rate: np.ndarray  # sorted ascending
    quality: np.ndarray  # metric values as stored (see METRICS[metric].scale for display)
    runs: tuple[str, ...]
    rate_err: np.ndarray | None = None  # per point: 95% half-width over images (or NaN)
    quality_err: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.rate.size)


def load_runs(runs_dir: str | Path) -> list[Run]:
    """Every ``eval.nc`` under ``runs_dir`` (recursively) as a :class:`Run`, sorted by name."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise RunsError(f"{root}: runs directory not found (expected a folder holding "
                        "RUN/eval.nc files)")
    paths = find_files(root, "eval.nc")
    runs = [read_run(path, root) for path in paths]
    for run in runs:
        if run.role == "enhancement":
            attach_base(run, runs, root)
    return runs


def runs_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run: what it is, mean bpp per layer and total, metrics (as stored)."""
    rows = []
    for run in runs:
        rows.append({
            "run": run.name, "experiment": run.experiment, "method": run.method,
            "task": run.task, "dataset": run.dataset, "base": run.base_variant,
            "base_run": run.base.name if run.base else (run.base_ref or ""),
            "rate_weight": run.rate_weight, "reward_weight": run.reward_weight,
            "bpp_base": run.bpp.get("base", np.nan),
            "bpp_enhancement": run.bpp_enhancement,
            "bpp_total": run.bpp_total, "bpp_total_estimated": run.bpp_estimated_total,
            **{name: run.metrics.get(name, np.nan) for name in METRICS},
            "n_images": run.n_images,
        })
    return pd.DataFrame(rows)


def select(runs: list[Run], **criteria: Any) -> list[Run]:
    """Runs whose attributes equal every ``criteria`` value (``base_variant="baseline"``...)."""
    return [r for r in runs if all(getattr(r, k) == v for k, v in criteria.items())]


def curve(runs: list[Run], *, task: str, method: str, dataset: str | None = None,
          base_variant: str | None = None, metric: str | None = None) -> Curve | None:
    """The RD curve of ``method`` for ``task`` (None if no run has a finite point).

    Base tasks: ``method`` "baseline"/"proposed", one curve per reward_weight unless
    ``base_variant`` picks one. ``task="reconstruction", method="direct"`` is the bases' own
    reconstruction (g_a on Ŷ_b): base runs of ``dataset`` at their base-layer PSNR.
    """
    metric = metric or TASK_METRIC[task]
    if task == "reconstruction" and method == "direct":
        chosen = [r for r in runs if r.role == "base" and r.dataset == dataset]
    else:
        chosen = [r for r in runs if r.task == task and r.method == method
                  and (dataset is None or r.dataset == dataset)]
    if base_variant is not None:
        chosen = [r for r in chosen if r.base_variant == base_variant]
    rate_of = "psnr_base" if task == "reconstruction" and method == "direct" else metric
    points = [(r.bpp_total, r.metrics.get(metric, np.nan), r.name, r.spread.get("rate", np.nan),
               r.spread.get(rate_of, np.nan)) for r in chosen]
    points = sorted(p for p in points if np.isfinite(p[0]) and np.isfinite(p[1]))
    if not points:
        return None
    variant = base_variant or ", ".join(sorted({r.base_variant for r in chosen}))
    label = variant if method in BASE_METHODS else f"{method} on {variant} base"
    column = lambda k: np.array([p[k] for p in points])  # noqa: E731
    return Curve(label, method, variant, metric, column(0), column(1),
                 tuple(p[2] for p in points), column(3), column(4))


def base_variants(runs: list[Run], dataset: str | None = None) -> list[str]:
    """The base variants present (as bases, or as the base of an enhancement), sorted."""
    return sorted({r.base_variant for r in runs if r.role not in ("reference", "standalone")
                   and (dataset is None or r.dataset == dataset)})
