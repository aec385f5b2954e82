"""Pointwise V-information (Ethayarajh et al., ICML 2022) and the per-family estimates.

For a fitted null f_null (the family fed a constant input) and conditional probe f_Z::

    PVI(z, y)   = -log2 f_null[∅](y) + log2 f_Z[z](y)              bits (per value / pixel)
    H_V(Y|∅)    = mean over held-out values of -log2 f_null[∅](y)   bits per unit
    H_V(Y|Z)    = mean over held-out values of -log2 f_Z[z](y)      bits per unit
    I_V(Z -> Y) = H_V(Y|∅) - H_V(Y|Z) = mean held-out PVI           bits per unit

A *unit* is one sample of a per-sample target ([N] or [N, D], summed over the D values) or
one pixel of a dense target ([N, C, H, W], at the target's resolution, summed over its C
channels). Masked values (ignore index, invalid disparity) count for neither model. Means are
pooled: per channel, the sum of losses over all held-out valid values divided by their
count, then summed over channels. The per-sample PVI of a dense target is the mean over that
sample's valid pixels (summed over channels); a per-pixel PVI map is kept for a few samples.

:func:`run_family` fits a family's null and conditional probe for every (fold, refit seed)
(all of them in one batched call, :mod:`vinfo.batched`, unless ``settings.batched`` is off),
scores the evaluation samples, and returns per-seed NLL sums [seed, sample, channel] in nats
(gaussian/laplace scales profiled per seed on all evaluation values, see vinfo.targets).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from vinfo.batched import ProbeJob, fit_probes
from vinfo.families import FamilySpec, count_parameters
from vinfo.fitting import (
    FitResult,
    FitSettings,
    ProbeData,
    Split,
    SplitStats,
    head_tail,
    split_stats,
)
from vinfo.targets import Target

LN2 = math.log(2.0)


@dataclass
class FamilyRun:
    """All fits of one family. NLLs in nats; [S] = refit seeds, [n] = evaluation samples
    (sorted original indices ``idx``), [C] = target channels, [E] = map examples."""

    spec: FamilySpec
    note: str
    method: str
    n_parameters: int
    idx: np.ndarray
    count: torch.Tensor  # [n, C] valid values per sample and channel
    nll_null: torch.Tensor  # [S, n, C]
    nll_cond: torch.Tensor  # [S, n, C]
    val_null: np.ndarray  # [S] nats/unit on validation (mean over folds)
    val_cond: np.ndarray  # [S]
    best_step: np.ndarray  # [S] step of the kept checkpoint (fold 0)
    scale_null: torch.Tensor | None  # [S, C] profiled MSE / MAE (gaussian/laplace)
    scale_cond: torch.Tensor | None
    maps_null: torch.Tensor | None = None  # [S, E, C, H, W] nats per value
    maps_cond: torch.Tensor | None = None
    map_mask: torch.Tensor | None = None  # [E, C, H, W]
    examples: tuple[int, ...] = ()  # sample indices of the maps
    first_fits: tuple[FitResult, FitResult] | None = None  # (null, cond) of fold 0, seed 0
    first_order: np.ndarray | None = None  # fold 0's pool in seed 0's order


def per_unit(nll: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Pooled nats per unit: sum over channels of (sum of NLL / number of values).

    ``nll``/``count`` are [..., n, C]; the result has the leading dims ([S] or scalar)."""
    return (nll.sum(-2) / count.sum(-2).clamp_min(1)).sum(-1)


def per_sample(nll: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Per-sample mean NLL per valid value, summed over channels: [..., n]; NaN if none valid."""
    value = torch.where(count > 0, nll / count.clamp_min(1), torch.zeros_like(nll)).sum(-1)
    return torch.where((count > 0).any(-1), value, torch.full_like(value, math.nan))


def _finalize(
    target: Target, parts: list[SplitStats], order: np.ndarray, examples: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Fold statistics -> NLL [n, C] (nats) in sorted-sample order, scale [C], maps."""
    stat = torch.cat([p.stat for p in parts])[order]
    count = torch.cat([p.count for p in parts])[order]
    scale = target.profile(stat.sum(0), count.sum(0))
    nll = target.nll_from_stat(stat, count, scale)
    maps = None
    if examples:
        found = {k: v for p in parts for k, v in p.maps.items()}
        masks = {k: v for p in parts for k, v in p.map_masks.items()}
        maps = torch.stack([
            target.nll_from_stat(found[e].unsqueeze(0), masks[e].unsqueeze(0).double(), scale)[0]
            for e in examples
        ])
    return nll, scale, maps


def run_family(
    spec: FamilySpec, target: Target, data: ProbeData, splits: list[Split], split_seed: int,
    seeds: list[int], val_share: float, settings: FitSettings, examples: tuple[int, ...] = (),
    log: Callable[[str], None] | None = None,
) -> FamilyRun:
    """Fit null and conditional probes of ``spec`` for every fold and seed; see module doc."""
    idx = np.concatenate([s.eval_idx for s in splits])
    order = np.argsort(idx, kind="stable")
    results: dict[str, list] = {k: [] for k in (
        "nll_null", "nll_cond", "scale_null", "scale_cond", "maps_null", "maps_cond",
        "val_null", "val_cond", "best_step")}
    first_fits, first_order, count, map_mask = None, None, None, None
    note, method, n_parameters = "", "", 0
    orders, jobs = [], []  # per (seed, fold): the pool order; per probe: (null, cond) jobs
    for seed in seeds:
        for split in splits:
            pool_order = split.partition(split_seed, seed, val_share)
            fit_idx, val_idx = head_tail(pool_order, len(pool_order), val_share)
            orders.append(pool_order)
            jobs += [ProbeJob(fit_idx, val_idx, seed, null=True), ProbeJob(fit_idx, val_idx, seed)]
    fitted = iter(fit_probes(spec, target, data, jobs, settings))  # batched: all at once
    pool_orders = iter(orders)
    for s_i, seed in enumerate(seeds):
        stats: dict[str, list[SplitStats]] = {"null": [], "cond": []}
        vals: dict[str, list[float]] = {"null": [], "cond": []}
        for split in splits:
            pool_order = next(pool_orders)
            fits = {"null": next(fitted), "cond": next(fitted)}
            for key, fit in fits.items():
                stats[key].append(split_stats(fit.probe, target, data, split.eval_idx,
                                              settings.eval_batch_size, examples))
                vals[key].append(fit.val_nats)
            if split.fold == 0:
                results["best_step"].append(fits["cond"].best_step)
                if s_i == 0:
                    first_fits, first_order = (fits["null"], fits["cond"]), pool_order
                    note, method = fits["cond"].note, fits["cond"].method
                    n_parameters = count_parameters(fits["cond"].probe)
            if log is not None:
                log(f"  {spec.name} seed {seed} fold {split.fold}: val nats/unit "
                    f"null {fits['null'].val_nats:.4f} cond {fits['cond'].val_nats:.4f} "
                    f"(kept step {fits['cond'].best_step} of {fits['cond'].steps_run})")
        for key in ("null", "cond"):
            nll, scale, maps = _finalize(target, stats[key], order, examples)
            results[f"nll_{key}"].append(nll)
            results[f"scale_{key}"].append(scale)
            results[f"maps_{key}"].append(maps)
            results[f"val_{key}"].append(float(np.mean(vals[key])))
        if count is None:
            count = torch.cat([p.count for p in stats["cond"]])[order]
            if examples:
                masks = {k: v for p in stats["cond"] for k, v in p.map_masks.items()}
                map_mask = torch.stack([masks[e] for e in examples])

    def stack(key: str) -> torch.Tensor | None:
        values = results[key]
        return None if values[0] is None else torch.stack(values)

    return FamilyRun(
        spec=spec, note=note, method=method, n_parameters=n_parameters, idx=idx[order],
        count=count, nll_null=stack("nll_null"), nll_cond=stack("nll_cond"),
        val_null=np.asarray(results["val_null"]), val_cond=np.asarray(results["val_cond"]),
        best_step=np.asarray(results["best_step"]), scale_null=stack("scale_null"),
        scale_cond=stack("scale_cond"), maps_null=stack("maps_null"),
        maps_cond=stack("maps_cond"), map_mask=map_mask, examples=tuple(examples),
        first_fits=first_fits,
        first_order=first_order,
    )


@dataclass
class FamilyEstimate:
    """A family's estimates in bits (per unit unless said), averaged over refit seeds."""

    h_null: float
    h_cond: float
    vinfo: float
    vinfo_seed: np.ndarray  # [S]
    collapsed: bool
    pvi_sums: torch.Tensor  # [n, C] seed-mean PVI summed over each sample's values (bits)
    pvi: np.ndarray  # [n] per-sample PVI, bits per unit
    pvi_map: np.ndarray | None  # [E, H, W] bits per pixel (summed over channels), NaN masked


def summarize(run: FamilyRun) -> FamilyEstimate:
    """Bits-per-unit estimates of a :class:`FamilyRun` (see the module docstring)."""
    h_null_seed = per_unit(run.nll_null, run.count) / LN2
    h_cond_seed = per_unit(run.nll_cond, run.count) / LN2
    vinfo_seed = (h_null_seed - h_cond_seed).numpy()
    pvi_sums = (run.nll_null - run.nll_cond).mean(0) / LN2
    pvi_map = None
    if run.maps_null is not None:
        diff = (run.maps_null - run.maps_cond).mean(0) / LN2  # [E, C, H, W]
        valid = run.map_mask
        summed = torch.where(valid, diff, torch.zeros_like(diff)).sum(1)
        pvi_map = torch.where(valid.any(1), summed, torch.full_like(summed, math.nan)).numpy()
    return FamilyEstimate(
        h_null=float(h_null_seed.mean()), h_cond=float(h_cond_seed.mean()),
        vinfo=float(vinfo_seed.mean()), vinfo_seed=vinfo_seed,
        collapsed=bool(run.val_cond.mean() >= run.val_null.mean()),
        pvi_sums=pvi_sums, pvi=per_sample(pvi_sums, run.count).numpy(), pvi_map=pvi_map,
    )
