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
:func:`refit_replicates`, which the estimator reports, adds the variance of refitting the
probes with other seeds (other fit/selection samples and initialisations) to the same image
bootstrap, for I_V, H_V(Y|∅), H_V(Y|Z) and the capped I_V.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from infra.seeding import check_seed


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
    """Replicates [n_boot] of h_null, h_cond, vinfo (and ``capped`` with a rate), with both
    the evaluation images and the refits as sources of variation.

    ``nll_null``/``nll_cond`` are per-seed NLL sums [S, n, C] in bits, ``counts`` [n, C] the
    valid values, ``rate_bits`` [n] the representation's bits per sample (its actual rate).
    Replicate r draws multinomial image weights w_r (paired: the same for null, conditional,
    rate and every family, from ``seed``) and one refit j_r::

        Q_r = mean_s Q_s(w_r) + (Q_{j_r} - mean_s Q_s) / sqrt(S - 1)

    where Q_s(w) is seed s's pooled estimate on the reweighted images and Q_s its value on
    the evaluation set: the first term is the image bootstrap of the seed-mean estimate, the
    second adds the refit variance of an S-seed mean (var_s / S, ddof 1; nothing for S = 1).
    ``capped`` is min(h_null, r + h_cond) - h_cond with r = sum of rate bits / sum of units
    (units per sample: its valid values averaged over channels), the two-part-code cap of
    DESIGN §2.
    """
    s = nll_null.shape[0]
    units = counts.mean(axis=1)

    def estimates(w: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Seed-mean estimates [b] and per-seed estimates [S, b] under weights w [b, n]."""
        null = np.stack([_pooled(w, nll_null[i], counts) for i in range(s)])
        cond = np.stack([_pooled(w, nll_cond[i], counts) for i in range(s)])
        per_seed = {"h_null": null, "h_cond": cond, "vinfo": null - cond}
        h_null, h_cond = null.mean(0), cond.mean(0)
        mean = {"h_null": h_null, "h_cond": h_cond, "vinfo": h_null - h_cond}
        if rate_bits is not None:
            rate = (w @ rate_bits) / np.maximum(w @ units, 1e-300)
            per_seed["capped"] = np.minimum(null, rate + cond) - cond
            mean["capped"] = np.minimum(h_null, rate + h_cond) - h_cond
        return mean, per_seed

    _, full = estimates(np.ones((1, counts.shape[0])))
    rng = np.random.default_rng([check_seed(seed), 1])
    scale = 1.0 / np.sqrt(s - 1) if s > 1 else 0.0
    reps: dict[str, list[np.ndarray]] = {k: [] for k in full}
    for weights in resample_counts(counts.shape[0], n_boot, seed):
        picked = rng.integers(0, s, size=weights.shape[0])
        mean, _ = estimates(weights)
        for key, value in mean.items():
            deviation = full[key][picked, 0] - full[key][:, 0].mean()
            reps[key].append(value + scale * deviation)
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in reps.items()}
