"""The closed forms: least squares and ridge for the factorized Gaussian null and linear rung."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge

from tests.vinfo.fit.test_loop import _vector_data
from vinfo.fit.closed_forms import masked_ridge
from vinfo.fit.loop import fit_probe
from vinfo.fit.settings import FitSettings
from vinfo.probes.families import parse_family
from vinfo.probes.probe import ProbeData
from vinfo.probes.targets import make_target


def test_least_squares_is_the_exact_minimiser():
    data = _vector_data()
    target = make_target("gaussian", data.y, data.mask)
    fit, val = np.arange(200), np.arange(200, 250)
    result = fit_probe(parse_family("linear"), target, data, fit, val, FitSettings(), seed=0)
    assert result.method == "least squares"
    design = np.c_[data.z[fit].numpy(), np.ones(200)]
    coef, *_ = np.linalg.lstsq(design, data.y[fit].numpy()[:, 0], rcond=None)
    with torch.no_grad():
        pred = target.location(result.probe(data.z[val]))[:, 0].numpy()
    assert np.allclose(pred, np.c_[data.z[val].numpy(), np.ones(50)] @ coef, atol=1e-4)
    # the learned scale is the fit-split MSE (its MLE)
    residual = data.y[fit].numpy()[:, 0] - design @ coef
    mse = float(target.scale_from_log(result.probe.log_scale)[0])
    assert mse == pytest.approx(np.mean(residual**2), rel=1e-4)


def test_masked_ridge_solves_each_output_over_its_valid_rows():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(60, 3)))
    cols = torch.from_numpy(x.numpy() @ rng.normal(size=(3, 5)) + rng.normal(size=(60, 5)))
    valid = torch.from_numpy(rng.random((60, 5)) > 0.3)
    valid[:, 1] = valid[:, 0]  # two outputs share a pattern: solved together
    valid[:, 4] = False  # no valid row: weights and bias 0
    weight, bias = masked_ridge(x, cols, valid, 0.7)
    for o in range(4):
        rows = valid[:, o].numpy()
        ref = Ridge(alpha=0.7).fit(x.numpy()[rows], cols.numpy()[rows, o])
        assert np.abs(weight[:, o].numpy() - ref.coef_).max() < 1e-6
        assert abs(float(bias[o]) - ref.intercept_) < 1e-6
    assert weight[:, 4].abs().max() == 0 and float(bias[4]) == 0


@pytest.mark.parametrize("masked", [False, True])
def test_closed_form_on_a_grid_is_least_squares_with_positional_intercepts(masked):
    """Linear-Gaussian rung on a latent grid: every target pixel has its own intercept (the
    positional map) and each patch offset its ridge weights, shared by the latent cells:
    the exact minimiser over the valid values, checked against a direct solve of the
    one-hot-intercept design (penalty on the weights only, standardized units)."""
    rng = np.random.default_rng(1)
    n, s, d = 40, 2, 3
    z = rng.normal(size=(n, d, 2, 2)).astype(np.float32)
    pos = rng.normal(size=(1, 1, 4, 4))
    y = np.repeat(np.repeat(z[:, :1] - z[:, 1:2], s, 2), s, 3) + pos + 0.3 * rng.normal(
        size=(n, 1, 4, 4))
    mask = rng.random(y.shape) > 0.25 if masked else np.ones(y.shape, bool)
    data = ProbeData(torch.from_numpy(z), torch.from_numpy(y.astype(np.float32)),
                     torch.from_numpy(mask), s)
    target = make_target("gaussian", data.y, data.mask)
    fit, val = np.arange(30), np.arange(30, 40)
    result = fit_probe(parse_family("linear"), target, data, fit, val,
                       FitSettings(ridge_alpha=2.0), seed=0)
    assert result.method == "ridge least squares (alpha=2)"
    loc, spread = float(target.loc[0]), float(target.spread[0])
    with torch.no_grad():
        pred = (target.location(result.probe(data.z[fit])).numpy() - loc) / spread
    for i, j in ((0, 0), (1, 0), (1, 1)):  # the pixel (i, j) of every 2x2 patch
        values = ((y[fit, 0, i::s, j::s] - loc) / spread).reshape(len(fit), 4)
        valid = mask[fit, 0, i::s, j::s].reshape(len(fit), 4)
        x = z[fit].transpose(0, 2, 3, 1).reshape(len(fit), 4, d)
        onehot = np.broadcast_to(np.eye(4), (len(fit), 4, 4))
        design = np.concatenate([x, onehot], 2)[valid]
        penalty = np.c_[np.sqrt(2.0) * np.eye(d), np.zeros((d, 4))]
        coef, *_ = np.linalg.lstsq(np.r_[design, penalty], np.r_[values[valid], np.zeros(d)],
                                   rcond=None)
        ref = np.concatenate([x, onehot], 2) @ coef  # [n, 4 latent cells]
        ours = pred[:, 0, i::s, j::s].reshape(len(fit), 4)
        assert np.abs(ours - ref).max() < (2e-3 if masked else 1e-4)  # float32 head; ALS


def test_estimate_takes_the_ridge_penalty_and_refuses_a_negative_one():
    import vinfo
    from infra.config import ConfigError

    rng = np.random.default_rng(2)
    z = rng.normal(size=(120, 3))
    y = z[:, 0] + rng.normal(size=120)
    common = dict(families=["linear"], seeds=[0], bootstrap=20, curves=False)
    plain = vinfo.estimate(z, y, "gaussian", **common)
    ridge = vinfo.estimate(z, y, "gaussian", ridge_alpha=1e4, **common)
    assert str(ridge["fit_method"].values[0]) == "ridge least squares (alpha=10000)"
    assert int(ridge["train_steps"].values[0]) == 0
    assert float(ridge["vinfo"][0]) < float(plain["vinfo"][0])  # shrunk towards the null
    with pytest.raises(ConfigError, match="ridge_alpha"):
        vinfo.estimate(z, y, "gaussian", ridge_alpha=-1.0, **common)
