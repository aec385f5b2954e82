"""BD-rate: known answers, agreement with the bjontegaard package, warnings and errors."""

from __future__ import annotations

import copy
import math
import warnings

import bjontegaard
import numpy as np
import pytest

from analysis import BDResult, RDCurveWarning, bd_rate
from analysis.bdrate import METHODS

# A smooth, concave RD curve (PSNR-like) with 5 points.
RATE = np.array([0.05, 0.1, 0.2, 0.4, 0.8])
PSNR = 24.0 + 4.0 * np.log2(RATE / 0.05) - 0.15 * np.log2(RATE / 0.05) ** 2
RMSE = 6.0 - 2.0 * np.log10(RATE / 0.05) ** 0.8


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("factor", [0.8, 1.25])
def test_constant_rate_factor_gives_that_factor(method: str, factor: float) -> None:
    result = bd_rate(RATE, PSNR, RATE * factor, PSNR, method=method)
    assert result.percent == pytest.approx((factor - 1) * 100, abs=1e-6)
    assert result.method == method
    assert result.overlap == pytest.approx((PSNR.min(), PSNR.max()))
    assert result.overlap_fraction == pytest.approx(1.0)
    assert result.warnings == ()


@pytest.mark.parametrize("method", METHODS)
def test_lower_is_better_metric(method: str) -> None:
    """RMSE falls with rate; the same rate factor gives the same answer, overlap low→high."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a monotone decreasing RMSE curve must not warn
        result = bd_rate(RATE, RMSE, RATE * 0.8, RMSE, method=method, higher_is_better=False)
    assert result.percent == pytest.approx(-20.0, abs=1e-6)
    assert result.overlap == pytest.approx((RMSE.min(), RMSE.max()))
    assert result.overlap[0] < result.overlap[1]
    assert result.higher_is_better is False


def test_rmse_with_higher_is_better_true_warns() -> None:
    """Forgetting the flag for RMSE is caught by the monotonicity check."""
    with pytest.warns(RDCurveWarning, match="not monotone"):
        bd_rate(RATE, RMSE, RATE * 0.8, RMSE)


@pytest.mark.parametrize("method", METHODS)
def test_agrees_with_bjontegaard_package(method: str) -> None:
    rate_test = RATE * np.array([0.9, 0.85, 0.8, 0.82, 0.88])
    psnr_test = PSNR + np.array([0.1, 0.0, -0.1, 0.05, 0.2])
    ours = bd_rate(RATE, PSNR, rate_test, psnr_test, method=method)
    theirs = bjontegaard.bd_rate(RATE, PSNR, rate_test, psnr_test, method=method,
                                 require_matching_points=False, min_overlap=0)
    assert ours.percent == pytest.approx(theirs, abs=1e-6)
    assert -25 < ours.percent < -5  # and it is a plausible saving, not a degenerate value


def test_cubic_agrees_with_the_package_on_unequal_point_counts() -> None:
    rate_test = np.array([0.06, 0.12, 0.25, 0.5, 0.7, 1.0])
    psnr_test = np.array([24.5, 28.2, 31.5, 34.0, 35.0, 36.1])
    ours = bd_rate(RATE, PSNR, rate_test, psnr_test, method="cubic")
    theirs = bjontegaard.bd_rate(RATE, PSNR, rate_test, psnr_test, method="cubic",
                                 require_matching_points=False, min_overlap=0)
    assert ours.percent == pytest.approx(theirs, abs=1e-6)


def test_point_order_does_not_matter() -> None:
    order = np.array([3, 0, 4, 1, 2])
    a = bd_rate(RATE, PSNR, RATE * 0.7, PSNR + 0.3)
    b = bd_rate(RATE[order], PSNR[order], RATE[order[::-1]] * 0.7, PSNR[order[::-1]] + 0.3)
    assert a.percent == pytest.approx(b.percent, abs=1e-12)


def test_result_is_a_number_with_its_provenance() -> None:
    result = bd_rate(RATE, PSNR, RATE * 0.9, PSNR)
    assert isinstance(result, BDResult) and isinstance(result, float)
    assert float(result) == pytest.approx(-10.0)
    assert result < 0 and f"{result:.1f}" == "-10.0" and str(result) == "-10.00%"
    assert "akima" in repr(result)
    clone = copy.deepcopy(result)
    assert clone.method == "akima" and clone.overlap == result.overlap and clone == result


def test_non_monotone_curve_warns_and_records() -> None:
    psnr = PSNR.copy()
    psnr[2], psnr[3] = psnr[3], psnr[2]  # quality drops while rate rises
    with pytest.warns(RDCurveWarning, match="test curve is not monotone"):
        result = bd_rate(RATE, PSNR, RATE * 0.8, psnr)
    assert len(result.warnings) == 1 and "not monotone" in result.warnings[0]
    assert math.isfinite(result.percent)


def test_short_overlap_warns() -> None:
    with pytest.warns(RDCurveWarning, match="overlap on only"):
        result = bd_rate(RATE, PSNR, RATE, PSNR + 0.8 * np.ptp(PSNR))
    assert result.overlap_fraction < 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "cubic", "rate_test": RATE[:3], "dist_test": PSNR[:3]}, "at least 4"),
        ({"rate_test": RATE[:1], "dist_test": PSNR[:1]}, "at least 2"),
        ({"dist_test": PSNR + 100}, "do not overlap"),
        ({"rate_test": -RATE}, "non-positive"),
        ({"rate_test": RATE[:4]}, "5 quality values"),
        ({"dist_test": np.array([30, 31, 31, 32, 33.0])}, "repeats a quality value"),
        ({"dist_test": np.array([30, 31, np.nan, 32, 33.0])}, "non-finite"),
        ({"method": "linear"}, "unknown BD-rate method"),
    ],
)
def test_errors(kwargs: dict, message: str) -> None:
    args = {"rate_ref": RATE, "dist_ref": PSNR, "rate_test": RATE * 0.8, "dist_test": PSNR}
    args.update(kwargs)
    method = args.pop("method", "akima")
    with pytest.raises(ValueError, match=message):
        bd_rate(**args, method=method)
