"""The figures of the V-information report, each as deterministic PNG bytes.

In:  a result ``xarray.Dataset`` already checked by :func:`vinfo.report.schema.validated`
     (every known variable in its documented dim order, information in bits).
Out: PNG bytes (:func:`infra.reportdoc.figure_png`, 100 dpi, no metadata), drawn on
     Agg canvases without pyplot state; call inside ``matplotlib.style.context("default")``
     for output that does not depend on the user's matplotlib settings.

- :func:`information_figure`: I_V and the capped I_V per family with intervals, the seeds
  and the rate line; H_V(Y|Z) beside H_V(Y|∅) and the two-part code R + H_V(Y|Z).
- :func:`curves_figure`: held-out loss and I_V vs training-set size (log x).
- :func:`mdl_figure`: prequential codelength per family against the uniform code.
- :func:`pvi_histogram_figure`: distribution of per-sample PVI per family.
- :func:`pvi_maps_figure`: per-pixel PVI of the richest family on the first examples.

Also :func:`pvi_color_scale`, the colour scale of every PVI map (the report's and notebook
03's), and the small formatting helpers the report's tables share with the figures.
"""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from infra.reportdoc import figure_png


def format_bits(value: float, digits: int = 4) -> str:
    """A per-unit information value as shown in the tables ("n/a" for NaN)."""
    value = float(value)
    if not math.isfinite(value):
        return "n/a"
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def family_names(ds: xr.Dataset) -> list[str]:
    """The probe families of ``ds`` in ladder order, as text."""
    return [str(f) for f in ds["family"].values]


def interval_name(ds: xr.Dataset) -> str:
    """"95% interval", or a name saying the level was not recorded."""
    level = ds.attrs.get("confidence")
    return "interval (level not recorded)" if level is None else f"{100 * float(level):g}% interval"


def pvi_color_scale(*maps: object) -> dict:
    """The colour scale of PVI maps, as ``imshow`` keywords: ``{"cmap", "vmin", "vmax"}``.

    Diverging red/blue (``RdBu_r``: red, Z helped; blue, it misled; white, 0), symmetric
    around 0 up to the largest finite ``|PVI|`` over all ``maps`` (arrays of any shape);
    NaN (masked pixels) drawn grey. All-zero, all-NaN or empty maps get the limit 1, never 0
    (a zero limit draws every pixel in the darkest blue).
    """
    values = np.concatenate([np.asarray(m, dtype=float).ravel() for m in maps] or [np.zeros(0)])
    finite = np.abs(values[np.isfinite(values)])
    limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="0.75")
    return {"cmap": cmap, "vmin": -limit, "vmax": limit}


def _errorbar(ax, x, ds: xr.Dataset, name: str, **style) -> None:
    value = ds[name].values.astype(float)
    low, high = (ds[f"{name}_{side}"].values.astype(float) if f"{name}_{side}" in ds
                 else value for side in ("low", "high"))
    yerr = np.stack([np.clip(value - low, 0, None), np.clip(high - value, 0, None)])
    ax.errorbar(x, value, yerr=yerr, capsize=4, **style)


def information_figure(ds: xr.Dataset, rate: tuple[float, str] | None) -> bytes:
    """Left: I_V (open) and the capped I_V (filled) per family with intervals, the seeds and
    the rate R of Z, all in the same bits per unit. Right: H_V(Y|Z) per family with its
    interval, H_V(Y|∅) dashed and R + H_V(Y|Z) (the two-part code) dotted."""
    units = ds["vinfo"].attrs["units"]
    families = family_names(ds)
    x = np.arange(len(families))
    fig = Figure(figsize=(max(9.0, 2.2 * len(families) + 4), 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.axhline(0, color="0.6", linewidth=0.8)
    _errorbar(left, x - 0.08, ds, "vinfo", fmt="o", mfc="white", color="C0",
              label=f"I_V, {interval_name(ds)}")
    if "vinfo_capped" in ds:
        _errorbar(left, x + 0.08, ds, "vinfo_capped", fmt="o", color="C3",
                  label="capped I_V = min(H_V(Y|∅), R + H_V(Y|Z)) − H_V(Y|Z)")
    if "vinfo_seed" in ds:
        seeds = ds["vinfo_seed"].values
        offsets = np.linspace(-0.2, -0.12, seeds.shape[1]) if seeds.shape[1] > 1 else [-0.16]
        for j, offset in enumerate(offsets):
            left.scatter(x + offset, seeds[:, j], s=10, color="C0", alpha=0.45,
                         label="I_V of each refit seed" if j == 0 else None)
    if rate is not None:
        left.axhline(rate[0], color="C1", linestyle="--",
                     label=f"R, rate of Z: {format_bits(rate[0])} {units}")
    labels = families
    if "n_parameters" in ds:
        counts = ds["n_parameters"].values
        labels = [f"{f}\n({_compact(n)} params)" for f, n in zip(families, counts)]
    left.set_xticks(x, labels, fontsize="small")
    left.set_xlabel("probe family (ladder order)")
    left.set_ylabel(f"information [{units}]")
    left.legend(fontsize="x-small")
    left.set_title("usable (I_V) and capped, next to the rate", fontsize="medium")
    _errorbar(right, x, ds, "h_cond", fmt="s", color="C2", label="H_V(Y|Z)")
    right.plot(x, ds["h_null"].values, "k--", marker="_", label="H_V(Y|∅)")
    if rate is not None:
        right.plot(x, ds["h_cond"].values + rate[0], color="C1", linestyle=":", marker=".",
                   label="R + H_V(Y|Z) (two-part code)")
    right.set_xticks(x, families, fontsize="small")
    right.set_ylabel(f"held-out codelength / loss [{units}]")
    right.legend(fontsize="x-small")
    right.set_title("H_V(Y|Z): what is left to code given Z", fontsize="medium")
    return figure_png(fig)


def curves_figure(ds: xr.Dataset) -> bytes:
    sizes = ds["train_size"].values.astype(float)
    panels = [names for names in (("curve_h_cond", "curve_h_null"), ("curve_vinfo",))
              if any(name in ds for name in names)]
    fig = Figure(figsize=(5.0 * len(panels) + 1, 4.0), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    styles = {"curve_h_cond": ("-", "o"), "curve_h_null": ("--", "x"), "curve_vinfo": ("-", "o")}
    for ax, names in zip(axes, panels):
        present = [n for n in names if n in ds]
        for i, family in enumerate(family_names(ds)):
            for name in present:
                line, marker = styles[name]
                ax.plot(sizes, ds[name].values[i], linestyle=line, marker=marker, color=f"C{i}",
                        label=family if name == present[0] else None)
        quantity = "I_V" if names == ("curve_vinfo",) else "loss"
        ax.set_xscale("log")
        ax.set_xlabel("training-set size [samples]")
        ax.set_ylabel(f"held-out {quantity} [{ds[present[0]].attrs['units']}]")
        ax.legend(fontsize="small")
        ax.set_title("I_V vs training-set size" if quantity == "I_V"
                     else "solid: H_V(Y|Z), dashed: H_V(Y|∅)", fontsize="medium")
    return figure_png(fig)


def mdl_figure(ds: xr.Dataset) -> bytes:
    families = family_names(ds)
    fig = Figure(figsize=(max(5.0, 1.1 * len(families) + 2), 3.8), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(np.arange(len(families)), ds["mdl_bits"].values, color="C0", label="prequential code")
    if "mdl_uniform_bits" in ds:
        ax.axhline(float(ds["mdl_uniform_bits"]), color="0.4", linestyle="--",
                   label="uniform/marginal code")
    ax.set_xticks(np.arange(len(families)), families)
    ax.set_ylabel("codelength [bits]")
    ax.legend(fontsize="small")
    return figure_png(fig)


def pvi_histogram_figure(ds: xr.Dataset) -> bytes:
    pvi = ds["pvi"].values.astype(float)
    finite = pvi[np.isfinite(pvi)]
    edges = np.histogram_bin_edges(finite if finite.size else np.zeros(1), bins=30)
    fig = Figure(figsize=(6.5, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for i, family in enumerate(family_names(ds)):
        values = pvi[i][np.isfinite(pvi[i])]
        mean = format_bits(values.mean()) if values.size else "n/a"
        ax.hist(values, bins=edges, histtype="step", linewidth=1.5, color=f"C{i}",
                label=f"{family} (mean {mean})")
    ax.axvline(0, color="0.4", linewidth=0.8)
    ax.set_xlabel(f"PVI [{ds['pvi'].attrs['units']}]")
    ax.set_ylabel("evaluation samples")
    ax.legend(fontsize="small")
    return figure_png(fig)


def pvi_maps_figure(ds: xr.Dataset, shown: int) -> bytes:
    maps = ds["pvi_map"].values[-1, :shown].astype(float)
    scale = pvi_color_scale(maps)
    rows, cols = maps.shape[1:]
    fig = Figure(figsize=(2.4 * shown * cols / max(rows, cols) + 1.2, 2.8), layout="constrained")
    axes = fig.subplots(1, shown, squeeze=False)[0]
    examples = ds["example"].values if "example" in ds.coords else np.arange(shown)
    for ax, image, example in zip(axes, maps, examples):
        shown_image = ax.imshow(image, interpolation="nearest", **scale)
        ax.set_title(f"example {example}", fontsize="small")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(shown_image, ax=list(axes), label=f"PVI [{ds['pvi_map'].attrs['units']}]")
    return figure_png(fig)


def _compact(n: float) -> str:
    n = float(n)
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= factor:
            return f"{n / factor:.3g}{suffix}"
    return f"{n:.0f}"
