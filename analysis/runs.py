"""Runs on disk → one tidy row per run, and RD curves from those rows.

    runs = load_runs("runs/")            # every */eval.nc under runs/, recursively
    table = runs_table(runs)             # pandas DataFrame, one row per run
    c = curve(runs, task="depth", method="proposed")    # Curve: rate (bpp), quality

In:  a runs directory. Each run directory ``RUN/`` holds ``RUN/eval.nc`` (xarray, dims
     ``image`` and ``layer``; ``bpp_actual``/``bpp_estimated`` in bits per pixel of the original
     image; task metrics ``psnr`` dB, ``map`` and ``miou`` "1", ``rmse`` disparity pixels; every
     variable with a ``units`` attr; attrs ``config`` = the training config as JSON), and
     optionally ``config.json``/``meta.json``. The run's kind comes from its config's
     ``experiment`` name, ``{preset}-{family}-{method}``; families, methods and presets are
     those of ``taskcodecs.experiments.table`` (imported from there, no torch).
Out: :class:`Run` objects (a run is a point: delete its folder and the point is gone).

Reductions (one documented rule for every curve): a per-image variable is averaged over
images; a variable with a ``layer`` dim is read at the run's top layer ("enhancement" where
present, else "base"); rates are ``bpp_actual`` (real bitstream bytes) at the top layer.
``eval.nc`` stores rates *cumulatively* per layer (the ``enhancement`` value counts the bytes
of both layers, the stream cut after that layer), so scalable/standalone points sit at the
base + enhancement rate, and the enhancement layer's own rate is the difference. Every run found is a point; no run
is selected or dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from infra.io import find_files, read_json
from taskcodecs.experiments.table import BASE_METHODS, COMPRESSAI_METHODS, REFERENCE_METHODS
from taskcodecs.experiments.table import FAMILIES as _EXPERIMENT_FAMILIES
from taskcodecs.models.names import MODES, PRESETS

METHODS = (*BASE_METHODS, *MODES, *REFERENCE_METHODS, *COMPRESSAI_METHODS)
# experiment family → (task, dataset), from the experiment table (the one source of truth)
FAMILIES = {name: (family.task, family.dataset) for name, family in _EXPERIMENT_FAMILIES.items()}
TASK_METRIC = {"depth": "rmse", "detection": "map", "reconstruction": "psnr",
               "segmentation": "miou"}
BPP_UNITS = ("bits/pixel", "bit/pixel", "bpp", "bits per pixel")


@dataclass(frozen=True)
class Metric:
    name: str
    label: str  # axis label, with the unit shown
    higher_is_better: bool
    scale: float = 1.0  # stored value (as read, unit "1") → shown value


METRICS = {
    "psnr": Metric("psnr", "PSNR (dB)", True),
    "map": Metric("map", "box mAP@[.5:.95] (%)", True, 100.0),
    "rmse": Metric("rmse", "disparity RMSE (pixels), lower is better", False),
    "miou": Metric("miou", "mIoU (%)", True, 100.0),
}


class RunsError(ValueError):
    """A runs directory or one of its files cannot be read; the message names the file."""


@dataclass
class Run:
    """One evaluated run: where it is, what it is, its mean rates and metrics."""

    path: Path
    name: str  # path relative to the runs directory
    experiment: str
    family: str
    method: str
    task: str
    dataset: str
    rate_weight: float | None
    reward_weight: float | None
    bpp: dict[str, float]  # layer → mean bpp_actual, cumulative (bits per original-image pixel)
    bpp_estimated: dict[str, float]
    metrics: dict[str, float]  # metric → value at the top layer (as stored: "1" not %)
    n_images: int
    config: dict[str, Any] = field(repr=False)
    codec_id: str = ""
    base_ref: str | None = None  # the config's ``base`` (enhancements)
    base: Run | None = field(default=None, repr=False)  # resolved base run, if found
    base_method: str | None = None
    base_reward_weight: float | None = None
    # rate-targeted runs (taskcodecs.training.rate_control; eval.nc attrs): the target and what the
    # selected checkpoint achieved (validation, estimated bpp), the final rate weight
    rate_target: float | None = None
    rate_selected_bpp: float = float("nan")
    rate_on_target: bool = False
    rate_weight_final: float | None = None
    # half-width of the 95% normal interval of each image mean ("rate", "psnr", "rmse")
    spread: dict[str, float] = field(default_factory=dict, repr=False)
    # layer → mean bpp_payload (bpp_actual without the container header; empty for eval.nc
    # files written before it existed)
    bpp_payload: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def role(self) -> str:
        if self.method in BASE_METHODS:
            return "base"
        if self.method in COMPRESSAI_METHODS:
            return "standalone"  # a CompressAI zoo codec, no base (taskcodecs.experiments.table)
        return "reference" if self.method == "uncompressed" else "enhancement"

    @property
    def bpp_total(self) -> float:
        """The rate of the whole stream: the top layer's cumulative rate."""
        return _top(self.bpp)

    @property
    def bpp_estimated_total(self) -> float:
        return _top(self.bpp_estimated)

    @property
    def bpp_payload_total(self) -> float:
        """The payloads of the whole stream, header excluded (NaN where not recorded)."""
        return _top(self.bpp_payload) if self.bpp_payload else float("nan")

    @property
    def bpp_enhancement(self) -> float:
        """The enhancement layer's own rate (total − base); NaN for single-layer runs."""
        if "enhancement" not in self.bpp or "base" not in self.bpp:
            return float("nan")
        return self.bpp["enhancement"] - self.bpp["base"]

    @property
    def base_variant(self) -> str:
        """Which base this point belongs to: "baseline", "proposed (reward_weight=0.1)", ..."""
        if self.role == "base":
            return variant_label(self.method, self.reward_weight)
        if self.role in ("reference", "standalone"):
            return ""
        return variant_label(self.base_method, self.base_reward_weight)


def _top(by_layer: dict[str, float]) -> float:
    """The value at the top layer ("enhancement" where present) of cumulative rates."""
    if not by_layer:
        return float("nan")
    return float(by_layer.get("enhancement", list(by_layer.values())[-1]))


def variant_label(method: str | None, reward_weight: float | None) -> str:
    if method is None:
        return "unknown base"
    if method == "proposed" and reward_weight is not None:
        return f"proposed (reward_weight={reward_weight:g})"
    return method


@dataclass(frozen=True)
class Curve:
    """RD points of one method (and base): rate in bits per original-image pixel."""

    label: str
    method: str
    base_variant: str
    metric: str
    rate: np.ndarray  # sorted ascending
    quality: np.ndarray  # metric values as stored (see METRICS[metric].scale for display)
    runs: tuple[str, ...]
    rate_err: np.ndarray | None = None  # per point: 95% half-width over images (or NaN)
    quality_err: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.rate.size)


def load_runs(runs_dir: str | Path) -> list[Run]:
    """Every ``eval.nc`` under ``runs_dir`` (recursively) as a :class:`Run`, sorted by name."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise RunsError(f"{root}: runs directory not found (expected a folder holding "
                        "RUN/eval.nc files)")
    paths = find_files(root, "eval.nc")
    runs = [_read_run(path, root) for path in paths]
    for run in runs:
        if run.role == "enhancement":
            _attach_base(run, runs, root)
    return runs


def runs_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run: what it is, mean bpp per layer and total, metrics (as stored)."""
    rows = []
    for run in runs:
        rows.append({
            "run": run.name, "experiment": run.experiment, "method": run.method,
            "task": run.task, "dataset": run.dataset, "base": run.base_variant,
            "base_run": run.base.name if run.base else (run.base_ref or ""),
            "rate_weight": run.rate_weight, "reward_weight": run.reward_weight,
            "bpp_base": run.bpp.get("base", np.nan),
            "bpp_enhancement": run.bpp_enhancement,
            "bpp_total": run.bpp_total, "bpp_total_estimated": run.bpp_estimated_total,
            **{name: run.metrics.get(name, np.nan) for name in METRICS},
            "n_images": run.n_images,
        })
    return pd.DataFrame(rows)


def select(runs: list[Run], **criteria: Any) -> list[Run]:
    """Runs whose attributes equal every ``criteria`` value (``base_variant="baseline"``...)."""
    return [r for r in runs if all(getattr(r, k) == v for k, v in criteria.items())]


def curve(runs: list[Run], *, task: str, method: str, dataset: str | None = None,
          base_variant: str | None = None, metric: str | None = None) -> Curve | None:
    """The RD curve of ``method`` for ``task`` (None if no run has a finite point).

    Base tasks: ``method`` "baseline"/"proposed", one curve per reward_weight unless
    ``base_variant`` picks one. ``task="reconstruction", method="direct"`` is the bases' own
    reconstruction (g_a on Ŷ_b): base runs of ``dataset`` at their base-layer PSNR.
    """
    metric = metric or TASK_METRIC[task]
    if task == "reconstruction" and method == "direct":
        chosen = [r for r in runs if r.role == "base" and r.dataset == dataset]
    else:
        chosen = [r for r in runs if r.task == task and r.method == method
                  and (dataset is None or r.dataset == dataset)]
    if base_variant is not None:
        chosen = [r for r in chosen if r.base_variant == base_variant]
    rate_of = "psnr_base" if task == "reconstruction" and method == "direct" else metric
    points = [(r.bpp_total, r.metrics.get(metric, np.nan), r.name, r.spread.get("rate", np.nan),
               r.spread.get(rate_of, np.nan)) for r in chosen]
    points = sorted(p for p in points if np.isfinite(p[0]) and np.isfinite(p[1]))
    if not points:
        return None
    variant = base_variant or ", ".join(sorted({r.base_variant for r in chosen}))
    label = variant if method in BASE_METHODS else f"{method} on {variant} base"
    column = lambda k: np.array([p[k] for p in points])  # noqa: E731
    return Curve(label, method, variant, metric, column(0), column(1),
                 tuple(p[2] for p in points), column(3), column(4))


def base_variants(runs: list[Run], dataset: str | None = None) -> list[str]:
    """The base variants present (as bases, or as the base of an enhancement), sorted."""
    return sorted({r.base_variant for r in runs if r.role not in ("reference", "standalone")
                   and (dataset is None or r.dataset == dataset)})


# --- reading one run ---------------------------------------------------------------------------

def _read_run(path: Path, root: Path) -> Run:
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

def _attach_base(run: Run, runs: list[Run], root: Path) -> None:
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
