"""The fit loop: probes that start at the null, closed form, early stopping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge

from vinfo.fit.loop import fit_probe, masked_ridge, minibatch_plan
from vinfo.fit.settings import FitSettings
from vinfo.probes.families import parse_family
from vinfo.probes.probe import ProbeData, heldout_nats, split_stats
from vinfo.probes.targets import make_target


def _vector_data(n: int = 300, seed: int = 0) -> ProbeData:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3)).astype(np.float32)
    y = (z @ np.array([1.0, -0.5, 0.0]) + 0.5 * rng.normal(size=n)).astype(np.float32)
    y = torch.from_numpy(y).reshape(n, 1)
    return ProbeData(torch.from_numpy(z), y, torch.ones_like(y, dtype=torch.bool), None)


def test_probe_starts_at_the_null_solution():
    data = _vector_data()
    target = make_target("gaussian", data.y, data.mask)
    fit, val = np.arange(200), np.arange(200, 250)
    settings = FitSettings(max_steps=0, closed_form_linear=False)
    cond = fit_probe(parse_family("mlp-16"), target, data, fit, val, settings, seed=0)
    null = fit_probe(parse_family("mlp-16"), target, data, fit, val, settings, seed=0, null=True)
    with torch.no_grad():
        assert torch.allclose(cond.probe(data.z), null.probe(data.z))
        assert torch.allclose(target.location(cond.probe(data.z[:1])), data.y[fit].mean())
    assert cond.val_nats == pytest.approx(null.val_nats) and cond.best_step == 0


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


def test_early_stopping_keeps_the_best_validation_checkpoint():
    data = _vector_data(n=120)
    target = make_target("gaussian", data.y, data.mask)
    fit, val = np.arange(60), np.arange(60, 90)
    settings = FitSettings(max_steps=200, lr=3e-2, eval_every=5, patience=3,
                           closed_form_linear=False)
    result = fit_probe(parse_family("mlp-64"), target, data, fit, val, settings, seed=0)
    start = fit_probe(parse_family("mlp-64"), target, data, fit, val,
                      FitSettings(max_steps=0), seed=0)
    again = heldout_nats(target, split_stats(result.probe, target, data, val, 64))
    assert again == pytest.approx(result.val_nats, abs=1e-6)
    assert result.val_nats < start.val_nats and result.best_step > 0
    assert result.steps_run <= 200


def test_same_seed_same_fit_other_seed_other_init():
    data = _vector_data(n=120)
    target = make_target("gaussian", data.y, data.mask)
    fit, val = np.arange(60), np.arange(60, 90)
    settings = FitSettings(max_steps=30, eval_every=10, batch_size=16, closed_form_linear=False)
    runs = [fit_probe(parse_family("mlp-8"), target, data, fit, val, settings, seed=s)
            for s in (0, 0, 1)]
    weights = [r.probe.zpath.trunk[0].weight.detach() for r in runs]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


def test_minibatch_plan_reshuffles_each_epoch_from_the_seed():
    fit = np.arange(100, 130)
    settings = FitSettings(max_steps=7, step_limit=7, batch_size=8)
    plan = minibatch_plan(fit, settings, seed=3)
    assert plan.shape == (7, 8)
    # 3 batches per epoch (the 6 left over wait for the next reshuffle): distinct samples
    for epoch in (plan[:3], plan[3:6]):
        seen = set(epoch.flatten().tolist())
        assert len(seen) == 24 and seen <= set(fit)
    assert torch.equal(plan, minibatch_plan(fit, settings, seed=3))
    assert not torch.equal(plan, minibatch_plan(fit, settings, seed=4))
    assert minibatch_plan(fit, FitSettings(batch_size=0), seed=3) is None
    assert minibatch_plan(fit, FitSettings(batch_size=30), seed=3) is None  # all: full batch


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


def test_a_fit_that_keeps_its_start_brings_its_best_trained_checkpoint_along():
    """Where selection keeps step 0 (the null) the raw estimate still needs what training
    found: the member at the end of training comes back as ``trained`` (the best later
    checkpoint could be a step away from the null, with no spread to speak of)."""
    from torch import nn

    from vinfo.fit.loop import BestCheckpoint

    probe = nn.Linear(1, 1)
    with torch.no_grad():
        probe.weight.fill_(0.0)
    track = BestCheckpoint(probe, 1.0, FitSettings(max_steps=30, eval_every=10, patience=9))
    for step, value in ((10, 1.5), (20, 1.2), (30, 1.4)):
        with torch.no_grad():
            probe.weight.fill_(float(step))
        track.evaluate(step, value)
    kept = track.finish(30, "adam", "")
    assert kept.best_step == 0 and kept.probe.weight.item() == 0.0  # the start, kept
    assert kept.trained is not None and kept.trained.weight.item() == 30.0  # the end
    # a fit that improved on its start keeps its best checkpoint and brings nothing along
    track = BestCheckpoint(probe, 1.0, FitSettings(max_steps=10, eval_every=10, patience=9))
    track.evaluate(10, 0.5)
    assert track.finish(10, "adam", "").trained is None
