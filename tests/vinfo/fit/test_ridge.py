"""Closed-form ridge: equal to scikit-learn's Ridge, singular systems, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge

from vinfo.fit.ridge import ridge_solve


def _data(n: int, d: int, o: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) + rng.normal(size=d)  # columns with non-zero means
    y = x @ rng.normal(size=(d, o)) + 3.0 + 0.3 * rng.normal(size=(n, o))
    return x, y


CASES = [(alpha, fit_intercept, shape) for alpha in (0.0, 0.5, 30.0)
         for fit_intercept in (True, False)
         for shape in ((200, 7, 5), (12, 30, 3))  # primal and dual (d > n) forms
         if alpha > 0 or shape[0] > shape[1]]  # alpha 0 with d > n: no unique solution


@pytest.mark.parametrize("alpha, fit_intercept, shape", CASES)
def test_ridge_equals_sklearn(alpha, fit_intercept, shape):
    x, y = _data(*shape)
    weight, intercept = ridge_solve(torch.from_numpy(x), torch.from_numpy(y), alpha,
                                    fit_intercept)
    ref = Ridge(alpha=alpha, fit_intercept=fit_intercept).fit(x, y)
    assert weight.dtype == torch.float64 and weight.shape == (shape[1], shape[2])
    assert np.abs(weight.numpy() - ref.coef_.T).max() <= 1e-6
    assert np.abs(intercept.numpy() - ref.intercept_).max() <= 1e-6


def test_one_output_and_the_unpenalised_intercept():
    x, y = _data(100, 3, 1)
    weight, intercept = ridge_solve(torch.from_numpy(x), torch.from_numpy(y[:, 0]), 1e6)
    assert weight.shape == (3,) and intercept.dim() == 0
    # a huge penalty shrinks the weights to 0, never the intercept: it becomes the mean
    assert weight.abs().max() < 1e-2 and float(intercept) == pytest.approx(y.mean(), abs=1e-2)


def test_singular_systems_give_the_minimum_norm_solution():
    x, y = _data(50, 4, 2)
    x = np.c_[x, x[:, :1], np.full(50, 2.0)]  # a duplicated and a constant column
    weight, intercept = ridge_solve(torch.from_numpy(x), torch.from_numpy(y), 0.0)
    centred = x - x.mean(0)
    ref, *_ = np.linalg.lstsq(centred, y - y.mean(0), rcond=None)  # minimum norm
    assert np.abs(weight.numpy() - ref).max() < 1e-8
    assert np.abs(weight.numpy()[-1]).max() == 0.0  # the constant column gets no weight
    assert np.allclose(x @ weight.numpy() + intercept.numpy(), x @ ref + y.mean(0)
                       - x.mean(0) @ ref)
    zero, bias = ridge_solve(torch.zeros(10, 3), torch.arange(10.0), 0.0)  # a null's input
    assert torch.equal(zero, torch.zeros(3)) and float(bias) == pytest.approx(4.5)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="alpha"):
        ridge_solve(torch.zeros(4, 2), torch.zeros(4), -1.0)
    with pytest.raises(ValueError, match="same n"):
        ridge_solve(torch.zeros(4, 2), torch.zeros(5))
