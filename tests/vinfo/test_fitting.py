"""Fitting: seeded splits, probes that start at the null, closed form, early stopping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vinfo.families import parse_family
from vinfo.fitting import (
    FitSettings,
    ProbeData,
    fit_probe,
    head_tail,
    heldout_nats,
    make_splits,
    split_stats,
)
from vinfo.targets import make_target


def _vector_data(n: int = 300, seed: int = 0) -> ProbeData:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3)).astype(np.float32)
    y = (z @ np.array([1.0, -0.5, 0.0]) + 0.5 * rng.normal(size=n)).astype(np.float32)
    y = torch.from_numpy(y).reshape(n, 1)
    return ProbeData(torch.from_numpy(z), y, torch.ones_like(y, dtype=torch.bool), None)


def test_splits_are_seeded_permutations_not_positions():
    a, b, a_again = (make_splits(100, s, 0.6, 0.2)[0] for s in (0, 1, 0))
    assert np.array_equal(a.eval_idx, a_again.eval_idx)
    assert not np.array_equal(a.eval_idx, b.eval_idx)
    assert not np.array_equal(a.eval_idx, np.arange(80, 100))  # not the last 20 positions
    assert len(a.eval_idx) == 20 and len(np.intersect1d(a.eval_idx, a.pool)) == 0
    assert np.array_equal(np.sort(np.r_[a.eval_idx, a.pool]), np.arange(100))
    # refit seeds re-partition the pool; fit and validation never overlap
    fit0, val0 = head_tail(a.partition(0, 0, 0.25), len(a.pool), 0.25)
    fit1, _ = head_tail(a.partition(0, 1, 0.25), len(a.pool), 0.25)
    assert len(fit0) == 60 and len(val0) == 20 and len(np.intersect1d(fit0, val0)) == 0
    assert not np.array_equal(np.sort(fit0), np.sort(fit1))


def test_folds_cover_every_sample_once():
    folds = make_splits(53, 3, 0.6, 0.2, folds=5)
    assert len(folds) == 5
    assert np.array_equal(np.sort(np.concatenate([f.eval_idx for f in folds])), np.arange(53))
    for fold in folds:
        assert len(np.intersect1d(fold.eval_idx, fold.pool)) == 0


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
    weights = [r.probe.body.trunk[0].weight.detach() for r in runs]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])
