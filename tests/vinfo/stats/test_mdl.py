"""Prequential codelength pieces: reference codes and block codelengths in bits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vinfo.fit.loop import fit_probe
from vinfo.fit.settings import FitSettings
from vinfo.probes.families import parse_family
from vinfo.probes.probe import ProbeData
from vinfo.probes.targets import make_target
from vinfo.stats.mdl import Codelength, block_codelength, reference_codelength


def _data(n: int = 200) -> ProbeData:
    rng = np.random.default_rng(0)
    z = torch.from_numpy(rng.normal(size=(n, 2)).astype(np.float32))
    y = (z[:, :1] > 0).long() + (z[:, 1:] > 0).long()  # 3 classes, a function of z
    return ProbeData(z, y, torch.ones_like(y, dtype=torch.bool), None)


def test_reference_code_is_uniform_for_categorical_and_discretized():
    data = _data()
    target = make_target("categorical", data.y, data.mask, num_classes=3)
    code = reference_codelength(target, data, np.arange(50))
    assert code.bits == pytest.approx(50 * math.log2(3))
    pixels = torch.randint(0, 256, (10, 3, 4, 4))
    valid = torch.ones_like(pixels, dtype=torch.bool)
    image = ProbeData(torch.zeros(10, 1, 1, 1), pixels, valid, 4)
    disc = make_target("discretized", pixels, image.mask)
    code = reference_codelength(disc, image, np.arange(10))
    assert code.bits == pytest.approx(10 * 3 * 16 * 8.0)
    assert code.bits_per_unit == pytest.approx(3 * 8.0)  # per pixel, summed over 3 channels


def test_a_trained_probe_codes_a_block_in_fewer_bits_than_the_uniform_code():
    data = _data()
    target = make_target("categorical", data.y, data.mask, num_classes=3)
    fit = fit_probe(parse_family("linear"), target, data, np.arange(100), np.arange(100, 140),
                    FitSettings(max_steps=100, lr=5e-2), seed=0)
    block = np.arange(140, 200)
    learned = block_codelength(fit.probe, target, data, block, 64)
    uniform = reference_codelength(target, data, block)
    assert learned.bits < 0.6 * uniform.bits
    total = learned + uniform
    assert total.bits == pytest.approx(learned.bits + uniform.bits)
    assert float(total.count.sum()) == 120


def test_gaussian_block_code_uses_the_learned_scale():
    rng = np.random.default_rng(1)
    z = torch.from_numpy(rng.normal(size=(100, 1)).astype(np.float32))
    y = 2 * z + 0.1 * torch.randn(100, 1, generator=torch.Generator().manual_seed(0))
    data = ProbeData(z, y, torch.ones_like(y, dtype=torch.bool), None)
    target = make_target("gaussian", y, data.mask)
    fit = fit_probe(parse_family("linear"), target, data, np.arange(60), np.arange(60, 80),
                    FitSettings(), seed=0)
    code = block_codelength(fit.probe, target, data, np.arange(80, 100), 64)
    var = float(target.scale_from_log(fit.probe.log_scale)[0])
    with torch.no_grad():
        residual = (y[80:] - target.location(fit.probe(z[80:]))).double()
    nll = 0.5 * torch.log(torch.tensor(2 * math.pi * var)) + residual**2 / (2 * var)
    expected = float(nll.sum())
    assert code.bits == pytest.approx(expected / math.log(2), rel=1e-6)
    assert isinstance(code, Codelength) and code.bits < 0  # a sharp density: differential code
