"""Nested rungs on the shared null (vinfo.fit.nested): the properties the design rests on."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from vinfo.fit.loop import fit_probe
from vinfo.fit.nested import NullFeatures, fit_nested, new_nested, shuffled
from vinfo.fit.settings import FitSettings
from vinfo.fit.splits import protocol_split
from vinfo.probes.families import null_spec, parse_family
from vinfo.probes.probe import ProbeData
from vinfo.probes.targets import make_target

SETTINGS = FitSettings(max_steps=30, null_steps=30, eval_every=10, patience=2, batch_size=8,
                       context_width=8, z_features=4, mixtures=2, synthesis_widths=(8, 8, 8))


def _data(n: int = 40, seed: int = 0) -> ProbeData:
    rng = np.random.default_rng(seed)
    y = np.clip(rng.integers(60, 200, size=(n, 3, 1, 1)).repeat(8, 2).repeat(8, 3)
                + np.round(rng.logistic(0, 2, size=(n, 3, 8, 8))), 0, 255).astype(np.int64)
    z = rng.normal(size=(n, 4, 2, 2)).astype(np.float32)
    yt = torch.from_numpy(y)
    return ProbeData(torch.from_numpy(z), yt, torch.ones_like(yt, dtype=torch.bool), 4)


def _null(data: ProbeData, fit: np.ndarray, val: np.ndarray):
    target = make_target("discretized", data.y, data.mask, 256)
    settings = dataclasses.replace(SETTINGS, max_steps=SETTINGS.null_steps)
    return target, fit_probe(null_spec("autoregressive"), target, data, fit, val, settings, 0,
                             null=True).probe.core


def test_a_member_starts_at_its_null_and_a_constant_z_is_the_null_exactly():
    data = _data()
    fit, val = np.arange(24), np.arange(24, 40)
    target, core = _null(data, fit, val)
    probe, _ = new_nested(parse_family("ar-mlp-16"), core, data, SETTINGS, seed=3)
    probe.eval()
    with torch.no_grad():
        null_out = core(None, data.y, data.mask)
        assert torch.equal(probe(data.z, data.y, data.mask), null_out)  # step 0: the null
        # train the coupling away from zero, then feed a constant Z (its mean: u = ū)
        probe.coef.weight.normal_()
        constant = data.z[:1].expand_as(data.z).contiguous()
        probe.set_mean(constant, 8)
        assert torch.allclose(probe(constant, data.y, data.mask), null_out, atol=1e-6)
        probe.set_mean(data.z, 8)
        assert not torch.allclose(probe(data.z, data.y, data.mask), null_out, atol=1e-3)


def test_the_shared_null_stays_frozen_and_the_member_only_trains_z_and_the_coupling():
    data = _data()
    fit, val = np.arange(24), np.arange(24, 40)
    target, core = _null(data, fit, val)
    before = {k: v.clone() for k, v in core.state_dict().items()}
    result = fit_nested(parse_family("ar-linear"), core, target, data, fit, val, SETTINGS, 0)
    for key, value in result.probe.core.state_dict().items():
        assert torch.equal(value, before[key]), key
    trainable = {n for n, p in result.probe.named_parameters() if p.requires_grad}
    assert trainable and all(n.split(".")[0] in ("zpath", "coef") for n in trainable)
    assert result.steps_run > 0 and result.method.endswith("(vinfo.fit.nested)")


def test_cached_null_features_equal_the_network():
    data = _data()
    fit, val = np.arange(24), np.arange(24, 40)
    _, core = _null(data, fit, val)
    feats = NullFeatures(core, data, np.arange(40), 16)
    b = torch.tensor([3, 30, 7])
    with torch.no_grad():
        assert torch.allclose(feats.at(b), core(None, data.y[b], data.mask[b]), atol=1e-5)


def test_shuffled_z_keeps_its_values_and_moves_every_sample():
    data = _data(n=50)
    moved = shuffled(data, seed=4)
    z, zs = data.z.reshape(50, -1), moved.z.reshape(50, -1)
    assert not any(torch.equal(z[i], zs[i]) for i in range(50))  # no sample keeps its own Z
    assert torch.equal(torch.sort(z[:, 0]).values, torch.sort(zs[:, 0]).values)
    assert torch.equal(moved.y, data.y) and torch.equal(shuffled(data, 4).z, moved.z)


def test_the_protocol_split_fits_on_the_leading_samples():
    split = protocol_split(100, 60, seed=2, select_fraction=0.4)
    assert split.fixed and np.array_equal(split.pool[:60], np.arange(60))
    assert len(split.pool) == 60 + 16 and len(split.eval_idx) == 24
    assert set(split.eval_idx).isdisjoint(split.pool) and min(split.eval_idx) >= 60
    assert np.array_equal(split.partition(2, 0, 0.2), split.partition(2, 7, 0.2))
