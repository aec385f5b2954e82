"""I_V(Ŷ_b → Ŷ_e): the probe-side number beside the codec's conditional coding gain
(DESIGN §4 "one quantity, two instruments"; issue 20 item 4).

    LatentPairs (vinfo.adapter.enhancement: decoded ŷ_b, ŷ_e; train images first)
      │ protocol_split: fit = the train images; the val images split (seeded) into
      │ selection (early stopping) and evaluation
      ▼ per refit seed s:
        null     LatentProbe(conditional=False), fit to convergence   ─▶ bits_null[s, i]
        rung k   LatentProbe(side_blocks_k), nested on that null,
                 fit to convergence                                    ─▶ bits_cond[k, s, i]
      ▼ hierarchical bootstrap (refit seeds, then evaluation images; vinfo.stats.bootstrap)
    xr.Dataset (write_latent_gap -> latent_gap.nc), bits per pixel of the original H x W image:

      h_null (rung)          H_V(Ŷ_e|∅): the family with the side input zeroed (one null per
                             seed, shared by every rung, so the same value on each row)
      h_cond (rung)          H_V(Ŷ_e|Ŷ_b) of the rung
      vinfo (rung)           I_V = h_null − h_cond; *_low/_high: percentile interval;
      vinfo_mde (rung)       (z_0.975 + z_0.8) × bootstrap SE
      codec_bpp ()           the scalable codec's own decode-time estimate of ŷ_e's bits on the
                             evaluation images (the probe family on the codec's weights)
      refit_member_bpp ()    the refit's entropy model on the same ŷ_e (NaN without a refit);
                             bits_refit (image) per image, bits
      bits_null (seed, image), bits_cond (rung, seed, image): bits per image
      steps_run, best_step, at_cap, from_codec (rung, seed) and null_steps_run, null_at_cap (seed)
    coords: rung (names, side_blocks), seed, image (names of the evaluation images)

Each null starts (``init="codec"``) from the run's entropy model with the side input zeroed,
which is where the codec's standalone-refit starts, and, where the refit is given
(``pairs.refit_state``), also from the refit's own entropy model; both are trained to
convergence and the one better on the selection images is kept (``null_from_refit``): H_V
is an infimum over the family, which holds the refit's member. A null that ends below the
refit's coded rate says the refit stopped early. The smallest rung is
the enhancement's own family (its run's side_blocks); larger rungs
deepen the side branch on ŷ_b. With ``init="codec"`` the smallest rung is fit twice, nested
on the null and from the scalable codec's own entropy model, and the one better on the
selection images is kept (``from_codec``): H_V is an infimum over the family, and 192 fixed
latents overfit a fresh fit before it reaches the codec's own member. A larger rung is then
nested on the codec's member (its blocks copied, the extra residual blocks starting as the
identity), so at step 0 it is that member and more capacity can only add; with
``init="scratch"`` every rung is nested on the null. Units: bits (log2), per pixel of the coded image.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from infra.io import atomic_write
from vinfo.adapter.enhancement import LatentPairs
from vinfo.fit.latent import LatentFitSettings, fit_latent_probe, score_bits
from vinfo.fit.splits import protocol_split
from vinfo.probes.latent import LatentProbe
from vinfo.stats.bootstrap import minimum_detectable_effect, percentile_interval, refit_replicates

__all__ = ["UNITS", "estimate_latent_gap", "read_latent_gap", "write_latent_gap"]

UNITS = "bits per pixel of the original H x W image"


def _rungs(base_blocks: int, extra: Sequence[int]) -> list[tuple[str, int]]:
    rungs = [(f"codec-family ({base_blocks} side blocks)", int(base_blocks))]
    for blocks in extra:
        if int(blocks) <= base_blocks:
            raise ValueError(f"a larger rung needs more side blocks than the codec's "
                             f"{base_blocks}, got {blocks!r}")
        rungs.append((f"deeper side ({int(blocks)} side blocks)", int(blocks)))
    return rungs


def estimate_latent_gap(pairs: LatentPairs, *, seeds: Sequence[int] = (0, 1),
                        larger_rungs: Sequence[int] = (3,), split_seed: int = 0,
                        select_fraction: float = 0.3, settings: LatentFitSettings | None = None,
                        n_boot: int = 1000, confidence: float = 0.95, init: str = "codec",
                        log=None) -> xr.Dataset:
    """The ladder on ``pairs`` (module docstring) -> the result Dataset.

    ``init``: "codec" starts each null from the run's own entropy model with the side input
    zeroed (the refit's starting point; the codec-family rung nested on it then starts with
    the codec's side branch behind a zero gate), "scratch" from a fresh initialisation."""
    if init not in ("codec", "scratch"):
        raise ValueError(f"init must be 'codec' or 'scratch', got {init!r}")
    if not seeds:
        raise ValueError("seeds: need at least one refit seed")
    settings = settings or LatentFitSettings()
    start, start_cpu = time.perf_counter(), time.process_time()
    n, n_fit = pairs.ye.shape[0], pairs.n_fit
    split = protocol_split(n, n_fit, split_seed, select_fraction)
    select = split.pool[n_fit:]
    fit_idx, eval_idx = split.pool[:n_fit], split.eval_idx
    ye, zb = torch.from_numpy(pairs.ye).float(), torch.from_numpy(pairs.zb).float()
    spec = dict(pairs.family)
    size = tuple(pairs.ye.shape[-2:])
    rungs = _rungs(spec["side_blocks"], larger_rungs)

    def data(idx):
        return ye[idx], zb[idx]

    bits_null = np.zeros((len(seeds), eval_idx.size))
    bits_cond = np.zeros((len(rungs), len(seeds), eval_idx.size))
    info = {k: np.zeros((len(rungs), len(seeds)), dtype=int) for k in ("steps_run", "best_step")}
    at_cap = np.zeros((len(rungs), len(seeds)), dtype=bool)
    from_codec = np.zeros((len(rungs), len(seeds)), dtype=bool)
    null_from_refit = np.zeros(len(seeds), dtype=bool)
    null_info = {"null_steps_run": np.zeros(len(seeds), int),
                 "null_at_cap": np.zeros(len(seeds), bool)}
    for j, seed in enumerate(seeds):
        torch.manual_seed(int(seed))
        null = LatentProbe(**spec, conditional=False, size=size)
        if init == "codec":
            if not pairs.codec_state:
                raise ValueError("init='codec' needs the run's entropy-model weights "
                                 "(pairs.codec_state is empty); use init='scratch'")
            null.load_codec_state(pairs.codec_state)
        got = fit_latent_probe(null, *data(fit_idx), *data(select), settings, seed)
        if init == "codec" and pairs.refit_state:  # the refit's member, trained on
            other = LatentProbe(**spec, conditional=False, size=size)
            other.load_codec_state(pairs.refit_state)
            got2 = fit_latent_probe(other, *data(fit_idx), *data(select), settings, seed)
            if got2["select_bits"] < got["select_bits"]:
                null, got, null_from_refit[j] = other, got2, True
        null_info["null_steps_run"][j], null_info["null_at_cap"][j] = got["steps_run"], got["at_cap"]
        bits_null[j] = score_bits(null, *data(eval_idx))
        for k, (_, blocks) in enumerate(rungs):
            torch.manual_seed(int(seed) + 1000 * (k + 1))
            probe = LatentProbe(**{**spec, "side_blocks": blocks}, conditional=True, size=size)
            got = None
            if k == 0 or init != "codec":  # nested on the null
                probe.start_from_null(null)
                got = fit_latent_probe(probe, *data(fit_idx), *data(select), settings, seed)
            if init == "codec":  # nested on the codec's own member
                other = LatentProbe(**{**spec, "side_blocks": blocks}, conditional=True,
                                    size=size)
                other.start_from_codec(pairs.codec_state, spec["side_blocks"])
                got2 = fit_latent_probe(other, *data(fit_idx), *data(select), settings, seed)
                if got is None or got2["select_bits"] < got["select_bits"]:
                    probe, got, from_codec[k, j] = other, got2, True
            info["steps_run"][k, j], info["best_step"][k, j] = got["steps_run"], got["best_step"]
            at_cap[k, j] = got["at_cap"]
            bits_cond[k, j] = score_bits(probe, *data(eval_idx))
        if log is not None:
            log(f"latent gap: seed {seed} done ({time.perf_counter() - start:.1f} s)")
    codec_bits = np.full(eval_idx.size, np.nan)
    if pairs.codec_state:
        codec = LatentProbe(**spec, conditional=True, size=size)
        codec.load_codec_state(pairs.codec_state)
        codec_bits = score_bits(codec, *data(eval_idx))
    refit_bits = np.full(eval_idx.size, np.nan)
    if pairs.refit_state:
        refit = LatentProbe(**spec, conditional=False, size=size)
        refit.load_codec_state(pairs.refit_state)
        refit_bits = score_bits(refit, *data(eval_idx))
    counts = np.full((eval_idx.size, 1), float(pairs.pixels))
    out: dict[str, list] = {}
    for k in range(len(rungs)):
        reps = refit_replicates(bits_null[:, :, None], bits_cond[k][:, :, None], counts,
                                n_boot, split_seed)
        for name in ("h_null", "h_cond", "vinfo"):
            point = float(np.mean(bits_null if name == "h_null" else
                                  (bits_cond[k] if name == "h_cond"
                                   else bits_null - bits_cond[k]))) / pairs.pixels
            low, high = percentile_interval(reps[name], confidence)
            out.setdefault(name, []).append(point)
            out.setdefault(f"{name}_low", []).append(low)
            out.setdefault(f"{name}_high", []).append(high)
        out.setdefault("vinfo_mde", []).append(minimum_detectable_effect(reps["vinfo"],
                                                                         confidence))
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    variables = {name: (("rung",), np.asarray(v), {"units": UNITS}) for name, v in out.items()}
    variables.update({
        "codec_bpp": ((), float(codec_bits.mean() / pairs.pixels), {"units": UNITS}),
        "codec_estimated_bpp": ((), float(pairs.estimated_bits[eval_idx].mean() / pairs.pixels),
                                {"units": UNITS}),
        "refit_member_bpp": ((), float(refit_bits.mean() / pairs.pixels), {"units": UNITS}),
        "null_from_refit": (("seed",), null_from_refit,
                            {"units": "bool: the kept null started from the refit's weights"}),
        "bits_refit": (("image",), refit_bits, {"units": "bits per image (NaN: no refit)"}),
        "bits_null": (("seed", "image"), bits_null, {"units": "bits per image"}),
        "bits_cond": (("rung", "seed", "image"), bits_cond, {"units": "bits per image"}),
        "steps_run": (("rung", "seed"), info["steps_run"], {"units": "optimizer steps"}),
        "best_step": (("rung", "seed"), info["best_step"], {"units": "optimizer steps"}),
        "at_cap": (("rung", "seed"), at_cap, {"units": "bool: still improving at step_limit"}),
        "from_codec": (("rung", "seed"), from_codec,
                       {"units": "bool: the kept conditional started from the codec's weights"}),
        "null_steps_run": (("seed",), null_info["null_steps_run"], {"units": "optimizer steps"}),
        "null_at_cap": (("seed",), null_info["null_at_cap"], {"units": "bool"}),
    })
    coords = {"rung": [name for name, _ in rungs],
              "side_blocks": ("rung", [blocks for _, blocks in rungs]),
              "seed": list(map(int, seeds)), "image": [pairs.names[i] for i in eval_idx]}
    attrs = {"quantity": "I_V(Ŷ_b → Ŷ_e) = H_V(Ŷ_e|∅) − H_V(Ŷ_e|Ŷ_b)", "units": UNITS,
             "run_dir": pairs.run_dir, "refit_run": pairs.refit_run, "codec_id": pairs.codec_id, "pixels": pairs.pixels,
             "latent_shape": list(pairs.ye.shape[1:]), "n_fit": int(fit_idx.size),
             "n_select": int(select.size), "n_eval": int(eval_idx.size),
             "context": spec["context"], "confidence": confidence, "n_bootstrap": n_boot,
             "interval_method": "hierarchical bootstrap: refit seeds, then evaluation images",
             "settings": repr(settings), "init": init, "seconds": seconds,
             "cpu_seconds": cpu_seconds,
             "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def write_latent_gap(ds: xr.Dataset, path: str | Path) -> Path:
    """Write ``ds`` to ``path`` (netCDF, atomically)."""
    return atomic_write(Path(path), lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf"))


def read_latent_gap(path: str | Path) -> xr.Dataset:
    """Read a ``latent_gap.nc`` (loaded into memory)."""
    with xr.open_dataset(Path(path), engine="h5netcdf") as ds:
        return ds.load()
