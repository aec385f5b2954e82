"""Gathering a sweep: every point's ``eval.nc`` in one Dataset, ``OUT/sweep.nc`` (its dims
and variables are described in :mod:`taskcodecs.sweeps.sweep`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from infra.config import ConfigError
from infra.io import atomic_write
from taskcodecs.experiments.table import get_experiment
from taskcodecs.runs.links import read_run
from taskcodecs.sweeps.points import Point, load_plan

__all__ = ["gather", "gather_again"]


def gather(points: list[Point], out: Path, config: str) -> xr.Dataset:
    """Every point's eval.nc in one Dataset (:mod:`taskcodecs.sweeps.sweep`), written to
    OUT/sweep.nc."""
    enhancement = points[0].base_label is not None
    second = "base" if enhancement else "reward_weight"
    axis = "rate_target" if any(p.rate_target is not None for p in points) else "rate_weight"
    parts, meta, units = [], [], {}
    for p in points:
        with xr.open_dataset(Path(p.run_dir) / "eval.nc", engine="h5netcdf") as ds:
            ds = ds.load()
        units.update({name: v.attrs["units"] for name, v in ds.data_vars.items() if "units" in v.attrs})
        sizes = ds[["height", "width"]]
        key = p.base_label if enhancement else p.reward_weight
        rates = ([p.rate_coordinate] if p.method != "direct"
                 else sorted({q.rate_coordinate for q in points if q.method != "direct"}
                             or {p.rate_coordinate}))
        final = float(ds.attrs.get("rate_weight_final", _config_weight(ds)))
        for lam in rates:
            coords = {"method": [p.method], second: [key], axis: [lam]}
            parts.append(ds.drop_attrs().drop_vars(["height", "width"]).expand_dims(coords))
            meta.append((p.method, key, lam, p.run_dir, ds.attrs["codec_id"],
                         int(ds.attrs["checkpoint_step"]), final))
    merged = xr.merge(parts, join="outer", compat="no_conflicts", combine_attrs="drop")
    merged["height"], merged["width"] = sizes["height"], sizes["width"]
    dims = ("method", second, axis)
    shape = tuple(merged.sizes[d] for d in dims)
    run_dir = np.full(shape, "", dtype=object)
    codec_id = np.full(shape, "", dtype=object)
    step = np.full(shape, -1, dtype=np.int64)
    weight = np.full(shape, np.nan)
    index = {d: list(merged[d].values) for d in dims}
    for method, key, lam, directory, cid, ckpt_step, final in meta:
        at = (index["method"].index(method), index[second].index(key), index[axis].index(lam))
        run_dir[at], codec_id[at], step[at], weight[at] = directory, cid, ckpt_step, final
    merged["run_dir"] = (dims, run_dir)
    merged["codec_id"] = (dims, codec_id)
    merged["checkpoint_step"] = (dims, step)
    merged["rate_weight_final"] = (dims, weight, {
        "units": "1", "description": "the rate weight the run ended with (its config's for "
                                     "runs without a rate target)"})
    for name, variable in merged.data_vars.items():
        if name in units:
            variable.attrs["units"] = units[name]
    merged[axis].attrs["description"] = (
        "weight of bits per pixel in the training loss" if axis == "rate_weight" else
        "the point's rate target: estimated bits per pixel of the original image")
    if enhancement:
        labels = list(merged["base"].values)
        runs = {p.base_label: p.base_run for p in points}
        merged = merged.assign_coords(
            base_run=("base", np.array([runs[b] for b in labels], dtype=object)),
            base_reward_weight=("base", np.array([_reward(runs[b]) for b in labels])),
        )
    else:
        merged["reward_weight"].attrs["description"] = "weight of the base's reconstruction reward"
    merged.attrs.update({"config": config, "experiment_family": get_experiment(config).family,
                         "bpp_normalization": "bits per pixel of the original H x W image"})
    atomic_write(out / "sweep.nc", lambda tmp: merged.to_netcdf(tmp, engine="h5netcdf"))
    return merged


def _config_weight(ds: xr.Dataset) -> float:
    weight = json.loads(ds.attrs.get("config", "{}")).get("rate_weight")
    return np.nan if weight is None else float(weight)


def _reward(base_run: str) -> float:
    cfg, _ = read_run(base_run)
    return float("nan") if cfg.reward_weight is None else float(cfg.reward_weight)


def gather_again(out: Path) -> xr.Dataset:
    """Gather a sweep from its plan (``OUT/sweep.json``) once every point has its eval.nc."""
    sweep = load_plan(out / "sweep.json")
    missing = [p.run_dir for p in sweep.points if not (Path(p.run_dir) / "eval.nc").is_file()]
    if missing:
        raise ConfigError(f"{len(missing)} of {len(sweep.points)} points have no eval.nc yet "
                          f"(first: {missing[0]}); run the sweep command again or wait for its jobs")
    return gather(sweep.points, out, sweep.config)
