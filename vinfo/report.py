"""The representation-complexity report: a V-information result Dataset → HTML + Markdown.

In:  an ``xarray.Dataset`` following the vinfo result schema (``vinfo.estimate``'s output:
     dims ``family``, ``seed``, ``sample``, ``train_size``, ``example``/``row``/``col``;
     every data variable carries a ``units`` attr; information is in bits).
Out: ``out_dir/report.html`` (self-contained: figures embedded as base64 PNG, inline CSS, no
     scripts, fonts or links, opens offline), ``out_dir/report.md`` and the same figures as
     PNG files in ``out_dir/figures/`` (linked by the Markdown). All written atomically.

Sections: 1 header, 2 per-family table (with flags), 3 information vs compatibility,
4 loss-data curves, 5 prequential MDL, 6 pointwise V-information, 7 how to read an interval.
A missing optional variable skips its part with a sentence saying it was not computed.

Unit rule for the "available" reference line: I_V is in bits per target unit, the
representation's rate (``attrs.representation_bpp``) in bits per ORIGINAL-image pixel. The
rate is converted to bits per target unit only when the attrs say how many pixels one sample
covers: ``rate = bpp × image_pixels / units_per_sample`` with ``units_per_sample =
target_pixels`` for ``unit == "pixel"`` and 1 for ``unit == "sample"`` (``image_pixels`` and
``target_pixels`` are per sample). Otherwise both numbers are shown with their own units and
no ratio of mismatched units is formed.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import matplotlib
import matplotlib.style
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from taskcodecs.io import atomic_write_bytes, atomic_write_text

NULL_UNDERFIT_TOLERANCE_BITS = 0.05  # bits/unit an in-family null may lose to h_marginal
MAX_MAP_EXAMPLES = 8
FIGURE_NAMES = (
    "information_by_family",
    "loss_data_curves",
    "mdl_codelength",
    "pvi_histogram",
    "pvi_maps",
)
REQUIRED_VARIABLES = ("h_null", "h_cond", "vinfo", "vinfo_low", "vinfo_high")
EXPECTED_DIMS: dict[str, tuple[str, ...]] = {
    **{name: ("family",) for name in REQUIRED_VARIABLES},
    "vinfo_guarded": ("family",),
    "vinfo_seed": ("family", "seed"),
    "vinfo_seed_std": ("family",),
    "collapsed": ("family",),
    "negative": ("family",),
    "n_parameters": ("family",),
    "train_steps": ("family",),
    "h_marginal": (),
    "pvi": ("family", "sample"),
    "pvi_map": ("family", "example", "row", "col"),
    "curve_h_cond": ("family", "train_size"),
    "curve_h_null": ("family", "train_size"),
    "curve_vinfo": ("family", "train_size"),
    "mdl_bits": ("family",),
    "mdl_bits_per_unit": ("family",),
    "mdl_uniform_bits": (),
}
# Per-unit information quantities: all must share vinfo's units (e.g. "bits/pixel").
PER_UNIT_VARIABLES = (
    *REQUIRED_VARIABLES, "vinfo_guarded", "vinfo_seed", "vinfo_seed_std", "h_marginal",
    "pvi", "curve_h_cond", "curve_h_null", "curve_vinfo", "mdl_bits_per_unit",
)
BITS_VARIABLES = (*PER_UNIT_VARIABLES, "pvi_map", "mdl_bits", "mdl_uniform_bits")

INTERVAL_GUIDE = (
    "The interval is a paired bootstrap over the evaluation samples: the fitted probes are "
    "held fixed and the evaluation set is resampled, so it is the uncertainty that comes from "
    "evaluating on a finite set, not from training. The seed spread (std over refits with "
    "different seeds) is the separate variability of refitting the probes. An interval that "
    "covers 0 means no usable information was detected for that family. Negative raw estimates "
    "(the conditional probe did worse than the null on held-out data) are reported as they "
    "are, not hidden or clipped; the guarded estimate is the one that keeps the null where "
    "the null won on the validation split."
)


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    left_columns: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class Image:
    name: str
    png: bytes
    caption: str


@dataclass
class Section:
    title: str
    blocks: list[str | Table | Image] = field(default_factory=list)


def format_bits(value: float, digits: int = 4) -> str:
    """A per-unit information value as shown in the tables ("n/a" for NaN)."""
    value = float(value)
    if not math.isfinite(value):
        return "n/a"
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def write_report(ds: xr.Dataset, out_dir: str | Path, title: str | None = None) -> dict[str, Path]:
    """Write ``report.html``, ``report.md`` and ``figures/*.png`` for ``ds`` into ``out_dir``.

    Returns the written paths: ``"html"``, ``"markdown"`` and one entry per figure keyed by
    its name (a subset of :data:`FIGURE_NAMES`). Figures of an earlier report in the same
    folder that this Dataset does not produce are removed. Raises TypeError for a non-Dataset
    and ValueError (naming the variable) for a missing required variable, a variable without a
    ``units`` attr, information not in bits or with the wrong dimensions.
    """
    ds = _validated(ds)
    out_dir = Path(out_dir)
    title = title or f"V-information report: {ds.attrs.get('source', 'unnamed representation')}"
    written_at = datetime.now(UTC).isoformat(timespec="seconds")
    with matplotlib.style.context("default"):
        sections = [
            _header_section(ds, written_at),
            _family_section(ds),
            _information_section(ds),
            _curves_section(ds),
            _mdl_section(ds),
            _pvi_section(ds),
            Section("7. How to read an interval", [INTERVAL_GUIDE]),
        ]
    paths: dict[str, Path] = {}
    figures_dir = out_dir / "figures"
    for block in (b for s in sections for b in s.blocks if isinstance(b, Image)):
        paths[block.name] = atomic_write_bytes(figures_dir / f"{block.name}.png", block.png)
    for stale in set(FIGURE_NAMES) - set(paths):
        (figures_dir / f"{stale}.png").unlink(missing_ok=True)
    paths["markdown"] = atomic_write_text(out_dir / "report.md", _to_markdown(title, sections))
    paths["html"] = atomic_write_text(out_dir / "report.html", _to_html(title, sections))
    return paths


# --- validation -------------------------------------------------------------------------


def _validated(ds: xr.Dataset) -> xr.Dataset:
    """Check the schema; return ``ds`` with every known variable in its documented dim order."""
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"write_report expects an xarray.Dataset, got {type(ds).__name__}")
    if ds.sizes.get("family", 0) == 0:
        raise ValueError("Dataset has no 'family' dimension (or it is empty); expected probe "
                         "families in ladder order")
    for name in REQUIRED_VARIABLES:
        if name not in ds.data_vars:
            raise ValueError(f"required variable {name!r} is missing from the Dataset")
    for name, var in ds.data_vars.items():
        if "units" not in var.attrs:
            raise ValueError(f"variable {name!r} has no 'units' attr; every variable must say "
                             "its units (e.g. 'bits/pixel', 'bits', 'parameters')")
    vinfo_units = ds["vinfo"].attrs["units"]
    if "unit" in ds.attrs and vinfo_units != f"bits/{ds.attrs['unit']}":
        raise ValueError(f"variable 'vinfo' has units {vinfo_units!r}, but attrs unit = "
                         f"{ds.attrs['unit']!r}; expected 'bits/{ds.attrs['unit']}'")
    reordered = {}
    for name, dims in EXPECTED_DIMS.items():
        if name not in ds.data_vars:
            continue
        units = str(ds[name].attrs["units"])
        if set(ds[name].dims) != set(dims):
            raise ValueError(f"variable {name!r} has dims {ds[name].dims}, expected {dims}")
        if name in BITS_VARIABLES and not units.lower().startswith("bits"):
            raise ValueError(f"variable {name!r} has units {units!r}; the report expects bits")
        if name in PER_UNIT_VARIABLES and units != vinfo_units:
            raise ValueError(f"variable {name!r} has units {units!r}, but 'vinfo' has "
                             f"{vinfo_units!r}; per-unit quantities must share one unit")
        reordered[name] = ds[name].transpose(*dims)
    if "curve_h_cond" in ds or "curve_h_null" in ds or "curve_vinfo" in ds:
        sizes = ds["train_size"].values if "train_size" in ds.coords else np.array([0])
        if not np.all(np.asarray(sizes, dtype=float) > 0):
            raise ValueError("loss-data curves need a 'train_size' coordinate of positive "
                             f"training-set sizes, got {sizes!r}")
    return ds.assign(reordered)


# --- sections ---------------------------------------------------------------------------


def _header_section(ds: xr.Dataset, written_at: str) -> Section:
    attrs = ds.attrs
    seeds = ds["seed"].values.tolist() if "seed" in ds.coords else attrs.get("seed")
    n_split = "/".join(_attr(attrs, key) for key in ("n_fit", "n_val", "n_eval"))
    rows = [
        ["source", _attr(attrs, "source")],
        ["target kind", _attr(attrs, "target_kind")],
        ["unit (one 'unit' of bits/unit)", _attr(attrs, "unit")],
        ["N fit / val / eval (total)", f"{n_split} ({_attr(attrs, 'n_samples')})"],
        ["refit seeds", _format_attr(seeds)],
        ["bootstrap resamples", _attr(attrs, "n_bootstrap")],
        ["confidence level", _interval_name(ds)],
        ["representation shape", _attr(attrs, "representation_shape", " × ")],
        ["target shape", _attr(attrs, "target_shape", " × ")],
        ["representation rate", _rate_text(ds)],
        ["estimate created", _attr(attrs, "created")],
        ["vinfo version", _attr(attrs, "vinfo_version")],
        ["report written", written_at],
    ]
    intro = ("What was measured and how. All information quantities are in bits; 'per unit' "
             f"means per {attrs.get('unit', 'unit')} of the target, as recorded in the Dataset.")
    return Section("1. Estimate", [intro, Table(["field", "value"], rows)])


def _family_section(ds: xr.Dataset) -> Section:
    units = ds["vinfo"].attrs["units"]
    has_marginal = "h_marginal" in ds
    header = ["family", "parameters", "training budget [steps]", f"H_V(Y|∅) [{units}]",
              f"H_V(Y|Z) [{units}]", f"I_V [{units}]", f"I_V {_interval_name(ds)} [{units}]",
              f"guarded I_V [{units}]", f"seed spread (std) [{units}]"]
    if has_marginal:
        header.append(f"H_V(Y|∅) − h_marginal [{units}]")
    header.append("flags")
    rows = []
    for i, family in enumerate(_families(ds)):
        iv, low, high = (float(ds[n].values[i]) for n in ("vinfo", "vinfo_low", "vinfo_high"))
        negative = bool(ds["negative"].values[i]) if "negative" in ds else iv < 0
        flags = ["⚠ negative"] if negative else []
        if "collapsed" in ds and bool(ds["collapsed"].values[i]):
            flags.append("⚠ collapsed to null")
        row = [family, _count(ds, "n_parameters", i), _count(ds, "train_steps", i),
               format_bits(ds["h_null"].values[i]), format_bits(ds["h_cond"].values[i]),
               format_bits(iv), f"[{format_bits(low)}, {format_bits(high)}]",
               _bits_or_dash(ds, "vinfo_guarded", i), _bits_or_dash(ds, "vinfo_seed_std", i)]
        if has_marginal:
            excess = float(ds["h_null"].values[i]) - float(ds["h_marginal"])
            row.append(format_bits(excess))
            if excess > NULL_UNDERFIT_TOLERANCE_BITS:
                flags.append("⚠ null underfit")
        if low <= 0 <= high:
            flags.append("interval covers 0")
        rows.append([*row, "; ".join(flags)])
    blocks: list[str | Table | Image] = [
        "One row per probe family, in ladder order (simplest first). I_V = H_V(Y|∅) − H_V(Y|Z): "
        "the held-out loss of the family fed a constant minus its loss fed the representation. "
        "'⚠ negative': the raw estimate is below 0; '⚠ collapsed to null': the conditional "
        "probe did not beat the null on validation, so the guarded estimate is 0.",
        Table(header, rows, left_columns=(0, len(header) - 1)),
    ]
    if has_marginal:
        blocks.append(
            f"Closed-form marginal null h_marginal = {format_bits(ds['h_marginal'])} {units}. "
            "An in-family null should come close to it; '⚠ null underfit' marks a null worse by "
            f"more than {NULL_UNDERFIT_TOLERANCE_BITS} {units}, which inflates that family's I_V.")
    else:
        blocks.append("The closed-form marginal h_marginal was not computed, so the in-family "
                      "nulls are not checked against it.")
    missing = [n for n in ("n_parameters", "train_steps", "vinfo_guarded", "vinfo_seed_std",
                           "collapsed") if n not in ds]
    if missing:
        blocks.append(f"Not computed in this estimate (shown as '—'): {', '.join(missing)}.")
    return Section("2. Per-family estimates", blocks)


def _information_section(ds: xr.Dataset) -> Section:
    units = ds["vinfo"].attrs["units"]
    families = _families(ds)
    richest, richest_iv = families[-1], float(ds["vinfo"].values[-1])
    rate = _rate_per_unit(ds)
    blocks: list[str | Table | Image] = [
        "Usable information I_V per probe family, with its bootstrap interval (error bars) and "
        "the individual seeds (small dots). Rising I_V along the ladder means richer decoders "
        "extract more from the same representation: the gap between a family and the top of "
        "the ladder is information that is present but not usable by that family."
    ]
    if rate is not None:
        rate_value, rule = rate
        blocks.append(
            f"Available: the representation's rate is {format_bits(rate_value)} {units} "
            f"({rule}); dashed line. Usable bits per transmitted bit = I_V({richest}) / rate = "
            f"{format_bits(richest_iv)} {units} / {format_bits(rate_value)} {units} = "
            f"{format_bits(richest_iv / rate_value, 3) if rate_value > 0 else 'n/a'}.")
    elif "representation_bpp" in ds.attrs:
        blocks.append(
            f"Available: the representation's rate is {_rate_text(ds)}, while I_V({richest}) = "
            f"{format_bits(richest_iv)} {units}. The attrs do not give the pixel counts "
            "(image_pixels, and target_pixels for dense targets) needed to put both in one "
            "unit, so no ratio is formed and no rate line is drawn.")
    else:
        blocks.append("The representation's rate was not recorded (no representation_bpp "
                      "attr), so no 'available' reference line is drawn.")
    blocks.append(Image("information_by_family", _information_figure(ds, rate),
                        f"I_V per family [{units}], ladder order."))
    return Section("3. Information vs compatibility", blocks)


def _curves_section(ds: xr.Dataset) -> Section:
    section = Section("4. Loss-data curves")
    present = [n for n in ("curve_h_cond", "curve_h_null", "curve_vinfo") if n in ds]
    if not present:
        section.blocks.append("Loss-data curves were not computed for this estimate.")
        return section
    units = ds[present[0]].attrs["units"]
    section.blocks += [
        "Held-out loss of each family trained on growing subsets of the fit split (log x). "
        "Solid: H_V(Y|Z); dashed: H_V(Y|∅); their vertical gap is I_V at that size. A curve "
        "still falling at the largest size means the probe is limited by data, not capacity.",
        Image("loss_data_curves", _curves_figure(ds),
              f"Held-out loss [{units}] vs training-set size [samples]."),
    ]
    return section


def _mdl_section(ds: xr.Dataset) -> Section:
    section = Section("5. Prequential MDL")
    if "mdl_bits" not in ds:
        section.blocks.append("The prequential (online) codelength was not computed.")
        return section
    units = ds["vinfo"].attrs["units"]
    uniform = float(ds["mdl_uniform_bits"]) if "mdl_uniform_bits" in ds else math.nan
    rows = []
    for i, family in enumerate(_families(ds)):
        bits = float(ds["mdl_bits"].values[i])
        saving = uniform - bits
        rows.append([family, f"{bits:,.1f}", _bits_or_dash(ds, "mdl_bits_per_unit", i),
                     f"{saving:,.1f}" if math.isfinite(saving) else "—",
                     f"{100 * saving / uniform:.1f}" if uniform > 0 else "—"])
    header = ["family", "codelength [bits]", f"codelength [{units}]",
              "saving vs uniform code [bits]", "saving [%]"]
    blocks: list[str | Table | Image] = [
        "Codelength of the targets when each block is coded by a probe trained on all earlier "
        "blocks (bits, total over the coded data). The saving against the uniform/marginal code "
        "is usable information that also pays for how hard the probe is to learn: a family "
        "that needs many samples to fit saves less.",
        Table(header, rows),
    ]
    if math.isfinite(uniform):
        blocks.append(f"Uniform/marginal code: {uniform:,.1f} bits (grey line in the chart).")
    else:
        blocks.append("The uniform/marginal codelength was not computed; no saving is shown.")
    blocks.append(Image("mdl_codelength", _mdl_figure(ds), "Prequential codelength [bits]."))
    section.blocks += blocks
    return section


def _pvi_section(ds: xr.Dataset) -> Section:
    section = Section("6. Pointwise V-information")
    if "pvi" in ds:
        section.blocks += [
            "Distribution of PVI over evaluation samples, per family: PVI = −log2 f_null(y) + "
            "log2 f_Z(y), in bits/unit; its mean is I_V. Mass below 0 marks samples on which "
            "the representation misled the probe; a long right tail means a few samples carry "
            "most of the usable information.",
            Image("pvi_histogram", _pvi_histogram_figure(ds),
                  f"Per-sample PVI [{ds['pvi'].attrs['units']}]."),
        ]
    else:
        section.blocks.append("Per-sample PVI was not computed.")
    if "pvi_map" in ds:
        units = ds["pvi_map"].attrs["units"]
        shown = min(ds.sizes["example"], MAX_MAP_EXAMPLES)
        section.blocks += [
            f"Per-pixel PVI of the richest family ({_families(ds)[-1]}) on {shown} evaluation "
            f"examples, in {units}; red: the representation helped, blue: it misled, white: "
            "no difference, grey: masked. The colour scale is symmetric around 0.",
            Image("pvi_maps", _pvi_maps_figure(ds, shown), f"PVI maps [{units}]."),
        ]
    else:
        section.blocks.append("PVI maps were not computed (they exist only for dense targets).")
    return section


# --- figures ----------------------------------------------------------------------------


def _information_figure(ds: xr.Dataset, rate: tuple[float, str] | None) -> bytes:
    units = ds["vinfo"].attrs["units"]
    families = _families(ds)
    x = np.arange(len(families))
    iv = ds["vinfo"].values.astype(float)
    yerr = np.stack([np.clip(iv - ds["vinfo_low"].values, 0, None),
                     np.clip(ds["vinfo_high"].values - iv, 0, None)])
    fig = Figure(figsize=(max(5.0, 1.2 * len(families) + 2), 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.axhline(0, color="0.6", linewidth=0.8)
    ax.errorbar(x, iv, yerr=yerr, fmt="o", capsize=4, color="C0",
                label=f"I_V with {_interval_name(ds)}")
    if "vinfo_seed" in ds:
        seeds = ds["vinfo_seed"].values
        offsets = np.linspace(-0.12, 0.12, seeds.shape[1]) if seeds.shape[1] > 1 else [0.0]
        for j, offset in enumerate(offsets):
            ax.scatter(x + offset, seeds[:, j], s=10, color="C0", alpha=0.45,
                       label="individual seeds" if j == 0 else None)
    if rate is not None:
        ax.axhline(rate[0], color="C1", linestyle="--",
                   label=f"rate of Z: {format_bits(rate[0])} {units}")
    labels = families
    if "n_parameters" in ds:
        counts = ds["n_parameters"].values
        labels = [f"{f}\n({_compact(n)} params)" for f, n in zip(families, counts)]
    ax.set_xticks(x, labels)
    ax.set_xlabel("probe family (ladder order)")
    ax.set_ylabel(f"I_V [{units}]")
    ax.legend(fontsize="small")
    return _png(fig)


def _curves_figure(ds: xr.Dataset) -> bytes:
    sizes = ds["train_size"].values.astype(float)
    panels = [names for names in (("curve_h_cond", "curve_h_null"), ("curve_vinfo",))
              if any(name in ds for name in names)]
    fig = Figure(figsize=(5.0 * len(panels) + 1, 4.0), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    styles = {"curve_h_cond": ("-", "o"), "curve_h_null": ("--", "x"), "curve_vinfo": ("-", "o")}
    for ax, names in zip(axes, panels):
        present = [n for n in names if n in ds]
        for i, family in enumerate(_families(ds)):
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
    return _png(fig)


def _mdl_figure(ds: xr.Dataset) -> bytes:
    families = _families(ds)
    fig = Figure(figsize=(max(5.0, 1.1 * len(families) + 2), 3.8), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(np.arange(len(families)), ds["mdl_bits"].values, color="C0", label="prequential code")
    if "mdl_uniform_bits" in ds:
        ax.axhline(float(ds["mdl_uniform_bits"]), color="0.4", linestyle="--",
                   label="uniform/marginal code")
    ax.set_xticks(np.arange(len(families)), families)
    ax.set_ylabel("codelength [bits]")
    ax.legend(fontsize="small")
    return _png(fig)


def _pvi_histogram_figure(ds: xr.Dataset) -> bytes:
    pvi = ds["pvi"].values.astype(float)
    finite = pvi[np.isfinite(pvi)]
    edges = np.histogram_bin_edges(finite if finite.size else np.zeros(1), bins=30)
    fig = Figure(figsize=(6.5, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for i, family in enumerate(_families(ds)):
        values = pvi[i][np.isfinite(pvi[i])]
        mean = format_bits(values.mean()) if values.size else "n/a"
        ax.hist(values, bins=edges, histtype="step", linewidth=1.5, color=f"C{i}",
                label=f"{family} (mean {mean})")
    ax.axvline(0, color="0.4", linewidth=0.8)
    ax.set_xlabel(f"PVI [{ds['pvi'].attrs['units']}]")
    ax.set_ylabel("evaluation samples")
    ax.legend(fontsize="small")
    return _png(fig)


def _pvi_maps_figure(ds: xr.Dataset, shown: int) -> bytes:
    maps = ds["pvi_map"].values[-1, :shown].astype(float)
    finite = np.abs(maps[np.isfinite(maps)])
    limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="0.75")
    rows, cols = maps.shape[1:]
    fig = Figure(figsize=(2.4 * shown * cols / max(rows, cols) + 1.2, 2.8), layout="constrained")
    axes = fig.subplots(1, shown, squeeze=False)[0]
    examples = ds["example"].values if "example" in ds.coords else np.arange(shown)
    for ax, image, example in zip(axes, maps, examples):
        shown_image = ax.imshow(image, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_title(f"example {example}", fontsize="small")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(shown_image, ax=list(axes), label=f"PVI [{ds['pvi_map'].attrs['units']}]")
    return _png(fig)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


# --- rendering --------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2.2rem;
     border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .25rem .55rem; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
td { font-variant-numeric: tabular-nums; }
figure { margin: 1rem 0; } figure img { max-width: 100%; }
figcaption { font-size: .85rem; color: #555; }
"""


def _to_html(title: str, sections: list[Section]) -> str:
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{esc(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
             f"<h1>{esc(title)}</h1>"]
    for section in sections:
        parts.append(f"<h2>{esc(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                def cell(tag: str, j: int, text: str, table: Table = block) -> str:
                    css = ' class="text"' if j in table.left_columns else ""
                    return f"<{tag}{css}>{esc(text)}</{tag}>"
                parts.append("<table>")
                parts.append("<tr>" + "".join(cell("th", j, h) for j, h in enumerate(block.header))
                             + "</tr>")
                for row in block.rows:
                    parts.append("<tr>" + "".join(cell("td", j, c) for j, c in enumerate(row))
                                 + "</tr>")
                parts.append("</table>")
            elif isinstance(block, Image):
                data = base64.b64encode(block.png).decode("ascii")
                parts.append(f'<figure><img src="data:image/png;base64,{data}" '
                             f'alt="{esc(block.caption)}"><figcaption>{esc(block.caption)}'
                             "</figcaption></figure>")
            else:
                parts.append(f"<p>{esc(block)}</p>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _to_markdown(title: str, sections: list[Section]) -> str:
    def md_row(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    parts = [f"# {title}", ""]
    for section in sections:
        parts += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                align = [":---" if j in block.left_columns else "---:"
                         for j in range(len(block.header))]
                parts += [md_row(block.header), md_row(align), *map(md_row, block.rows), ""]
            elif isinstance(block, Image):
                alt = block.caption.replace("[", "\\[").replace("]", "\\]")
                parts += [f"![{alt}](figures/{block.name}.png)", ""]
            else:
                parts += [block, ""]
    return "\n".join(parts)


# --- small helpers ----------------------------------------------------------------------


def _families(ds: xr.Dataset) -> list[str]:
    return [str(f) for f in ds["family"].values]


def _rate_per_unit(ds: xr.Dataset) -> tuple[float, str] | None:
    """The representation's rate in bits per target unit, with the rule used, or None."""
    attrs = ds.attrs
    if "representation_bpp" not in attrs:
        return None
    bpp = _positive_attr(attrs, "representation_bpp", allow_zero=True)
    if "image_pixels" not in attrs:
        return None
    image_pixels = _positive_attr(attrs, "image_pixels")
    if attrs.get("unit") == "sample":
        return bpp * image_pixels, (
            f"{_fmt_num(bpp)} bits/original pixel × {_fmt_num(image_pixels)} pixels per sample")
    if attrs.get("unit") == "pixel" and "target_pixels" in attrs:
        target_pixels = _positive_attr(attrs, "target_pixels")
        return bpp * image_pixels / target_pixels, (
            f"{_fmt_num(bpp)} bits/original pixel × {_fmt_num(image_pixels)} image pixels / "
            f"{_fmt_num(target_pixels)} target pixels")
    return None


def _positive_attr(attrs: dict, key: str, allow_zero: bool = False) -> float:
    try:
        value = float(np.asarray(attrs[key]).item())
    except (TypeError, ValueError) as err:
        raise ValueError(f"attr {key!r} must be a single number, got {attrs[key]!r}") from err
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"attr {key!r} must be a finite {kind} number, got {value!r}")
    return value


def _rate_text(ds: xr.Dataset) -> str:
    if "representation_bpp" not in ds.attrs:
        return "not recorded"
    bpp = _positive_attr(ds.attrs, "representation_bpp", allow_zero=True)
    return f"{format_bits(bpp)} bits per original-image pixel"


def _interval_name(ds: xr.Dataset) -> str:
    """"95% interval", or a name saying the level was not recorded."""
    level = ds.attrs.get("confidence")
    return "interval (level not recorded)" if level is None else f"{100 * float(level):g}% interval"


def _attr(attrs: dict, key: str, separator: str = ", ") -> str:
    return _format_attr(attrs.get(key), separator)


def _format_attr(value: object, separator: str = ", ") -> str:
    """An attr as text: lists/arrays joined by ``separator``, None as "not recorded"."""
    if value is None:
        return "not recorded"
    if isinstance(value, list | tuple | np.ndarray):
        return separator.join(str(item) for item in np.asarray(value).ravel().tolist())
    return str(value)


def _count(ds: xr.Dataset, name: str, i: int) -> str:
    return f"{int(ds[name].values[i]):,}" if name in ds else "—"


def _bits_or_dash(ds: xr.Dataset, name: str, i: int) -> str:
    return format_bits(ds[name].values[i]) if name in ds else "—"


def _compact(n: float) -> str:
    n = float(n)
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= factor:
            return f"{n / factor:.3g}{suffix}"
    return f"{n:.0f}"


def _fmt_num(value: float) -> str:
    return f"{value:g}"
