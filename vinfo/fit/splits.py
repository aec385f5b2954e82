"""Seeded splits by sample: the evaluation split, its training pool and the pool's partition.

Splits are by sample and come from a permutation drawn from the seed (never positional; 0 is
a seed). Without cross-fitting the last ``1 - fit - val`` share of the permutation is the
evaluation split and the rest the *pool*; with K folds each fold in turn is the evaluation
split. Each refit seed re-partitions its pool with its own permutation into::

    fit        the probes train on it
    select     model selection and early stopping (the kept checkpoint is its best)
    guard      the guard's decision "did the conditional beat the null?", on samples that
               did not select either checkpoint (:func:`select_guard`)

so the evaluation split stays fixed (paired) across families and seeds while the spread over
seeds includes training-data variation. The probing protocol (:func:`protocol_split`) fixes
the fit samples instead (the train split) and splits the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infra.seeding import check_seed


@dataclass
class Split:
    """One evaluation split and its training pool (original sample indices)."""

    eval_idx: np.ndarray
    pool: np.ndarray
    fold: int = 0
    fixed: bool = False  # the probing protocol: the pool is [fit..., selection...] as given

    def partition(self, split_seed: int, refit_seed: int, val_share: float) -> np.ndarray:
        """The pool in the order of ``refit_seed``: fit = head, validation = the last
        ``val_share`` of it (use :func:`head_tail`, then :func:`select_guard`); a fixed
        split's pool as it is (every refit fits on the same samples)."""
        if self.fixed:
            return self.pool
        rng = np.random.default_rng([check_seed(split_seed), check_seed(refit_seed), self.fold])
        return self.pool[rng.permutation(self.pool.size)]


def head_tail(order: np.ndarray, size: int, val_share: float) -> tuple[np.ndarray, np.ndarray]:
    """The first ``size`` samples of ``order`` split into fit (head) and validation (tail)."""
    n_val = max(1, int(round(size * val_share)))
    return order[: size - n_val], order[size - n_val : size]


def select_guard(val: np.ndarray, guard_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Validation samples -> (select, guard): the last ``guard_share`` (at least one sample)
    decide the guard. With ``guard_share`` 0, or a single validation sample, the guard
    reuses the selection samples (the caller reports it)."""
    n_guard = int(round(len(val) * guard_share))
    if guard_share <= 0 or len(val) < 2:
        return val, val
    n_guard = min(max(n_guard, 1), len(val) - 1)
    return val[: len(val) - n_guard], val[len(val) - n_guard :]


def make_splits(
    n: int, seed: int, fit_fraction: float, val_fraction: float, folds: int = 1
) -> list[Split]:
    """Seeded evaluation splits: one (folds = 1) or K cross-fitting folds."""
    perm = np.random.default_rng(check_seed(seed)).permutation(n)
    if folds <= 1:
        n_eval = max(1, int(round(n * (1.0 - fit_fraction - val_fraction))))
        return [Split(np.sort(perm[n - n_eval :]), perm[: n - n_eval], 0)]
    parts = np.array_split(perm, folds)
    return [
        Split(np.sort(part), np.concatenate([p for j, p in enumerate(parts) if j != k]), k)
        for k, part in enumerate(parts)
    ]


def protocol_split(n: int, n_fit: int, seed: int, select_fraction: float) -> Split:
    """The probing protocol (DESIGN §7): samples [0, n_fit) fit every probe (the train split);
    of the rest, a seeded ``select_fraction`` selects and guards, the others are evaluated."""
    n_rest = n - n_fit
    if n_fit < 2 or n_rest < 4:
        raise ValueError(f"fit_samples {n_fit} of {n}: need at least 2 fit samples and 4 "
                         "others (selection and evaluation)")
    perm = n_fit + np.random.default_rng(check_seed(seed)).permutation(n_rest)
    n_select = min(max(2, int(round(n_rest * select_fraction))), n_rest - 2)
    return Split(np.sort(perm[n_select:]), np.concatenate([np.arange(n_fit), perm[:n_select]]),
                 0, fixed=True)
