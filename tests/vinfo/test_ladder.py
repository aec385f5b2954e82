"""The ladder CLI: one vinfo.estimate per base x target, in process or as submitit jobs."""

import xarray as xr

from taskcodecs.data.synthetic import generate_dataset
from taskcodecs.training.run import resolve_config, train
from vinfo.ladder import main

PROBE = ["--families", "linear", "--seeds", "0", "--max-steps", "5", "--bootstrap", "20",
         "curves=false"]


def test_ladder_runs_each_pair_once_locally_then_as_a_submitit_job(tmp_path, capsys):
    base = train(resolve_config("tiny-depth-base-proposed", {
        "synthetic.train": 4, "synthetic.val": 2, "max_steps": 1, "val_every": 1,
        "num_workers": 0, "out": str(tmp_path / "base"), "synthetic_cache": str(tmp_path / "c")}))
    data = tmp_path / "scenes"
    generate_dataset(data, train=3, val=10, height=64, width=96, seed=3, workers=1)
    common = ["--bases", f"b={base}", "--dataset", str(data), "--out", str(tmp_path / "v"), *PROBE]

    assert main([*common, "--targets", "reconstruction"]) == 0  # --launcher local
    recon = tmp_path / "v" / "b" / "reconstruction" / "vinfo.nc"
    stamp = recon.stat().st_mtime_ns
    # the finished pair is skipped; the new one runs as a submitit job (debug: in this
    # process, one after another; the job calls vinfo.estimate.main in its process)
    assert main([*common, "--targets", "reconstruction,segmentation", "--launcher", "submitit",
                 "--cluster", "debug"]) == 0
    out = capsys.readouterr().out
    assert "1 of 2 already done" in out and "submitted 1 job(s) to debug: b-segmentation" in out
    assert recon.stat().st_mtime_ns == stamp, "a finished pair is not estimated again"
    with xr.open_dataset(tmp_path / "v" / "b" / "segmentation" / "vinfo.nc", engine="h5netcdf") as ds:
        assert ds.attrs["target_kind"] == "categorical" and list(ds.family.values) == ["linear"]
        assert str(base) in ds.attrs["source"]
    assert main([*common, "--targets", "depth,colour"]) == 2
    assert "--targets: colour" in capsys.readouterr().err
    assert main(["--bases", f"b={tmp_path / 'nope'}", "--targets", "depth", "--dataset",
                 str(data), "--out", str(tmp_path / "v")]) == 2
    assert "run directory not found" in capsys.readouterr().err
