"""Paired bootstrap: ratio estimator, determinism, pairing, coverage."""

from __future__ import annotations

import numpy as np
import pytest

from vinfo.stats.bootstrap import (
    bootstrap_replicates,
    paired_interval,
    percentile_interval,
    resample_counts,
)


def test_replicates_are_pooled_ratios_and_seeded():
    sums = np.array([[2.0], [4.0], [0.0]])
    counts = np.array([[1.0], [4.0], [5.0]])
    reps = bootstrap_replicates(sums, counts, 400, seed=0)
    assert reps.shape == (400,)
    # every replicate is a weighted pooled ratio: between the smallest and largest sample ratio
    assert reps.min() >= 0.0 and reps.max() <= 2.0
    assert np.array_equal(reps, bootstrap_replicates(sums, counts, 400, seed=0))
    assert not np.array_equal(reps, bootstrap_replicates(sums, counts, 400, seed=1))
    weights = np.concatenate(list(resample_counts(3, 400, seed=0)))
    assert weights.shape == (400, 3) and (weights.sum(1) == 3).all()
    assert np.allclose(reps, (weights @ sums)[:, 0] / (weights @ counts)[:, 0])


def test_channels_are_summed_and_empty_channels_count_zero():
    sums = np.array([[1.0, 3.0], [1.0, 3.0]])
    counts = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert np.allclose(bootstrap_replicates(sums, counts, 10, seed=0), 1.0)


def test_interval_covers_the_mean_of_iid_data_at_about_the_nominal_rate():
    rng = np.random.default_rng(0)
    hits = 0
    for trial in range(60):
        x = rng.normal(0.3, 1.0, size=(200, 1))
        low, high = paired_interval(x, np.ones_like(x), 300, seed=trial, confidence=0.9)
        hits += low <= 0.3 <= high
    assert 46 <= hits <= 60  # 90% nominal, binomial spread over 60 trials


def test_percentile_interval_checks_confidence():
    assert percentile_interval(np.arange(101.0), 0.9) == pytest.approx((5.0, 95.0))
    with pytest.raises(ValueError, match="confidence"):
        percentile_interval(np.arange(3.0), 1.5)
