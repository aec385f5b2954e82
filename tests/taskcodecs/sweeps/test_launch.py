"""The submitit launcher: a real sweep on submitit's LocalExecutor, one job preempted mid-run
(SIGUSR2, as SLURM sends it), requeued by submitit and resumed from its last checkpoint."""

import json
import os
import re
import signal
import threading
import time
from argparse import Namespace
from pathlib import Path

import pytest
import xarray as xr

from infra.config import ConfigError
from taskcodecs.runs.checkpoint import read_metadata
from taskcodecs.runs.links import checkpoint_path
from taskcodecs.sweep import main
from taskcodecs.sweeps.launch import (
    job_parameters,
    make_executor,
    split_cluster_items,
    torchrun_command,
)

VICTIM = "tiny-depth-base-proposed-rate0.001-reward0.1"


def _args(**kw):
    base = {"cluster": "local", "partition": None, "gpus_per_node": 0, "nodes": 1,
            "cpus_per_task": None, "mem_gb": None, "timeout_min": 30, "array_parallelism": None}
    return Namespace(**{**base, **kw})


def test_job_parameters_and_torchrun_inside_a_job(tmp_path):
    items, slurm = split_cluster_items(["max_steps=3", "slurm_constraint=h100",
                                        "slurm_account=proj"])
    assert items == ["max_steps=3"] and slurm == {"slurm_constraint": "h100", "slurm_account": "proj"}
    params = job_parameters(_args(partition="gpu", gpus_per_node=4, nodes=2, array_parallelism=3),
                            "sweep-x", slurm)
    assert params == {"name": "sweep-x", "timeout_min": 30, "nodes": 2, "tasks_per_node": 1,
                      "gpus_per_node": 4, "slurm_partition": "gpu", "slurm_array_parallelism": 3,
                      "slurm_constraint": "h100", "slurm_account": "proj"}
    # submitit checks slurm_* names whatever the cluster; the local one has a single node
    assert make_executor(_args(), tmp_path, "x", slurm).cluster == "local"
    with pytest.raises(ConfigError, match="refused the job parameters"):
        make_executor(_args(), tmp_path, "x", {"slurm_no_such_thing": 1})
    with pytest.raises(ConfigError, match="needs SLURM"):
        make_executor(_args(nodes=2), tmp_path, "x", {})
    two_nodes = torchrun_command(8, 2, 1, "node-a", "77_3", ["-m", "taskcodecs.train", "k=v"])
    assert two_nodes[1:3] == ["-m", "torch.distributed.run"] and "--node_rank=1" in two_nodes
    assert "--rdzv_endpoint=node-a:29500" in two_nodes and "--nnodes=2" in two_nodes
    assert two_nodes[-3:] == ["-m", "taskcodecs.train", "k=v"]
    assert "--standalone" in torchrun_command(4, 1, 0, "h", "1", ["-m", "m"])


def _wait_for(predicate, what, timeout=240.0):
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_local_executor_sweep_with_a_preempted_job_equals_the_uninterrupted_sweep(
        tmp_path, capsys, monkeypatch):
    # the jobs are new processes: they must import this checkout's code
    root = str(Path(__file__).resolve().parents[3])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    # ... and compute with one thread, as this process does (tests/conftest.py): float sums
    # split over another number of threads round differently
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    common = [f"synthetic_cache={tmp_path / 'cache'}", "synthetic.train=4", "synthetic.val=2",
              "max_steps=8", "val_every=4", "log_every=1", "num_workers=0"]
    sweep = ["--config", "tiny-depth-base-proposed", "--rate-weights", "1e-3,1e-2",
             "--eval-limit", "1"]
    assert main([*sweep, "--out", str(tmp_path / "ref"), *common]) == 0  # --launcher local

    out = tmp_path / "jobs"
    preempted = []

    def preempt_the_first_job():  # beside the launcher, which waits for its jobs
        best = checkpoint_path(out / "runs" / VICTIM, "best").with_suffix(".json")
        # best is written after last: once it exists, the step-4 checkpoints are complete
        _wait_for(best.is_file, "the first checkpoints of the job")
        pid = json.loads((out / "jobs" / f"{VICTIM}.started.json").read_text())["pid"]
        os.kill(pid, signal.SIGUSR2)  # what SLURM sends before the time limit / on preemption
        preempted.append(pid)

    thread = threading.Thread(target=preempt_the_first_job, daemon=True)
    thread.start()
    assert main([*sweep, "--out", str(out), "--launcher", "submitit", "--cluster", "local",
                 "--poll-s", "0.2", *common]) == 0
    thread.join(timeout=1)
    assert preempted, "the job was preempted while the sweep ran"
    assert "submitted 2 job(s) to local" in capsys.readouterr().out
    logs = "".join(p.read_text() for p in (out / "submitit").glob("*_log.*"))
    assert "Caught signal SIGUSR2" in logs and "Requeued job" in logs, logs[-3000:]
    train_log = (out / "runs" / VICTIM / "train.log").read_text()
    resumed = re.findall(r"resumed \S+ at step (\d+)", train_log)
    assert resumed == ["4"], "resumed mid-run (step 4 of 8) from the last checkpoint"
    assert read_metadata(checkpoint_path(out / "runs" / VICTIM, "last"))["step"] == 8

    ref = xr.open_dataset(tmp_path / "ref" / "sweep.nc", engine="h5netcdf").load()
    got = xr.open_dataset(out / "sweep.nc", engine="h5netcdf").load()
    xr.testing.assert_identical(ref.drop_vars("run_dir"), got.drop_vars("run_dir"))
    assert ref.bpp_actual.notnull().all() and ref.psnr.notnull().all()

    # re-running is idempotent (nothing submitted); --gather rebuilds the same sweep.nc
    (out / "sweep.nc").unlink()
    assert main(["--gather", str(out)]) == 0
    again = xr.open_dataset(out / "sweep.nc", engine="h5netcdf").load()
    xr.testing.assert_identical(again, got)
    assert main([*sweep, "--out", str(out), "--launcher", "submitit", "--cluster", "local",
                 *common]) == 0
    assert len(list((out / "submitit").glob("*_submitted.pkl"))) == 2, "no job resubmitted"
