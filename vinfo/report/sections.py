"""The report's sections 1 to 6, each a :class:`infra.reportdoc.Section` of a validated result
Dataset: the estimate, the per-family table and its flags, information vs compatibility (the
rate line and the two-part cap), loss-data curves, prequential MDL, pointwise V-information.
:mod:`vinfo.report.document` (whose docstring holds the report's contract) orders and writes them.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from infra.reportdoc import Image, Section, Table
from vinfo.report.figures import (
    curves_figure,
    family_names,
    format_bits,
    information_figure,
    interval_name,
    mdl_figure,
    pvi_histogram_figure,
    pvi_maps_figure,
)
from vinfo.report.schema import positive_attr, rate_per_unit, trained_note

NULL_UNDERFIT_TOLERANCE_BITS = 0.05  # bits/unit an in-family null may lose to h_marginal
MAX_MAP_EXAMPLES = 8


def header_section(ds: xr.Dataset, written_at: str) -> Section:
    attrs = ds.attrs
    seeds = ds["seed"].values.tolist() if "seed" in ds.coords else attrs.get("seed")
    n_split = "/".join(_attr(attrs, key) for key in ("n_fit", "n_val", "n_eval"))
    rows = [
        ["target kind", _attr(attrs, "target_kind")],
        ["unit (one 'unit' of bits/unit)", _attr(attrs, "unit")],
        ["N fit / val / eval (total)", f"{n_split} ({_attr(attrs, 'n_samples')})"],
        ["refit seeds", _format_attr(seeds)],
        ["bootstrap resamples", _attr(attrs, "n_bootstrap")],
        ["confidence level", interval_name(ds)],
        ["representation shape", _attr(attrs, "representation_shape", " × ")],
        ["target shape", _attr(attrs, "target_shape", " × ")],
        ["representation rate", _rate_text(ds)],
        ["estimate created", _attr(attrs, "created")],
        ["vinfo version", _attr(attrs, "vinfo_version")],
        ["report written", written_at],
    ]
    intro = ("What was measured and how. All information quantities are in bits; 'per unit' "
             f"means per {attrs.get('unit', 'unit')} of the target, as recorded in the Dataset.")
    return Section("1. Estimate", [intro, Table(["field", "value"], rows, left_columns=(0,))])


def family_section(ds: xr.Dataset) -> Section:
    units = ds["vinfo"].attrs["units"]
    has_marginal = "h_marginal" in ds
    capped = "vinfo_capped" in ds
    # units once, above the table: headers short enough for a 1400 px page
    header = ["family", "likelihood", "params", "budget [steps]", "H_V(Y|∅)",
              f"H_V(Y|Z) [{interval_name(ds)}]", f"I_V [{interval_name(ds)}]"]
    if capped:
        header.append("capped I_V [interval]")
    header += ["guarded I_V", "MDE", "seed std"]
    if has_marginal:
        header.append("H_V(Y|∅) − h_marginal")
    header.append("flags")
    rows = []
    for i, family in enumerate(family_names(ds)):
        iv, low, high = (float(ds[n].values[i]) for n in ("vinfo", "vinfo_low", "vinfo_high"))
        negative = bool(ds["negative"].values[i]) if "negative" in ds else iv < 0
        flags = ["⚠ negative"] if negative else []
        if "collapsed" in ds and bool(ds["collapsed"].values[i]):
            flags.append("⚠ collapsed to null" + trained_note(ds, i))
        if "at_cap" in ds and bool(np.asarray(ds["at_cap"].values[i]).any()):
            flags.append("⚠ at step limit: not converged")
        if capped and bool(ds["cap_binds"].values[i]):
            flags.append("cap binds: the null, not Z, limits I_V")
        likelihood = str(ds["likelihood"].values[i]) if "likelihood" in ds.coords else "—"
        row = [family, likelihood, _count(ds, "n_parameters", i), _count(ds, "train_steps", i),
               format_bits(ds["h_null"].values[i]),
               f"{format_bits(ds['h_cond'].values[i])} {_interval(ds, 'h_cond', i)}",
               f"{format_bits(iv)} [{format_bits(low)}, {format_bits(high)}]"]
        if capped:
            row.append(f"{format_bits(ds['vinfo_capped'].values[i])} "
                       f"{_interval(ds, 'vinfo_capped', i)}")
        row += [_bits_or_dash(ds, "vinfo_guarded", i), _bits_or_dash(ds, "vinfo_mde", i),
                _bits_or_dash(ds, "vinfo_seed_std", i)]
        if has_marginal:
            excess = float(ds["h_null"].values[i]) - float(ds["h_marginal"])
            row.append(format_bits(excess))
            if excess > NULL_UNDERFIT_TOLERANCE_BITS:
                flags.append("⚠ null underfit")
        if low <= 0 <= high:
            flags.append("interval covers 0")
        rows.append([*row, "; ".join(flags)])
    blocks: list[str | Table | Image] = [
        "One row per probe family, in ladder order (simplest first). H_V(Y|Z) is the held-out "
        "loss of the family fed the representation; for discrete targets it is a codelength "
        "(autoregressive families: a lossless conditional codelength of the whole target), the "
        "quantity to put next to a rate. I_V = H_V(Y|∅) − H_V(Y|Z), with H_V(Y|∅) the loss of "
        "the family's null (its core, with a learned positional map: optional ignorance), shared "
        "by the factorized families; autoregressive families share one frozen null of the "
        "target set and each adds its Z pathway to it (vinfo.fit.nested), their null being the "
        "better of that null and the same member fed shuffled Z. '⚠ negative': the raw "
        "estimate is below 0; '⚠ collapsed to null': the interval does not lie above 0, so the "
        "guarded estimate is 0 (where its refits kept the null itself, the trained "
        "members' I_V and interval follow); MDE: the minimum detectable effect, the smallest "
        "I_V this interval would separate from 0 (80 % power); '⚠ at step limit': a probe "
        "was still improving when its budget "
        "reached the limit.",
        f"Information and loss columns in {units}; intervals are {interval_name(ds)}s, the seed "
        "std is over refits.",
        Table(header, rows, left_columns=(0, 1, len(header) - 1)),
    ]
    if has_marginal:
        blocks.append(
            f"Closed-form marginal null h_marginal = {format_bits(ds['h_marginal'])} {units}. "
            "An in-family null should come close to it or below it (a positional or "
            "autoregressive null can do better than one marginal for all values); '⚠ null "
            f"underfit' marks a null worse by more than {NULL_UNDERFIT_TOLERANCE_BITS} {units}, "
            "which inflates that family's I_V.")
    else:
        blocks.append("The closed-form marginal h_marginal was not computed, so the in-family "
                      "nulls are not checked against it.")
    missing = [n for n in ("n_parameters", "train_steps", "vinfo_guarded", "vinfo_seed_std",
                           "collapsed") if n not in ds]
    if missing:
        blocks.append(f"Not computed in this estimate (shown as '—'): {', '.join(missing)}.")
    return Section("2. Per-family estimates", blocks)


def information_section(ds: xr.Dataset) -> Section:
    units = ds["vinfo"].attrs["units"]
    families = family_names(ds)
    richest = families[-1]
    rate = rate_per_unit(ds)
    blocks: list[str | Table | Image] = [
        "Every number here is in the same unit, bits per target unit. Left: usable information "
        "I_V per probe family with its interval (open), the refit seeds (dots) and, when the "
        "representation's rate R is known, the capped I_V (filled). Right: H_V(Y|Z) per family, "
        "the null's H_V(Y|∅) and the two-part code R + H_V(Y|Z). Rising I_V along the ladder "
        "means richer decoders extract more from the same representation (when every rung "
        "converged): the gap to the top of the ladder is information present but not usable by "
        "that family."
    ]
    continuous = ds.attrs.get("target_kind") in ("gaussian", "laplace")
    if rate is not None and not continuous:
        rate_value, rule = rate
        h_null, h_cond = (ds[n].values.astype(float) for n in ("h_null", "h_cond"))
        capped = (ds["vinfo_capped"].values.astype(float) if "vinfo_capped" in ds
                  else np.minimum(h_null, rate_value + h_cond) - h_cond)
        binds = [f for f, b in zip(families, capped < h_null - h_cond - 1e-12) if b]
        if capped[-1] > 0 and rate_value > 0:  # a ratio only for a positive estimate
            ratio = (f"Usable bits per transmitted bit (capped, {richest}) = "
                     f"{format_bits(capped[-1])} / {format_bits(rate_value)} = "
                     f"{format_bits(capped[-1] / rate_value, 3)} ≤ 1. ")
        else:
            ratio = (f"Usable bits per transmitted bit ({richest}): not formed, no usable "
                     f"information detected (capped I_V = {format_bits(capped[-1])} {units}, "
                     "not above 0). ")
        blocks.append(
            f"Available: R = {format_bits(rate_value)} {units} ({rule}). Sending Z at its "
            "rate R and then Y with the probe is a lossless two-part code, so H(Y) ≤ R + "
            "H_V(Y|Z): no family can use more than R bits of Z. The capped I_V = min(H_V(Y|∅), "
            "R + H_V(Y|Z)) − H_V(Y|Z) ≤ R respects this by construction. " + ratio
            + (f"The cap binds for {', '.join(binds)}: there the raw I_V exceeds R, which "
               "measures the weakness of the null (its H_V(Y|∅) is above the two-part code), "
               "not information in Z." if binds else "The cap binds for no family."))
    elif rate is not None:
        rate_value, rule = rate
        blocks.append(
            f"Available: R = {format_bits(rate_value)} {units} ({rule}), drawn dashed. For "
            f"{ds.attrs.get('target_kind')} targets the losses are densities, not "
            "codelengths, so no two-part cap is formed; compare I_V across families and bases.")
    elif "representation_bpp" in ds.attrs:
        blocks.append(
            f"Available: the representation's rate is {_rate_text(ds)}. The attrs do not give "
            "the pixel counts (image_pixels, and target_pixels for dense targets) needed to put "
            "it in bits per target unit, so no rate line is drawn and no cap formed.")
    else:
        blocks.append("The representation's rate was not recorded (no representation_bpp "
                      "attr), so no 'available' reference line is drawn and no cap formed.")
    blocks.append(Image("information_by_family", information_figure(ds, rate),
                        f"I_V, capped I_V and H_V(Y|Z) per family [{units}], ladder order."))
    return Section("3. Information vs compatibility", blocks)


def curves_section(ds: xr.Dataset) -> Section:
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
        Image("loss_data_curves", curves_figure(ds),
              f"Held-out loss [{units}] vs training-set size [samples]."),
    ]
    return section


def mdl_section(ds: xr.Dataset) -> Section:
    section = Section("5. Prequential MDL")
    if "mdl_bits" not in ds:
        section.blocks.append("The prequential (online) codelength was not computed.")
        return section
    units = ds["vinfo"].attrs["units"]
    uniform = float(ds["mdl_uniform_bits"]) if "mdl_uniform_bits" in ds else math.nan
    rows = []
    for i, family in enumerate(family_names(ds)):
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
        Table(header, rows, left_columns=(0,)),
    ]
    if math.isfinite(uniform):
        blocks.append(f"Uniform/marginal code: {uniform:,.1f} bits (grey line in the chart).")
    else:
        blocks.append("The uniform/marginal codelength was not computed; no saving is shown.")
    blocks.append(Image("mdl_codelength", mdl_figure(ds), "Prequential codelength [bits]."))
    section.blocks += blocks
    return section


def pvi_section(ds: xr.Dataset) -> Section:
    section = Section("6. Pointwise V-information")
    if "pvi" in ds:
        section.blocks += [
            "Distribution of PVI over evaluation samples, per family: PVI = −log2 f_null(y) + "
            "log2 f_Z(y), in bits/unit; its mean is I_V. Mass below 0 marks samples on which "
            "the representation misled the probe; a long right tail means a few samples carry "
            "most of the usable information.",
            Image("pvi_histogram", pvi_histogram_figure(ds),
                  f"Per-sample PVI [{ds['pvi'].attrs['units']}]."),
        ]
    else:
        section.blocks.append("Per-sample PVI was not computed.")
    if "pvi_map" in ds:
        units = ds["pvi_map"].attrs["units"]
        shown = min(ds.sizes["example"], MAX_MAP_EXAMPLES)
        section.blocks += [
            f"Per-pixel PVI of the richest family ({family_names(ds)[-1]}) on {shown} evaluation "
            f"examples, in {units}; red: the representation helped, blue: it misled, white: "
            "no difference, grey: masked. The colour scale is symmetric around 0.",
            Image("pvi_maps", pvi_maps_figure(ds, shown), f"PVI maps [{units}]."),
        ]
    else:
        section.blocks.append("PVI maps were not computed (they exist only for dense targets).")
    return section


# --- small helpers ----------------------------------------------------------------------


def _rate_text(ds: xr.Dataset) -> str:
    if "representation_bpp" not in ds.attrs:
        return "not recorded"
    bpp = positive_attr(ds.attrs, "representation_bpp", allow_zero=True)
    return f"{format_bits(bpp)} bits per original-image pixel (actual, header included)"


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


def _interval(ds: xr.Dataset, name: str, i: int) -> str:
    if f"{name}_low" not in ds:
        return ""
    return (f"[{format_bits(ds[f'{name}_low'].values[i])}, "
            f"{format_bits(ds[f'{name}_high'].values[i])}]")


def _bits_or_dash(ds: xr.Dataset, name: str, i: int) -> str:
    return format_bits(ds[name].values[i]) if name in ds else "—"
