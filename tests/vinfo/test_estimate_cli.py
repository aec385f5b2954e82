"""The command line: .npy inputs to vinfo.nc / vinfo.csv / config.yaml, errors, the default."""

from __future__ import annotations

import csv
import importlib.util

import numpy as np
import pytest
import xarray as xr

from infra.config import load_config
from vinfo.cli import main
from vinfo.config import VinfoConfig

SCHEMA = {
    "h_null": "bits/sample", "h_cond": "bits/sample", "vinfo": "bits/sample",
    "vinfo_low": "bits/sample", "vinfo_high": "bits/sample", "vinfo_guarded": "bits/sample",
    "vinfo_seed": "bits/sample", "vinfo_seed_std": "bits/sample", "collapsed": "1",
    "negative": "1", "n_parameters": "parameters", "train_steps": "steps",
    "h_marginal": "bits/sample", "pvi": "bits/sample", "curve_h_cond": "bits/sample",
    "curve_h_null": "bits/sample", "curve_vinfo": "bits/sample", "mdl_bits": "bits",
    "mdl_bits_per_unit": "bits/sample", "mdl_uniform_bits": "bits",
}
ATTRS = ("target_kind", "unit", "n_samples", "n_fit", "n_val", "n_eval", "seed", "confidence",
         "n_bootstrap", "representation_shape", "target_shape", "vinfo_version", "created")


def test_cli_writes_netcdf_csv_and_config(tmp_path, capsys):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(80, 3)).astype(np.float32)
    y = (z[:, 0] + 0.5 * rng.normal(size=80)).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "out"
    code = main(["--representations", str(tmp_path / "z.npy"), "--targets",
                 str(tmp_path / "y.npy"), "--target-kind", "gaussian", "--families",
                 "linear,mlp-8", "--seeds", "0,1", "--bootstrap", "50", "--max-steps", "20",
                 "--out", str(out), "curve_points=3", "lr=0.01"])
    assert code == 0
    with xr.open_dataset(out / "vinfo.nc", engine="h5netcdf") as ds:
        ds = ds.load()
    assert list(ds["family"].values) == ["linear", "mlp-8"] and list(ds["seed"].values) == [0, 1]
    for name, units in SCHEMA.items():
        assert ds[name].attrs["units"] == units, name
    for name in ATTRS:
        assert name in ds.attrs, name
    assert ds["collapsed"].dtype == bool and ds.attrs["target_kind"] == "gaussian"
    assert ds.sizes["sample"] == ds.attrs["n_eval"] == 16 and ds.sizes["train_size"] == 3
    assert float(ds["vinfo"].sel(family="linear")) > 0.5
    rows = list(csv.reader((out / "vinfo.csv").open()))
    assert rows[0][0] == "family" and "fit_method" in rows[0] and "vinfo [bits/sample]" in rows[0]
    assert [r[0] for r in rows[1:]] == ["linear", "mlp-8"]
    cfg = load_config(VinfoConfig, out / "config.yaml")
    assert cfg.max_steps == 20 and cfg.seeds == [0, 1] and cfg.lr == 0.01
    if importlib.util.find_spec("vinfo.report") is not None:
        assert (out / "report.html").is_file()
    assert "I_V in bits/sample" in capsys.readouterr().out


def test_cli_bad_input_exits_2_naming_the_file(tmp_path, capsys):
    np.save(tmp_path / "z.npy", np.zeros((20, 2), np.float32))
    y = np.arange(20, dtype=np.float32)
    y[3] = np.nan
    np.save(tmp_path / "y.npy", y)
    code = main(["--representations", str(tmp_path / "z.npy"), "--targets",
                 str(tmp_path / "y.npy"), "--target-kind", "gaussian", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "y.npy" in err and "NaN" in err
    assert main(["--targets", str(tmp_path / "y.npy"), "--out", str(tmp_path)]) == 2
    assert "both --representations and --targets" in capsys.readouterr().err
    assert main(["--out", str(tmp_path), "no_such_key=1"]) == 2
    assert "unknown config key 'no_such_key'" in capsys.readouterr().err
    assert not (tmp_path / "vinfo.nc").exists()


def test_no_inputs_runs_the_embedded_default(tmp_path):
    """The no-argument path (here shrunk by overrides): synthetic scenes with a planted code
    of known information -> a dense estimate with its rate, cap and MDE."""
    out = tmp_path / "default"
    code = main(["--out", str(out), "default_data.train=6", "default_data.val=6",
                 "families=[ar-linear]", "max_steps=4", "null_steps=4", "bootstrap=20"])
    assert code == 0
    with xr.open_dataset(out / "vinfo.nc", engine="h5netcdf") as ds:
        assert ds.attrs["source"].startswith("embedded default")
        assert ds.attrs["unit"] == "pixel" and ds.attrs["target_kind"] == "discretized"
        assert ds.attrs["representation_shape"].tolist() == [12, 3, 4, 8]
        assert ds.attrs["target_shape"].tolist() == [12, 3, 32, 64]
        assert ds.attrs["n_fit"] == 6  # the train scenes fit (the probing protocol)
        assert float(ds["rate_per_unit"]) == pytest.approx(3 / 64)  # the planted code's bound
        assert "vinfo_mde" in ds and "stock_jpegxl_bpp" in ds
        assert ds["pvi_map"].shape[1:] == (2, 32, 64)
    assert (out / "synthetic-data" / "scenes-6+6-32x64-seed0" / "dataset.json").is_file()
