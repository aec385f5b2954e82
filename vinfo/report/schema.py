"""The result schema the V-information report reads: validation and the rate unit rule.

In:  an ``xarray.Dataset`` from ``vinfo.estimate`` (dims ``family``, ``seed``, ``sample``,
     ``train_size``, ``example``/``row``/``col``; every data variable has a ``units`` attr).
Out: :func:`validated` — the Dataset with every known variable in its documented dim order,
     or TypeError/ValueError naming the offending variable or attr. :func:`rate_per_unit` —
     the representation's rate in bits per target unit, when the attrs allow the conversion.

Unit rule: I_V is in bits per target unit, ``attrs.representation_bpp`` in bits per ORIGINAL
image pixel. ``rate = bpp × image_pixels / units_per_sample`` with ``units_per_sample =
target_pixels`` for ``unit == "pixel"`` and 1 for ``unit == "sample"`` (``image_pixels`` and
``target_pixels`` per sample); without those attrs there is no conversion (None).
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

REQUIRED_VARIABLES = ("h_null", "h_cond", "vinfo", "vinfo_low", "vinfo_high")
EXPECTED_DIMS: dict[str, tuple[str, ...]] = {
    **{name: ("family",) for name in REQUIRED_VARIABLES},
    "vinfo_guarded": ("family",),
    **{name: ("family",) for name in (
        "h_null_low", "h_null_high", "h_cond_low", "h_cond_high", "vinfo_capped",
        "vinfo_capped_low", "vinfo_capped_high", "cap_binds", "h_null_val", "h_cond_val",
        "h_null_guard", "h_cond_guard")},
    "rate_per_unit": (),
    "at_cap": ("family", "seed"),
    "steps_run": ("family", "seed"),
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
    "h_null_low", "h_null_high", "h_cond_low", "h_cond_high", "vinfo_capped",
    "vinfo_capped_low", "vinfo_capped_high", "rate_per_unit", "h_null_val", "h_cond_val",
    "h_null_guard", "h_cond_guard",
    "pvi", "curve_h_cond", "curve_h_null", "curve_vinfo", "mdl_bits_per_unit",
)
BITS_VARIABLES = (*PER_UNIT_VARIABLES, "pvi_map", "mdl_bits", "mdl_uniform_bits")


def validated(ds: xr.Dataset) -> xr.Dataset:
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


def rate_per_unit(ds: xr.Dataset) -> tuple[float, str] | None:
    """The representation's rate in bits per target unit, with the rule used, or None: the
    Dataset's ``rate_per_unit`` (the evaluation samples' actual bits per valid target value)
    when the estimate computed it, else converted from ``attrs.representation_bpp``."""
    attrs = ds.attrs
    if "rate_per_unit" in ds:
        return float(ds["rate_per_unit"]), (
            "the bits given for the evaluation samples' representation (the codec adapter: the "
            "base payload, header excluded) / their valid target units")
    if "representation_bpp" not in attrs:
        return None
    bpp = positive_attr(attrs, "representation_bpp", allow_zero=True)
    if "image_pixels" not in attrs:
        return None
    image_pixels = positive_attr(attrs, "image_pixels")
    if attrs.get("unit") == "sample":
        return bpp * image_pixels, (
            f"{_fmt_num(bpp)} bits/original pixel × {_fmt_num(image_pixels)} pixels per sample")
    if attrs.get("unit") == "pixel" and "target_pixels" in attrs:
        target_pixels = positive_attr(attrs, "target_pixels")
        return bpp * image_pixels / target_pixels, (
            f"{_fmt_num(bpp)} bits/original pixel × {_fmt_num(image_pixels)} image pixels / "
            f"{_fmt_num(target_pixels)} target pixels")
    return None


def positive_attr(attrs: dict, key: str, allow_zero: bool = False) -> float:
    """``attrs[key]`` as a finite positive (or, with ``allow_zero``, non-negative) number."""
    try:
        value = float(np.asarray(attrs[key]).item())
    except (TypeError, ValueError) as err:
        raise ValueError(f"attr {key!r} must be a single number, got {attrs[key]!r}") from err
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"attr {key!r} must be a finite {kind} number, got {value!r}")
    return value


def _fmt_num(value: float) -> str:
    return f"{value:g}"


def trained_note(ds: xr.Dataset, i: int) -> str:
    """For a collapsed family whose refits kept the null: " (the trained members, not
    kept: I_V [low, high])", the raw interval behind its MDE; else ""."""
    if "vinfo_trained" not in ds or not bool(ds["collapsed"].values[i]):
        return ""
    value = float(ds["vinfo_trained"].values[i])
    if np.isclose(value, float(ds["vinfo"].values[i]), rtol=0, atol=1e-6):
        return ""
    return (f" (the trained members, not kept: {value:+.4f} "
            f"[{float(ds['vinfo_trained_low'].values[i]):+.4f}, "
            f"{float(ds['vinfo_trained_high'].values[i]):+.4f}])")
