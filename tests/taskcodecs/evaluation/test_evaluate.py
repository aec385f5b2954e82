"""Evaluation through real bitstreams into eval.nc (xarray, h5netcdf)."""

import json

import numpy as np
import pytest
import xarray as xr

from taskcodecs.evaluation.evaluate import evaluate_run, main
from taskcodecs.runs.codecs import load_codec
from taskcodecs.runs.links import read_run
from taskcodecs.training.run import resolve_config, train

SMALL = {"synthetic.train": 4, "synthetic.val": 2, "log_every": 1, "num_workers": 0,
         "max_steps": 2, "val_every": 2}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-runs")
    common = {**SMALL, "synthetic_cache": str(root / "cache")}

    def run(name, **overrides):
        return train(resolve_config(name, {**common, "out": str(root / name), **overrides}))

    depth = run("tiny-depth-base-proposed")
    return {"depth": depth,
            "segmentation": run("tiny-cityscapes-segmentation-scalable", base=str(depth)),
            "detection": run("tiny-detection-base-baseline"),
            "reference": run("tiny-depth-uncompressed")}


def _reopen(run_dir):
    with xr.open_dataset(run_dir / "eval.nc", engine="h5netcdf") as ds:
        return ds.load()


@pytest.mark.slow
def test_scalable_run_writes_eval_nc_with_real_rates(runs, capsys):
    run = runs["segmentation"]
    assert main([str(run), "--split", "val"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("tiny-cityscapes-segmentation-scalable [best @ step 2, 2 val images]")
    assert "base: bpp" in line and "enhancement: bpp" in line and "mIoU" in line
    ds = _reopen(run)
    assert dict(ds.sizes) == {"image": 2, "layer": 2, "true_class": 19, "predicted_class": 19}
    assert list(ds.layer.values) == ["base", "enhancement"]
    units = {name: ds[name].attrs["units"] for name in ds.data_vars}
    assert units == {"bpp_actual": "bits/pixel", "bpp_estimated": "bits/pixel", "psnr": "dB",
                     "rmse": "pixels", "miou": "1", "height": "pixels", "width": "pixels",
                     "confusion": "pixels"}
    # the per-image confusion counts add up to the labelled pixels of each image
    counts = ds.confusion.sel(layer="enhancement").sum(["true_class", "predicted_class"])
    assert np.all((counts > 0) & (counts <= 64 * 128))
    assert np.isnan(ds.confusion.sel(layer="base")).all() or (ds.confusion.sel(layer="base") == 0).all()
    actual, estimated = ds.bpp_actual.values, ds.bpp_estimated.values
    assert np.all(actual >= 0.97 * estimated) and np.all(estimated > 0)
    assert np.all(actual[:, 1] > actual[:, 0]), "the enhancement adds bytes"
    # base layer: the base task (depth) and g_a's picture; enhancement: segmentation
    assert np.isfinite(ds.rmse.sel(layer="base")).all() and ds.rmse.sel(layer="enhancement").isnull().all()
    assert np.isfinite(ds.psnr.sel(layer="base")).all()
    assert 0.0 <= float(ds.miou.sel(layer="enhancement")) <= 1.0 and np.isnan(float(ds.miou.sel(layer="base")))
    cfg, _ = read_run(run)
    assert json.loads(ds.attrs["config"])["base"] == cfg.base
    assert ds.attrs["codec_id"] == load_codec(run / "checkpoints" / "best").codec_id
    assert ds.attrs["experiment"] == "tiny-cityscapes-segmentation-scalable"
    assert ds.attrs["checkpoint"] == "best" and ds.attrs["split"] == "val"
    assert list(ds.height.values) == [64, 64] and list(ds.width.values) == [128, 128]


@pytest.mark.slow
def test_detection_base_reports_map_and_reference_has_no_bitstream(runs):
    ds = evaluate_run(runs["detection"], limit=1, checkpoint="last")
    assert ds.sizes["image"] == 1 and list(ds.layer.values) == ["base"]
    assert 0.0 <= float(ds["map"].sel(layer="base")) <= 1.0 and ds["map"].attrs["units"] == "1"
    assert float(ds.bpp_actual[0, 0]) >= 0.97 * float(ds.bpp_estimated[0, 0])
    assert _reopen(runs["detection"]).attrs["checkpoint"] == "last"

    ref = evaluate_run(runs["reference"])
    assert list(ref.layer.values) == ["uncompressed"] and ref.attrs["codec_id"] == "none"
    assert "bpp_actual" not in ref and np.isfinite(ref.rmse).all()
    # the depth base's disparity decoded from bytes is measured the same way
    base = evaluate_run(runs["depth"], write=False)
    assert np.isfinite(base.rmse).all() and not (runs["depth"] / "eval.nc").exists()


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert "run directory not found" in capsys.readouterr().err
