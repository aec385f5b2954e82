"""Paired bootstrap over evaluation samples: confidence intervals for I_V.

A replicate draws n evaluation samples with replacement (multinomial counts w [n]) and
recomputes the pooled estimate from per-sample sums of PVI and value counts::

    I_V(w) = sum over channels c of (sum_i w_i PVI_ic) / (sum_i w_i n_ic)      bits per unit

where PVI_ic is sample i's summed PVI over its valid values of channel c (bits, averaged
over refit seeds) and n_ic the number of those values; this is the ratio estimator that
matches the pooled point estimate (dense targets have unequal valid-pixel counts). The
interval is the percentile interval at ``confidence``.

*Paired*: the null and the conditional model are scored on the same resampled samples (the
PVI already is their difference), and the same seed gives the same resamples for every
family, so differences between families are paired too. The spread over refit seeds is a
separate quantity (``vinfo_seed_std``): the bootstrap holds the fitted probes fixed.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from taskcodecs.seeding import check_seed


def resample_counts(
    n: int, n_boot: int, seed: int, max_cells: int = 4_000_000
) -> Iterator[np.ndarray]:
    """Multinomial resampling counts, [b, n] float64 chunks totalling ``n_boot`` rows."""
    rng = np.random.default_rng(check_seed(seed))
    chunk = max(1, max_cells // max(n, 1))
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        yield rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.float64)
        done += b


def bootstrap_replicates(
    pvi_sums: np.ndarray, counts: np.ndarray, n_boot: int, seed: int
) -> np.ndarray:
    """``n_boot`` replicates of the pooled estimate from [n, C] ``pvi_sums`` and ``counts``."""
    pvi_sums = np.asarray(pvi_sums, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    if pvi_sums.shape != counts.shape or pvi_sums.ndim != 2:
        raise ValueError(f"pvi_sums {pvi_sums.shape} and counts {counts.shape} must both be "
                         "[n, C] arrays of the same shape")
    reps = []
    for weights in resample_counts(pvi_sums.shape[0], n_boot, seed):
        num, den = weights @ pvi_sums, weights @ counts
        reps.append(np.where(den > 0, num / np.maximum(den, 1e-300), 0.0).sum(axis=1))
    return np.concatenate(reps) if reps else np.zeros(0)


def percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` percentile interval of the replicates."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if replicates.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(replicates, [alpha, 1.0 - alpha])
    return float(low), float(high)


def paired_interval(
    pvi_sums: np.ndarray, counts: np.ndarray, n_boot: int, seed: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of the paired bootstrap of I_V (bits per unit)."""
    return percentile_interval(bootstrap_replicates(pvi_sums, counts, n_boot, seed), confidence)
