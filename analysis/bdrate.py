"""Bjøntegaard-delta rate (BD-rate): the average rate difference between two RD curves.

    result = bd_rate(rate_ref, psnr_ref, rate_test, psnr_test)            # Akima (default)
    result.percent, result.method, result.overlap, result.warnings
    float(result)                                                         # -12.3 (a number)

In:  two rate-distortion curves, each a few (rate, quality) points. Rates are positive, in
     one unit for both curves (here: bits per pixel of the original full-resolution image);
     quality is the task metric (PSNR dB, mAP, mIoU, or an error such as RMSE).
Out: a :class:`BDResult`, a ``float`` subclass holding the BD-rate in percent: the test
     curve's rate relative to the reference's, averaged over the quality interval both
     curves cover. Negative = the test curve needs less rate for the same quality.

How it is computed (all methods): log(rate) is modelled as a function of quality for each
curve, both models are integrated over the common quality interval ``[q_lo, q_hi]``, and
``percent = (exp(mean log-rate difference) - 1) * 100`` (the log base cancels).

Every method is computed by the ``bjontegaard`` package (``bjontegaard.bd_rate``):

- ``"akima"`` (default) and ``"pchip"``: piecewise interpolants through the points (Akima
  falls back to linear for two points). Need >= 2 points per curve.
- ``"cubic"``: the original VCEG-M33 computation: a least-squares cubic polynomial of
  log(rate) in quality per curve, integrated in closed form over the overlap. Needs >= 4
  points per curve (with exactly 4 the cubic passes through them).

Lower-is-better metrics (``higher_is_better=False``, e.g. disparity RMSE): the quality axis is
negated (q = -RMSE) before anything else, so "better" points are always to the right. The BD
value itself is unchanged by the flip (it is a mean of the log-rate difference over the same
set of qualities); what the flag changes is the direction of the monotonicity check (rate up
must mean RMSE down). ``overlap`` is always reported in the metric's own units, low to high.

Checks: each curve must be monotone (more rate, better quality); a curve that is not gives a
:class:`RDCurveWarning` (also recorded in ``result.warnings``) and the BD value is still
computed from the points as they are. A relative overlap below ``min_overlap`` also warns.
Too few points, no overlap, repeated quality values, non-positive or non-finite inputs raise
``ValueError`` with the offending values.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import bjontegaard
import numpy as np

METHODS = ("akima", "pchip", "cubic")
MIN_POINTS = {"akima": 2, "pchip": 2, "cubic": 4}


class RDCurveWarning(UserWarning):
    """An RD curve that is not monotone, or two curves that barely overlap."""


class BDResult(float):
    """A BD-rate in percent (a ``float``) with how it was obtained.

    Attributes: ``percent`` (the value), ``method`` ("akima" | "pchip" | "cubic"),
    ``overlap`` = (low, high), the quality interval integrated over in the metric's own units,
    ``overlap_fraction`` = its length over the length of the union of both curves' quality
    ranges, ``higher_is_better``, ``warnings`` (tuple of messages raised while computing it).
    """

    method: str
    overlap: tuple[float, float]
    overlap_fraction: float
    higher_is_better: bool
    warnings: tuple[str, ...]

    def __new__(cls, percent: float, *, method: str, overlap: tuple[float, float],
                overlap_fraction: float, higher_is_better: bool,
                warnings: Sequence[str] = ()) -> BDResult:
        obj = super().__new__(cls, percent)
        obj.method = method
        obj.overlap = (float(overlap[0]), float(overlap[1]))
        obj.overlap_fraction = float(overlap_fraction)
        obj.higher_is_better = higher_is_better
        obj.warnings = tuple(warnings)
        return obj

    @property
    def percent(self) -> float:
        return float(self)

    def __repr__(self) -> str:
        low, high = self.overlap
        return (f"BDResult({self.percent:.4f}%, method={self.method!r}, "
                f"overlap=({low:g}, {high:g}), warnings={len(self.warnings)})")

    def __str__(self) -> str:
        return f"{self.percent:+.2f}%"

    def __reduce__(self):  # keep copy/deepcopy working for a float subclass with attributes
        return (_rebuild, (self.percent, self.method, self.overlap, self.overlap_fraction,
                           self.higher_is_better, self.warnings))


def _rebuild(percent, method, overlap, fraction, higher, messages) -> BDResult:
    return BDResult(percent, method=method, overlap=overlap, overlap_fraction=fraction,
                    higher_is_better=higher, warnings=messages)


def bd_rate(rate_ref: Sequence[float], dist_ref: Sequence[float],
            rate_test: Sequence[float], dist_test: Sequence[float],
            method: str = "akima", *, higher_is_better: bool = True,
            min_overlap: float = 0.5) -> BDResult:
    """BD-rate of the test curve against the reference, in percent (negative = test saves).

    ``rate_*``: positive rates (any one unit, the same for both curves); ``dist_*``: the
    quality metric at those rates (PSNR, mAP, mIoU with ``higher_is_better=True``; RMSE with
    ``higher_is_better=False``). Points may come in any order. ``min_overlap``: warn when the
    common quality interval is shorter than this fraction of the union of both ranges.
    """
    if method not in METHODS:
        raise ValueError(f"unknown BD-rate method {method!r}; expected one of {METHODS}")
    sign = 1.0 if higher_is_better else -1.0
    ref = _curve("reference", rate_ref, dist_ref, method)
    test = _curve("test", rate_test, dist_test, method)
    messages: list[str] = []
    for name, (rate, quality) in (("reference", ref), ("test", test)):
        message = _monotonicity_problem(name, rate, sign * quality, higher_is_better)
        if message:
            messages.append(message)

    q_ref, q_test = sign * ref[1], sign * test[1]
    low, high = max(q_ref.min(), q_test.min()), min(q_ref.max(), q_test.max())
    if not high > low:
        raise ValueError(
            f"the curves do not overlap in quality: reference covers "
            f"[{ref[1].min():g}, {ref[1].max():g}], test covers "
            f"[{test[1].min():g}, {test[1].max():g}]; BD-rate needs a common quality interval"
        )
    union = max(q_ref.max(), q_test.max()) - min(q_ref.min(), q_test.min())
    fraction = (high - low) / union
    if fraction < min_overlap:
        messages.append(f"the curves overlap on only {fraction:.0%} of their quality range "
                        f"(warning below {min_overlap:.0%}); the BD-rate extrapolates little "
                        "but averages over a short interval")

    percent = _package_bd_rate(ref[0], q_ref, test[0], q_test, method, messages)

    for message in messages:
        warnings.warn(message, RDCurveWarning, stacklevel=2)
    overlap = (sign * low, sign * high) if higher_is_better else (sign * high, sign * low)
    return BDResult(percent, method=method, overlap=overlap, overlap_fraction=fraction,
                    higher_is_better=higher_is_better, warnings=messages)


def _curve(name: str, rate: Sequence[float], dist: Sequence[float],
           method: str) -> tuple[np.ndarray, np.ndarray]:
    """Validated float arrays (rate, quality) of one curve."""
    rate_arr = np.asarray(rate, dtype=float).ravel()
    dist_arr = np.asarray(dist, dtype=float).ravel()
    if rate_arr.size != dist_arr.size:
        raise ValueError(f"{name} curve: {rate_arr.size} rates but {dist_arr.size} quality values")
    if rate_arr.size < MIN_POINTS[method]:
        raise ValueError(f"{name} curve has {rate_arr.size} point(s); method {method!r} needs "
                         f"at least {MIN_POINTS[method]}")
    if not (np.all(np.isfinite(rate_arr)) and np.all(np.isfinite(dist_arr))):
        raise ValueError(f"{name} curve has non-finite values: rate={rate_arr.tolist()}, "
                         f"quality={dist_arr.tolist()}")
    if np.any(rate_arr <= 0):
        raise ValueError(f"{name} curve has non-positive rates {rate_arr.tolist()}; BD-rate "
                         "works on log(rate)")
    if np.unique(dist_arr).size != dist_arr.size:
        raise ValueError(f"{name} curve repeats a quality value ({dist_arr.tolist()}); rate as "
                         "a function of quality is undefined there")
    return rate_arr, dist_arr


def _monotonicity_problem(name: str, rate: np.ndarray, quality: np.ndarray,
                          higher_is_better: bool) -> str | None:
    """A message if quality (already oriented: larger = better) does not rise with rate."""
    order = np.argsort(rate, kind="stable")
    if np.all(np.diff(rate[order]) > 0) and np.all(np.diff(quality[order]) > 0):
        return None
    better = "increase" if higher_is_better else "decrease"
    pairs = ", ".join(f"({r:g}, {q:g})" for r, q in zip(rate[order],
                                                         quality[order] * (1 if higher_is_better else -1)))
    return (f"{name} curve is not monotone: the metric should {better} with rate, points "
            f"(rate, metric) sorted by rate: {pairs}")


def _package_bd_rate(rate_ref: np.ndarray, q_ref: np.ndarray, rate_test: np.ndarray,
                     q_test: np.ndarray, method: str, messages: list[str]) -> float:
    """``bjontegaard.bd_rate`` on curves sorted by quality; its warnings go to ``messages``."""
    ref_order, test_order = np.argsort(q_ref), np.argsort(q_test)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = bjontegaard.bd_rate(
            rate_ref[ref_order], q_ref[ref_order], rate_test[test_order], q_test[test_order],
            method=method, require_matching_points=False, min_overlap=0.0,
        )
    messages.extend(f"bjontegaard: {w.message}" for w in caught)
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"bjontegaard.bd_rate returned {value} for method {method!r}")
    return value

