"""One job array: submit the unfinished tasks, reattach to the ones still queued or running, wait
for all, report the failures (:func:`run_tasks`).

    failures = run_tasks([Task(key, job, marker), ...], executor, OUT / "jobs", wait, poll_s)

A task is done when its marker file exists; it is then not submitted again. Each submission is
recorded in ``RECORDS/KEY.json`` (job id, cluster, submitit folder, host), so a rerun of the
same command waits for a job that is still queued or running instead of submitting it twice
(on SLURM: its state; on the local cluster: whether its controller process lives). A task
whose job ended without its marker is reported with the tail of the job's stderr. The
executor comes from :func:`taskcodecs.sweeps.launch.make_executor`; the sweep's points and
the vinfo ladder's estimates are the tasks (:mod:`taskcodecs.sweeps.launch`, :mod:`vinfo.ladder`).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:  # the [cluster] extra: only --launcher submitit needs it
    import submitit
except ImportError:  # pragma: no cover - exercised only without the extra
    submitit = None

from infra.io import write_json

ACTIVE_SLURM = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED",
                "RESIZING", "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT"}


@dataclass
class Task:
    """One unit to run: ``key`` (a file name), the job callable, the file that means done."""

    key: str
    job: Callable[[], Any]
    marker: Path


def _still_active(record: Path, cluster: str) -> Any | None:
    """The submitted job of ``record`` if it is still queued or running, else None."""
    if not record.is_file():
        return None
    info = json.loads(record.read_text())
    if info.get("cluster") != cluster:
        return None
    if cluster == "slurm":
        job = submitit.SlurmJob(folder=info["folder"], job_id=info["job_id"])
        return job if job.state.split()[0] in ACTIVE_SLURM else None
    if cluster == "local" and info.get("host") == socket.gethostname():
        try:
            os.kill(int(info["job_id"]), 0)  # the local job id is its controller's pid
        except (OSError, ValueError):
            return None
        return _LocalPid(int(info["job_id"]))
    return None


class _LocalPid:
    """A local job submitted by an earlier launcher: done when its process is gone."""

    def __init__(self, pid: int) -> None:
        self.pid, self.job_id = pid, str(pid)

    def done(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except OSError:
            return True
        return False


def run_tasks(tasks: list[Task], executor, records: Path, wait: bool, poll_s: float,
              log: Callable[[str], None] = print) -> list[str]:
    """Submit the unfinished ``tasks`` as one array (reattaching to live ones), wait for all
    (unless ``wait`` is False); returns the failure messages (empty: all markers exist)."""
    from tqdm import tqdm

    records.mkdir(parents=True, exist_ok=True)
    todo = [t for t in tasks if not t.marker.exists()]
    log(f"{len(tasks) - len(todo)} of {len(tasks)} already done")
    running: dict[str, Any] = {}
    fresh = []
    for t in todo:
        live = _still_active(records / f"{t.key}.json", executor.cluster)
        if live is not None:
            log(f"{t.key}: job {live.job_id} is still queued or running: waiting for it")
            running[t.key] = live
        else:
            fresh.append(t)
    if fresh:
        with executor.batch():
            jobs = [executor.submit(t.job) for t in fresh]
        for t, job in zip(fresh, jobs):
            running[t.key] = job
            write_json(records / f"{t.key}.json",
                       {"job_id": str(job.job_id), "cluster": executor.cluster,
                        "folder": str(executor.folder), "host": socket.gethostname(),
                        "submitted": time.time()})
        log(f"submitted {len(fresh)} job(s) to {executor.cluster}: "
            + ", ".join(f"{t.key}={j.job_id}" for t, j in zip(fresh, jobs)))
    if not wait:
        return []
    if executor.cluster == "debug":  # runs in this process, on demand
        for job in running.values():
            try:
                job.result()
            except Exception as err:  # noqa: BLE001 -- reported below with its point
                log(f"debug job failed: {err}")
    else:
        bar = tqdm(total=len(running), desc="jobs", disable=not sys.stderr.isatty())
        pending = dict(running)
        while pending:
            for key in [k for k, job in pending.items() if job.done()]:
                pending.pop(key)
                bar.update(1)
            if pending:
                time.sleep(poll_s)
        bar.close()
    failures = []
    for t in todo:
        if not t.marker.exists():
            job = running[t.key]
            err = getattr(job, "paths", None)
            tail = ""
            if err is not None and err.stderr.is_file():
                tail = "\n    ".join(err.stderr.read_text(errors="replace").splitlines()[-8:])
            failures.append(f"{t.key}: job {job.job_id} ended without {t.marker.name}"
                            + (f" (stderr {err.stderr}):\n    {tail}" if err is not None else ""))
    return failures
