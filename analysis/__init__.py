"""Analysis: RD curves, BD-rate, the paper's figures, and the information-vs-compatibility gap.

    from analysis import bd_rate, load_runs, runs_table, write_report
    bd_rate([0.1, 0.2, 0.4], [30, 33, 36], [0.08, 0.16, 0.32], [30, 33, 36])   # -20.0 (%)
    runs = load_runs("runs/")                  # every */eval.nc under runs/
    write_report("runs/", "report/", vinfo={"baseline": "vinfo/b", "proposed": "vinfo/p"})

Command line: ``python -m analysis.report RUNS_DIR --out DIR [--vinfo LABEL=PATH ...]``.
Imports infra, taskcodecs and vinfo only (the README's dependency rule).
"""

from analysis.bdrate import METHODS as BD_METHODS
from analysis.bdrate import BDResult, RDCurveWarning, bd_rate
from analysis.figures import FigureResult, all_figures
from analysis.gap import (
    VinfoInputError,
    gap_figure,
    gap_rows,
    ladder_rows,
    load_vinfo,
    rate_gain_at_matched_quality,
)
from analysis.runs import METRICS, Curve, Run, RunsError, curve, load_runs, runs_table
from infra.lazy import lazy_exports

# ``write_report`` and ``bd_comparisons`` live in analysis.report, imported on first use
# (importing it here would make ``python -m analysis.report`` import the module twice).
__getattr__ = lazy_exports(__name__, {"write_report": "analysis.report",
                                      "bd_comparisons": "analysis.report"})

__all__ = [
    "BD_METHODS",
    "BDResult",
    "Curve",
    "FigureResult",
    "METRICS",
    "RDCurveWarning",
    "Run",
    "RunsError",
    "VinfoInputError",
    "all_figures",
    "bd_comparisons",
    "bd_rate",
    "curve",
    "gap_figure",
    "gap_rows",
    "ladder_rows",
    "load_runs",
    "load_vinfo",
    "rate_gain_at_matched_quality",
    "runs_table",
    "write_report",
]
