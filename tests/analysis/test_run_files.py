"""Reading one run from its files (analysis.run_files): the units and schema checks that
name the file, every experiment of the table read as its family, and base links that
survive a moved runs directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis import RunsError, load_runs


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
