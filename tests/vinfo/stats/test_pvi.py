"""PVI bookkeeping: pooled per-unit means, per-sample means, and summaries in bits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vinfo.stats.pvi import per_sample, per_unit


def test_per_unit_pools_values_per_channel_and_sums_channels():
    nll = torch.tensor([[2.0, 1.0], [6.0, 3.0]])  # [n=2, C=2] sums
    count = torch.tensor([[1.0, 1.0], [3.0, 1.0]])
    # channel 0: 8 / 4 = 2; channel 1: 4 / 2 = 2 -> 4 per unit
    assert float(per_unit(nll, count)) == pytest.approx(4.0)
    stacked = torch.stack([nll, 2 * nll])  # [S, n, C]
    assert per_unit(stacked, count).tolist() == pytest.approx([4.0, 8.0])


def test_per_sample_means_skip_empty_channels_and_samples():
    nll = torch.tensor([[2.0, 4.0], [3.0, 0.0], [0.0, 0.0]])
    count = torch.tensor([[2.0, 4.0], [3.0, 0.0], [0.0, 0.0]])
    out = per_sample(nll, count)
    assert out[:2].tolist() == [2.0, 1.0] and math.isnan(float(out[2]))


def test_estimate_pvi_mean_is_vinfo_for_per_sample_targets():
    import vinfo

    rng = np.random.default_rng(2)
    z = rng.normal(size=(300, 2))
    y = z @ np.array([1.0, 0.5]) + rng.normal(size=300)
    ds = vinfo.estimate(z, y, "gaussian", families=["linear"], seeds=[0, 1], bootstrap=50,
                        curves=False)
    # equal counts per sample: the mean PVI is I_V, in the same unit
    assert float(ds["pvi"].mean()) == pytest.approx(float(ds["vinfo"][0]), abs=1e-9)
    assert ds["pvi"].attrs["units"] == ds["vinfo"].attrs["units"] == "bits/sample"
    assert ds["vinfo_low"] < ds["vinfo"] < ds["vinfo_high"]


def test_run_family_fits_all_seeds_and_folds_in_one_batched_call():
    """Conditionals of every (seed, fold) train as one stack, each from its own null; the
    nulls come from the bank, fitted once and shared by a second family."""
    import dataclasses

    from vinfo.fit.nulls import NullBank
    from vinfo.fit.settings import FitSettings
    from vinfo.fit.splits import make_splits
    from vinfo.probes.families import parse_family
    from vinfo.probes.probe import ProbeData
    from vinfo.probes.targets import make_target
    from vinfo.stats.pvi import run_family

    rng = np.random.default_rng(0)
    z = torch.from_numpy(rng.normal(size=(90, 3)).astype(np.float32))
    y = (z[:, :1] ** 2 + 0.3 * torch.randn(90, 1, generator=torch.Generator().manual_seed(0)))
    data = ProbeData(z, y, torch.ones_like(y, dtype=torch.bool), None)
    target = make_target("gaussian", y, data.mask)
    splits = make_splits(90, 0, 0.6, 0.2, folds=3)
    settings = FitSettings(max_steps=30, lr=1e-2, eval_every=5)
    logged: list[str] = []
    runs, banks = [], []
    for flag in (True, False):
        bank, fit = NullBank(), dataclasses.replace(settings, batched=flag)
        key = bank.data_key(target, data, fit)

        def nulls(jobs, bank=bank, key=key, fit=fit):
            return bank.fits("factorized", key, target, data, jobs, fit)

        runs.append(run_family(parse_family("mlp-8"), target, data, splits, 0, [0, 1], 0.25,
                               fit, nulls, log=logged.append))
        banks.append((bank, nulls, fit))
    assert runs[0].method == "adam (batched K=6)" and runs[1].method == "adam"  # 2 x 3
    assert len(logged) == 12  # one line per (seed, fold), both runs
    bank, nulls, fit = banks[0]
    other = run_family(parse_family("mlp-4"), target, data, splits, 0, [0, 1], 0.25, fit, nulls)
    assert bank.hits == 6 and torch.equal(other.nll_null, runs[0].nll_null)
    for key in ("nll_null", "nll_cond"):
        a, b = getattr(runs[0], key), getattr(runs[1], key)
        assert a.shape == b.shape == (2, 90, 1)
        # equal up to rounding, which Adam amplifies into lr-sized steps of parameters that
        # sit at their optimum (the core's bias at the start), so a longer budget drifts more
        gap = per_unit(a, runs[0].count).sub(per_unit(b, runs[1].count)).abs()
        assert float(gap.max()) < 0.05 and float(gap.mean()) < 0.025
    assert np.array_equal(runs[0].idx, runs[1].idx) and runs[0].best_step.shape == (2,)
