"""The predictive V-information estimator: Python API and command line.

    python -m vinfo.estimate --representations Z.npy --targets Y.npy --target-kind categorical \\
        [--families linear,mlp-64] [--seeds 0,1,2] [--bootstrap 1000] [--folds K] \\
        [--max-steps 400] --out DIR [key=value ...]
    python -m vinfo.estimate --codec RUN_DIR --dataset DIR \\
        --target {reconstruction,segmentation,depth} [--split val] [--limit N] \\
        [--checkpoint best|last] [--families ...] --out DIR    # Z = a base codec's ŷ_b
    python -m vinfo.estimate        # the embedded default (placeholder inputs, vinfo.data)

    import vinfo
    ds = vinfo.estimate(Z, Y, target_kind="gaussian", families=["linear", "mlp-64"], seeds=[0, 1])

Definitions (DESIGN §2; all outputs in bits, internally nats): for each probe family V,
H_V(Y|∅) is the held-out loss of the family fed a constant (zero) input, H_V(Y|Z) that of the
family fed Z, I_V(Z -> Y) = H_V(Y|∅) - H_V(Y|Z), and the pointwise V-information of a held-out
value is -log2 f_null(y) + log2 f_Z(y) (:mod:`vinfo.pvi`). Units are "bits/pixel" for dense
targets (per pixel of the target resolution, summed over its channels: comparable with a
codec's bits per pixel at that resolution) and "bits/sample" otherwise (summed over D values).

Pipeline: seeded split by sample (fit / validation / evaluation, or K cross-fitting folds);
for every family and refit seed a null and a conditional probe, both starting at the marginal
solution and early-stopped on validation (:mod:`vinfo.fitting`); per-sample and per-pixel PVI
on the evaluation split; a paired bootstrap interval (:mod:`vinfo.bootstrap`) and, separately,
the spread over seeds; the guarded estimate (0 where the null wins on validation); loss-data
curves and the prequential codelength (:mod:`vinfo.curves`, :mod:`vinfo.mdl`).

The result, an ``xarray.Dataset`` (every variable has a ``units`` attr; "unit" = the attr
``unit``, pixel or sample)::

    h_null, h_cond, vinfo, vinfo_low, vinfo_high, vinfo_guarded     (family)  bits/unit
    vinfo_seed (family, seed), vinfo_seed_std (family; NaN for one seed)      bits/unit
    collapsed, negative (family) bool; n_parameters, train_steps (0: closed form), best_step
    h_null_val, h_cond_val (family): validation losses behind the guard       bits/unit
    h_marginal (): closed-form marginal null                                  bits/unit
    vinfo_per_value (family): bits/value; vinfo_per_image (family, dense):    bits/image
    pvi (family, sample): per evaluation sample                               bits/unit
    pvi_map (family, example, row, col): dense targets, NaN where masked      bits/pixel
    curve_h_null, curve_h_cond, curve_vinfo (family, train_size)              bits/unit
    mdl_bits (family), mdl_uniform_bits (): prequential / reference code      bits
    mdl_bits_per_unit (family)                                                bits/unit
    mse_null, mse_cond | mae_null, mae_cond (family, seed, target_channel): gaussian/laplace
    coords: family (+ fit_method), seed, sample, train_size, example, row, col
    attrs: target_kind, unit, n_samples, n_fit, n_val, n_eval, seed, seeds, folds, confidence,
           n_bootstrap, representation_shape, target_shape, vinfo_version, created, source,
           [representation_bpp, target_pixels, num_classes, ignore_value, discretized_dist]

Outputs in ``--out``: ``vinfo.nc`` (h5netcdf), ``vinfo.csv`` (per-family table),
``config.yaml`` (the resolved config) and the report of :func:`vinfo.report.write_report`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr

from taskcodecs.config import ConfigError, apply_overrides, load_config, parse_overrides
from taskcodecs.train_config import SyntheticData
from vinfo.bootstrap import paired_interval
from vinfo.curves import CurveResult, curves_and_mdl, train_sizes
from vinfo.data import Inputs, VinfoInputError, check_inputs, default_inputs, load_array
from vinfo.families import default_ladder, parse_family
from vinfo.fitting import FitSettings, ProbeData, Split, head_tail, make_splits
from vinfo.mdl import reference_codelength
from vinfo.pvi import FamilyEstimate, FamilyRun, run_family, summarize
from vinfo.targets import KINDS, Target, make_target

VINFO_VERSION = "0.1.0"
LN2 = math.log(2.0)


@dataclass
class DefaultData(SyntheticData):
    """The scenes the no-argument default generates (the training presets' synthetic-data
    fields, smaller by default) and where they go."""

    train: int = 64
    val: int = 32
    height: int = 32
    width: int = 64
    data_dir: str = ""  # "" = <out>/synthetic-data


@dataclass
class VinfoConfig:
    """Everything that defines an estimate. Families and budgets are part of V."""

    target_kind: Literal["categorical", "gaussian", "laplace", "discretized"] = "categorical"
    families: list[str] = field(default_factory=list)  # empty: the whole ladder
    seed: int = 0  # the evaluation split and the bootstrap
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # refits
    fit_fraction: float = 0.6
    val_fraction: float = 0.2  # evaluation: the rest
    folds: int = 1  # > 1: K-fold cross-fitting, every sample gets an out-of-fold PVI
    bootstrap: int = 1000
    confidence: float = 0.95
    # the training budget of every family (part of V): defaults from vinfo.fitting.FitSettings
    max_steps: int = FitSettings.max_steps
    lr: float = FitSettings.lr
    batch_size: int = FitSettings.batch_size  # 0: full batch
    eval_every: int = FitSettings.eval_every
    patience: int = FitSettings.patience
    closed_form_linear: bool = FitSettings.closed_form_linear
    eval_batch_size: int = FitSettings.eval_batch_size
    synthesis_widths: list[int] = field(
        default_factory=lambda: list(FitSettings.synthesis_widths))
    synthesis_blocks: int = FitSettings.synthesis_blocks
    batched: bool = FitSettings.batched  # a family's probes fitted together (vinfo.batched)
    ridge_alpha: float = FitSettings.ridge_alpha  # linear-Gaussian closed form: L2 penalty
    num_classes: int | None = None
    ignore_value: float | None = None
    discretized_dist: Literal["logistic", "gaussian"] = "logistic"
    curves: bool = True  # loss-data curves and prequential MDL (one set of prefix fits)
    curve_points: int = 5
    curve_min_size: int = 8
    map_examples: int = 4
    representations: str = ""
    targets: str = ""
    representations_key: str = ""
    targets_key: str = ""
    out: str = "runs/vinfo-default"
    source: str = ""
    default_data: DefaultData = field(default_factory=DefaultData)


# The embedded default (no inputs given): small, so it runs in minutes on a 2-core CPU.
DEFAULT_RUN = {"target_kind": "categorical", "ignore_value": 19, "batch_size": 8,
               "max_steps": 50, "eval_every": 10, "patience": 3, "lr": 1e-2,
               "seeds": [0, 1], "eval_batch_size": 16, "synthesis_widths": [32, 16, 16],
               "curve_points": 3, "curve_min_size": 8}


def resolve_config(config: VinfoConfig | None = None, **overrides: Any) -> VinfoConfig:
    """``config`` (or the defaults) with keyword overrides; ``families`` may be a comma string."""
    if isinstance(overrides.get("families"), str):
        overrides["families"] = [f for f in overrides["families"].split(",") if f.strip()]
    overrides = {k: (list(v) if isinstance(v, tuple) else v) for k, v in overrides.items()
                 if v is not None or k in ("num_classes", "ignore_value")}
    return apply_overrides(config or VinfoConfig(), overrides)


def fit_settings(cfg: VinfoConfig) -> FitSettings:
    """The config's training budget as :class:`FitSettings`, field by field (by name)."""
    values = {f.name: getattr(cfg, f.name) for f in fields(FitSettings)}
    return FitSettings(**{**values, "synthesis_widths": tuple(values["synthesis_widths"])})


def estimate(
    Z: np.ndarray | torch.Tensor | str | Path,
    Y: np.ndarray | torch.Tensor | str | Path,
    target_kind: str | None = None,
    *,
    config: VinfoConfig | None = None,
    representation_bpp: float | None = None,
    attrs: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
    **overrides: Any,
) -> xr.Dataset:
    """Estimate V-information from representations ``Z`` to targets ``Y`` for a family ladder.

    ``Z``/``Y`` are arrays or paths (.npy/.npz/.nc); ``overrides`` are :class:`VinfoConfig`
    fields (``families=[...]``, ``seeds=[0, 1]``, ``max_steps=...``). ``representation_bpp``
    (the codec's actual rate, bits per original-image pixel) and ``attrs`` go to the result's
    attributes. Returns the result Dataset (schema in the module docstring); bad inputs raise
    :class:`vinfo.data.VinfoInputError`, bad config values ``taskcodecs.config.ConfigError``.
    """
    if target_kind is not None and target_kind not in KINDS:
        raise VinfoInputError(f"unknown target kind {target_kind!r}; expected one of "
                              f"{', '.join(KINDS)}")
    cfg = resolve_config(config, target_kind=target_kind, **overrides)
    names = []
    arrays = []
    for value, role, key in ((Z, "representations", cfg.representations_key),
                             (Y, "targets", cfg.targets_key)):
        if isinstance(value, str | Path):
            names.append(f"{role} file {value}")
            arrays.append(load_array(value, key, role))
        else:
            names.append(f"{role} array")
            arrays.append(value.detach().cpu().numpy() if torch.is_tensor(value) else value)
    inputs = check_inputs(arrays[0], arrays[1], cfg.target_kind, ignore_value=cfg.ignore_value,
                          num_classes=cfg.num_classes, z_name=names[0], y_name=names[1])
    extra = dict(attrs or {})
    if representation_bpp is not None:
        extra["representation_bpp"] = float(representation_bpp)
    return estimate_inputs(inputs, cfg, extra, log)


def check_config(cfg: VinfoConfig) -> None:
    """Value checks the types alone do not catch; ConfigError names the key."""
    if cfg.fit_fraction <= 0 or cfg.val_fraction <= 0 or cfg.fit_fraction + cfg.val_fraction >= 1:
        raise ConfigError(f"fit_fraction {cfg.fit_fraction} and val_fraction {cfg.val_fraction} "
                          "must be positive with a sum below 1 (the rest is evaluation)")
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds) or min(cfg.seeds) < 0:
        raise ConfigError(f"seeds: expected distinct non-negative integers, got {cfg.seeds}")
    if cfg.seed < 0:
        raise ConfigError(f"seed: expected a non-negative integer (0 is a seed), got {cfg.seed}")
    if len(set(cfg.families)) != len(cfg.families):
        raise ConfigError(f"families: each family once, got {cfg.families}")
    if not 0 < cfg.confidence < 1:
        raise ConfigError(f"confidence: expected a value in (0, 1), got {cfg.confidence}")
    for key, low in (("folds", 1), ("bootstrap", 0), ("max_steps", 0), ("batch_size", 0),
                     ("eval_every", 1), ("patience", 1), ("eval_batch_size", 1),
                     ("curve_points", 1), ("curve_min_size", 2), ("map_examples", 0),
                     ("synthesis_blocks", 0)):
        if getattr(cfg, key) < low:
            raise ConfigError(f"{key}: expected an integer >= {low}, got {getattr(cfg, key)}")
    if cfg.lr <= 0:
        raise ConfigError(f"lr: expected a positive learning rate, got {cfg.lr}")
    if not (math.isfinite(cfg.ridge_alpha) and cfg.ridge_alpha >= 0):
        raise ConfigError(f"ridge_alpha: expected a finite number >= 0, got {cfg.ridge_alpha}")


def _standardize(z: np.ndarray) -> torch.Tensor:
    """Per-channel zero mean, unit variance over all samples (a fixed invertible map)."""
    t = torch.from_numpy(z)
    dims = [d for d in range(t.dim()) if d != 1]
    return ((t - t.mean(dims, keepdim=True)) / t.std(dims, keepdim=True).clamp_min(1e-8)).float()


def estimate_inputs(
    inputs: Inputs, cfg: VinfoConfig, attrs: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> xr.Dataset:
    """The estimate for checked inputs (see :func:`estimate`)."""
    check_config(cfg)
    n = inputs.z.shape[0]
    if n < 10 or (cfg.folds > 1 and n < 3 * cfg.folds):
        raise VinfoInputError(f"{n} samples are too few for a fit/validation/evaluation split "
                              f"(need at least 10, and 3 per fold)")
    names = cfg.families or list(default_ladder(inputs.dense))
    try:
        specs = [parse_family(name) for name in names]
    except ValueError as err:
        raise ConfigError(f"families: {err}") from err
    for spec in specs:
        if not inputs.dense and spec.kind in ("cnn", "synthesis"):
            raise ConfigError(f"family {spec.name!r} needs a latent grid and a dense target; "
                              f"vector inputs take {', '.join(default_ladder(False))}")
    data = ProbeData(_standardize(inputs.z), torch.from_numpy(inputs.y),
                     torch.from_numpy(inputs.mask), inputs.stride)
    target = make_target(cfg.target_kind, data.y, data.mask, inputs.num_classes,
                         cfg.discretized_dist)
    splits = make_splits(n, cfg.seed, cfg.fit_fraction, cfg.val_fraction, cfg.folds)
    val_share = cfg.val_fraction / (cfg.fit_fraction + cfg.val_fraction)
    settings = fit_settings(cfg)
    eval_idx = np.sort(np.concatenate([s.eval_idx for s in splits]))
    examples = tuple(int(i) for i in eval_idx[: cfg.map_examples]) if inputs.dense else ()
    sizes = train_sizes(len(splits[0].pool), cfg.curve_points, cfg.curve_min_size)
    runs, estimates, intervals, curves = [], [], [], []
    for spec in specs:
        start = time.perf_counter()
        run = run_family(spec, target, data, splits, cfg.seed, cfg.seeds, val_share, settings,
                         examples, log)
        est = summarize(run)
        intervals.append(paired_interval(est.pvi_sums.numpy(), run.count.numpy(), cfg.bootstrap,
                                         cfg.seed, cfg.confidence))
        if cfg.curves:
            curves.append(curves_and_mdl(run, target, data, splits[0], sizes, val_share, settings,
                                         cfg.seeds[0], log))
        runs.append(run)
        estimates.append(est)
        if log is not None:
            low, high = intervals[-1]
            log(f"{spec.name}: I_V = {est.vinfo:.4f} [{low:.4f}, {high:.4f}] bits/"
                f"{'pixel' if inputs.dense else 'sample'} ({time.perf_counter() - start:.1f} s)")
    h_marginal = _marginal_bits(target, data, splits)
    uniform_bits = reference_codelength(target, data, np.arange(n)).bits
    fit_idx, val_idx = head_tail(splits[0].partition(cfg.seed, cfg.seeds[0], val_share),
                                 len(splits[0].pool), val_share)
    info = {"n_samples": n, "n_fit": len(fit_idx), "n_val": len(val_idx), "n_eval": len(eval_idx)}
    return to_dataset(cfg, inputs, runs, estimates, intervals, curves, h_marginal, uniform_bits,
                      info, attrs or {})


def _marginal_bits(target: Target, data: ProbeData, splits: list[Split]) -> float:
    """Closed-form marginal null (vinfo.targets.Target.marginal_nats), bits per unit; with
    folds, the evaluation-size weighted mean over folds."""
    values, weights = [], []
    for split in splits:
        pool, ev = torch.as_tensor(split.pool), torch.as_tensor(split.eval_idx)
        values.append(target.marginal_nats(data.y[pool], data.mask[pool], data.y[ev],
                                           data.mask[ev]) / LN2)
        weights.append(len(split.eval_idx))
    return float(np.average(values, weights=weights))


def to_dataset(
    cfg: VinfoConfig, inputs: Inputs, runs: list[FamilyRun], estimates: list[FamilyEstimate],
    intervals: list[tuple[float, float]], curves: list[CurveResult], h_marginal: float,
    uniform_bits: float, info: dict[str, int], attrs: dict[str, Any],
) -> xr.Dataset:
    """Assemble the result Dataset (variables, units and attributes of the schema)."""
    unit = "pixel" if inputs.dense else "sample"
    per_unit = f"bits/{unit}"
    fam = ("family",)
    vinfo = np.array([e.vinfo for e in estimates])
    collapsed = np.array([e.collapsed for e in estimates])
    seed_values = np.stack([e.vinfo_seed for e in estimates])
    seed_std = (seed_values.std(axis=1, ddof=1) if seed_values.shape[1] > 1
                else np.full(len(runs), np.nan))  # one seed: no spread to report
    budget = [0 if "least squares" in r.method else cfg.max_steps for r in runs]

    def var(dims, values, units, **extra):
        return dims, np.asarray(values), {"units": units, **extra}

    variables = {
        "h_null": var(fam, [e.h_null for e in estimates], per_unit,
                      long_name="H_V(Y|null): held-out loss of the family fed zeros"),
        "h_cond": var(fam, [e.h_cond for e in estimates], per_unit,
                      long_name="H_V(Y|Z): held-out loss of the family fed Z"),
        "vinfo": var(fam, vinfo, per_unit, long_name="I_V(Z->Y) = h_null - h_cond, seed mean"),
        "vinfo_low": var(fam, [i[0] for i in intervals], per_unit,
                         long_name=f"{cfg.confidence:.0%} paired-bootstrap interval, low"),
        "vinfo_high": var(fam, [i[1] for i in intervals], per_unit,
                          long_name=f"{cfg.confidence:.0%} paired-bootstrap interval, high"),
        "vinfo_guarded": var(fam, np.where(collapsed, 0.0, vinfo), per_unit,
                             long_name="0 where the null won on validation, else vinfo"),
        "vinfo_seed": var(("family", "seed"), seed_values, per_unit),
        "vinfo_seed_std": var(fam, seed_std, per_unit, long_name="std over refit seeds (ddof 1)"),
        "collapsed": var(fam, collapsed, "1",
                         long_name="conditional probe did not beat the null on validation"),
        "negative": var(fam, vinfo < 0, "1", long_name="raw estimate below 0"),
        "n_parameters": var(fam, [r.n_parameters for r in runs], "parameters"),
        "train_steps": var(fam, budget, "steps",
                           long_name="optimizer step budget (0: closed form)"),
        "best_step": var(("family", "seed"), np.stack([r.best_step for r in runs]), "steps",
                         long_name="step of the kept checkpoint, fold 0 (0 = the null start)"),
        "h_null_val": var(fam, [r.val_null.mean() / LN2 for r in runs], per_unit,
                          long_name="validation loss of the null (for the guard)"),
        "h_cond_val": var(fam, [r.val_cond.mean() / LN2 for r in runs], per_unit,
                          long_name="validation loss of the conditional probe (for the guard)"),
        "h_marginal": var((), h_marginal, per_unit, long_name="closed-form marginal null"),
        "pvi": var(("family", "sample"), np.stack([e.pvi for e in estimates]), per_unit,
                   long_name="pointwise V-information per evaluation sample"),
        "vinfo_per_value": var(fam, [float(e.pvi_sums.sum() / r.count.sum())
                                     for e, r in zip(estimates, runs)], "bits/value",
                               long_name="I_V per target value (sub-pixel), all channels pooled"),
    }
    if inputs.dense:
        variables["vinfo_per_image"] = var(
            fam, [float(e.pvi_sums.sum()) / len(r.idx) for e, r in zip(estimates, runs)],
            "bits/image", long_name="I_V per target image: mean summed PVI of its valid pixels")
    coords: dict[str, Any] = {
        "family": [r.spec.name for r in runs], "seed": list(cfg.seeds), "sample": runs[0].idx,
        "fit_method": ("family", [r.method for r in runs]),
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
    ds_attrs.update(attrs)
    return xr.Dataset(variables, coords=coords, attrs=ds_attrs)



# ---------------------------------------------------------------------------- outputs

CSV_COLUMNS = ("h_null", "h_cond", "vinfo", "vinfo_low", "vinfo_high", "vinfo_guarded",
               "vinfo_seed_std", "h_null_val", "h_cond_val", "mdl_bits", "mdl_bits_per_unit")


def table_csv(ds: xr.Dataset) -> str:
    """The per-family table as CSV text, units in the column names."""
    import csv
    import io

    columns = [c for c in CSV_COLUMNS if c in ds]
    header = ["family", "fit_method", "n_parameters", "train_steps", "collapsed", "negative"]
    header += [f"{c} [{ds[c].attrs['units']}]" for c in columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for i, family in enumerate(ds["family"].values):
        row = [str(family), str(ds["fit_method"].values[i]), int(ds["n_parameters"].values[i]),
               int(ds["train_steps"].values[i]), bool(ds["collapsed"].values[i]),
               bool(ds["negative"].values[i])]
        writer.writerow(row + [f"{float(ds[c].values[i]):.6g}" for c in columns])
    return buffer.getvalue()


def write_outputs(
    ds: xr.Dataset, cfg: VinfoConfig, out_dir: str | Path, log: Callable[[str], None] | None = None
) -> dict[str, Path]:
    """Write vinfo.nc, vinfo.csv, config.yaml and (if vinfo.report exists) the report as one
    set (:func:`taskcodecs.io.publish_set`): a reader of ``out_dir`` sees the previous set or
    this one, never a mix, whatever interrupts the write; a second writer is refused."""
    import importlib.util

    from taskcodecs.config import save_config
    from taskcodecs.io import atomic_write, atomic_write_text, publish_set

    def write(stage: Path) -> dict[str, Path]:
        paths = {
            "netcdf": atomic_write(stage / "vinfo.nc",
                                   lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf")),
            "csv": atomic_write_text(stage / "vinfo.csv", table_csv(ds)),
            "config": save_config(cfg, stage / "config.yaml"),
        }
        if importlib.util.find_spec("vinfo.report") is None:
            if log is not None:
                log("vinfo.report is not available: wrote vinfo.nc and vinfo.csv without a report")
        else:
            from vinfo.report import write_report

            paths.update(write_report(ds, stage))
        return paths

    return publish_set(out_dir, write, what="vinfo output")


# ---------------------------------------------------------------------------- command line


def _int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vinfo.estimate",
        description="Estimate predictive V-information I_V(Z -> Y) in bits for a ladder of probe "
                    "families. Without --representations/--targets: the embedded default "
                    "(synthetic scenes, a placeholder representation).")
    parser.add_argument("--representations", help="Z: .npy/.npz/.nc, [N, D] or [N, C, h, w]")
    parser.add_argument("--targets", help="Y: .npy/.npz/.nc, [N], [N, D] or [N, C, H, W]")
    codec = parser.add_argument_group(
        "codec inputs (instead of --representations/--targets; see vinfo.adapter)")
    codec.add_argument("--codec", metavar="RUN_DIR", help="a base codec training run directory")
    codec.add_argument("--dataset", metavar="DIR", help="Cityscapes-layout dataset root")
    codec.add_argument("--target", choices=["reconstruction", "segmentation", "depth"])
    codec.add_argument("--split", default="val", help="dataset split (default val)")
    codec.add_argument("--limit", type=int, help="only the first N images")
    codec.add_argument("--checkpoint", choices=["best", "last"], default="best")
    parser.add_argument("--representations-key", help="array name inside a .npz/.nc")
    parser.add_argument("--targets-key", help="array name inside a .npz/.nc")
    parser.add_argument("--target-kind", choices=list(KINDS))
    parser.add_argument("--families", help="comma-separated, e.g. linear,mlp-64,cnn-3x64,synthesis")
    parser.add_argument("--seeds", type=_int_list, help="refit seeds, e.g. 0,1,2")
    parser.add_argument("--seed", type=int, help="split and bootstrap seed (0 is a seed)")
    parser.add_argument("--bootstrap", type=int, help="bootstrap replicates")
    parser.add_argument("--folds", type=int, help="K-fold cross-fitting (1: one split)")
    parser.add_argument("--max-steps", type=int, help="optimizer step budget per probe")
    parser.add_argument("--ignore-value", type=float, help="target value that counts for no model")
    parser.add_argument("--num-classes", type=int, help="categorical: number of classes K")
    parser.add_argument("--config", help="a YAML file of VinfoConfig keys")
    parser.add_argument("--out", help="output directory (default runs/vinfo-default)")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. lr=1e-3")
    return parser


def config_from_args(args: argparse.Namespace) -> VinfoConfig:
    """Defaults < --config (or, with neither inputs nor --config, the embedded-default preset)
    < flags < key=value overrides."""
    from_file = load_config(VinfoConfig, args.config) if args.config else VinfoConfig()
    if not (args.representations or args.targets or getattr(args, "codec", None)
            or from_file.representations):
        from_file = apply_overrides(from_file, DEFAULT_RUN) if not args.config else from_file
    flags = {key: getattr(args, key) for key in (
        "representations", "targets", "representations_key", "targets_key", "families", "seeds",
        "seed", "bootstrap", "folds", "max_steps", "num_classes", "ignore_value", "out")}
    flags["target_kind"] = args.target_kind
    flags = {k: v for k, v in flags.items() if v is not None}
    if isinstance(flags.get("families"), str):
        flags["families"] = [f.strip() for f in flags["families"].split(",") if f.strip()]
    cfg = apply_overrides(from_file, flags)
    return apply_overrides(cfg, parse_overrides(args.overrides))


def _log(message: str) -> None:
    print(f"[vinfo {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """The command line; errors and interrupts follow :mod:`taskcodecs.cli` (exit 2 / 130)."""
    from taskcodecs import cli

    return cli.run(_main, argv)


def _main(argv: list[str]) -> int:
    from taskcodecs import cli
    from taskcodecs.io import check_writable, exclusive_lock

    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    if cfg.max_steps < 1:  # 0 would report I_V from untrained probes
        raise ConfigError(f"max_steps (--max-steps) must be >= 1, got {cfg.max_steps}")
    check_writable(cfg.out)  # before any fitting
    cli.on_interrupt(f"nothing was written ({cfg.out} keeps its previous outputs, if any)")
    with exclusive_lock(cfg.out, f"vinfo output folder {cfg.out}"):  # refuse a 2nd writer now
        if args.codec or args.dataset or args.target:
            ds, cfg = _estimate_codec(args, cfg)
        elif bool(cfg.representations) != bool(cfg.targets):
            raise VinfoInputError("give both --representations and --targets, or neither "
                                  "(the embedded default)")
        elif cfg.representations:
            ds = estimate(cfg.representations, cfg.targets, config=cfg, log=_log)
        else:
            d = cfg.default_data
            data_dir = d.data_dir or str(Path(cfg.out) / "synthetic-data")
            _log(f"embedded default: synthetic scenes in {data_dir} (placeholder representation)")
            z, y, source = default_inputs(data_dir, train=d.train, val=d.val, height=d.height,
                                          width=d.width, seed=d.seed)
            cfg = apply_overrides(cfg, {"source": cfg.source or source})
            ds = estimate(z, y, config=cfg, log=_log)
        paths = write_outputs(ds, cfg, cfg.out, _log)
    table = ds[["h_null", "h_cond", "vinfo", "vinfo_low", "vinfo_high"]].to_dataframe()
    print(f"I_V in {ds['vinfo'].attrs['units']}:\n{table.to_string(float_format='%.4f')}")
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return 0


def _estimate_codec(
    args: argparse.Namespace, cfg: VinfoConfig
) -> tuple[xr.Dataset, VinfoConfig]:
    """``--codec RUN_DIR --dataset DIR --target T``: the estimate on a codec's (ŷ_b, Y) pairs."""
    from vinfo.adapter import extract_codec_pairs

    if cfg.representations or cfg.targets:
        raise VinfoInputError("--codec/--dataset/--target replace --representations/--targets; "
                              "give one or the other")
    missing = [f"--{name}" for name in ("codec", "dataset", "target") if not getattr(args, name)]
    if missing:
        raise VinfoInputError(f"codec inputs need --codec, --dataset and --target; missing "
                              f"{', '.join(missing)}")
    pairs = extract_codec_pairs(args.codec, args.dataset, args.target, split=args.split,
                                limit=args.limit, checkpoint=args.checkpoint,
                                target_kind=args.target_kind, log=_log)
    cfg = apply_overrides(cfg, {"target_kind": pairs.target_kind, "source": pairs.source,
                                "ignore_value": pairs.ignore_value,
                                "num_classes": pairs.num_classes})
    ds = estimate(pairs.Z, pairs.Y, config=cfg, representation_bpp=pairs.representation_bpp,
                  attrs=pairs.attrs(), log=_log)
    return ds, cfg


class _CallableModule(types.ModuleType):
    """Lets ``vinfo.estimate(Z, Y, ...)`` call :func:`estimate` while ``vinfo.estimate`` stays
    this module (``python -m vinfo.estimate``, ``from vinfo.estimate import VinfoConfig``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> xr.Dataset:
        return estimate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
