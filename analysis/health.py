"""Health before verdicts (DESIGN.md §7): the checks a compared pair of RD curves must pass
before the results table (:mod:`analysis.results_table`) gives it a verdict, and the words
of a verdict.

    collapsed_points(rates, psnr, base_psnr)   # the points of a PSNR curve that collapsed
    bases_matched(diff, baseline_rate)         # the bases' rate difference within bounds
    verdict_text(estimate, higher_is_better, ...)  # "yes: saves rate" / "no verdict: ..."

The checks and their thresholds are listed in :mod:`analysis.compared_curves`'s docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analysis.uncertainty import Estimate

MATCH_TOLERANCE = 0.05  # bases matched within ±5 % of the baseline's base rate (payload)
MIN_POINTS = 4  # per curve, for a BD-rate verdict
MIN_OVERLAP = 0.5  # of the union of both curves' quality ranges
COLLAPSE_MARGIN_DB = 2.0  # a PSNR point this far below its curve's trend is collapsed
# the least quality range a curve must span for a BD-rate to mean something (stored units:
# mIoU 0-1, so 0.10 = 10 mIoU points; the tiny segmentation model is flat above ~0.15 bpp)
MIN_SPAN = {"miou": 0.10}
ONE_SEED = "1 seed: training variance not covered"
SMOKE = "smoke test of the pipeline: no verdict"


def _trend(rates: np.ndarray, quality: np.ndarray, at: float) -> float:
    """The least-squares line quality = a + b ln(rate) through the points (slope b >= 0), at
    ``at``; above every point's rate, capped at their best quality (no extrapolation past
    the codec)."""
    x = np.log(rates)
    if x.size < 2 or np.ptp(x) == 0:
        return math.nan
    slope, _ = np.polyfit(x, quality, 1)
    slope = max(float(slope), 0.0)  # a trend never falls with rate (a bad high point is none)
    line = float(np.mean(quality) + slope * (math.log(at) - np.mean(x)))
    return min(line, float(quality.max())) if at > rates.max() else line


def collapsed_points(rates: np.ndarray, psnr: np.ndarray, base_psnr: np.ndarray,
                     margin_db: float = COLLAPSE_MARGIN_DB) -> list[str]:
    """Collapsed points of one PSNR curve (rates in bits/pixel, PSNR and the base's own
    reconstruction of each point in dB, means over the same images): a point below its base's
    own reconstruction, or more than ``margin_db`` below the line (slope >= 0) through the
    *other* points in ln(rate) (leave-one-out; needs >= 3 points). Returns one description per collapsed
    point, empty if none."""
    rates, psnr, base_psnr = (np.asarray(v, dtype=float) for v in (rates, psnr, base_psnr))
    found = []
    for i in range(rates.size):
        why = []
        if math.isfinite(base_psnr[i]) and psnr[i] < base_psnr[i]:
            why.append(f"below its base's own reconstruction {base_psnr[i]:.2f} dB")
        others = np.arange(rates.size) != i
        if rates.size >= 3:
            trend = _trend(rates[others], psnr[others], rates[i])
            if math.isfinite(trend) and psnr[i] < trend - margin_db:
                why.append(f"{trend - psnr[i]:.1f} dB below its curve's trend")
        if why:
            found.append(f"{psnr[i]:.2f} dB at {rates[i]:.3g} bpp, " + " and ".join(why))
    return found


@dataclass(frozen=True)
class Health:
    """The checks of one comparison (module docstring): ``failed`` names each failed one."""

    failed: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failed

    def text(self) -> str:
        return "healthy" if self.ok else "; ".join(self.failed)



def bases_matched(diff: Estimate, baseline: float) -> bool:
    """Bases matched: the difference's interval covers 0, or it is within ±MATCH_TOLERANCE of
    the baseline's value."""
    return (not diff.excludes_zero) or (
        math.isfinite(baseline) and baseline > 0
        and abs(diff.value) <= MATCH_TOLERANCE * baseline)


def verdict_text(est: Estimate | None, higher_is_better: bool | None, bd: bool = False,
             rate: bool = False, health: Health | None = None,
             matched: bool | None = None) -> str:
    """Words for a difference (proposed − baseline) and its interval: a verdict only for a
    healthy comparison (``health``) whose interval covers the training variance (>= 2 seeds);
    rate rows say whether the bases are matched (``matched``: :func:`bases_matched`)."""
    if health is not None and not health.ok:
        return "no verdict: " + health.text()
    if est is None or not (math.isfinite(est.low) and math.isfinite(est.high)):
        return "no interval (too few resamples could be computed)"
    if rate:
        if not est.excludes_zero:
            return "no: the interval covers 0 (rates matched)"
        if matched:
            return f"yes, but within ±{100 * MATCH_TOLERANCE:g}% (rates matched)"
        return "yes: the base rates differ"
    if est.n_seeds < 2:
        return f"no verdict: {ONE_SEED} (interval over images only)"
    if not est.excludes_zero:
        return "no: the interval covers 0"
    if bd:
        return "yes: " + ("saves rate" if est.value < 0 else "costs rate")
    better = (est.value > 0) == bool(higher_is_better)
    return "yes: proposed " + ("better" if better else "worse")
