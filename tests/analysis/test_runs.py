"""Scanning run directories: the tidy table, base links, curves and clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from analysis import RunsError, curve, load_runs, runs_table


def test_table_has_one_row_per_run(sweep_runs: list, known: dict) -> None:
    runs = sweep_runs
    table = runs_table(runs)
    assert len(runs) == len(table) == known["n_runs"]
    assert set(table["method"]) == {"baseline", "proposed", "scalable", "standalone-refit",
                                    "uncompressed"}
    depth = table[(table.task == "depth") & (table.method == "baseline")].sort_values("bpp_total")
    assert depth["bpp_total"].tolist() == pytest.approx(known["base_bpp"])
    assert depth["rmse"].tolist() == pytest.approx(known["base_rmse"])  # mean over images
    assert set(depth["dataset"]) == {"cityscapes"}


def test_enhancement_rate_is_base_plus_enhancement_and_linked_to_its_base(
        sweep_runs: list, known: dict) -> None:
    runs = {r.name: r for r in sweep_runs}
    run = runs["recon/baseline/scalable-2"]
    assert run.bpp["base"] == pytest.approx(known["base_bpp"][1])
    assert run.bpp_total == pytest.approx(known["base_bpp"][1] + known["enh_bpp"][2])
    assert run.metrics["psnr"] == pytest.approx(known["enh_psnr"][2])  # enhancement layer
    assert run.base is runs["depth-baseline-1"] and run.base_variant == "baseline"
    proposed = runs["recon/proposed/scalable-0"]
    assert proposed.base_variant == "proposed (reward_weight=0.1)"
    reference = runs["ref/depth"]
    assert reference.role == "reference" and np.isnan(reference.bpp_total)


def test_curves(sweep_runs: list, known: dict) -> None:
    runs = sweep_runs
    base = curve(runs, task="depth", method="proposed",
                 base_variant="proposed (reward_weight=0.1)")
    assert base.rate.tolist() == pytest.approx([b * 0.9 for b in known["base_bpp"]])
    direct = curve(runs, task="reconstruction", method="direct", dataset="cityscapes",
                   base_variant="baseline")
    assert len(direct) == 4 and direct.metric == "psnr"
    assert curve(runs, task="segmentation", method="direct") is None


def test_deleting_a_run_removes_its_point(sweep: Path, tmp_path: Path) -> None:
    copy = tmp_path / "runs"
    for name in ("depth-baseline-0", "depth-proposed-0", "depth-proposed-1", "depth-proposed-3"):
        shutil.copytree(sweep / name, copy / name)
    assert len(load_runs(copy)) == 4
    shutil.rmtree(copy / "depth-proposed-3")
    runs = load_runs(copy)
    assert "depth-proposed-3" not in {r.name for r in runs}
    proposed = curve(runs, task="depth", method="proposed",
                     base_variant="proposed (reward_weight=0.1)")
    assert len(proposed) == 2


def test_moved_runs_directory_still_links_bases(make_run, tmp_path: Path) -> None:
    """The config names its base by an old path: matched by the trailing path parts."""
    root = tmp_path / "moved"
    make_run(root, "bases/depth-b", "tiny-depth-base-proposed", bpp={"base": 0.1},
             metrics={"rmse": 5.0}, reward_weight=0.01)
    make_run(root, "enh/scalable", "tiny-cityscapes-reconstruction-scalable",
             bpp={"base": 0.1, "enhancement": 0.3}, metrics={"psnr": {"enhancement": 30.0}},
             base="/somewhere/else/bases/depth-b")
    runs = {r.name: r for r in load_runs(root)}
    assert runs["enh/scalable"].base is runs["bases/depth-b"]
    assert runs["enh/scalable"].base_variant == "proposed (reward_weight=0.01)"


def test_missing_directory() -> None:
    with pytest.raises(RunsError, match="no/such/runs: runs directory not found"):
        load_runs("no/such/runs")


def test_variable_without_units_names_the_file(make_run, tmp_path: Path) -> None:
    make_run(tmp_path, "bad", "tiny-depth-base-baseline", bpp={"base": 0.1},
             metrics={"rmse": 5.0}, units=False)
    with pytest.raises(RunsError, match=r"bad/eval\.nc: variable '\w+' has no 'units' attr"):
        load_runs(tmp_path)


def test_corrupt_file_names_the_file(make_run, tmp_path: Path) -> None:
    run = make_run(tmp_path, "ok", "tiny-depth-base-baseline", bpp={"base": 0.1},
                   metrics={"rmse": 5.0})
    data = (run / "eval.nc").read_bytes()
    (run / "eval.nc").write_bytes(data[: len(data) // 3])  # truncated
    with pytest.raises(RunsError, match=r"ok/eval\.nc: cannot read as a netCDF"):
        load_runs(tmp_path)


@pytest.mark.parametrize(
    ("experiment", "bpp", "metrics", "message"),
    [
        ("tiny-depth-base-fancy", {"base": 0.1}, {"rmse": 5.0}, "not a known experiment"),
        ("tiny-depth-base-baseline", {"base": 0.1}, {"psnr": {"base": 20.0}},
         "needs a 'rmse' variable"),
        ("tiny-depth-base-baseline", None, {"rmse": 5.0}, "no 'bpp_actual'"),
    ],
)
def test_schema_errors(make_run, tmp_path: Path, experiment, bpp, metrics, message) -> None:
    make_run(tmp_path, "run", experiment, bpp=bpp, metrics=metrics)
    with pytest.raises(RunsError, match=message):
        load_runs(tmp_path)


def test_wrong_rate_units(make_run, tmp_path: Path) -> None:
    import xarray as xr

    run = make_run(tmp_path, "run", "tiny-depth-base-baseline", bpp={"base": 0.1},
                   metrics={"rmse": 5.0})
    ds = xr.load_dataset(run / "eval.nc", engine="h5netcdf")
    ds["bpp_actual"].attrs["units"] = "bits/latent"
    ds.to_netcdf(run / "eval.nc", engine="h5netcdf")
    with pytest.raises(RunsError, match="bpp_actual has units 'bits/latent'"):
        load_runs(tmp_path)


def test_every_experiment_of_the_table_reads_as_its_family(make_run, tmp_path: Path) -> None:
    """analysis takes its families from taskcodecs' experiment table: every experiment name
    reads back as that row's family, method and role, with the family's task and dataset."""
    from analysis.runs import TASK_METRIC
    from taskcodecs.experiments.table import EXPERIMENTS, FAMILIES

    for name, exp in EXPERIMENTS.items():
        task = FAMILIES[exp.family].task
        make_run(tmp_path, name, name, bpp=None if exp.role == "reference" else {"base": 0.1},
                 metrics={TASK_METRIC[task]: 0.5})
    runs = load_runs(tmp_path)
    assert sorted(r.experiment for r in runs) == sorted(EXPERIMENTS)
    for run in runs:
        exp, family = EXPERIMENTS[run.experiment], FAMILIES[EXPERIMENTS[run.experiment].family]
        assert (run.family, run.method, run.role) == (exp.family, exp.method, exp.role)
        assert (run.task, run.dataset) == (family.task, family.dataset)
