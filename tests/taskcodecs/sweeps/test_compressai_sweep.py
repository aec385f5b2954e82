"""A CompressAI zoo codec in a rate-targeted sweep: the controller steers its whole rate
(``bpp_base``, its only layer), warm start chains the points, evaluation goes through real
bitstreams (the standalone-independent reference of ``make study``)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import xarray as xr

from infra.io import read_json
from taskcodecs.data.synthetic import generate_dataset
from taskcodecs.sweeps.sweep import gather, plan, run_point

CONFIG = "tiny-compressai-reconstruction-mbt2018-mean"


def test_plan_of_a_rate_targeted_compressai_sweep(tmp_path):
    points = plan(CONFIG, [4.0, 1.0], [], [], {}, tmp_path, rate_targets=[0.4, 0.2],
                  warm_start=3)
    assert [p.rate_target for p in points] == [0.2, 0.4]  # in training order: lowest first
    low, high = points
    assert low.init_from is None and high.init_from == low.run_dir and high.steps == 3
    assert high.rate_weight == 4.0  # its own initial weight (one per target given)
    assert low.run_dir.endswith(f"{CONFIG}-target0.2")


@pytest.mark.slow
def test_a_rate_targeted_compressai_run_trains_on_its_rate_and_codes_real_bitstreams(tmp_path):
    root = tmp_path / "data"
    generate_dataset(root, train=4, val=4, height=64, width=128, seed=0)
    points = plan(CONFIG, [0.5, 2.0], [], [], {}, tmp_path / "sweep",
                  rate_targets=[0.2, 0.1], warm_start=2)
    overrides = {"data_root": str(root), "max_steps": 6, "val_every": 3, "num_workers": 0,
                 "log_every": 1, "seed": 0, "val_limit": 2, "batch_size": 2,
                 "warmup_steps": 1}  # the controller acts from the second step
    for point in points:
        run_point(point, overrides, "val", 2)
    first = Path(points[0].run_dir)  # target 0.1: trained from scratch, 6 steps
    with (first / "log.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["phase"] == "train"]
    assert len(rows) == 6
    # the controller's running rate is the running mean of bpp_base (the codec's whole rate)
    assert float(rows[0]["bpp_running"]) == pytest.approx(float(rows[0]["bpp_base"]), rel=1e-5)
    weights = [float(r["rate_weight"]) for r in rows]
    assert weights[0] == 2.0 and weights[-1] != weights[0]  # steered, not fixed
    meta = read_json(first / "meta.json")["rate_control"]
    assert meta["target_bpp"] == 0.1 and meta["updates"] == 6
    for point in points:
        with xr.open_dataset(Path(point.run_dir) / "eval.nc", engine="h5netcdf") as ds:
            assert ds.attrs["rate_target_bpp"] == point.rate_target
            assert list(ds.layer.values) == ["base"] and ds.sizes["image"] == 2
            actual, payload = ds.bpp_actual.values, ds.bpp_payload.values
            assert (payload > 0).all() and (actual > payload).all()  # header on top
            assert ds.psnr.notnull().all()
    warm = read_json(Path(points[1].run_dir) / "config.json")  # target 0.2: from the 0.1 run
    assert warm["init_from"] == points[0].run_dir and warm["max_steps"] == 2
    merged = gather(points, tmp_path / "sweep", CONFIG)
    assert merged.sizes["rate_target"] == 2 and (tmp_path / "sweep" / "sweep.nc").is_file()
