"""The fit loop: probes that start at the null, early stopping, minibatches, the budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vinfo.fit.loop import fit_probe, minibatch_plan
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
