"""Hand-built run directories following the eval.nc schema (taskcodecs.evaluation.evaluate's output).

``fake_runs(root)`` writes a small, complete sweep with known answers:

- depth bases (Cityscapes): baseline at BASE_BPP with RMSE BASE_RMSE; proposed
  (reward_weight 0.1) at 0.9 × those rates with the same RMSE → depth BD-rate exactly -10%.
  Their base-layer PSNR (direct reconstruction): proposed 2 dB better.
- detection bases (COCO): baseline at DET_BPP with mAP DET_MAP; proposed at 0.95 × → -5%.
- codec-free references: depth RMSE 3.5, detection mAP 0.35, segmentation mIoU 0.6.
- Cityscapes reconstruction on the baseline base (run depth-baseline-1, 0.1 bpp): scalable
  totals 0.1 + ENH_BPP at PSNR ENH_PSNR; standalone-refit at +GAIN_BPP total rate, same PSNR
  (conditional coding gain exactly GAIN_BPP); on the proposed base (depth-proposed-1): scalable
  totals 0.8 × the baseline ones → BD-rate exactly -20%, standalone-refit likewise +GAIN_BPP.
- Cityscapes segmentation: scalable on the baseline base only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from infra.io import write_json

BASE_BPP = [0.05, 0.1, 0.2, 0.4]
BASE_RMSE = [6.0, 5.0, 4.2, 3.8]
BASE_PSNR = [20.0, 22.0, 24.0, 26.0]
DET_BPP = [0.1, 0.2, 0.4, 0.8]
DET_MAP = [0.20, 0.25, 0.28, 0.30]
ENH_BPP = [0.1, 0.2, 0.4, 0.8]
ENH_PSNR = [28.0, 30.0, 32.0, 34.0]
SEG_MIOU = [0.40, 0.45, 0.50, 0.52]
GAIN_BPP = 0.05
RATE_WEIGHTS = [0.5, 1.0, 2.0, 4.0]
N_IMAGES = 3
SPREAD = np.array([0.9, 1.0, 1.1])  # per-image factors, mean 1


def write_run(root: Path, name: str, experiment: str, *, bpp: dict[str, float] | None,
              metrics: dict[str, float | dict[str, float]], rate_weight: float | None = None,
              reward_weight: float | None = None, base: Path | str | None = None,
              units: bool = True, seed: int | None = None,
              payload: dict[str, float] | None = None) -> Path:
    """RUN/eval.nc (+ config.json, meta.json) with per-image values whose mean is as given
    (``seed``: the training seed in the config, as the results table groups runs by it)."""
    run = root / name
    run.mkdir(parents=True, exist_ok=True)
    config = {"experiment": experiment, "model": experiment, "rate_weight": rate_weight,
              "reward_weight": reward_weight, "base": str(base) if base else None}
    if seed is not None:
        config["seed"] = seed
    layers = list(bpp) if bpp else ["base"]
    data = {}
    if bpp:  # given per layer, stored cumulatively like taskcodecs.evaluation.evaluate does
        per_image = np.cumsum([[bpp[layer] * s for layer in layers] for s in SPREAD], axis=1)
        data["bpp_actual"] = (("image", "layer"), per_image, {"units": "bits/pixel"})
        data["bpp_estimated"] = (("image", "layer"), per_image * 0.99, {"units": "bits/pixel"})
    if payload:  # bpp_payload per layer (the coded layers without the container header)
        per_image = np.cumsum([[payload[layer] * s for layer in layers] for s in SPREAD], axis=1)
        data["bpp_payload"] = (("image", "layer"), per_image, {"units": "bits/pixel"})
    metric_units = {"psnr": "dB", "map": "1", "rmse": "pixels", "miou": "1"}
    for metric, value in metrics.items():
        if isinstance(value, dict):  # per layer, per image
            values = np.array([[value.get(layer, np.nan) + d for layer in layers]
                               for d in (-0.5, 0.0, 0.5)])
            data[metric] = (("image", "layer"), values, {"units": metric_units[metric]})
        elif metric == "rmse":
            data[metric] = (("image",), value * SPREAD, {"units": metric_units[metric]})
        else:  # dataset-level scalar (mAP, mIoU)
            data[metric] = ((), value, {"units": metric_units[metric]})
    if not units:
        for key, (dims, values, _) in list(data.items()):
            data[key] = (dims, values, {})
    ds = xr.Dataset(data, coords={"image": np.arange(N_IMAGES), "layer": layers},
                    attrs={"config": json.dumps(config), "codec_id": "test",
                           "experiment": experiment})
    ds.to_netcdf(run / "eval.nc", engine="h5netcdf")
    write_json(run / "config.json", config)
    kind = "reference" if experiment.endswith("uncompressed") else "run"
    write_json(run / "meta.json", {"kind": kind})
    return run


def fake_runs(root: Path, segmentation: bool = True) -> Path:
    """The sweep described in the module docstring, under ``root``; returns ``root``."""
    bases = {}
    for method, factor, reward, psnr_gain in (("baseline", 1.0, 0.0, 0.0),
                                              ("proposed", 0.9, 0.1, 2.0)):
        for i, rw in enumerate(RATE_WEIGHTS):
            bases[(method, i)] = write_run(
                root, f"depth-{method}-{i}", f"tiny-depth-base-{method}",
                bpp={"base": BASE_BPP[i] * factor},
                metrics={"rmse": BASE_RMSE[i], "psnr": {"base": BASE_PSNR[i] + psnr_gain}},
                rate_weight=rw, reward_weight=reward)
            write_run(root, f"detection-{method}-{i}", f"tiny-detection-base-{method}",
                      bpp={"base": DET_BPP[i] * (1.0 if method == "baseline" else 0.95)},
                      metrics={"map": DET_MAP[i], "psnr": {"base": 18.0 + i + psnr_gain}},
                      rate_weight=rw, reward_weight=reward)
    write_run(root, "ref/depth", "tiny-depth-uncompressed", bpp=None, metrics={"rmse": 3.5})
    write_run(root, "ref/detection", "tiny-detection-uncompressed", bpp=None,
              metrics={"map": 0.35})
    for method, base_bpp in (("baseline", BASE_BPP[1]), ("proposed", BASE_BPP[1] * 0.9)):
        base = bases[(method, 1)]
        for i, rw in enumerate(RATE_WEIGHTS):
            total = BASE_BPP[1] + ENH_BPP[i]
            if method == "proposed":
                total *= 0.8
            enh = total - base_bpp
            write_run(root, f"recon/{method}/scalable-{i}",
                      "tiny-cityscapes-reconstruction-scalable",
                      bpp={"base": base_bpp, "enhancement": enh},
                      metrics={"psnr": {"base": BASE_PSNR[1], "enhancement": ENH_PSNR[i]}},
                      rate_weight=rw, base=base)
            write_run(root, f"recon/{method}/standalone-{i}",
                      "tiny-cityscapes-reconstruction-standalone-refit",
                      bpp={"base": base_bpp, "enhancement": enh + GAIN_BPP},
                      metrics={"psnr": {"enhancement": ENH_PSNR[i]}}, rate_weight=rw, base=base)
    if segmentation:
        for i, rw in enumerate(RATE_WEIGHTS):
            write_run(root, f"seg/scalable-{i}", "tiny-cityscapes-segmentation-scalable",
                      bpp={"base": BASE_BPP[1], "enhancement": ENH_BPP[i]},
                      metrics={"miou": SEG_MIOU[i]}, rate_weight=rw, base=bases[("baseline", 1)])
        write_run(root, "ref/segmentation", "tiny-segmentation-uncompressed", bpp=None,
                  metrics={"miou": 0.6})
    return root


@pytest.fixture(scope="session")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake sweep, built once per test session: READ ONLY (copy it to modify it)."""
    return fake_runs(tmp_path_factory.mktemp("sweep") / "runs")


@pytest.fixture
def vinfo_file():
    """A writer of a minimal vinfo.nc (schema: family dim, bits, units attrs)."""
    def write(path: Path, vinfo: list[float], families: tuple[str, ...] = ("linear", "cnn"),
              units: bool = True, rate: float | None = None) -> Path:
        h_null = np.full(len(families), 2.0)
        value = np.asarray(vinfo, dtype=float)
        attrs = {"units": "bits/pixel"} if units else {}
        variables = {
            "h_null": ("family", h_null, attrs), "h_cond": ("family", h_null - value, attrs),
            "vinfo": ("family", value, attrs), "vinfo_low": ("family", value - 0.05, attrs),
            "vinfo_high": ("family", value + 0.05, attrs)}
        if rate is not None:  # the capped I_V of vinfo.results, with a fixed interval
            capped = np.minimum(value, rate)
            variables.update(
                rate_per_unit=((), rate, attrs), vinfo_capped=("family", capped, attrs),
                vinfo_capped_low=("family", capped - 0.05, attrs),
                vinfo_capped_high=("family", capped + 0.05, attrs),
                cap_binds=("family", capped < value, {"units": "1"}))
        ds = xr.Dataset(variables, coords={"family": list(families)},
                        attrs={"unit": "pixel", "source": "test"})
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.to_netcdf(path, engine="h5netcdf")
        return path
    return write


@pytest.fixture(scope="session")
def sweep_runs(sweep: Path) -> list:
    """``load_runs(sweep)``, loaded once: READ ONLY."""
    from analysis import load_runs

    return load_runs(sweep)


@pytest.fixture
def make_run():
    """``write_run`` (see above) for tests that build their own run directories."""
    return write_run


@pytest.fixture(scope="session")
def known() -> dict:
    """The numbers ``fake_runs`` is built from (see the module docstring)."""
    return {"base_bpp": BASE_BPP, "base_rmse": BASE_RMSE, "gain_bpp": GAIN_BPP,
            "enh_bpp": ENH_BPP, "enh_psnr": ENH_PSNR, "depth_bd": -10.0, "detection_bd": -5.0,
            "scalable_bd": -20.0, "n_runs": 39}
