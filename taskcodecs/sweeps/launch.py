"""Run sweep points (or any command lines) as the jobs of a SLURM job array, with submitit.

    python -m taskcodecs.sweep ... --launcher submitit --partition gpu --gpus-per-node 4 \\
        --timeout-min 1440 --array-parallelism 8 [slurm_account=proj slurm_constraint=h100]
    python -m taskcodecs.sweep --gather OUT          # (re)build OUT/sweep.nc from finished points

The engine is `submitit <https://github.com/facebookincubator/submitit>`_: ``--cluster auto``
(default) is SLURM where ``sbatch`` exists and local processes elsewhere; ``local`` runs every
job as a process on this machine (submitit's LocalExecutor: same signals, timeouts and
requeueing as on SLURM), ``debug`` in this process one after another. Every ``slurm_*=VALUE``
item on the command line is handed to submitit unchanged (``slurm_account``,
``slurm_constraint``, ``slurm_qos``, ``slurm_additional_parameters``, ...; YAML values).

A job = one point, trained and then evaluated (:func:`taskcodecs.sweeps.sweep.run_point`):

- **Idempotent**: a point whose ``eval.nc`` exists is not submitted, and a job that finds it
  returns at once; a point whose job is still queued or running (``OUT/jobs/NAME.json``:
  job id, cluster) is waited for, not submitted twice.
- **Resumable**: SLURM signals the job (USR2, 90 s before its time limit, or on preemption);
  submitit's checkpoint hook requeues the same job, which resumes from the run's
  ``checkpoints/last`` -- the exact resume of :mod:`taskcodecs.training.trainer` (model, Adam, gradient
  scaler, step, RNG states, data order), so at most ``val_every`` steps are redone. A job
  that died without a signal (node failure, ``scancel``) is resubmitted by re-running the
  same sweep command, and resumes the same way.
- **GPUs**: ``--gpus-per-node 1`` (or none) trains in the job's process; more GPUs, or
  ``--nodes N``, run ``torchrun`` inside the job (one task per node, ``--nproc_per_node`` =
  GPUs per node, c10d rendezvous on the job's first node), then node 0 evaluates.
- **Order**: ``standalone-refit`` points start from their ``scalable`` point and each link
  of a ``--warm-start`` chain from the previous one, so the points are submitted in stages
  by dependency depth (an array per stage) and the launcher waits for one stage before the
  next; when all are done it gathers ``OUT/sweep.nc``. With ``--no-wait`` it submits the
  first stage and returns; re-run the command (or ``--gather``) later.

Where things land: runs in ``OUT/runs/NAME`` as with the local launcher; submitit's job
files and each job's stdout/stderr in ``OUT/submitit/`` (``JOBID_0_log.out/.err``); one
record per point in ``OUT/jobs/NAME.json`` (submission) and ``NAME.started.json`` (the
latest start: host, pid, job id). submitit pickles the job it submits (a small object of
strings and numbers, :class:`PointJob`) into its folder and unpickles it in the job: keep
that folder private to you, as any SLURM script. The launcher itself never unpickles
anything: a failed job is reported with the tail of its stderr. Submitting an array and
waiting for it (for the vinfo ladder too): :mod:`taskcodecs.sweeps.job_array`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

try:  # the [cluster] extra: only --launcher submitit needs it
    import submitit
    _Checkpointable: type = submitit.helpers.Checkpointable
except ImportError:  # pragma: no cover - exercised only without the extra
    submitit = None
    _Checkpointable = object

from infra import cli
from infra.config import ConfigError, parse_overrides
from infra.io import write_json
from taskcodecs.sweeps.job_array import Task, run_tasks  # vinfo.ladder: launch.Task, .run_tasks

CLUSTER_EXTRA = "pip install -e '.[cluster]'"


def require_submitit() -> None:
    """A :class:`ConfigError` saying how to install submitit when it is missing."""
    if submitit is None:
        raise ConfigError(f"--launcher submitit needs the submitit package (the cluster "
                          f"extra): {CLUSTER_EXTRA}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The launcher options shared by the sweep and the vinfo ladder CLIs."""
    g = parser.add_argument_group("launcher (taskcodecs.sweeps.launch)")
    g.add_argument("--launcher", choices=["local", "submitit"], default="local",
                   help="local: one after another in this process (default); submitit: a job "
                        "array on SLURM (or local processes, --cluster)")
    g.add_argument("--cluster", choices=["auto", "slurm", "local", "debug"], default="auto",
                   help="submitit executor: auto = slurm if available, else local processes")
    g.add_argument("--partition", help="SLURM partition")
    g.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per node and job")
    g.add_argument("--nodes", type=int, default=1, help="nodes per job (> 1: torchrun rendezvous)")
    g.add_argument("--cpus-per-task", type=int, default=None, help="CPUs per task (one per node)")
    g.add_argument("--mem-gb", type=float, default=None, help="memory per node, GB")
    g.add_argument("--timeout-min", type=int, default=60 * 24, help="time limit per job, minutes")
    g.add_argument("--array-parallelism", type=int, default=None,
                   help="at most this many jobs of the array at once")
    g.add_argument("--no-wait", action="store_true", help="submit and return (gather later)")
    g.add_argument("--poll-s", type=float, default=30.0, help="seconds between job status checks")


def split_cluster_items(items: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """``key=value`` items -> (the others, {slurm_*: value}) for submitit."""
    rest, slurm = [], {}
    for item in items:
        if item.startswith("slurm_"):
            slurm.update(parse_overrides([item]))
        else:
            rest.append(item)
    return rest, slurm


def make_executor(args: argparse.Namespace, folder: Path, name: str, slurm: dict[str, Any]):
    """A submitit AutoExecutor for ``args`` (see :func:`add_arguments`), jobs in ``folder``."""
    require_submitit()
    if args.nodes < 1 or args.gpus_per_node < 0:
        raise ConfigError(f"--nodes must be >= 1 and --gpus-per-node >= 0, got {args.nodes}, "
                          f"{args.gpus_per_node}")
    slurm = dict(slurm)
    init = {k: slurm.pop(k) for k in ("slurm_max_num_timeout",) if k in slurm}
    cluster = None if args.cluster == "auto" else args.cluster
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster, **init)
    except RuntimeError as err:  # auto found nothing usable
        raise ConfigError(f"--cluster {args.cluster}: {err}") from err
    if executor.cluster == "local" and args.nodes > 1:
        raise ConfigError("--nodes > 1 needs SLURM; the local cluster has one node")
    try:
        executor.update_parameters(**job_parameters(args, name, slurm))
    except (NameError, AssertionError, ValueError) as err:
        raise ConfigError(f"submitit refused the job parameters: {err}") from err
    return executor


def job_parameters(args: argparse.Namespace, name: str, slurm: dict[str, Any]) -> dict[str, Any]:
    """submitit's parameters for ``args``: one task per node (torchrun starts the GPU
    processes), the generic ones and every ``slurm_*`` item; None values left out."""
    params = {"name": name, "timeout_min": args.timeout_min, "nodes": args.nodes,
              "tasks_per_node": 1, "gpus_per_node": args.gpus_per_node,
              "cpus_per_task": args.cpus_per_task, "mem_gb": args.mem_gb,
              "slurm_partition": args.partition, "slurm_array_parallelism": args.array_parallelism,
              **{k: v for k, v in slurm.items() if k != "slurm_max_num_timeout"}}
    return {k: v for k, v in params.items() if v is not None}


def procs_per_job(args: argparse.Namespace) -> tuple[int, int]:
    """(processes per node, nodes) of every training job: torchrun when either is > 1."""
    return max(args.gpus_per_node, 1), args.nodes


# ------------------------------------------------------------------------------ jobs


def _record_start(records: Path, key: str) -> None:
    """``records/KEY.started.json``: where and as which job this attempt runs; INFO logging
    to the job's stderr (train.log gets its lines too), as the CLIs set it up."""
    cli.setup_logging()
    job_id = None
    try:
        job_id = submitit.JobEnvironment().job_id
    except RuntimeError:  # not inside a submitit job
        pass
    write_json(records / f"{key}.started.json", {"job_id": job_id, "host": socket.gethostname(),
                                                  "pid": os.getpid(), "started": time.time()})


class PointJob(_Checkpointable):
    """One sweep point as a submitit job: ``OUT/sweep.json`` + the point's index.

    Called again after a requeue (the default ``checkpoint``: the same job), it resumes from
    the run's last checkpoint, or returns at once if ``eval.nc`` exists.
    """

    def __init__(self, sweep_json: str, index: int, nproc: int = 1, nnodes: int = 1) -> None:
        self.sweep_json, self.index, self.nproc, self.nnodes = sweep_json, index, nproc, nnodes

    def __call__(self) -> str:
        from taskcodecs.sweeps.sweep import load_plan, run_point, train_argv

        plan = load_plan(Path(self.sweep_json))
        point = plan.points[self.index]
        result = Path(point.run_dir) / "eval.nc"
        _record_start(Path(self.sweep_json).parent / "jobs", Path(point.run_dir).name)
        if result.is_file():
            return str(result)
        if self.nproc * self.nnodes == 1:
            return str(run_point(point, plan.overrides, plan.split, plan.eval_limit))
        env = submitit.JobEnvironment()
        command = torchrun_command(self.nproc, self.nnodes, env.node, env.hostnames[0],
                                   env.job_id, train_argv(point, plan.overrides))
        subprocess.run(command, check=True)
        if env.global_rank == 0:  # one node evaluates; run_point finds the trained run
            return str(run_point(point, plan.overrides, plan.split, plan.eval_limit))
        return ""


class MainJob(_Checkpointable):
    """``python -m MODULE ARGV...`` as a submitit job, run as ``MODULE.main(ARGV)`` in the
    job's process; skipped when ``marker`` exists, run again from the start on requeue."""

    def __init__(self, module: str, argv: Sequence[str], marker: str, records: str,
                 key: str) -> None:
        self.module, self.argv = module, list(argv)
        self.marker, self.records, self.key = marker, records, key

    def __call__(self) -> str:
        _record_start(Path(self.records), self.key)
        if not Path(self.marker).exists():
            code = importlib.import_module(self.module).main(self.argv)
            if code != 0:
                raise RuntimeError(f"python -m {self.module} {' '.join(self.argv)} exited {code}")
        return self.marker


def torchrun_command(nproc: int, nnodes: int, node_rank: int, master: str, job_id: str,
                     argv: Sequence[str]) -> list[str]:
    """``python -m torch.distributed.run ...`` for ``argv`` = ``[-m, module, args...]``."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    if nnodes == 1:
        command.append("--standalone")
    else:
        command += [f"--nnodes={nnodes}", f"--node_rank={node_rank}", "--rdzv_backend=c10d",
                    f"--rdzv_endpoint={master}:29500", f"--rdzv_id={job_id}"]
    return command + list(argv)


# ------------------------------------------------------------------------------ stages


def _stages(points: list) -> list[list]:
    """Points by dependency depth: a point whose ``init_from`` is another point's run runs
    one stage after it (refits after their scalable point, each warm-start link after the
    previous one)."""
    by_run = {p.run_dir: p for p in points}
    depth: dict[str, int] = {}

    def level(p) -> int:
        if p.run_dir not in depth:
            parent = by_run.get(p.init_from) if p.init_from else None
            depth[p.run_dir] = 0 if parent is None else level(parent) + 1
        return depth[p.run_dir]

    stages: list[list] = [[] for _ in range(max(map(level, points), default=-1) + 1)]
    for p in points:
        stages[level(p)].append(p)
    return stages


def launch_sweep(points: list, overrides: dict[str, Any], out: Path,
                 args: argparse.Namespace, slurm: dict[str, Any]) -> list[str]:
    """Run a sweep's points as submitit job arrays, stage by stage (module docstring);
    returns the failure messages. ``OUT/sweep.json`` must already hold the plan."""
    from taskcodecs.experiments.table import load_experiment
    from taskcodecs.runs.run_data import ensure_data, synthetic_dir
    from taskcodecs.sweeps.sweep import _train_overrides

    executor = make_executor(args, out / "submitit", f"sweep-{out.resolve().name}", slurm)
    seen = set()
    for p in points:  # synthetic scenes generated once, here, not by racing jobs
        # (a point that inherits its rate weight reads it when it runs; 1.0 stands in here)
        cfg = load_experiment(p.experiment, _train_overrides(p, overrides, refit_weight=1.0))
        if cfg.synthetic is not None and synthetic_dir(cfg) not in seen:
            seen.add(synthetic_dir(cfg))
            ensure_data(cfg)
    nproc, nnodes = procs_per_job(args)
    plan_file = str((out / "sweep.json").resolve())
    index = {p.run_dir: i for i, p in enumerate(points)}
    stages = _stages(points)
    for number, stage in enumerate(s for s in stages if s):
        tasks = [Task(Path(p.run_dir).name, PointJob(plan_file, index[p.run_dir], nproc, nnodes),
                      Path(p.run_dir) / "eval.nc") for p in stage]
        print(f"stage {number + 1}: {len(tasks)} point(s)")
        failures = run_tasks(tasks, executor, out / "jobs", not args.no_wait, args.poll_s)
        if failures or (args.no_wait and len([s for s in stages if s]) > number + 1):
            if args.no_wait and not failures:
                print("later points start from these ones' weights (standalone refits, "
                      "warm-start chains): run the same command again when these jobs are "
                      "done")
            return failures
    return []
