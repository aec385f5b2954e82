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
family, so differences between families are paired too.

:func:`paired_interval` holds the fitted probes fixed (evaluation variance only).
:func:`refit_replicates`, which the estimator reports, is hierarchical: it resamples the
refits (other initialisations and minibatch orders) and then the images, for I_V, H_V(Y|∅),
H_V(Y|Z) and the capped I_V (capped per replicate, so its interval lies in [0, R]).
:func:`minimum_detectable_effect` turns the replicates' spread into the smallest effect the
estimate could have detected (80 % power at the interval's level).
"""

from __future__ import annotations

from collections.abc import Iterator
from statistics import NormalDist

import numpy as np

from infra.seeding import check_seed

POWER = 0.8  # the minimum detectable effect's power


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


# ---------------------------------------------------------------------------- with refits

def _pooled(weights: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Pooled per-unit means of replicates: [b, n] weights, [n, C] sums/counts -> [b]."""
    num, den = weights @ sums, weights @ counts
    return np.where(den > 0, num / np.maximum(den, 1e-300), 0.0).sum(axis=1)


def refit_replicates(
    nll_null: np.ndarray, nll_cond: np.ndarray, counts: np.ndarray, n_boot: int, seed: int,
    rate_bits: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Replicates [n_boot] of h_null, h_cond, vinfo (and ``capped`` with a rate) from a
    hierarchical bootstrap: refits first, then evaluation images.

    ``nll_null``/``nll_cond`` are per-refit NLL sums [S, n, C] in bits, ``counts`` [n, C] the
    valid values, ``rate_bits`` [n] the representation's bits per sample (its actual rate).
    Replicate r draws S refits with replacement (counts c_r [S]) and multinomial image
    weights w_r (paired: the same images for null, conditional, rate and every family, from
    ``seed``)::

        Q_r = sum_s c_rs · Q_s(w_r) / S

    where Q_s(w) is refit s's pooled estimate on the reweighted images. With one refit the
    interval covers the images only. ``capped`` is the two-part-code cap of DESIGN §2 taken
    per replicate, clip(vinfo_r, 0, R_r) with R_r = w_r·rate / w_r·units (units per sample:
    its valid values averaged over channels), so its interval lies in [0, R] by construction.
    """
    s = nll_null.shape[0]
    units = counts.mean(axis=1)
    rng = np.random.default_rng([check_seed(seed), 1])
    reps: dict[str, list[np.ndarray]] = {k: [] for k in ("h_null", "h_cond", "vinfo")}
    if rate_bits is not None:
        reps["capped"] = []
    for weights in resample_counts(counts.shape[0], n_boot, seed):
        b = weights.shape[0]
        drawn = np.stack([np.bincount(row, minlength=s) for row in
                          rng.integers(0, s, size=(b, s))]).astype(np.float64) / s  # [b, S]
        null = np.stack([_pooled(weights, nll_null[i], counts) for i in range(s)], 1)
        cond = np.stack([_pooled(weights, nll_cond[i], counts) for i in range(s)], 1)
        h_null, h_cond = (drawn * null).sum(1), (drawn * cond).sum(1)
        reps["h_null"].append(h_null)
        reps["h_cond"].append(h_cond)
        reps["vinfo"].append(h_null - h_cond)
        if rate_bits is not None:
            rate = (weights @ rate_bits) / np.maximum(weights @ units, 1e-300)
            reps["capped"].append(np.clip(h_null - h_cond, 0.0, rate))
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in reps.items()}


def minimum_detectable_effect(replicates: np.ndarray, confidence: float,
                              power: float = POWER) -> float:
    """The smallest true effect that a two-sided test at ``1 - confidence`` separates from 0
    with probability ``power``: (z_{(1+confidence)/2} + z_power) x SE, SE the bootstrap
    standard deviation of the estimate (same unit as the replicates; NaN without any)."""
    if replicates.size < 2:
        return float("nan")
    z = NormalDist().inv_cdf((1.0 + confidence) / 2.0) + NormalDist().inv_cdf(power)
    return float(z * replicates.std(ddof=1))
