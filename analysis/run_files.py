"""Reading one run from disk: ``RUN/eval.nc`` (+ ``config.json``) → :class:`~analysis.run_record.Run`.

The reductions (the one rule for every curve, :mod:`analysis.runs`): a per-image variable is
averaged over images; a variable with a ``layer`` dim is read at the run's top layer
("enhancement" where present, else "base"); rates are read per layer, in bits per pixel of
the original image (the only unit accepted). Every variable must carry a ``units`` attr;
metrics are checked against theirs (``psnr`` dB, ``map``/``miou`` "1" or %, ``rmse``
disparity pixels). The experiment comes from the config (``attrs["config"]`` or
``config.json``) and must be a known ``{preset}-{family}-{method}``. An enhancement run is
linked to its base (the config's ``base``) among the runs scanned, else on disk.
Anything unreadable raises :class:`~analysis.run_record.RunsError` naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from analysis.run_record import (
    BPP_UNITS,
    FAMILIES,
    METHODS,
    METRICS,
    TASK_METRIC,
    Run,
    RunsError,
)
from infra.io import read_json
from taskcodecs.models.names import PRESETS

# --- reading one run ---------------------------------------------------------------------------

def read_run(path: Path, root: Path) -> Run:
    """The run of the eval file ``path`` (named relative to the runs folder ``root``)."""
    try:
        with xr.open_dataset(path, engine="h5netcdf") as opened:
            ds = opened.load()
    except Exception as err:  # h5py/netCDF raise OSError, ValueError, KeyError...
        raise RunsError(f"{path}: cannot read as a netCDF eval file ({type(err).__name__}: "
                        f"{err}); the file may be truncated or corrupt") from err
    for name, var in ds.data_vars.items():
        if "units" not in var.attrs:
            raise RunsError(f"{path}: variable {name!r} has no 'units' attr; every eval.nc "
                            "variable must say its unit (e.g. 'bits/pixel', 'dB', '1')")
    config = _config(path, ds)
    experiment = str(config.get("experiment") or ds.attrs.get("experiment") or "")
    family, method = _family_and_method(path, experiment)
    task, dataset = FAMILIES[family]
    layer = _top_layer(ds)
    metrics = {name: _metric(path, ds, name, layer) for name in METRICS if name in ds}
    if TASK_METRIC[task] not in metrics:
        raise RunsError(f"{path}: a {task} run ({experiment}) needs a {TASK_METRIC[task]!r} "
                        f"variable; found {sorted(ds.data_vars)}")
    bpp = _bpp(path, ds, "bpp_actual", required=method != "uncompressed")
    return Run(
        path=path.parent, name=str(path.parent.relative_to(root)) or ".",
        experiment=experiment, family=family, method=method, task=task, dataset=dataset,
        rate_weight=_optional_float(config.get("rate_weight")),
        reward_weight=_optional_float(config.get("reward_weight")),
        bpp=bpp, bpp_estimated=_bpp(path, ds, "bpp_estimated", required=False),
        bpp_payload=_bpp(path, ds, "bpp_payload", required=False),
        metrics=metrics, n_images=int(ds.sizes.get("image", 0)), config=config,
        codec_id=str(ds.attrs.get("codec_id", "")),
        base_ref=str(config["base"]) if config.get("base") else None,
        rate_target=_optional_float(ds.attrs.get("rate_target_bpp")),
        rate_selected_bpp=float(ds.attrs.get("rate_selected_val_bpp", np.nan)),
        rate_on_target=bool(ds.attrs.get("rate_on_target", 0)),
        rate_weight_final=_optional_float(ds.attrs.get("rate_weight_final",
                                                       config.get("rate_weight"))),
        spread=_spread(ds, layer),
    )


def _spread(ds: xr.Dataset, layer: str | None) -> dict[str, float]:
    """1.96 × the standard error of the image mean of the per-image variables."""
    out = {}
    for key, name, at in (("rate", "bpp_actual", layer), ("psnr", "psnr", layer),
                          ("rmse", "rmse", layer), ("psnr_base", "psnr", "base")):
        if name not in ds or "image" not in ds[name].dims:
            continue
        var = ds[name]
        if "layer" in var.dims and at is not None and "layer" in ds.coords:
            if at not in [str(v) for v in ds["layer"].values]:
                continue
            var = var.sel(layer=at)
        values = np.asarray(var.values, dtype=float)
        values = values[np.isfinite(values)]
        if values.size > 1 and values.ndim == 1:
            out[key] = float(1.96 * values.std(ddof=1) / np.sqrt(values.size))
    return out


def _config(path: Path, ds: xr.Dataset) -> dict[str, Any]:
    text = ds.attrs.get("config")
    if text is not None:
        try:
            config = json.loads(text)
        except (TypeError, json.JSONDecodeError) as err:
            raise RunsError(f"{path}: attrs['config'] is not a JSON object ({err})") from err
    elif (path.parent / "config.json").is_file():
        try:
            config = read_json(path.parent / "config.json")
        except ValueError as err:
            raise RunsError(str(err)) from err
    else:
        raise RunsError(f"{path}: no attrs['config'] and no config.json beside it; cannot "
                        "tell which experiment this run is")
    if not isinstance(config, dict):
        raise RunsError(f"{path}: the run's config must be a JSON object, got {type(config)}")
    return config


def _family_and_method(path: Path, experiment: str) -> tuple[str, str]:
    """``{preset}-{family}-{method}`` → (family, method), checked against the known table."""
    for method in sorted(METHODS, key=len, reverse=True):
        if experiment.endswith("-" + method):
            head = experiment[: -len(method) - 1]
            for preset in PRESETS:
                family = head.removeprefix(preset + "-")
                if head.startswith(preset + "-") and family in FAMILIES:
                    return family, method
    raise RunsError(
        f"{path}: config experiment {experiment!r} is not a known experiment name "
        f"(expected {{preset}}-{{family}}-{{method}} with preset in {PRESETS}, family in "
        f"{sorted(FAMILIES)}, method in {METHODS})"
    )


def _top_layer(ds: xr.Dataset) -> str | None:
    if "layer" not in ds.dims:
        return None
    layers = [str(v) for v in ds["layer"].values] if "layer" in ds.coords else []
    if "enhancement" in layers:
        return "enhancement"
    return "base" if "base" in layers else (layers[-1] if layers else None)


def _reduce(ds: xr.Dataset, name: str, layer: str | None) -> xr.DataArray:
    var = ds[name]
    if "image" in var.dims:
        var = var.mean("image", skipna=True)
    if "layer" in var.dims and layer is not None:
        var = var.sel(layer=layer) if "layer" in ds.coords else var.isel(layer=-1)
    return var


def _metric(path: Path, ds: xr.Dataset, name: str, layer: str | None) -> float:
    units = str(ds[name].attrs["units"]).strip()
    factor = 1.0
    if name == "psnr" and units.lower() != "db":
        raise RunsError(f"{path}: psnr has units {units!r}, expected 'dB'")
    if name in ("map", "miou"):
        if units in ("%", "percent"):
            factor = 0.01
        elif units not in ("1", "", "fraction"):
            raise RunsError(f"{path}: {name} has units {units!r}, expected '1' (or '%')")
    if name == "rmse" and "pixel" not in units.lower() and units.lower() != "px":
        raise RunsError(f"{path}: rmse has units {units!r}, expected disparity 'pixels'")
    value = _reduce(ds, name, layer)
    if value.size != 1:
        raise RunsError(f"{path}: {name} has dims {ds[name].dims}; expected (), (image,), "
                        "(layer,) or (image, layer)")
    return float(value.values) * factor


def _bpp(path: Path, ds: xr.Dataset, name: str, required: bool) -> dict[str, float]:
    if name not in ds:
        if required:
            raise RunsError(f"{path}: no {name!r} variable; a codec run needs its rate")
        return {}
    units = str(ds[name].attrs["units"]).strip().lower()
    if units not in BPP_UNITS:
        raise RunsError(f"{path}: {name} has units {units!r}; expected 'bits/pixel' (bits per "
                        "pixel of the original full-resolution image, the one normalization)")
    var = ds[name].mean("image", skipna=True) if "image" in ds[name].dims else ds[name]
    if "layer" not in var.dims:
        return {"base": float(var.values)}
    layers = [str(v) for v in ds["layer"].values] if "layer" in ds.coords else (
        [f"layer{i}" for i in range(var.sizes["layer"])])
    return {layer: float(v) for layer, v in zip(layers, var.values) if np.isfinite(v)}


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


# --- linking an enhancement run to its base -----------------------------------------------------

def attach_base(run: Run, runs: list[Run], root: Path) -> None:
    """Find the run named by the config's ``base`` among the scanned runs, else on disk."""
    if not run.base_ref:
        return
    ref = Path(run.base_ref)
    candidates = [ref] if ref.is_absolute() else [root / ref, run.path.parent / ref,
                                                  Path.cwd() / ref, run.path / ref]
    resolved = {c.resolve() for c in candidates if c.is_dir()}
    found = [r for r in runs if r.role == "base" and r.path.resolve() in resolved]
    if not found:  # runs folder moved: match the longest trailing part of the path
        found = _by_trailing_parts(ref, [r for r in runs if r.role == "base"], root)
    if found:
        run.base = found[0]
        run.base_method, run.base_reward_weight = found[0].method, found[0].reward_weight
        return
    for folder in sorted(resolved):  # a base evaluated nowhere we scanned: read its config
        try:
            config = read_json(folder / "config.json")
            _, method = _family_and_method(folder / "config.json", str(config.get("experiment")))
        except (OSError, ValueError):  # unreadable: the base stays "unknown base" (reported)
            continue
        run.base_method = method
        run.base_reward_weight = _optional_float(config.get("reward_weight"))
        return


def _by_trailing_parts(ref: Path, bases: list[Run], root: Path) -> list[Run]:
    def score(run: Run) -> int:
        mine, theirs = run.path.relative_to(root).parts, ref.parts
        n = 0
        while n < min(len(mine), len(theirs)) and mine[-1 - n] == theirs[-1 - n]:
            n += 1
        return n
    scored = sorted(((score(r), r.name, r) for r in bases), key=lambda t: (-t[0], t[1]))
    if not scored or scored[0][0] == 0 or (len(scored) > 1 and scored[1][0] == scored[0][0]):
        return []
    return [scored[0][2]]
