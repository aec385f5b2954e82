"""The V-information rows of the results table: the ONE place in :mod:`analysis` that reads
a vinfo.nc's estimate variables (I_V, the capped I_V, H_V(Y|Ŷ_b), per-sample PVI).

    vinfo_quantities(ds)                 # (quantity, family, estimate, units) in table order
    vinfo_difference(a, b, family)       # ΔI_V from the per-sample PVI, paired over samples
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from analysis.uncertainty import (
    DEFAULT_BOOT,
    DEFAULT_CONFIDENCE,
    Estimate,
    bootstrap_mean_difference,
)


def vinfo_quantities(ds: xr.Dataset) -> list[tuple[str, str, Estimate, str]]:
    """(quantity, family, estimate, units) of one vinfo.nc, in table order.

    Today's schema: I_V (``vinfo`` with ``vinfo_low``/``vinfo_high``), the capped I_V
    (``vinfo_capped`` and its interval) where present, and H_V(Y|Ŷ_b) (``h_cond``, with
    ``h_cond_low``/``h_cond_high`` where present)."""
    rows = []
    units = str(ds["vinfo"].attrs.get("units", ""))
    def get(i: int, name: str, low: str, high: str) -> Estimate | None:
        if name not in ds:
            return None
        bounds = [float(ds[v].values[i]) if v in ds else math.nan for v in (low, high)]
        return Estimate(float(ds[name].values[i]), *bounds)

    for i, family in enumerate(str(f) for f in ds["family"].values):
        for label, names in (("I_V(Ŷ_b → Y)", ("vinfo", "vinfo_low", "vinfo_high")),
                             ("I_V capped at R(Ŷ_b)", ("vinfo_capped", "vinfo_capped_low",
                                                       "vinfo_capped_high")),
                             ("H_V(Y | Ŷ_b)", ("h_cond", "h_cond_low", "h_cond_high"))):
            estimate = get(i, *names)
            if estimate is not None:
                rows.append((label, family, estimate, units))
    return rows


def vinfo_difference(a: xr.Dataset, b: xr.Dataset, family: str, n_boot: int = DEFAULT_BOOT,
                     confidence: float = DEFAULT_CONFIDENCE, seed: int = 0) -> Estimate | None:
    """ΔI_V = I_V(b) − I_V(a) for ``family`` from the per-sample PVI (``pvi``, dims family,
    sample) on the evaluation samples both estimates share, paired bootstrap over samples.
    None if either file lacks ``pvi`` or they share no sample. The interval holds the fitted
    probes fixed (no refit variance)."""
    if "pvi" not in a or "pvi" not in b or family not in a["family"] or family not in b["family"]:
        return None
    pa, pb = a["pvi"].sel(family=family), b["pvi"].sel(family=family)
    shared = np.intersect1d(pa["sample"].values, pb["sample"].values)
    if shared.size < 2:
        return None
    return bootstrap_mean_difference(pa.sel(sample=shared).values, pb.sel(sample=shared).values,
                                     n_boot, confidence, seed)
