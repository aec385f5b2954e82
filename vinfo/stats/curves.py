"""Loss-data curves and the prequential codelength, from one set of prefix fits.

For a family, the fold-0 training pool is put in the first refit seed's order. For each
training-set size t in a log-spaced ladder ``t_1 < ... < t_T = |pool|`` the null and the
conditional probe are fitted on the first t samples of that order (their own fit/validation
split, the same shares as the main fit, fitted as :func:`vinfo.stats.pvi.fit_family` fits the main
probes; batched with :mod:`vinfo.fit.batched`, which trains prefixes of similar size together)
and scored on the evaluation split::

    curve_h_null[t], curve_h_cond[t]      held-out bits per unit (scales profiled)
    curve_vinfo[t] = curve_h_null[t] - curve_h_cond[t]

t counts fit + validation samples. The point t_T is the main fit itself (no refit). The same
conditional probes give the prequential codelength (:mod:`vinfo.stats.mdl`): block [t_k, t_k+1) is
sent with the probe fitted on the first t_k samples, block [0, t_1) with the reference code,
and the evaluation split (appended last) with the main fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vinfo.fit.settings import FitSettings
from vinfo.fit.splits import Split, head_tail, select_guard
from vinfo.probes.probe import ProbeData, heldout_nats, split_stats
from vinfo.probes.targets import Target
from vinfo.stats.mdl import Codelength, block_codelength, reference_codelength
from vinfo.stats.pvi import FamilyRun, NullSource, fit_family

LN2 = math.log(2.0)


def train_sizes(n_pool: int, points: int, min_size: int) -> np.ndarray:
    """Log-spaced training-set sizes from ``min_size`` to ``n_pool`` (unique, ending at it)."""
    low = int(min(max(min_size, 2), n_pool))
    if points <= 1 or low >= n_pool:
        return np.array([n_pool])
    sizes = np.unique(np.round(np.geomspace(low, n_pool, points)).astype(int))
    return sizes


@dataclass
class CurveResult:
    """Loss-data curves (bits per unit, [T]) and the prequential codelength of one family."""

    sizes: np.ndarray
    h_null: np.ndarray
    h_cond: np.ndarray
    mdl: Codelength


def curves_and_mdl(
    run: FamilyRun, target: Target, data: ProbeData, split: Split, sizes: np.ndarray,
    val_share: float, settings: FitSettings, seed: int, nulls: NullSource,
    guard_share: float = 0.5, log: Callable[[str], None] | None = None,
) -> CurveResult:
    """Prefix fits of ``run``'s family on fold 0 (``run.first_order``), see module docstring;
    null and conditional of each prefix as :func:`vinfo.stats.pvi.fit_family` fits them."""
    order = run.first_order
    spec, batch = run.spec, settings.eval_batch_size
    main_null, main_cond = run.first_fits
    h_null, h_cond = [], []
    code = reference_codelength(target, data, order[: sizes[0]])
    prefixes = []  # (fit, select) of every size below the pool
    for size in sizes:
        if size != len(order):
            fit_idx, val_idx = head_tail(order, int(size), val_share)
            prefixes.append((fit_idx, select_guard(val_idx, guard_share)[0]))
    null_fits, cond_fits = fit_family(spec, target, data, [(seed, f, v) for f, v in prefixes],
                                      settings, nulls)
    fitted = iter(zip(null_fits, cond_fits))
    for k, size in enumerate(sizes):
        if size == len(order):
            null, cond = main_null, main_cond
        else:
            null, cond = next(fitted)
        for store, fit in ((h_null, null), (h_cond, cond)):
            stats = split_stats(fit.probe, target, data, split.eval_idx, batch)
            store.append(heldout_nats(target, stats) / LN2)
        next_block = order[size : sizes[k + 1]] if k + 1 < len(sizes) else split.eval_idx
        if len(next_block):
            code = code + block_codelength(cond.probe, target, data, next_block, batch)
        if log is not None:
            log(f"  {spec.name} curve t={size}: h_null {h_null[-1]:.4f} "
                f"h_cond {h_cond[-1]:.4f} bits/unit")
    return CurveResult(np.asarray(sizes), np.asarray(h_null), np.asarray(h_cond), code)
