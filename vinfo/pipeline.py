"""The estimate for checked inputs: splits, the shared nulls, the ladder, intervals, curves.

    ds = estimate_inputs(inputs, cfg, attrs, log)     # inputs: vinfo.inputs.check_inputs(...)

Steps (DESIGN §2; units: bits, per target pixel or per sample):

1. standardize Z per channel, move Z, Y and the masks to ``cfg.device``; one seeded split
   by sample (fit / selection / guard / evaluation, or K cross-fitting folds);
2. for every family (ladder order): its conditional probes for every (refit seed, fold),
   each started from the shared null of its likelihood (:mod:`vinfo.fit.nulls`: fitted once,
   reused by every rung and by estimates on the same targets given the same ``null_bank``);
3. per family: held-out H_V(Y|∅), H_V(Y|Z), I_V, PVI (and per-pixel PVI maps), the guard,
   and intervals that combine the image bootstrap with the refits
   (:func:`vinfo.stats.bootstrap.refit_replicates`); with the representation's rate, the capped
   I_V of the two-part code, min(H_V(Y|∅), R + H_V(Y|Z)) − H_V(Y|Z) ≤ R;
4. loss-data curves and the prequential codelength (optional), the closed-form marginal;
5. the result Dataset (:func:`vinfo.results.to_dataset`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from infra.config import ConfigError
from vinfo.config import VinfoConfig, check_config, fit_settings
from vinfo.errors import VinfoInputError
from vinfo.fit.nulls import NullBank
from vinfo.fit.splits import Split, head_tail, make_splits, protocol_split, select_guard
from vinfo.inputs import Inputs
from vinfo.probes.families import AR_KINDS, default_ladder, parse_family
from vinfo.probes.probe import ProbeData
from vinfo.probes.targets import Target, make_target
from vinfo.results import FamilyResult, to_dataset
from vinfo.stats.bootstrap import minimum_detectable_effect, percentile_interval, refit_replicates
from vinfo.stats.curves import curves_and_mdl, train_sizes
from vinfo.stats.mdl import reference_codelength
from vinfo.stats.pvi import LN2, run_family, summarize
from vinfo.stats.stock import stock_applicable, stock_bits_per_pixel


def _standardize(z: np.ndarray) -> torch.Tensor:
    """Per-channel zero mean, unit variance over all samples (a fixed invertible map)."""
    t = torch.from_numpy(z)
    dims = [d for d in range(t.dim()) if d != 1]
    return ((t - t.mean(dims, keepdim=True)) / t.std(dims, keepdim=True).clamp_min(1e-8)).float()


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as err:
        raise ConfigError(f"device: {name!r} is not a torch device ({err})") from err
    if device.type == "cuda" and (not torch.cuda.is_available() or
                                  (device.index or 0) >= torch.cuda.device_count()):
        raise ConfigError(f"device: {name!r} is not available on this machine "
                          f"({torch.cuda.device_count()} CUDA devices); use device=cpu")
    return device


def _specs(cfg: VinfoConfig, inputs: Inputs) -> list:
    names = cfg.families or list(default_ladder(inputs.dense, cfg.target_kind))
    try:
        specs = [parse_family(name) for name in names]
    except ValueError as err:
        raise ConfigError(f"families: {err}") from err
    for spec in specs:
        if not inputs.dense and spec.kind in ("cnn", "synthesis"):
            raise ConfigError(f"family {spec.name!r} needs a latent grid and a dense target; "
                              f"vector inputs take {', '.join(default_ladder(False))}")
        if spec.autoregressive and not (inputs.dense and cfg.target_kind in AR_KINDS):
            raise ConfigError(f"family {spec.name!r} (autoregressive) needs a dense "
                              f"{' or '.join(AR_KINDS)} target; this one is "
                              f"{'dense' if inputs.dense else 'per-sample'} {cfg.target_kind}")
    return specs


def estimate_inputs(
    inputs: Inputs, cfg: VinfoConfig, attrs: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None, rate_bits: np.ndarray | None = None,
    null_bank: NullBank | None = None,
) -> xr.Dataset:
    """The estimate for checked inputs (see the module docstring and :func:`estimate`).

    ``rate_bits`` [N]: the representation's actual bits per sample (for the capped I_V);
    ``null_bank``: share fitted nulls with other estimates on the same targets."""
    check_config(cfg)
    n = inputs.z.shape[0]
    if n < 10 or (cfg.folds > 1 and n < 3 * cfg.folds):
        raise VinfoInputError(f"{n} samples are too few for a fit/validation/evaluation split "
                              f"(need at least 10, and 3 per fold)")
    if rate_bits is not None and np.asarray(rate_bits).shape != (n,):
        raise VinfoInputError(f"rate_bits: expected one rate per sample ({n}), got shape "
                              f"{np.asarray(rate_bits).shape}")
    specs = _specs(cfg, inputs)
    device = _device(cfg.device)
    data = ProbeData(_standardize(inputs.z).to(device), torch.from_numpy(inputs.y).to(device),
                     torch.from_numpy(inputs.mask).to(device), inputs.stride)
    target = make_target(cfg.target_kind, data.y.cpu(), data.mask.cpu(), inputs.num_classes,
                         cfg.discretized_dist)
    if cfg.fit_samples:
        splits = [protocol_split(n, cfg.fit_samples, cfg.seed, cfg.select_fraction)]
        val_share = 1.0 - cfg.fit_samples / len(splits[0].pool)
    else:
        splits = make_splits(n, cfg.seed, cfg.fit_fraction, cfg.val_fraction, cfg.folds)
        val_share = cfg.val_fraction / (cfg.fit_fraction + cfg.val_fraction)
    settings = fit_settings(cfg)
    bank = null_bank if null_bank is not None else NullBank()
    data_key = bank.data_key(target, data, settings)
    hits_before = bank.hits
    eval_idx = np.sort(np.concatenate([s.eval_idx for s in splits]))
    examples = tuple(int(i) for i in eval_idx[: cfg.map_examples]) if inputs.dense else ()
    sizes = train_sizes(len(splits[0].pool), cfg.curve_points, cfg.curve_min_size)
    unit = "pixel" if inputs.dense else "sample"
    results = []
    bar = tqdm(specs, desc="vinfo families", unit="family", disable=None, dynamic_ncols=True,
               leave=False)
    for spec in bar:
        bar.set_postfix_str(spec.name)
        start = time.perf_counter()

        def nulls(jobs, likelihood=spec.likelihood):
            return bank.fits(likelihood, data_key, target, data, jobs, settings)

        run = run_family(spec, target, data, splits, cfg.seed, cfg.seeds, val_share, settings,
                         nulls, examples, cfg.guard_fraction, log)
        bits = None if rate_bits is None else np.asarray(rate_bits, np.float64)[run.idx]
        reps = refit_replicates(run.nll_null.numpy() / LN2, run.nll_cond.numpy() / LN2,
                                run.count.numpy(), cfg.bootstrap, cfg.seed, bits)
        intervals = {k: percentile_interval(v, cfg.confidence) for k, v in reps.items()}
        # the raw estimate of the *trained* members: where a refit kept step 0 (the
        # null) its I_V is exactly 0, which says nothing of the estimator's noise; the MDE
        # is that of what training found
        trained = refit_replicates(run.nll_null.numpy() / LN2, run.nll_trained.numpy() / LN2,
                                   run.count.numpy(), cfg.bootstrap, cfg.seed)["vinfo"]
        intervals["vinfo_trained"] = percentile_interval(trained, cfg.confidence)
        mde = minimum_detectable_effect(trained, cfg.confidence)
        est = summarize(run, interval=intervals["vinfo"], mde=mde)
        curve = None
        if cfg.curves:
            curve = curves_and_mdl(run, target, data, splits[0], sizes, val_share, settings,
                                   cfg.seeds[0], nulls, cfg.guard_fraction, log)
        results.append(FamilyResult(run, est, intervals, curve, seconds=time.perf_counter()
                                    - start))
        if log is not None:
            low, high = intervals["vinfo"]
            cap = " (STILL IMPROVING BY MORE THAN THE MDE: not converged)" if \
                est.unconverged else ""
            log(f"{spec.name}: H_V(Y|∅) = {est.h_null:.4f}, H_V(Y|Z) = {est.h_cond:.4f}, "
                f"I_V = {est.vinfo:.4f} [{low:.4f}, {high:.4f}] bits/{unit}, MDE {mde:.4f}"
                f"{cap} ({time.perf_counter() - start:.1f} s)")
    h_marginal = _marginal_bits(target, data, splits)
    uniform_bits = reference_codelength(target, data, np.arange(n)).bits
    fit_idx, val_idx = head_tail(splits[0].partition(cfg.seed, cfg.seeds[0], val_share),
                                 len(splits[0].pool), val_share)
    select, guard = select_guard(val_idx, cfg.guard_fraction)
    info = {"n_samples": n, "n_fit": len(fit_idx), "n_val": len(select),
            "probing_protocol": ("fit on the first fit_samples samples (the train split), "
                                 "select/guard/evaluate on the rest" if cfg.fit_samples else
                                 "fit, select, guard and evaluate on seeded shares of all "
                                 "samples"),
            "n_guard": len(guard) if not np.array_equal(select, guard) else 0,
            "n_eval": len(eval_idx), "null_fits_reused": bank.hits - hits_before}
    rate = None
    if rate_bits is not None:
        units = results[0].run.count.numpy().mean(axis=1)
        rate = float(np.asarray(rate_bits, np.float64)[results[0].run.idx].sum() / units.sum())
    stock = None
    if cfg.stock_references and stock_applicable(cfg.target_kind, inputs.y):
        stock = stock_bits_per_pixel(inputs.y[eval_idx])
    return to_dataset(cfg, inputs, results, h_marginal, uniform_bits, info, attrs or {}, rate,
                      stock)


def _marginal_bits(target: Target, data: ProbeData, splits: list[Split]) -> float:
    """Closed-form marginal null (vinfo.probes.targets.Target.marginal_nats), bits per unit; with
    folds, the evaluation-size weighted mean over folds."""
    values, weights = [], []
    y, mask = data.y.cpu(), data.mask.cpu()
    for split in splits:
        pool, ev = torch.as_tensor(split.pool), torch.as_tensor(split.eval_idx)
        values.append(target.marginal_nats(y[pool], mask[pool], y[ev], mask[ev]) / LN2)
        weights.append(len(split.eval_idx))
    return float(np.average(values, weights=weights))
