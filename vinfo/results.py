"""The result Dataset of an estimate (schema version ``VINFO_VERSION``) and its CSV table.

Every variable has a ``units`` attr; "unit" is the attr ``unit`` (pixel or sample)::

    h_null, h_cond, vinfo (family)                                       bits/unit
        h_cond is the primary dense quantity: H_V(Y|Z), a conditional codelength for
        autoregressive families, next to the rate
    h_null_low/high, h_cond_low/high, vinfo_low/high (family): intervals  bits/unit
        (hierarchical bootstrap: refits, then images; vinfo.stats.bootstrap.refit_replicates)
    vinfo_trained, vinfo_trained_low/high (family): I_V of the trained members, where a
        refit kept step 0 (the null: I_V exactly 0) the member at the end of its training; the raw
        interval of a collapsed rung, and the MDE's spread                   bits/unit
    vinfo_mde (family): minimum detectable effect (80 % power at the interval's level), from
        the spread of vinfo_trained's bootstrap
    vinfo_guarded (family): 0 where collapsed (the interval not above 0), else max(vinfo, 0)
    vinfo_capped, vinfo_capped_low/high (family): with a rate R (bits/unit):
        clip(vinfo, 0, R), per bootstrap replicate for the interval (within [0, R]);
        cap_binds (family) bool: vinfo or a refit's above R; mde_exceeds_rate (family) bool
    unconverged (family) bool: at the step limit still improving by more than the MDE
    stock_png_bpp, stock_webp_bpp, stock_jpegxl_bpp (): 8-bit image targets, stock lossless
        codecs on the evaluation images (vinfo.stats.stock), bits/unit
    rate_per_unit (): R, the representation's rate in bits per target unit (the codec adapter:
        the base payload, header excluded; it bounds I(Y;Z))
    vinfo_seed (family, seed), vinfo_seed_std (family; NaN for one seed)      bits/unit
    collapsed, negative (family) bool; n_parameters, train_steps (budget), best_step,
    steps_run (family, seed), at_cap (family, seed) bool: reached step_limit improving
    h_null_val, h_cond_val: selection-split losses; h_null_guard, h_cond_guard: the guard's
    h_marginal (): closed-form marginal null                                  bits/unit
    vinfo_per_value (family): bits/value; vinfo_per_image, h_cond_per_image (family,
        dense): bits/image
    pvi (family, sample); pvi_map (family, example, row, col), NaN where masked
    curve_h_null, curve_h_cond, curve_vinfo (family, train_size)              bits/unit
    mdl_bits (family), mdl_uniform_bits (); mdl_bits_per_unit (family)
    mse_null, mse_cond | mae_null, mae_cond (family, seed, target_channel): gaussian/laplace
    coords: family (+ fit_method, likelihood), seed, sample, train_size, example, row, col
    attrs: target_kind, unit, n_samples, n_fit, n_val, n_guard, n_eval, seed, seeds, folds,
           confidence, n_bootstrap, representation_shape, target_shape, vinfo_version,
           created, source, null_shared, null_fits_reused, interval_method, device,
           probing_protocol, [null_vs_jpegxl, null_note]
           [representation_bpp, image_pixels, target_pixels, num_classes, ignore_value,
           discretized_dist]
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from vinfo.config import VinfoConfig
from vinfo.inputs import Inputs
from vinfo.stats.curves import CurveResult
from vinfo.stats.pvi import FamilyEstimate, FamilyRun

VINFO_VERSION = "0.4.0"
LN2 = math.log(2.0)
INTERVAL_METHOD = ("percentile interval of a hierarchical bootstrap: each replicate resamples "
                   "the refits, then the evaluation images (paired across families, null and "
                   "conditional)")
CAP_TARGETS = ("categorical", "discretized")  # discrete codelengths: the two-part bound holds


@dataclass
class FamilyResult:
    """One family's fits, estimates, intervals ({quantity: (low, high)}) and curves."""

    run: FamilyRun
    estimate: FamilyEstimate
    intervals: dict[str, tuple[float, float]]
    curve: CurveResult | None
    seconds: float = 0.0


def to_dataset(
    cfg: VinfoConfig, inputs: Inputs, results: list[FamilyResult], h_marginal: float,
    uniform_bits: float, info: dict[str, int], attrs: dict[str, Any], rate: float | None,
    stock: dict[str, float] | None = None,
) -> xr.Dataset:
    """Assemble the result Dataset (variables, units and attributes of the module docstring).

    ``rate``: the representation's actual rate in bits per target unit on the evaluation
    samples, or None; the capped I_V exists only for discrete targets (codelengths)."""
    runs = [r.run for r in results]
    estimates = [r.estimate for r in results]
    unit = "pixel" if inputs.dense else "sample"
    per_unit = f"bits/{unit}"
    fam, fam_seed = ("family",), ("family", "seed")
    vinfo = np.array([e.vinfo for e in estimates])
    seed_values = np.stack([e.vinfo_seed for e in estimates])
    seed_std = (seed_values.std(axis=1, ddof=1) if seed_values.shape[1] > 1
                else np.full(len(runs), np.nan))  # one seed: no spread to report
    budget = [0 if "least squares" in r.method else cfg.max_steps for r in runs]
    level = f"{cfg.confidence:.0%}"

    def var(dims, values, units, **extra):
        return dims, np.asarray(values), {"units": units, **extra}

    def bounds(name: str, quantity: str, what: str) -> dict:
        return {f"{name}_{side}": var(fam, [r.intervals[quantity][i] for r in results],
                                      per_unit, long_name=f"{level} interval of {what}, {side}")
                for i, side in enumerate(("low", "high"))}

    variables = {
        "h_null": var(fam, [e.h_null for e in estimates], per_unit,
                      long_name="H_V(Y|null): held-out loss of the family's null"),
        "h_cond": var(fam, [e.h_cond for e in estimates], per_unit,
                      long_name="H_V(Y|Z): held-out loss of the family fed Z"),
        "vinfo": var(fam, vinfo, per_unit, long_name="I_V(Z->Y) = h_null - h_cond, seed mean"),
        **bounds("vinfo", "vinfo", "I_V"), **bounds("h_null", "h_null", "H_V(Y|null)"),
        "vinfo_trained": var(fam, [e.vinfo_trained for e in estimates], per_unit,
                             long_name="I_V of the trained members: where a refit kept step "
                                       "0 (the null), the member at the end of its training"),
        **bounds("vinfo_trained", "vinfo_trained", "I_V of the trained members"),
        **bounds("h_cond", "h_cond", "H_V(Y|Z)"),
        "vinfo_guarded": var(fam, [e.guarded for e in estimates], per_unit,
                             long_name="0 where the null won on the guard split, else "
                                       "max(vinfo, 0)"),
        "vinfo_seed": var(fam_seed, seed_values, per_unit),
        "vinfo_seed_std": var(fam, seed_std, per_unit, long_name="std over refit seeds (ddof 1)"),
        "collapsed": var(fam, [e.collapsed for e in estimates], "1",
                         long_name="the interval of I_V does not lie above 0 (guarded I_V = 0)"),
        "vinfo_mde": var(fam, [e.mde for e in estimates], per_unit,
                         long_name="minimum detectable effect: the smallest I_V the interval "
                                   "would separate from 0 (80% power at its level)"),
        "unconverged": var(fam, [e.unconverged for e in estimates], "1",
                           long_name="a fit stopped at its step limit still improving by more "
                                     "than the MDE"),
        "guard_t": var(fam, [e.guard_t for e in estimates], "1",
                       long_name="t statistic of the mean guard-split PVI"),
        "negative": var(fam, vinfo < 0, "1", long_name="raw estimate below 0"),
        "n_parameters": var(fam, [r.n_parameters for r in runs], "parameters"),
        "train_steps": var(fam, budget, "steps",
                           long_name="starting optimizer step budget (0: closed form)"),
        "best_step": var(fam_seed, np.stack([r.best_step for r in runs]), "steps",
                         long_name="step of the kept checkpoint, fold 0 (0 = the null start)"),
        "steps_run": var(fam_seed, np.stack([r.steps_run for r in runs]), "steps",
                         long_name="steps the conditional probes trained (max over folds)"),
        "at_cap": var(fam_seed, np.stack([r.at_cap for r in runs]), "1",
                      long_name="a probe reached the step limit still improving: not "
                                "converged"),
        "h_null_val": var(fam, [r.val_null.mean() / LN2 for r in runs], per_unit,
                          long_name="selection-split loss of the null"),
        "h_cond_val": var(fam, [r.val_cond.mean() / LN2 for r in runs], per_unit,
                          long_name="selection-split loss of the conditional probe"),
        "h_null_guard": var(fam, [r.guard_null.mean() / LN2 for r in runs], per_unit,
                            long_name="guard-split loss of the null"),
        "h_cond_guard": var(fam, [r.guard_cond.mean() / LN2 for r in runs], per_unit,
                            long_name="guard-split loss of the conditional probe"),
        "h_marginal": var((), h_marginal, per_unit, long_name="closed-form marginal null"),
        "pvi": var(("family", "sample"), np.stack([e.pvi for e in estimates]), per_unit,
                   long_name="pointwise V-information per evaluation sample"),
        "vinfo_per_value": var(fam, [float(e.pvi_sums.sum() / r.count.sum())
                                     for e, r in zip(estimates, runs)], "bits/value",
                               long_name="I_V per target value (sub-pixel), all channels pooled"),
    }
    if rate is not None and cfg.target_kind in CAP_TARGETS:
        capped = np.clip(vinfo, 0.0, rate)
        above = [bool(vinfo[i] > rate or (e.vinfo_seed > rate).any())
                 for i, e in enumerate(estimates)]
        variables.update({
            "rate_per_unit": var((), rate, per_unit, long_name="R(Z): the representation's "
                                 "actual rate per target unit on the evaluation samples"),
            "vinfo_capped": var(fam, capped, per_unit, long_name="clip(I_V, 0, R): usable "
                                "information within the two-part code, in [0, R]"),
            **bounds("vinfo_capped", "capped", "the capped I_V"),
            "cap_binds": var(fam, above, "1", long_name="I_V or a refit's I_V above R: the "
                             "null (the reference), not Z, limits the estimate"),
            "mde_exceeds_rate": var(fam, [e.mde > rate for e in estimates], "1",
                                    long_name="the MDE is above R: this experiment cannot "
                                              "see effects smaller than its MDE"),
        })
    if stock:
        for name, bpp in stock.items():
            variables[f"stock_{name}_bpp"] = var((), bpp, per_unit, long_name=(
                f"{STOCK_NAMES[name]} on the evaluation images: bytes x 8 / pixels"))
    if inputs.dense:
        variables["vinfo_per_image"] = var(
            fam, [float(e.pvi_sums.sum()) / len(r.idx) for e, r in zip(estimates, runs)],
            "bits/image", long_name="I_V per target image: mean summed PVI of its valid pixels")
        variables["h_cond_per_image"] = var(
            fam, [float(r.nll_cond.sum((1, 2)).mean()) / LN2 / len(r.idx) for r in runs],
            "bits/image", long_name="H_V(Y|Z) per target image: codelength of its valid pixels")
    coords: dict[str, Any] = {
        "family": [r.spec.name for r in runs], "seed": list(cfg.seeds), "sample": runs[0].idx,
        "fit_method": ("family", [r.method for r in runs]),
        "likelihood": ("family", [r.spec.likelihood for r in runs]),
    }
    if inputs.dense and estimates[0].pvi_map is not None:
        maps = np.stack([e.pvi_map for e in estimates])
        variables["pvi_map"] = var(("family", "example", "row", "col"), maps, "bits/pixel",
                                   long_name="per-pixel PVI (NaN where masked)")
        coords.update(example=list(runs[0].examples), row=np.arange(maps.shape[2]),
                      col=np.arange(maps.shape[3]))
    if runs[0].scale_null is not None:
        gaussian = cfg.target_kind == "gaussian"
        name, units = ("mse", "target units^2") if gaussian else ("mae", "target units")
        dims = ("family", "seed", "target_channel")
        for key in ("null", "cond"):
            values = np.stack([getattr(r, f"scale_{key}").numpy() for r in runs])
            variables[f"{name}_{key}"] = var(
                dims, values, units, long_name=f"evaluation {name.upper()} of the {key} probe")
        coords["target_channel"] = np.arange(runs[0].count.shape[1])
    curves = [r.curve for r in results if r.curve is not None]
    if curves:
        ts = ("family", "train_size")
        h_null = np.stack([c.h_null for c in curves])
        h_cond = np.stack([c.h_cond for c in curves])
        variables.update(
            curve_h_null=var(ts, h_null, per_unit), curve_h_cond=var(ts, h_cond, per_unit),
            curve_vinfo=var(ts, h_null - h_cond, per_unit),
            mdl_bits=var(fam, [c.mdl.bits for c in curves], "bits",
                         long_name="prequential codelength of all targets given Z"),
            mdl_bits_per_unit=var(fam, [c.mdl.bits_per_unit for c in curves], per_unit),
            mdl_uniform_bits=var((), uniform_bits, "bits",
                                 long_name="codelength under the uniform/marginal code"),
        )
        coords["train_size"] = curves[0].sizes
    notes = "; ".join(f"{r.spec.name}: {r.note}" for r in runs if r.note)
    ds_attrs = {
        "target_kind": cfg.target_kind, "unit": unit, **info, "seed": cfg.seed,
        "seeds": list(cfg.seeds), "folds": cfg.folds, "confidence": cfg.confidence,
        "n_bootstrap": cfg.bootstrap, "representation_shape": list(inputs.z_shape),
        "target_shape": list(inputs.y_shape), "vinfo_version": VINFO_VERSION,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "source": cfg.source or "arrays given to vinfo.estimate", "family_notes": notes,
        "interval_method": INTERVAL_METHOD, "device": cfg.device,
        "null_shared": ("factorized families: one fitted null per (refit seed, fold) serves "
                        "every factorized family (their null families coincide) and the "
                        "conditionals start from it; autoregressive families: one null per "
                        "target set and fold, frozen, and every rung is that null plus a Z "
                        "pathway (vinfo.fit.nested)"),
        "guard": ("collapsed = the interval of I_V does not lie above 0; guard_t (a one-sided "
                  "t test of the per-sample PVI on "
                  f"{info.get('n_guard', 0)} samples per seed that selected neither checkpoint"
                  f"{'' if info.get('n_guard', 0) else ': none, the selection split reused'}"
                  ") is a diagnostic"),
        "scale_note": ("gaussian/laplace scales: learned while fitting, profiled (MLE on the "
                       "scored split) when scoring; MDL uses the learned scale"),
    }
    if inputs.dense:
        ds_attrs["target_pixels"] = int(inputs.y.shape[2] * inputs.y.shape[3])
    if cfg.target_kind == "categorical":
        ds_attrs["num_classes"] = inputs.num_classes
    if cfg.target_kind == "discretized":
        ds_attrs["discretized_dist"] = cfg.discretized_dist
    if cfg.ignore_value is not None:
        ds_attrs["ignore_value"] = cfg.ignore_value
    if rate is not None and cfg.target_kind not in CAP_TARGETS:
        ds_attrs["cap_note"] = (f"no capped I_V: {cfg.target_kind} losses are differential "
                                "(densities), not codelengths, so the two-part bound does not "
                                "apply")
    if stock and "jpegxl" in stock and stock["jpegxl"] > 0:
        ratio = float(estimates[0].h_null / stock["jpegxl"])
        ds_attrs["null_vs_jpegxl"] = ratio
        ds_attrs["null_note"] = null_note(ratio)
    ds_attrs.update(attrs)
    return xr.Dataset(variables, coords=coords, attrs=ds_attrs)


STOCK_NAMES = {"png": "PNG (level 9)", "webp": "WebP lossless (level 100)",
               "jpegxl": "JPEG-XL lossless (effort 9)"}


def null_note(ratio: float) -> str:
    """What the null's codelength over JPEG-XL lossless's implies for the rungs."""
    if ratio <= 1.0:
        return (f"the null codes the evaluation images at {ratio:.2f}x JPEG-XL lossless: a "
                "strong reference")
    return (f"the null codes the evaluation images at {ratio:.2f}x JPEG-XL lossless: "
            f"{ratio - 1:.0%} above a stock codec, so part of what the rungs gain may be the "
            "null's deficit (a conditional can learn from Z what a better null would know "
            "without it)")


CSV_COLUMNS = ("h_null", "h_null_low", "h_null_high", "h_cond", "h_cond_low", "h_cond_high",
               "vinfo", "vinfo_low", "vinfo_high", "vinfo_trained", "vinfo_trained_low",
               "vinfo_trained_high", "vinfo_guarded", "vinfo_capped",
               "vinfo_capped_low", "vinfo_capped_high", "vinfo_seed_std", "h_null_val",
               "h_cond_val", "h_null_guard", "h_cond_guard", "mdl_bits", "mdl_bits_per_unit")


def table_csv(ds: xr.Dataset) -> str:
    """The per-family table as CSV text, units in the column names."""
    columns = [c for c in CSV_COLUMNS if c in ds]
    header = ["family", "likelihood", "fit_method", "n_parameters", "train_steps", "at_cap",
              "collapsed", "negative"]
    if "cap_binds" in ds:
        header.append("cap_binds")
    header += [f"{c} [{ds[c].attrs['units']}]" for c in columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for i, family in enumerate(ds["family"].values):
        row = [str(family), str(ds["likelihood"].values[i]) if "likelihood" in ds.coords else "",
               str(ds["fit_method"].values[i]), int(ds["n_parameters"].values[i]),
               int(ds["train_steps"].values[i]),
               bool(ds["at_cap"].values[i].any()) if "at_cap" in ds else False,
               bool(ds["collapsed"].values[i]), bool(ds["negative"].values[i])]
        if "cap_binds" in ds:
            row.append(bool(ds["cap_binds"].values[i]))
        writer.writerow(row + [f"{float(ds[c].values[i]):.6g}" for c in columns])
    return buffer.getvalue()
