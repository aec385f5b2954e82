"""The information-vs-compatibility gap, for the baseline and proposed bases side by side.

    rows, missing = gap_rows(runs)                       # "available": rate and coding gain
    vinfo = {"baseline": load_vinfo("vinfo/baseline"), "proposed": load_vinfo("vinfo/proposed")}
    ladder = ladder_rows(vinfo)                          # "usable by family V": I_V per rung
    result = gap_figure(rows, vinfo)                     # FigureResult (analysis.figures)

Three numbers per base (DESIGN §4):

- R(Ŷ_b): the base's rate that carries information, mean ``bpp_payload`` (the base layer's
  payload, the container header excluded: it is fixed given the image size) of the base runs
  the enhancement runs sit on (all base runs of that kind if none is linked), bits per
  original-image pixel; ``bpp_actual`` (header included) where an eval.nc predates
  ``bpp_payload``. ``base_rate_kind`` says which.
- The conditional coding gain R(X) − R(X|Ŷ_b), operationally: the *standalone* total rate
  minus the *scalable* total rate at equal quality. Computed as a rate difference at matched
  quality: each curve's total rate (bpp, linear) is interpolated as a function of quality with
  PCHIP (linear for two points), and the difference is averaged over the quality interval both
  curves cover. It is in bits per original-image pixel, so it sits next to R(Ŷ_b). The BD-rate
  of scalable against standalone (percent, Akima by default) is given beside it. The two
  standalone flavours come from :func:`analysis.references.standalone_reference`:
  ``standalone-refit`` our refit runs; ``standalone-independent`` our own independently
  trained runs on that base where they exist (preferred: they are kept and the CompressAI
  runs are then not used), else, for reconstruction, a CompressAI zoo codec trained on the
  same dataset, its curve shifted right by the base's actual total rate (a system sending
  the base plus an independent CompressAI stream pays both). ``source_{flavour}`` names the
  reference used (e.g. "CompressAI mbt2018-mean + base"); ``independent_base_shift_bpp``
  the base rate added to a CompressAI curve (NaN otherwise).
- The usable fraction gain / R(Ŷ_b), flagged (``gain_*_exceeds_rate``) where the gain
  exceeds R(Ŷ_b): by the two-part bound R(X) ≤ R(Ŷ_b) + R(X|Ŷ_b) a base cannot save more
  than it carries, so there the reference (the standalone codec) is the weak part.
- The vinfo ladder, from the ``vinfo.nc`` files given for each base, per probe family with
  intervals (over evaluation images and refits): H_V(Y|Ŷ_b), what is left to code of the
  target given the base (a codelength for autoregressive families), the raw I_V and the
  capped I_V = min(H_V(Y|∅), R + H_V(Y|Ŷ_b)) − H_V(Y|Ŷ_b) ≤ R, beside R(Ŷ_b) in the *same*
  unit (the file's ``rate_per_unit``: bits per target pixel). Units as the file says,
  usually bits per target pixel, which is bits per original-image pixel when the target is
  the image at its coded resolution (the codec adapter's case).
- The same quantity from the probe side (issue 20 item 4, :mod:`analysis.gap_probe`): at fixed
  transforms the coding gain is I_V(Ŷ_b → Ŷ_e) for the family of the enhancement's own
  conditional entropy model; :mod:`vinfo.latent_gap` estimates it per scalable point and
  :func:`analysis.gap_probe.probe_gap_rows` sets it beside the point's operational gain
  (refit − scalable, paired per image) with "agree" or which side is off and why.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.interpolate import PchipInterpolator

from analysis.bdrate import RDCurveWarning, bd_rate
from analysis.figures import DATASET_NAMES, FigureResult
from analysis.references import base_runs, standalone_reference
from analysis.runs import METRICS, Curve, Run, base_variants, curve, select
from infra.io import find_files
from vinfo.errors import VinfoInputError
from vinfo.report.schema import REQUIRED_VARIABLES

STANDALONE = ("standalone-refit", "standalone-independent")
TARGETS = (("reconstruction", "coco"), ("reconstruction", "cityscapes"),
           ("segmentation", "cityscapes"))


def rate_gain_at_matched_quality(standalone: Curve, scalable: Curve) -> tuple[float, tuple]:
    """Mean of R_standalone(q) − R_scalable(q) over the common quality interval, in bpp.

    Returns (gain_bpp, (q_low, q_high)) with q in the metric's stored units. Raises
    ValueError for fewer than 2 points, repeated qualities, or no common interval.
    """
    low = max(standalone.quality.min(), scalable.quality.min())
    high = min(standalone.quality.max(), scalable.quality.max())
    for c in (standalone, scalable):
        if len(c) < 2 or np.unique(c.quality).size != len(c):
            raise ValueError(f"{c.label}: needs >= 2 points with distinct quality values to "
                             f"interpolate rate at matched quality (has {len(c)})")
    if not high > low:
        raise ValueError(f"{standalone.label} and {scalable.label} do not overlap in quality")

    def mean_rate(c: Curve) -> float:
        order = np.argsort(c.quality)
        interp = PchipInterpolator(c.quality[order], c.rate[order])
        return float(interp.integrate(low, high)) / (high - low)

    return mean_rate(standalone) - mean_rate(scalable), (float(low), float(high))


def gap_rows(runs: list[Run], method: str = "akima") -> tuple[list[dict], list[str]]:
    """One row per (base, secondary target): R(Ŷ_b), conditional coding gain, BD-rate."""
    rows: list[dict] = []
    missing: list[str] = []
    for task, dataset in TARGETS:
        target = f"{DATASET_NAMES[dataset]} {task}"
        if not select(runs, task=task, dataset=dataset):
            missing.append(f"no {target} runs: its conditional coding gain is not computed")
            continue
        for variant in [v for v in base_variants(runs, dataset) if v != "unknown base"]:
            row = {"base": variant, "target": target, **_base_rate(runs, task, dataset, variant)}
            scalable = curve(runs, task=task, method="scalable", dataset=dataset,
                             base_variant=variant)
            for flavour in STANDALONE:
                ref = standalone_reference(runs, task, dataset, variant, flavour)
                row[f"gain_{flavour}_bpp"] = np.nan
                row[f"bd_scalable_vs_{flavour}"] = None
                row[f"source_{flavour}"] = ref.source
                if flavour == "standalone-independent":
                    row["independent_base_shift_bpp"] = ref.base_shift_bpp
                why = ("no scalable runs" if scalable is None else ref.why_not or None)
                if why is None:
                    why = _fill_gain(row, flavour, ref.curve, scalable, method)
                if why:
                    missing.append(f"{target} on the {variant} base: {why}: conditional "
                                   f"coding gain vs {flavour} not computed")
            rows.append(row)
    return rows, missing


def _base_rate(runs: list[Run], task: str, dataset: str, variant: str) -> dict:
    bases, linked = base_runs(runs, task, dataset, variant)
    payload = all(np.isfinite(b.bpp_payload_total) for b in bases)
    rates = np.array([b.bpp_payload_total if payload else b.bpp_total for b in bases],
                     dtype=float)
    if rates.size == 0:
        return {"base_runs": 0, "base_linked": False, "base_bpp": np.nan,
                "base_bpp_min": np.nan, "base_bpp_max": np.nan, "base_rate_kind": ""}
    return {"base_runs": int(rates.size), "base_linked": linked,
            "base_rate_kind": "payload, header excluded" if payload else
            "actual, header included",
            "base_bpp": float(rates.mean()), "base_bpp_min": float(rates.min()),
            "base_bpp_max": float(rates.max())}


def _fill_gain(row: dict, flavour: str, standalone: Curve, scalable: Curve,
               method: str) -> str | None:
    """Put the gain (bpp) and BD-rate into ``row``; return why not, if they cannot be computed."""
    try:
        gain, interval = rate_gain_at_matched_quality(standalone, scalable)
    except ValueError as err:
        return str(err)
    row[f"gain_{flavour}_bpp"] = gain
    row[f"gain_{flavour}_interval"] = interval
    # the two-part bound R(X) <= R(Ŷ_b) + R(X|Ŷ_b): a base cannot save more than it carries,
    # so a gain above R(Ŷ_b) measures the reference's deficit, not the base
    rate = row.get("base_bpp", np.nan)
    row[f"usable_{flavour}"] = gain / rate if rate > 0 else np.nan
    row[f"gain_{flavour}_exceeds_rate"] = bool(gain > rate)
    try:
        with warnings.catch_warnings():  # kept in the result's .warnings
            warnings.simplefilter("ignore", RDCurveWarning)
            row[f"bd_scalable_vs_{flavour}"] = bd_rate(
                standalone.rate, standalone.quality, scalable.rate, scalable.quality,
                method=method, higher_is_better=METRICS[scalable.metric].higher_is_better)
    except ValueError as err:
        return f"BD-rate: {err}"
    return None


# --- the vinfo ladder --------------------------------------------------------------------------

def load_vinfo(path: str | Path) -> dict[str, xr.Dataset]:
    """``vinfo.nc`` files at ``path`` (a file, or a folder searched recursively) by key.

    The key is the file's folder relative to ``path`` ("vinfo" for a file given directly or
    lying at the top), so the same layout under each base lines up in the ladder table.
    """
    root = Path(path)
    if root.is_file():
        files = {"vinfo": root}
    elif root.is_dir():
        files = {(str(p.parent.relative_to(root)) if p.parent != root else "vinfo"): p
                 for p in find_files(root, "vinfo.nc")}
        if not files:
            raise VinfoInputError(f"{root}: no vinfo.nc file found in this folder")
    else:
        raise VinfoInputError(f"{root}: no such vinfo.nc file or folder")
    return {key: _read_vinfo(p) for key, p in files.items()}


def _read_vinfo(path: Path) -> xr.Dataset:
    try:
        with xr.open_dataset(path, engine="h5netcdf") as opened:
            ds = opened.load()
    except Exception as err:
        raise VinfoInputError(f"{path}: cannot read as a netCDF vinfo file "
                              f"({type(err).__name__}: {err})") from err
    for name in REQUIRED_VARIABLES:
        if name not in ds or ds[name].dims != ("family",):
            raise VinfoInputError(f"{path}: needs variable {name!r} with dims ('family',) "
                                  "(the vinfo result schema)")
        if "units" not in ds[name].attrs:
            raise VinfoInputError(f"{path}: variable {name!r} has no 'units' attr")
    ds.attrs["path"] = str(path)
    return ds


LADDER_QUANTITIES = (("h_cond", "H_V(Y|Ŷ_b)"), ("vinfo", "I_V"), ("vinfo_capped", "capped I_V"))


def _with_interval(ds: xr.Dataset, name: str, i: int) -> str:
    value = float(ds[name].values[i])
    if f"{name}_low" not in ds:
        return f"{value:.4f}"
    return f"{value:.4f} [{float(ds[f'{name}_low'].values[i]):.4f}, " \
           f"{float(ds[f'{name}_high'].values[i]):.4f}]"


def ladder_rows(vinfo: dict[str, dict[str, xr.Dataset]]) -> list[dict]:
    """One row per (vinfo key, family): per base label, H_V(Y|Ŷ_b), I_V and the capped I_V
    ("value [low, high]") and R(Ŷ_b), all in the file's unit (``row["units"]``); flags."""
    rows: dict[tuple[str, str], dict] = {}
    for label, by_key in vinfo.items():
        for key, ds in by_key.items():
            units = ds["vinfo"].attrs["units"]
            for i, family in enumerate(ds["family"].values):
                row = rows.setdefault((key, str(family)), {"vinfo": key, "family": str(family),
                                                           "units": units})
                for name, title in LADDER_QUANTITIES:
                    if name in ds:
                        row[f"{label}: {title}"] = _with_interval(ds, name, i)
                if "rate_per_unit" in ds:
                    row[f"{label}: R(Ŷ_b)"] = f"{float(ds['rate_per_unit']):.4f}"
                flags = [text for name, text in (("collapsed", "collapsed"),
                                                 ("cap_binds", "cap binds"))
                         if name in ds and bool(ds[name].values[i])]
                if "at_cap" in ds and bool(np.asarray(ds["at_cap"].values[i]).any()):
                    flags.append("not converged")
                row[f"{label}: flags"] = ", ".join(flags)
    return list(rows.values())


# --- figure ------------------------------------------------------------------------------------

def gap_figure(rows: list[dict], vinfo: dict[str, dict[str, xr.Dataset]],
               intervals: dict | None = None) -> FigureResult:
    """Left: R(Ŷ_b) and the coding gains (bpp) per base. Right: I_V per family per base.

    ``intervals``: {(target or "base rate", base variant): estimate with ``low``/``high``}
    (the results table's bootstrap intervals), drawn as error bars on the left panel."""
    title = "The gap: information available vs usable by family V"
    keys = sorted({k for by_key in vinfo.values() for k in by_key}) or ["vinfo"]
    fig = Figure(figsize=(5.5 * (len(keys) + 1), 4.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize=10)
    axes = fig.subplots(1, len(keys) + 1, squeeze=False)[0]
    ax = axes[0]
    ax.set_ylabel("bits per pixel of the original full-resolution image", fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    missing = _available_panel(ax, rows, intervals or {})
    for key, panel in zip(keys, axes[1:]):
        missing += _ladder_panel(panel, key, vinfo)
    caption = ("Left: the base's rate R(Ŷ_b) and the conditional coding gain (standalone − "
               "scalable total rate at matched quality), bits per original-image pixel, with "
               "their paired-bootstrap intervals where the results table has them. Right: "
               "I_V(Ŷ_b → Y) (open) and the capped I_V ≤ R(Ŷ_b) (filled) per probe family with "
               "intervals over images and refits, and R(Ŷ_b) (dashed), all in bits per target "
               "pixel (= per original-image pixel for a full-resolution target).")
    return FigureResult("gap", title, fig, caption, [f"{title}: {m}" for m in missing])


def _available_panel(ax: Axes, rows: list[dict], intervals: dict) -> list[str]:
    ax.set_title("available: rate and conditional coding gain", fontsize=9)
    variants = sorted({r["base"] for r in rows})
    if not variants:
        ax.text(0.5, 0.5, "no runs found for any base", ha="center", va="center",
                transform=ax.transAxes, color="dimgray")
        return ["no base runs: the available-information panel is empty"]
    bars = [("R(Ŷ_b)", lambda r: r["base_bpp"], None)]
    for target in sorted({r["target"] for r in rows}):
        for flavour in STANDALONE:
            bars.append((f"gain, {target}, vs {flavour}",
                         lambda r, f=flavour: r[f"gain_{f}_bpp"], target))
    bars = [b for b in bars if any(np.isfinite(b[1](r)) for r in rows
                                   if b[2] is None or r["target"] == b[2])]
    width = 0.8 / len(bars)
    for j, (name, value, target) in enumerate(bars):
        heights, errors = [], []
        for variant in variants:
            chosen = sorted((r for r in rows if r["base"] == variant
                             and target in (None, r["target"])),
                            key=lambda r: not r["base_linked"])  # bases with enhancements first
            heights.append(value(chosen[0]) if chosen else np.nan)
            key = (target or "base rate", variant)
            known = intervals.get(key) if name.startswith(("R(", "gain")) and (
                target is None or "refit" in name) else None
            errors.append((heights[-1] - known.low, known.high - heights[-1])
                          if known is not None and np.isfinite(known.low) else (np.nan, np.nan))
        err = np.abs(np.array(errors, dtype=float).T)
        ax.bar(np.arange(len(variants)) + (j - (len(bars) - 1) / 2) * width, heights, width,
               label=name, yerr=None if np.isnan(err).all() else np.nan_to_num(err),
               capsize=3)
    ax.set_xticks(np.arange(len(variants)), variants, fontsize=7, rotation=10)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.legend(fontsize=6)
    return []


def _ladder_panel(ax: Axes, key: str, vinfo: dict[str, dict[str, xr.Dataset]]) -> list[str]:
    ax.set_title(f"usable by family V ({key}): I_V, capped I_V, R(Ŷ_b)", fontsize=9)
    ax.grid(True, alpha=0.3)
    present = [(label, by_key[key]) for label, by_key in vinfo.items() if key in by_key]
    if not present:
        ax.text(0.5, 0.5, "no vinfo.nc given\n(--vinfo baseline=DIR --vinfo proposed=DIR)",
                ha="center", va="center", transform=ax.transAxes, color="dimgray", fontsize=8)
        return ["no vinfo.nc given for any base: the V-information ladder is not drawn"]
    families = list(dict.fromkeys(str(f) for _, ds in present for f in ds["family"].values))
    for j, (label, ds) in enumerate(present):
        index = np.array([families.index(str(f)) for f in ds["family"].values])
        x = index + (j - (len(present) - 1) / 2) * 0.3
        color = f"C{j}"
        for name, offset, style in (("vinfo", -0.05, "white"), ("vinfo_capped", 0.05, color)):
            if name not in ds:
                continue
            value = ds[name].values
            err = np.abs(np.stack([value - ds[f"{name}_low"].values,
                                   ds[f"{name}_high"].values - value]))
            ax.errorbar(x + offset, value, yerr=err, fmt="o", capsize=3, color=color,
                        mfc=style, label=f"{label}: {'I_V' if name == 'vinfo' else 'capped'}")
        if "rate_per_unit" in ds:
            ax.axhline(float(ds["rate_per_unit"]), color=color, linestyle="--", linewidth=1,
                       label=f"{label}: R(Ŷ_b)")
    ax.set_xticks(np.arange(len(families)), families, fontsize=7, rotation=30)
    ax.set_ylabel(f"{present[0][1]['vinfo'].attrs['units']} (R(Ŷ_b) in the same unit)",
                  fontsize=8)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.legend(fontsize=6)
    missing = [f"no vinfo.nc '{key}' for the {label} base" for label in vinfo
               if key not in vinfo[label]]
    return missing
