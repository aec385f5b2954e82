"""Evaluation through real bitstreams into eval.nc (xarray, h5netcdf)."""

import json

import numpy as np
import pytest
import xarray as xr

from taskcodecs.evaluate import main
from taskcodecs.evaluation.evaluate import evaluate_run
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
                     "bpp_payload": "bits/pixel", "bpp_container": "bits/pixel",
                     "bpp_coded_estimate": "bits/pixel",
                     "rmse": "pixels", "miou": "1", "height": "pixels", "width": "pixels",
                     "confusion": "pixels"}
    # the per-image confusion counts add up to the labelled pixels of each image
    counts = ds.confusion.sel(layer="enhancement").sum(["true_class", "predicted_class"])
    assert np.all((counts > 0) & (counts <= 64 * 128))
    assert np.isnan(ds.confusion.sel(layer="base")).all() or (ds.confusion.sel(layer="base") == 0).all()
    actual, estimated = ds.bpp_actual.values, ds.bpp_estimated.values
    assert np.all(actual >= 0.97 * estimated) and np.all(estimated > 0)
    assert np.all(actual[:, 1] > actual[:, 0]), "the enhancement adds bytes"
    # one rate, said: actual = payload + container header, the header computed here from the
    # format (bitstream module docstring): 4 magic + 1 version + 4 fingerprint + height 64
    # (1 varint byte) + width 128 (2) + padding 0, 0 (1 + 1) + 1 layer count + per layer
    # 1 code + 4 CRC + the payload length's varint
    payload, container = ds.bpp_payload.values, ds.bpp_container.values
    np.testing.assert_allclose(payload + container, actual, rtol=0, atol=1e-12)
    codec = load_codec(run / "checkpoints" / "best")
    from taskcodecs.coding.bitstream import unpack
    from taskcodecs.runs.run_data import build_dataset, existing_data

    cfg, _ = read_run(run)
    image = build_dataset(cfg, existing_data(cfg), "val", train=False,
                          targets=["labels"])[0]["image"]
    stream = codec.compress(image)
    sizes = unpack(stream, layers=[]).layer_sizes
    varint = sum(1 if n < 128 else 2 if n < 2 ** 14 else 3 for n in sizes.values())
    header = 4 + 1 + 4 + 1 + 2 + 1 + 1 + 1 + 2 * (1 + 4) + varint
    assert len(stream) - sum(sizes.values()) == header
    assert container[0, 1] == pytest.approx(header * 8 / (64 * 128))
    # the decode-time estimate: what the coder codes; the payload adds bounded overheads
    # (per layer a flag byte, a 16-bit end check, the rANS flush: -32..128 bits + 3 %)
    coded = ds.bpp_coded_estimate.values * 64 * 128
    overhead = payload * 64 * 128 - coded
    assert np.all(overhead[:, 0] >= -32) and np.all(overhead[:, 0] <= 128 + 0.03 * coded[:, 0])
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
