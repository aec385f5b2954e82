"""Batched probe fitting: same probes as one after another, per-member stopping, nulls."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import vinfo
import vinfo.fit.batched as batched
from vinfo.fit.batched import ProbeJob, fit_probes, group_modules, stacked_target
from vinfo.fit.settings import FitSettings
from vinfo.fit.splits import head_tail, make_splits
from vinfo.probes.families import build_zpath, parse_family
from vinfo.probes.probe import ProbeData, heldout_nats, split_stats
from vinfo.probes.targets import make_target

# a fixed budget (no growth): over a longer run Adam's amplified rounding separates the two
SETTINGS = FitSettings(batch_size=0, max_steps=40, step_limit=40, lr=1e-2, eval_every=5, patience=3,
                       eval_batch_size=32, closed_form_linear=False, synthesis_widths=(8, 8, 8))


def _grid(kind: str, n: int = 48, stride: int = 4, seed: int = 0) -> ProbeData:
    """z [n, 6, 2, 3]; y a dense target at ``stride``: channel 0 of z, upsampled, + noise."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 6, 2, 3)).astype(np.float32)
    up = np.repeat(np.repeat(z[:, :1], stride, 2), stride, 3)
    noise = rng.normal(size=up.shape).astype(np.float32)
    if kind == "categorical":
        y = (up + 0.5 * noise > 0).astype(np.int64)
    elif kind == "discretized":
        y = np.clip(np.round(128 + 40 * up + 10 * noise), 0, 255).astype(np.int64)
    else:
        y = (up + 0.5 * noise).astype(np.float32)
    y = torch.from_numpy(y)
    return ProbeData(torch.from_numpy(z), y, torch.ones_like(y, dtype=torch.bool), stride)


def _vector(n: int = 200, seed: int = 0) -> ProbeData:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3)).astype(np.float32)
    y = torch.from_numpy((z @ np.array([1.0, -0.5, 0.0]) + 0.5 * rng.normal(size=n))
                         .astype(np.float32)).reshape(n, 1)
    return ProbeData(torch.from_numpy(z), y, torch.ones_like(y, dtype=torch.bool), None)


def _jobs(n: int, seeds=(0, 1), folds: int = 1) -> list[ProbeJob]:
    jobs = []
    for seed in seeds:
        for split in make_splits(n, 0, 0.6, 0.2, folds):
            fit, val = head_tail(split.partition(0, seed, 0.25), len(split.pool), 0.25)
            jobs += [ProbeJob(fit, val, seed, null=True), ProbeJob(fit, val, seed)]
    return jobs


def _both(spec_name, target, data, jobs, settings=SETTINGS):
    spec = parse_family(spec_name)
    seq = fit_probes(spec, target, data, jobs, dataclasses.replace(settings, batched=False))
    bat = fit_probes(spec, target, data, jobs, settings)
    return seq, bat


@pytest.mark.parametrize("family, kind, tol", [
    ("linear", "gaussian", 1e-3), ("mlp-8", "categorical", 1e-3), ("cnn-1x4", "gaussian", 5e-3),
    ("synthesis", "discretized", 1e-3), ("mlp-8", "laplace", 2e-3), ("cnn-1x4", "laplace", 3e-2),
])
def test_batched_fits_equal_sequential_fits(family, kind, tol):
    """Same probes up to rounding. Adam turns rounding-level gradients (a learned scale at
    its optimum: ~1e-7) into full ``lr`` steps, so tiny laplace probes drift furthest."""
    data = _grid(kind)
    target = make_target(kind, data.y, data.mask, 2 if kind == "categorical" else 0)
    jobs = _jobs(48, folds=3)  # unequal fold sizes: padded rows
    seq, bat = _both(family, target, data, jobs)
    # nulls and conditionals train in separate stacks
    assert bat[0].method == f"adam (batched K={len(jobs) // 2})" and seq[0].method == "adam"
    for s, b in zip(seq, bat):
        assert b.val_nats == pytest.approx(s.val_nats, abs=tol)
        assert b.probe.null == s.probe.null
    assert np.median([abs(s.val_nats - b.val_nats) for s, b in zip(seq, bat)]) < tol / 3
    # the returned probes are the kept checkpoints: re-scoring them gives val_nats
    for job, b in zip(jobs, bat):
        again = heldout_nats(target, split_stats(b.probe, target, data, job.val_idx, 16))
        assert again == pytest.approx(b.val_nats, rel=1e-5, abs=1e-6)


def test_minibatches_and_vector_inputs_follow_the_sequential_plan():
    data = _vector()
    target = make_target("gaussian", data.y, data.mask)
    settings = dataclasses.replace(SETTINGS, batch_size=16)
    seq, bat = _both("mlp-16", target, data, _jobs(200, seeds=(0, 1, 2)), settings)
    for s, b in zip(seq, bat):
        assert b.val_nats == pytest.approx(s.val_nats, rel=1e-4, abs=1e-5)
        assert (b.best_step, b.steps_run) == (s.best_step, s.steps_run)


def test_each_member_stops_on_its_own_and_a_null_keeps_step_zero():
    """y = ±1 with balanced fit splits: a Gaussian null starts exactly at its optimum (mean
    0, variance 1, all gradients exactly 0), so it never moves, keeps step 0 and stops after
    ``patience`` evaluations while the conditional members (z carries y) train on."""
    rng = np.random.default_rng(0)
    n = 160
    y = np.where(np.arange(n) % 2 == 0, 1.0, -1.0).astype(np.float32)
    z = np.c_[y + 0.5 * rng.normal(size=n), rng.normal(size=n)].astype(np.float32)
    yt = torch.from_numpy(y).reshape(n, 1)
    data = ProbeData(torch.from_numpy(z), yt, torch.ones_like(yt, dtype=torch.bool), None)
    target = make_target("gaussian", data.y, data.mask)
    jobs = [ProbeJob(np.arange(0, 80), np.arange(80 + 20 * s, 100 + 20 * s), s, null)
            for s in range(2) for null in (True, False)]
    settings = dataclasses.replace(SETTINGS, max_steps=80, patience=2, warmup_steps=0)
    bat = fit_probes(parse_family("mlp-16"), target, data, jobs, settings)
    start = fit_probes(parse_family("mlp-16"), target, data, jobs,
                       dataclasses.replace(settings, max_steps=0))
    for job, b, s in zip(jobs, bat, start):
        if job.null:
            assert b.best_step == 0 and b.steps_run == settings.patience * settings.eval_every
            assert b.val_nats == s.val_nats
            assert all(torch.equal(p, q) for p, q in zip(b.probe.parameters(),
                                                          s.probe.parameters()))
        else:
            assert b.best_step > settings.patience * settings.eval_every
            assert b.val_nats < s.val_nats - 0.5


@pytest.mark.parametrize("maker", [_vector, lambda: _grid("gaussian")])
def test_nulls_ignore_z_and_runs_are_deterministic(maker):
    data = maker()
    target = make_target("gaussian", data.y, data.mask)
    jobs = _jobs(data.z.shape[0])
    other = dataclasses.replace(data, z=torch.randn_like(data.z))
    first = fit_probes(parse_family("mlp-8"), target, data, jobs, SETTINGS)
    again = fit_probes(parse_family("mlp-8"), target, data, jobs, SETTINGS)
    shuffled = fit_probes(parse_family("mlp-8"), target, other, jobs, SETTINGS)
    for job, a, b, c in zip(jobs, first, again, shuffled):
        assert a.val_nats == b.val_nats and a.best_step == b.best_step
        assert all(torch.equal(p, q) for p, q in zip(a.probe.parameters(), b.probe.parameters()))
        if job.null:
            assert c.val_nats == pytest.approx(a.val_nats, abs=1e-9)
            with torch.no_grad():
                assert torch.equal(a.probe(data.z[:3], data.y[:3], data.mask[:3]),
                                   a.probe(other.z[:3], data.y[:3], data.mask[:3]))


@pytest.mark.parametrize("name, stride", [
    ("linear", 4), ("mlp-2x8", 2), ("cnn-2x4", 4), ("synthesis", 4), ("synthesis", 16),
    ("linear", None), ("mlp-2x8", None),
])
def test_grouped_network_is_the_members_side_by_side(name, stride):
    torch.manual_seed(0)
    bodies = []
    for _ in range(3):
        body, _ = build_zpath(parse_family(name), 5, 4, stride, (6, 4, 4), 1)
        with torch.no_grad():
            for p in body.parameters():
                p.normal_(0, 0.3)
        bodies.append(body)
    grouped = group_modules(bodies)
    z = [torch.randn(2, 5, 2, 3) if stride else torch.randn(2, 5) for _ in bodies]
    with torch.no_grad():
        together = grouped(torch.cat(z, 1))
        apart = torch.cat([b(x) for b, x in zip(bodies, z)], 1)
    assert together.shape == apart.shape
    assert torch.allclose(together, apart, atol=1e-5)
    names = [n for n, _ in bodies[0].named_parameters()]
    assert [n for n, _ in grouped.named_parameters()] == names


def test_layers_that_cannot_be_grouped_fall_back_to_one_after_another(monkeypatch):
    with pytest.raises(TypeError, match="buffers"):
        group_modules([nn.BatchNorm2d(3), nn.BatchNorm2d(3)])
    with pytest.raises(TypeError, match="Tanh"):
        group_modules([nn.Sequential(nn.Tanh())] * 2)

    def refuse(modules):
        raise TypeError("layer type Tanh cannot be grouped")

    monkeypatch.setattr(batched, "group_modules", refuse)
    data = _vector(n=60)
    target = make_target("gaussian", data.y, data.mask)
    jobs = _jobs(60, seeds=(0, 1))
    results = fit_probes(parse_family("mlp-4"), target, data, jobs,
                         dataclasses.replace(SETTINGS, max_steps=5))
    conditional = [r for j, r in zip(jobs, results) if not j.null]
    assert all(r.method == "adam" and "not batched" in r.note for r in conditional)
    # nulls are cores alone (no pathway to group): they still train as one stack
    assert all(r.method == "adam (batched K=2)" for j, r in zip(jobs, results) if j.null)


def test_stacked_target_repeats_the_channel_constants():
    data = _grid("gaussian")
    target = make_target("gaussian", data.y, data.mask)
    stacked = stacked_target(target, 3, target.channels)
    assert stacked.channels == 3 * target.channels
    assert torch.equal(stacked.spread, target.spread.repeat(3))


def test_estimate_batched_and_sequential_agree_within_their_intervals():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(240, 3))
    y = np.tanh(z[:, 0]) + 0.5 * rng.normal(size=240)
    common = dict(families=["mlp-16"], seeds=[0, 1], bootstrap=200, max_steps=60, lr=1e-2,
                  eval_every=5, curve_points=3)
    on = vinfo.estimate(z, y, "gaussian", batched=True, **common)
    off = vinfo.estimate(z, y, "gaussian", batched=False, **common)
    assert str(on["fit_method"].values[0]).startswith("adam (batched")
    assert str(off["fit_method"].values[0]) == "adam"
    a, b = float(on["vinfo"][0]), float(off["vinfo"][0])
    assert float(off["vinfo_low"][0]) <= a <= float(off["vinfo_high"][0])
    assert float(on["vinfo_low"][0]) <= b <= float(on["vinfo_high"][0])
    assert abs(a - b) < 0.01  # bits/sample: the same fits up to rounding
    assert np.allclose(on["curve_vinfo"], off["curve_vinfo"], atol=0.01)


def test_jobs_of_different_sizes_train_in_separate_groups():
    data = _vector(n=120)
    target = make_target("gaussian", data.y, data.mask)
    val = np.arange(100, 120)
    jobs = [ProbeJob(np.arange(80), val, 0, True), ProbeJob(np.arange(80), val, 0),
            ProbeJob(np.arange(70), val, 1), ProbeJob(np.arange(20), val, 0, True),
            ProbeJob(np.arange(20), val, 0), ProbeJob(np.arange(8), val, 0)]
    settings = dataclasses.replace(SETTINGS, max_steps=10)
    methods = [r.method for r in fit_probes(parse_family("mlp-4"), target, data, jobs, settings)]
    # nulls and conditionals apart; sizes within 0.8 of the group's largest together
    assert methods == ["adam", "adam (batched K=2)", "adam (batched K=2)", "adam", "adam",
                       "adam"]
