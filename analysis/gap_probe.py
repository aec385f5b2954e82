"""The gap, probe side (issue 20 item 4): the operational coding gain beside I_V(Ŷ_b → Ŷ_e).

    rows = probe_gap_rows({"baseline": DIR, "proposed": DIR})   # latent_gap.nc files under DIR
    table = probe_gap_table(rows)                               # infra.reportdoc.Table

Per scalable point (a ``latent_gap.nc`` written by :mod:`vinfo.latent_gap`, whose ``run_dir``
is the scalable run) and its standalone-refit (the run whose ``init_from`` is that scalable
run)::

    eval.nc (scalable, refit) ─▶ per image, enhancement layer = cumulative − base:
        gain_i = bpp_payload_refit,i − bpp_payload_scalable,i     (refit − scalable actual
        rate; the header and the base layer are the same bytes, so they cancel; the transforms
        are shared, so the quality is the same up to the refit's grid: Δpsnr is shown)
    latent_gap.nc ─▶ I_V = H_V(Ŷ_e|∅) − H_V(Ŷ_e|Ŷ_b) per rung, interval over refits and images
    diagnostics, paired on the images both files hold (mean over probe seeds):
        null − refit      the probe's converged null vs the refit's own entropy model, both on
                          the scalable's decoded ŷ_e (``bits_refit``; older files: vs the
                          refit's coded enhancement rate, on its own ŷ_e)
        refit grid        the refit's member on the scalable's ŷ_e − the refit's coded rate
                          of its own ŷ_e: what the target's definition moves (ŷ_e sits on
                          the scalable's grid s + μ'(ŷ_b), nearer a similar model's means)
        cond − scalable   the probe's conditional vs the scalable's coded enhancement rate
                          (both ``bpp_coded_estimate``: −log2 likelihoods at decode time, the
                          probe's unit; no coder overhead)

:func:`judge` says "agree" when the gain's and the I_V's intervals overlap; otherwise which is
larger and why, from the diagnostics: a null below the refit means the refit is under-trained
(the gain is too large), a conditional above the scalable means the probe under-fits (I_V too
small), and the mirror cases. All numbers in bits per pixel of the original H x W image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from infra.io import find_files
from infra.reportdoc import Table
from vinfo.adapter.enhancement import find_refit

__all__ = ["PROBE_GAP_TEXT", "judge", "operational_gain", "paired_difference", "probe_gap_rows",
           "probe_gap_table"]


PROBE_GAP_TEXT = (
    "The gap, probe side (issue 20 item 4): per scalable point, the operational coding gain "
    "(standalone-refit − scalable enhancement payload, same transforms, paired per image, "
    "bits per original-image pixel) beside I_V(Ŷ_b → Ŷ_e) of probes of the enhancement's own "
    "entropy-model family (and a deeper side branch) fit to convergence on the train images' "
    "decoded latents, interval over refit seeds then images. 'agree' when the intervals "
    "overlap; otherwise the diagnostics say which side is off: the probe's null against the "
    "refit's own entropy model on the same decoded ŷ_e, the refit's model on that ŷ_e against "
    "its own coded rate (the target's grid), the probe's conditional against the scalable's "
    "coded rate.")


def _interval(values: np.ndarray, n_boot: int, seed: int, confidence: float):
    rng = np.random.default_rng(seed)
    n = values.size
    means = values[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(values.mean()), float(low), float(high)


def paired_difference(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0,
                      confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of a − b over paired images (percentile bootstrap over images)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError(f"paired values must be two 1-D arrays of >= 2 images with one shape, "
                         f"got {a.shape} and {b.shape}")
    return _interval(a - b, n_boot, seed, confidence)


def _enhancement(ds: xr.Dataset, name: str) -> xr.DataArray:
    return ds[name].sel(layer="enhancement") - ds[name].sel(layer="base")


def operational_gain(scalable: xr.Dataset, refit: xr.Dataset, n_boot: int = 2000,
                     seed: int = 0, confidence: float = 0.95) -> dict:
    """Refit − scalable enhancement rates per image (eval.nc datasets), paired on their common
    images: ``gain`` (payload, bpp) with ``gain_low/high``, ``psnr_diff`` (dB), and the two
    runs' coded enhancement rates per image (``refit_coded``, ``scalable_coded``)."""
    images = sorted(set(map(str, scalable["image"].values)) & set(map(str, refit["image"].values)))
    if len(images) < 2:
        raise ValueError(f"scalable and refit eval.nc share {len(images)} image(s); need >= 2")
    s, r = scalable.sel(image=images), refit.sel(image=images)
    gain = paired_difference(_enhancement(r, "bpp_payload").values,
                             _enhancement(s, "bpp_payload").values, n_boot, seed, confidence)
    return {"images": images, "gain": gain[0], "gain_low": gain[1], "gain_high": gain[2],
            "psnr_diff": float((r["psnr"].sel(layer="enhancement")
                                - s["psnr"].sel(layer="enhancement")).mean()),
            "refit_coded": _enhancement(r, "bpp_coded_estimate").values,
            "scalable_coded": _enhancement(s, "bpp_coded_estimate").values}


def judge(gain: tuple[float, float, float], vinfo: tuple[float, float, float],
          null_vs_refit: tuple[float, float, float] | None,
          cond_vs_scalable: tuple[float, float, float] | None,
          tol: float = 1e-4, refit_grid: tuple[float, float, float] | None = None,
          ) -> tuple[str, str]:
    """(verdict, reason) from (value, low, high) triples in bpp: the operational gain, the
    probe's I_V, probe null − refit coded rate, probe conditional − scalable coded rate. A
    side is "off" when its difference's interval lies beyond ±``tol`` bpp (float32 probes
    against the coder's float64: a member equal to the codec's differs by ~1e-9)."""
    for name, t in (("gain", gain), ("vinfo", vinfo)):
        if len(t) != 3 or not all(np.isfinite(t)) or not t[1] <= t[0] <= t[2]:
            raise ValueError(f"{name} must be a finite (value, low, high) with low <= value "
                             f"<= high, got {t!r}")
    if gain[1] <= vinfo[2] and vinfo[1] <= gain[2]:
        return "agree", "the intervals overlap"
    verdict = "gain larger" if gain[1] > vinfo[2] else "probe I_V larger"
    reasons = []
    if null_vs_refit is not None:
        d, low, high = null_vs_refit
        if high < -tol:
            reasons.append(f"the refit is under-trained: the probe's converged null codes ŷ_e in "
                           f"{-d:.4f} bpp fewer than the refit")
        elif low > tol:
            reasons.append(f"the probe's null is weaker than the refit by {d:.4f} bpp")
    if refit_grid is not None:
        d, low, high = refit_grid
        if abs(d) > tol and (high < -tol or low > tol):
            reasons.append(f"the target's grid: the refit's own model codes the scalable's "
                           f"decoded ŷ_e in {d:+.4f} bpp vs its own coded ŷ_e")
    if cond_vs_scalable is not None:
        d, low, high = cond_vs_scalable
        if low > tol:
            reasons.append(f"the probe under-fits: its conditional codes ŷ_e in {d:.4f} bpp more "
                           "than the scalable's own entropy model")
        elif high < -tol:
            reasons.append(f"the scalable's conditional entropy model is under-trained: the "
                           f"probe's conditional codes ŷ_e in {-d:.4f} bpp fewer")
    if not reasons:
        reasons.append("neither side is measurably off against its codec counterpart")
    return verdict, "; ".join(reasons)


def _open(path: Path) -> xr.Dataset:
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()


def probe_gap_rows(folders: dict[str, str | Path], n_boot: int = 2000,
                   confidence: float = 0.95) -> tuple[list[dict], list[str]]:
    """One row per (base label, scalable point, rung) for every ``latent_gap.nc`` under each
    folder; and what could not be computed (no refit, no eval.nc)."""
    rows, missing = [], []
    for label, folder in folders.items():
        for path in find_files(Path(folder), "latent_gap.nc"):
            probe = _open(path)
            scalable = Path(probe.attrs["run_dir"])
            refit = find_refit(scalable)
            if refit is None or not (refit / "eval.nc").is_file() \
                    or not (scalable / "eval.nc").is_file():
                missing.append(f"{path}: no standalone-refit eval.nc for {scalable.name}: "
                               "the consistency row is not computed")
                continue
            op = operational_gain(_open(scalable / "eval.nc"), _open(refit / "eval.nc"),
                                  n_boot, 0, confidence)
            common = [i for i, name in enumerate(op["images"]) if name in set(
                map(str, probe["image"].values))]
            where = [list(map(str, probe["image"].values)).index(op["images"][i])
                     for i in common]
            pixels = float(probe.attrs["pixels"])
            null = probe["bits_null"].values.mean(0)[where] / pixels
            diag_null = (paired_difference(null, op["refit_coded"][common], n_boot)
                         if len(common) >= 2 else None)
            grid = None
            if "bits_refit" in probe and np.isfinite(probe["bits_refit"].values).all():
                # like for like: the refit's own member on the same decoded ŷ_e
                member = probe["bits_refit"].values[where] / pixels
                grid = (paired_difference(member, op["refit_coded"][common], n_boot)
                        if len(common) >= 2 else None)
                diag_null = (paired_difference(null, member, n_boot)
                             if len(common) >= 2 else None)
            for k, rung in enumerate(map(str, probe["rung"].values)):
                cond = probe["bits_cond"].values[k].mean(0)[where] / pixels
                diag_cond = (paired_difference(cond, op["scalable_coded"][common], n_boot)
                             if len(common) >= 2 else None)
                iv = tuple(float(probe[n].values[k]) for n in ("vinfo", "vinfo_low",
                                                                "vinfo_high"))
                gain = (op["gain"], op["gain_low"], op["gain_high"])
                verdict, reason = judge(gain, iv, diag_null, diag_cond, refit_grid=grid)
                rows.append({"base": label, "point": scalable.name, "rung": rung,
                             "gain": gain, "vinfo": iv, "mde": float(probe["vinfo_mde"][k]),
                             "h_null": float(probe["h_null"][k]),
                             "h_cond": float(probe["h_cond"][k]),
                             "null_vs_refit": diag_null, "cond_vs_scalable": diag_cond,
                             "refit_grid": grid,
                             "psnr_diff": op["psnr_diff"], "n_common": len(common),
                             "converged": not bool(probe["at_cap"].values[k].any()),
                             "verdict": verdict, "reason": reason})
    return rows, missing


def _triple(t) -> str:
    return "–" if t is None else f"{t[0]:+.4f} [{t[1]:+.4f}, {t[2]:+.4f}]"


def probe_gap_table(rows: list[dict]) -> Table:
    """The consistency rows as a report table (bits per pixel of the original image)."""
    header = ["base", "scalable point", "probe rung", "operational gain (refit − scalable, bpp)",
              "I_V(Ŷ_b → Ŷ_e) (bpp)", "MDE (bpp)", "null − refit (bpp)",
              "refit grid: member on ŷ_e − coded (bpp)",
              "cond − scalable coded (bpp)", "Δpsnr refit − scalable (dB)", "verdict"]
    body = [[r["base"], r["point"], r["rung"] + ("" if r["converged"] else " (NOT converged)"),
             _triple(r["gain"]), _triple(r["vinfo"]), f"{r['mde']:.4f}",
             _triple(r["null_vs_refit"]), _triple(r.get("refit_grid")),
             _triple(r["cond_vs_scalable"]),
             f"{r['psnr_diff']:+.3f}", f"{r['verdict']}: {r['reason']}"] for r in rows]
    return Table(header, body)
