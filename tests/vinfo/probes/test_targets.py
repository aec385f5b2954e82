"""Target likelihoods: proper distributions, the profiled-scale identities, marginal fits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vinfo.probes.targets import make_target


@pytest.mark.parametrize("dist", ["logistic", "gaussian"])
def test_discretized_probabilities_sum_to_one_over_256_values(dist):
    y_all = torch.arange(256).reshape(1, 1, 256).expand(6, 1, 256)
    ends = torch.tensor([[0], [255]])
    target = make_target("discretized", ends, torch.ones_like(ends, dtype=torch.bool),
                         discretized_dist=dist)
    # six (mean, log-scale) pairs in raw units: centre, edges, very sharp, very wide
    raw = torch.tensor([[0.0, 0.0], [-1.0, -3.0], [1.2, -1.0], [0.3, -6.0], [0.0, 3.0], [5.0, 0.0]])
    out = raw.reshape(6, 2, 1).expand(6, 2, 256)
    logp = -target.stat(out, y_all, torch.ones(6, 1, 256, dtype=torch.bool))
    total = torch.logsumexp(logp, dim=-1).exp()
    assert torch.allclose(total, torch.ones_like(total), atol=1e-4), total
    assert torch.isfinite(logp).all()


def test_discretized_logistic_matches_cdf_differences():
    ends = torch.tensor([[0], [255]])
    target = make_target("discretized", ends, torch.ones(2, 1, dtype=torch.bool))
    out = torch.tensor([[0.1, -1.5]])
    y = torch.tensor([[130]])
    mean = float(target.loc[0] + target.spread[0] * 0.1)
    scale = float(target.spread[0]) * math.exp(-1.5) * math.sqrt(3) / math.pi
    cdf = lambda x: 1 / (1 + math.exp(-(x - mean) / scale))  # noqa: E731
    expected = -math.log(cdf(130.5) - cdf(129.5))
    got = float(target.stat(out, y, torch.ones(1, 1, dtype=torch.bool)))
    assert got == pytest.approx(expected, rel=1e-5)


def test_categorical_stat_is_cross_entropy_and_masked_values_count_zero():
    y = torch.tensor([[0], [2], [1]])
    mask = torch.tensor([[True], [True], [False]])
    target = make_target("categorical", y, mask, num_classes=3)
    logits = torch.randn(3, 3)
    stat = target.stat(logits, y, mask)
    expected = -torch.log_softmax(logits, 1).gather(1, y)
    assert torch.allclose(stat[:2], expected[:2]) and stat[2, 0] == 0
    # a null's broadcast output goes through the one-pass path and agrees
    null_out = logits[:1].expand(3, 3)
    assert torch.allclose(target.stat(null_out, y, mask), target.stat(null_out.clone(), y, mask))


def test_profiled_gaussian_and_laplace_losses_are_the_closed_forms():
    rng = np.random.default_rng(0)
    y = torch.from_numpy(rng.normal(2.0, 3.0, (500, 1))).float()
    mask = torch.ones_like(y, dtype=torch.bool)
    closed_forms = (("gaussian", lambda e: 0.5 * math.log(2 * math.pi * math.e * (e**2).mean())),
                    ("laplace", lambda e: math.log(2 * math.e * e.abs().mean())))
    for kind, closed in closed_forms:
        target = make_target(kind, y, mask)
        out = torch.full((500, 1), 0.2)  # some location, in standardized units
        stat = target.stat(out, y, mask).double()
        scale = target.profile(stat.sum(0), mask.double().sum(0))
        nll = target.nll_from_stat(stat, mask.double(), scale).mean()
        residual = (y - target.location(out)).double()
        assert float(nll) == pytest.approx(closed(residual), abs=1e-9)


def test_marginal_bias_is_the_marginal_fit():
    y = torch.tensor([[0]] * 6 + [[1]] * 3 + [[2]] * 1)
    mask = torch.ones_like(y, dtype=torch.bool)
    bias = make_target("categorical", y, mask, num_classes=4).marginal_bias(y, mask)
    expected = np.log((np.array([6, 3, 1, 0]) + 0.5) / 12.0)
    assert np.allclose(bias.numpy(), expected, atol=1e-6)
    values = torch.tensor([[1.0], [2.0], [3.0], [10.0]])
    gauss = make_target("gaussian", values, torch.ones_like(values, dtype=torch.bool))
    centre = gauss.location(gauss.marginal_bias(values, torch.ones_like(values, dtype=torch.bool))
                            .reshape(1, 1))
    assert float(centre) == pytest.approx(4.0)  # the mean
    lap = make_target("laplace", values, torch.ones_like(values, dtype=torch.bool))
    centre = lap.location(lap.marginal_bias(values, torch.ones_like(values, dtype=torch.bool))
                          .reshape(1, 1))
    assert float(centre) == pytest.approx(2.0)  # torch's lower median of 4 values


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="unknown target kind 'beta'"):
        make_target("beta", torch.zeros(2, 1), torch.ones(2, 1, dtype=torch.bool))
