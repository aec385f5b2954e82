"""Inputs are checked in the dtype the probes use, and class counts are >= 2 (issue 22 (c))."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from vinfo import cli
from vinfo.inputs import VinfoInputError, check_inputs


def _pair(scale=1.0):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(32, 2)) * scale
    return z, (z[:, :1] > 0).astype(np.int64)


def test_values_that_overflow_float32_are_refused_without_a_warning():
    z, y = _pair(scale=1e300)  # finite in float64, inf once cast to float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning on the way
        with pytest.raises(VinfoInputError, match="not finite in float32"):
            check_inputs(z, y, "categorical")
        with pytest.raises(VinfoInputError, match="targets Y: .* not finite in float32"):
            check_inputs(_pair()[0], z[:, :1], "gaussian")
    assert check_inputs(*_pair(scale=1e30), "categorical").z.dtype == np.float32


@pytest.mark.parametrize("k", [0, 1, -3, 2.5])
def test_class_counts_below_two_are_refused(k):
    with pytest.raises(VinfoInputError, match="num_classes .* integer >= 2"):
        check_inputs(*_pair(), "categorical", num_classes=k)
    assert check_inputs(*_pair(), "categorical", num_classes=3).num_classes == 3


@pytest.mark.parametrize("case", ["overflow", "zero-classes"])
def test_the_cli_refuses_them_before_writing(tmp_path, capsys, case):
    z, y = _pair(scale=1e300 if case == "overflow" else 1.0)
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    argv = ["--representations", str(tmp_path / "z.npy"), "--targets", str(tmp_path / "y.npy"),
            "--target-kind", "categorical", "--max-steps", "5", "--out", str(tmp_path / "v")]
    if case == "zero-classes":
        argv += ["--num-classes", "0"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert ("not finite in float32" if case == "overflow" else "integer >= 2") in err
    assert not (tmp_path / "v" / "vinfo.nc").exists()
