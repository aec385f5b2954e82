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

:func:`run_family` fits the family's null and conditional probe for every (fold, refit seed)
(:func:`fit_family`: every family takes its null from the shared null bank,
:mod:`vinfo.fit.nulls`, one null for every rung; factorized families fit the conditionals from it
in one batched call, :mod:`vinfo.fit.batched`; autoregressive families add a Z pathway to the
frozen shared null, :mod:`vinfo.fit.nested`), scores the evaluation samples and the guard
split, and returns per-seed NLL sums
[seed, sample, channel] in nats (gaussian/laplace scales profiled per seed on all
evaluation values, see vinfo.probes.targets).

*Collapsed* (:func:`summarize`): the family's interval on the evaluation samples (the
hierarchical bootstrap over refits and images, :mod:`vinfo.stats.bootstrap`) does not lie above 0;
the guarded estimate is then 0, and it is never below 0 (max(I_V, 0) otherwise). The raw I_V
and its interval are reported beside it, never clipped, with the minimum detectable effect.
The guard split's one-sided t test (:func:`guard_test`: the mean per-sample PVI on samples
that selected neither checkpoint, :func:`vinfo.fit.splits.select_guard`) is kept as a
diagnostic (``guard_t``) and decides only where no interval exists (no bootstrap).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import t as student_t

from vinfo.fit.batched import ProbeJob, fit_probes
from vinfo.fit.loop import FitResult
from vinfo.fit.nested import NullFeatures, fit_nested, shuffled
from vinfo.fit.settings import FitSettings
from vinfo.fit.splits import Split, head_tail, select_guard
from vinfo.probes.families import FamilySpec, count_parameters
from vinfo.probes.probe import ProbeData, SplitStats, heldout_nats, split_stats
from vinfo.probes.targets import Target

LN2 = math.log(2.0)
NullSource = Callable[[list[ProbeJob]], list]  # jobs -> their vinfo.fit.nulls.NullFit


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
    val_null: np.ndarray  # [S] nats/unit on the selection split (mean over folds)
    val_cond: np.ndarray  # [S]
    guard_null: np.ndarray  # [S] nats/unit on the guard split (mean over folds)
    guard_cond: np.ndarray  # [S]
    best_step: np.ndarray  # [S] step of the kept checkpoint (fold 0)
    steps_run: np.ndarray  # [S] steps the conditional trained (max over folds)
    at_cap: np.ndarray  # [S] bool: a conditional or null fit reached step_limit improving
    scale_null: torch.Tensor | None  # [S, C] profiled MSE / MAE (gaussian/laplace)
    scale_cond: torch.Tensor | None
    maps_null: torch.Tensor | None = None  # [S, E, C, H, W] nats per value
    maps_cond: torch.Tensor | None = None
    map_mask: torch.Tensor | None = None  # [E, C, H, W]
    examples: tuple[int, ...] = ()  # sample indices of the maps
    first_fits: tuple[FitResult, FitResult] | None = None  # (null, cond) of fold 0, seed 0
    first_order: np.ndarray | None = None  # fold 0's pool in seed 0's order
    guard_separate: bool = True  # False: the guard reused the selection samples
    guard_pvi: np.ndarray | None = None  # per-sample PVI on the guard splits, nats/unit
    recent_gain: np.ndarray | None = None  # [S] bits/unit: the largest selection-loss fall
    #                        over the second half of a fit stopped at the step limit
    nll_trained: torch.Tensor | None = None  # [S, n, C] the member at the end of training
    #   where a refit kept step 0 (the null), else nll_cond: the raw I_V and the MDE use it


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


def fit_family(
    spec: FamilySpec, target: Target, data: ProbeData, jobs: list[tuple[int, np.ndarray,
                                                                   np.ndarray]],
    settings: FitSettings, nulls: NullSource,
) -> tuple[list[FitResult], list[FitResult]]:
    """(nulls, conditionals) of ``spec`` for jobs (seed, fit samples, selection samples).

    Factorized families: the nulls from the shared bank (``nulls``), each conditional
    started from its null's first phase (all conditionals in one batched call); a
    conditional that scores worse than its null on the selection samples is replaced by
    the null (a member of the family: optional ignorance).
    Autoregressive families: the one shared null of the fold (fitted once, frozen) and, per
    refit seed, the nested member that adds the rung's Z pathway (:mod:`vinfo.fit.nested`), and
    the same member fitted on shuffled Z (:func:`vinfo.fit.nested.shuffled`); the family's null of
    that refit is the better on the selection samples of the shared null and the shuffled
    member (both ignore the sample's own Z)."""
    if spec.autoregressive:
        null_fits = nulls([ProbeJob(f, sel, seed, null=True) for seed, f, sel in jobs])
        blinds, conds = [], []
        for (seed, f, sel), null in zip(jobs, null_fits):
            if null.features is None:
                null.features = NullFeatures(null.final.probe.core, data,
                                             np.concatenate([f, sel]), settings.eval_batch_size)
            core = null.final.probe.core
            conds.append(fit_nested(spec, core, target, data, f, sel, settings, seed,
                                    null.features))
            blind_data = shuffled(data, seed)
            blind = fit_nested(spec, core, target, blind_data, f, sel, settings, seed,
                               null.features)
            blind.data = blind_data
            if blind.val_nats < null.final.val_nats:
                blind.method += "; the null: this member fed shuffled Z (it won on selection)"
                blinds.append(blind)
            else:
                blinds.append(null.final)
        return blinds, conds
    null_fits = nulls([ProbeJob(f, sel, seed, null=True) for seed, f, sel in jobs])
    cond_fits = fit_probes(spec, target, data, [
        ProbeJob(f, sel, seed, init=null.start.probe) for (seed, f, sel), null
        in zip(jobs, null_fits)], settings)
    finals = [null.final for null in null_fits]  # the scored nulls (vinfo.fit.nulls)
    # the null is a member of the family (optional ignorance): where it scores better on
    # the selection samples than the fitted conditional, it is the family's best member
    cond_fits = [cond if cond.val_nats < null.val_nats else dataclasses.replace(
        null, note="; ".join(t for t in (cond.note, "the null won on selection") if t),
        method=cond.method, trained=cond.probe) for cond, null in zip(cond_fits, finals)]
    return finals, cond_fits


def run_family(
    spec: FamilySpec, target: Target, data: ProbeData, splits: list[Split], split_seed: int,
    seeds: list[int], val_share: float, settings: FitSettings, nulls: NullSource,
    examples: tuple[int, ...] = (), guard_share: float = 0.5,
    log: Callable[[str], None] | None = None,
) -> FamilyRun:
    """Fit conditional probes of ``spec`` for every fold and seed, each from its null (from
    ``nulls``: a callable ``jobs -> NullFits``, the shared null bank: conditionals start at
    ``start``, ``final`` is scored), score the evaluation samples and the guard split; see
    the module doc."""
    idx = np.concatenate([s.eval_idx for s in splits])
    order = np.argsort(idx, kind="stable")
    orders, parts = [], []  # per (seed, fold): the pool order and (fit, select, guard)
    for seed in seeds:
        for split in splits:
            pool_order = split.partition(split_seed, seed, val_share)
            fit_idx, val_idx = head_tail(pool_order, len(pool_order), val_share)
            orders.append(pool_order)
            parts.append((seed, fit_idx, *select_guard(val_idx, guard_share)))
    null_fits, cond_fits = fit_family(spec, target, data, [p[:3] for p in parts], settings,
                                      nulls)
    results: dict[str, list] = {k: [] for k in (
        "nll_null", "nll_cond", "scale_null", "scale_cond", "maps_null", "maps_cond",
        "val_null", "val_cond", "guard_null", "guard_cond", "best_step", "steps_run",
        "at_cap", "guard_pvi", "recent_gain", "nll_trained")}
    first_fits, first_order, count, map_mask = None, None, None, None
    note, method, n_parameters = "", "", 0
    job = iter(range(len(parts)))
    for s_i, seed in enumerate(seeds):
        stats: dict[str, list[SplitStats]] = {"null": [], "cond": [], "trained": []}
        vals: dict[str, list[float]] = {k: [] for k in ("null", "cond", "gnull", "gcond")}
        steps, caps, gains = [], [], []
        for split in splits:
            j = next(job)
            guard, guard_nll = parts[j][3], {}
            fits = {"null": null_fits[j], "cond": cond_fits[j]}
            for key, fit in fits.items():
                inputs = data if fit.data is None else fit.data
                stats[key].append(split_stats(fit.probe, target, inputs, split.eval_idx,
                                              settings.eval_batch_size, examples))
                vals[key].append(fit.val_nats)
                guard_stats = split_stats(fit.probe, target, inputs, guard,
                                          settings.eval_batch_size)
                vals[f"g{key}"].append(heldout_nats(target, guard_stats))
                scale = target.profile(guard_stats.stat.sum(0), guard_stats.count.sum(0))
                guard_nll[key] = per_sample(target.nll_from_stat(
                    guard_stats.stat, guard_stats.count, scale), guard_stats.count)
            trained = fits["cond"].trained
            stats["trained"].append(stats["cond"][-1] if trained is None else split_stats(
                trained, target, data, split.eval_idx, settings.eval_batch_size))
            pvi = (guard_nll["null"] - guard_nll["cond"]).numpy()
            results["guard_pvi"].append(pvi[np.isfinite(pvi)])
            steps.append(fits["cond"].steps_run)
            caps.append(fits["cond"].at_cap or fits["null"].at_cap)
            gains.append(max(fits["cond"].recent_gain, fits["null"].recent_gain) / LN2)
            if split.fold == 0:
                results["best_step"].append(fits["cond"].best_step)
                if s_i == 0:
                    first_fits, first_order = (fits["null"], fits["cond"]), orders[j]
                    note, method = fits["cond"].note, fits["cond"].method
                    n_parameters = count_parameters(fits["cond"].probe)
            if log is not None:
                log(f"  {spec.name} seed {seed} fold {split.fold}: selection nats/unit null "
                    f"{fits['null'].val_nats:.4f} cond {fits['cond'].val_nats:.4f} (kept step "
                    f"{fits['cond'].best_step} of {fits['cond'].steps_run}"
                    f"{', AT THE STEP LIMIT' if caps[-1] else ''})")
        for key in ("null", "cond"):
            nll, scale, maps = _finalize(target, stats[key], order, examples)
            results[f"nll_{key}"].append(nll)
            results[f"scale_{key}"].append(scale)
            results[f"maps_{key}"].append(maps)
            results[f"val_{key}"].append(float(np.mean(vals[key])))
            results[f"guard_{key}"].append(float(np.mean(vals[f"g{key}"])))
        results["nll_trained"].append(_finalize(target, stats["trained"], order, ())[0])
        results["steps_run"].append(max(steps))
        results["at_cap"].append(any(caps))
        results["recent_gain"].append(max(gains))
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
        guard_null=np.asarray(results["guard_null"]),
        guard_cond=np.asarray(results["guard_cond"]),
        best_step=np.asarray(results["best_step"]),
        steps_run=np.asarray(results["steps_run"]), at_cap=np.asarray(results["at_cap"]),
        scale_null=stack("scale_null"), scale_cond=stack("scale_cond"),
        maps_null=stack("maps_null"), maps_cond=stack("maps_cond"), map_mask=map_mask,
        examples=tuple(examples), first_fits=first_fits, first_order=first_order,
        guard_separate=len(parts[0][3]) > 0 and not np.array_equal(parts[0][2], parts[0][3]),
        guard_pvi=np.concatenate(results["guard_pvi"]),
        recent_gain=np.asarray(results["recent_gain"]), nll_trained=stack("nll_trained"),
    )


@dataclass
class FamilyEstimate:
    """A family's estimates in bits (per unit unless said), averaged over refit seeds."""

    h_null: float
    h_cond: float
    vinfo: float
    vinfo_seed: np.ndarray  # [S]
    collapsed: bool  # the interval does not exclude 0 (or, without one, the guard split's t test)
    guarded: float  # 0 if collapsed, else max(vinfo, 0)
    guard_t: float  # t statistic of the mean guard-split PVI (NaN below 2 guard samples)
    pvi_sums: torch.Tensor  # [n, C] seed-mean PVI summed over each sample's values (bits)
    pvi: np.ndarray  # [n] per-sample PVI, bits per unit
    pvi_map: np.ndarray | None  # [E, H, W] bits per pixel (summed over channels), NaN masked
    mde: float = math.nan  # minimum detectable effect, bits per unit
    vinfo_trained: float = math.nan  # I_V of the trained members (kept or not), bits/unit
    unconverged: bool = False  # a fit stopped at its limit still improving by more than the MDE


def guard_test(run: FamilyRun, level: float = 0.05) -> tuple[bool, float]:
    """(collapsed, t): the conditional probes beat their nulls on the guard split only if the
    mean per-sample guard PVI is positive at one-sided ``level`` (Student t over the guard
    samples of every seed and fold); below 2 guard samples, if its mean loss is lower."""
    pvi = run.guard_pvi if run.guard_pvi is not None else np.zeros(0)
    if pvi.size < 2 or not np.isfinite(pvi).all():
        return bool(run.guard_cond.mean() >= run.guard_null.mean()), math.nan
    spread = pvi.std(ddof=1)
    t = math.inf if spread == 0 and pvi.mean() > 0 else (
        0.0 if spread == 0 else float(pvi.mean() / (spread / math.sqrt(pvi.size))))
    return bool(t <= student_t.ppf(1.0 - level, pvi.size - 1)), t


def summarize(run: FamilyRun, guard_level: float = 0.05,
              interval: tuple[float, float] | None = None, mde: float = math.nan
              ) -> FamilyEstimate:
    """Bits-per-unit estimates of a :class:`FamilyRun` (see the module docstring).

    With the estimate's ``interval`` the verdict and the interval agree: *collapsed* means the
    interval does not lie above 0 (the raw estimate and its interval are still reported);
    without one (no bootstrap), the guard split's t test decides. ``mde`` (bits/unit) flags a
    fit that stopped at its step limit still improving by more than it (``unconverged``)."""
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
    collapsed, t = guard_test(run, guard_level)
    if interval is not None and np.isfinite(interval[0]):
        collapsed = bool(interval[0] <= 0.0)
    vinfo = float(vinfo_seed.mean())
    trained = run.nll_cond if run.nll_trained is None else run.nll_trained
    vinfo_trained = float((h_null_seed - per_unit(trained, run.count) / LN2).mean())
    gains = run.recent_gain if run.recent_gain is not None else np.zeros(1)
    unconverged = bool(run.at_cap.any() and (not np.isfinite(mde) or gains.max() > mde))
    return FamilyEstimate(
        h_null=float(h_null_seed.mean()), h_cond=float(h_cond_seed.mean()),
        vinfo=vinfo, vinfo_seed=vinfo_seed, collapsed=collapsed,
        guarded=0.0 if collapsed else max(vinfo, 0.0), guard_t=t,
        pvi_sums=pvi_sums, pvi=per_sample(pvi_sums, run.count).numpy(), pvi_map=pvi_map,
        mde=float(mde), unconverged=unconverged, vinfo_trained=vinfo_trained,
    )
