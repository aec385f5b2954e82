"""Splits: seeded permutations by sample, folds that cover every sample once."""

from __future__ import annotations

import numpy as np

from vinfo.fit.splits import head_tail, make_splits


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
