"""Where a resumed run continues from: the newest checkpoint that verifies.

``resume=RUN_DIR`` reads ``checkpoints/last`` and ``checkpoints/best`` (both are complete
training states: weights, optimizer, RNG and early-stopping state; ``best`` is never newer
than ``last``). Each is verified whole (:func:`taskcodecs.runs.checkpoint.verify_checkpoint`:
metadata readable and matching its own checksum, weights present and matching its manifest;
a record without manifest or checksum does not verify); the newest that verifies is
resumed from, and every one skipped is named in a warning with the reason. Resuming from
an older checkpoint redoes the steps after it: the data order and augmentation are
functions of (seed, step), so the run still ends bit-identical to an uninterrupted one.

If no checkpoint verifies -- none was written yet (a run killed before or while writing
its first one) or all are damaged -- the run restarts from step 0 in its directory, from its
own config, with a warning (a directory that is not a run, without config.yaml, is refused
before this). If none verifies but one is merely *unverifiable* (a record without weights
manifest or checksum, as older versions wrote them), the resume is refused instead: starting
again would overwrite checkpoints that may be intact.

Nothing in the run directory is rewritten here: :func:`commit_resume` records the resume
(config.yaml, config.json, meta.json) once the trainer has loaded the checkpoint, and
repairs the pair: resumed from ``best``, it becomes ``last`` too (the newest state); resumed
from a ``last`` that is the run's best (a kill between writing last and best), it becomes
``best`` too -- so an interrupted run ends with the checkpoints an uninterrupted one has.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.config import config_to_dict, save_config
from infra.io import atomic_write_bytes, read_json, remove_stale_temps, write_json
from taskcodecs.runs.checkpoint import (
    CheckpointError,
    UnverifiedCheckpointError,
    verify_checkpoint,
    write_record,
)
from taskcodecs.runs.links import CHECKPOINTS, checkpoint_path
from taskcodecs.runs.rundir import git_commit

log = logging.getLogger("taskcodecs.training.run")


@dataclass
class ResumePoint:
    """The checkpoint a run resumes from (``which`` None: from step 0) and what was skipped."""

    run_dir: Path
    which: str | None = None
    metadata: dict[str, Any] | None = None
    skipped: list[str] = field(default_factory=list)
    verified: dict[str, int] = field(default_factory=dict)  # checkpoint -> its step

    @property
    def path(self) -> Path | None:
        return None if self.which is None else checkpoint_path(self.run_dir, self.which)

    @property
    def step(self) -> int:
        return 0 if self.metadata is None else int(self.metadata["trainer"]["step"])


def _check_training_state(meta: dict[str, Any], which: str) -> None:
    trainer = meta.get("trainer")
    if not isinstance(trainer, dict) or not isinstance(trainer.get("step"), int):
        raise CheckpointError(f"{which}: metadata holds no trainer state (not written by "
                              "taskcodecs.training.run)")


def choose_resume(run_dir: str | Path) -> ResumePoint:
    """The newest verified checkpoint of ``run_dir`` (module docstring); warns per skip."""
    run_dir = Path(run_dir)
    point = ResumePoint(run_dir)
    found: list[tuple[int, int, str, dict[str, Any]]] = []
    unverifiable: list[str] = []
    for rank, which in enumerate(("last", "best")):
        stem = checkpoint_path(run_dir, which)
        if not any(stem.with_suffix(s).exists() for s in (".json", ".safetensors")):
            continue
        try:
            meta = verify_checkpoint(stem)
            _check_training_state(meta, which)
        except UnverifiedCheckpointError as err:
            point.skipped.append(f"{which} ({err})")
            unverifiable.append(which)
            continue
        except CheckpointError as err:
            point.skipped.append(f"{which} ({err})")
            continue
        found.append((int(meta["trainer"]["step"]), -rank, which, meta))
        point.verified[which] = int(meta["trainer"]["step"])
    if found:
        _, _, point.which, point.metadata = max(found)
    for skipped in point.skipped:
        log.warning("resume: skipped checkpoint %s", skipped)
    if point.which is None and unverifiable:
        raise CheckpointError(
            f"resume={run_dir}: no checkpoint verifies, and {' and '.join(unverifiable)} cannot "
            "be verified (no weights manifest or record checksum: written by an older version, "
            "or edited); starting again from step 0 would overwrite them. Move them out of "
            f"{run_dir / CHECKPOINTS} to start the run again")
    if point.skipped or point.which is None:
        where = (f"{point.which} at step {point.step}" if point.which else
                 "step 0: no checkpoint verified (none written yet, or all damaged); the run "
                 "starts again from its config")
        log.warning("resume: continuing %s from %s", run_dir, where)
    return point


def clean_run_dir(run_dir: Path) -> None:
    """Remove temporary files a killed writer left (call it holding the run's lock)."""
    for folder in (run_dir, run_dir / CHECKPOINTS):
        for path in remove_stale_temps(folder) if folder.is_dir() else []:
            log.warning("removed %s, left by an interrupted write", path)


def _copy_checkpoint(point: ResumePoint, source: str, target: str) -> None:
    src, dst = checkpoint_path(point.run_dir, source), checkpoint_path(point.run_dir, target)
    meta = dict(point.metadata or {})
    meta["weights"] = {**meta["weights"], "file": dst.with_suffix(".safetensors").name}
    atomic_write_bytes(dst.with_suffix(".safetensors"), src.with_suffix(".safetensors").read_bytes())
    write_record(dst.with_suffix(".json"), meta)
    log.warning("resume: rewrote checkpoint %s from %s (step %d)", target, source, point.step)


def repair_checkpoints(point: ResumePoint) -> None:
    """Make last and best what an uninterrupted run has at the resumed step (docstring)."""
    if point.which is None or "weights" not in (point.metadata or {}):
        return
    if point.which == "best" and point.verified.get("last") != point.step:
        _copy_checkpoint(point, "best", "last")
    trainer = point.metadata["trainer"]
    if (point.which == "last" and trainer.get("best_step") == point.step
            and point.verified.get("best") != point.step):
        _copy_checkpoint(point, "last", "best")


def commit_resume(cfg: Any, point: ResumePoint) -> None:
    """Record a resume that is going ahead: the new config, and a ``resumed`` entry in
    meta.json (time, commit, the checkpoint and step resumed from, what was skipped); then
    :func:`repair_checkpoints`."""
    run_dir = point.run_dir
    save_config(cfg, run_dir / "config.yaml")
    write_json(run_dir / "config.json", config_to_dict(cfg))
    try:
        meta = read_json(run_dir / "meta.json")
    except (OSError, ValueError) as err:  # provenance lost before: say so, keep going
        meta = {"unreadable_before_resume": str(err)}
    meta.setdefault("resumed", []).append({
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "git_commit": git_commit(),
        "from": point.which or "step 0", "step": point.step, "skipped": point.skipped})
    write_json(run_dir / "meta.json", meta)
    repair_checkpoints(point)
