"""What a training run writes (rank 0 alone) and reads back when resuming.

Run directory (``out``)::

    config.yaml, config.json   the resolved TrainConfig (rewritten on resume, once the
                               checkpoint resumed from has loaded: taskcodecs.runs.resume)
    meta.json                  git commit, time, ...; one entry per resume under "resumed"
                               (the checkpoint and step resumed from, checkpoints skipped)
    pip-freeze.txt             the interpreter's packages
    train.log                  the log lines of logger "taskcodecs.training.run"
    log.csv                    one row per log/validation event (:class:`CsvLog`), each
                               holding loss-term means (:class:`TermMeans`)
    tensorboard/               event files: one scalar per loss term and phase, train/lr,
                               val/images/<i> (the first 3 validation images beside x̂ and
                               the predicted disparity, each round), hparams (the config vs
                               the best validation objective, at the end)
    checkpoints/{best,last}.{safetensors,json}   (written by :mod:`taskcodecs.training.trainer`)

Debug output: with ``TASKCODECS_DEBUG_WEIGHT_HASH=DIR`` in the environment every rank writes
``DIR/rank{r}.sha256``, the SHA-256 of its final weights (used by the DDP test to check the
ranks agree).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from infra.config import ConfigError
from infra.io import atomic_write_text
from taskcodecs.experiments.table import Experiment
from taskcodecs.experiments.train_config import TrainConfig
from taskcodecs.runs.checkpoint import unwrap_model
from taskcodecs.runs.links import checkpoint_path
from taskcodecs.runs.resume import ResumePoint, choose_resume, clean_run_dir
from taskcodecs.runs.rundir import RunDir, pip_freeze
from taskcodecs.training import distributed as D

log = logging.getLogger("taskcodecs.training.run")
DEBUG_HASH_ENV = "TASKCODECS_DEBUG_WEIGHT_HASH"


@functools.cache
def _pip_freeze() -> str:
    """``pip freeze`` of this interpreter, run once per process (a sweep writes it per run)."""
    return pip_freeze()


def prepare_run_dir(cfg: TrainConfig, exp: Experiment, is_main: bool) -> ResumePoint | None:
    """A fresh run: checks that ``cfg.run_dir`` holds no run yet and writes nothing (rank 0
    creates the directory later, once config and data are validated: :func:`create_run_dir`);
    returns None. A resume: every rank chooses the checkpoint to resume from
    (:func:`taskcodecs.runs.resume.choose_resume`) and nothing is written
    (:func:`taskcodecs.runs.resume.commit_resume` does, later). Rank 0 attaches train.log and
    removes what killed writes left, holding the run's lock."""
    run_dir = cfg.run_dir
    if cfg.resume:
        if is_main:
            attach_train_log(run_dir)
            clean_run_dir(run_dir)
        return choose_resume(run_dir)
    last = checkpoint_path(run_dir, "last")
    if last.with_suffix(".json").is_file():
        raise ConfigError(f"out={run_dir} already holds a run ({last}.json); continue "
                          f"it with resume={run_dir} or choose another out=")
    return None


def create_run_dir(cfg: TrainConfig, exp: Experiment, early: list[logging.LogRecord]) -> None:
    """Rank 0 of a fresh run, once the config, the data and the model are validated: create
    ``cfg.run_dir`` (config, meta.json, pip-freeze.txt), attach train.log and write into it
    the log lines of the run so far (``early``, held by :class:`HeldLines`)."""
    run_dir = cfg.run_dir
    RunDir.create(run_dir, cfg, kind=f"{exp.role}:{exp.name}", freeze=False)
    atomic_write_text(run_dir / "pip-freeze.txt", _pip_freeze())
    handler = attach_train_log(run_dir)
    for record in early:
        handler.handle(record)
    clean_run_dir(run_dir)


class HeldLines(logging.Handler):
    """Holds the log records of a fresh run until its directory (and train.log) exists."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def attach_train_log(run_dir: Path) -> logging.Handler:
    """Send the "taskcodecs.training.run" logger's lines to ``run_dir/train.log`` too (appending)."""
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    return handler


def open_logs(run_dir: Path, resume_step: int | None) -> tuple[CsvLog, SummaryWriter]:
    """Rank 0's metric logs: log.csv and TensorBoard, both cut back to ``resume_step`` when
    resuming (train.log: :func:`attach_train_log`)."""
    return (CsvLog(run_dir / "log.csv", resume_step),
            SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step))


def close_logs(tb: SummaryWriter | None) -> None:
    """Close TensorBoard (if opened) and detach train.log from the logger."""
    if tb is not None:
        tb.close()
    for handler in [h for h in log.handlers if isinstance(h, logging.FileHandler)]:
        log.removeHandler(handler)
        handler.close()


class CsvLog:
    """``log.csv``: one row per event (train window or validation), header fixed on first write.

    Columns: step (optimizer steps done), epoch (of the last batch trained on), phase
    (train: the mean over the last ``log_every`` steps and all ranks; val: the validation
    objective and its terms), lr, elapsed_s (training wall time, summed over resumes), then
    the model's loss terms, sorted. On resume the rows after the resumed step are dropped.
    """

    FIXED = ("step", "epoch", "phase", "lr", "elapsed_s")

    def __init__(self, path: Path, resume_step: int | None = None) -> None:
        self.path = path
        self.header: list[str] | None = None
        if resume_step is not None and path.is_file():
            with path.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
            if rows:
                self.header = list(rows[0].keys())
                text = io.StringIO()
                writer = csv.DictWriter(text, self.header, lineterminator="\n")
                writer.writeheader()
                writer.writerows(row for row in rows if int(row["step"]) <= resume_step)
                atomic_write_text(path, text.getvalue())

    def write(self, row: Mapping[str, Any]) -> None:
        if self.header is None:
            self.header = list(self.FIXED) + sorted(k for k in row if k not in self.FIXED)
            self.path.write_text(",".join(self.header) + "\n")
        values = {k: f"{v:.8g}" if isinstance(v, float) else v for k, v in row.items()}
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, self.header, extrasaction="ignore",
                           lineterminator="\n").writerow(values)


class TermMeans:
    """Sums of loss terms weighted by batch size; ``means`` all-reduces them over ranks."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, terms: Mapping[str, Any], n: int) -> None:
        for key, value in terms.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                self.sums[key] = self.sums.get(key, 0.0) + float(value.detach()) * n
        self.count += n

    def means(self, info: D.DistInfo) -> dict[str, float]:
        keys = sorted(self.sums)
        totals = D.all_reduce_sum(
            torch.tensor([self.count] + [self.sums[k] for k in keys], dtype=torch.float64), info)
        count = max(float(totals[0]), 1.0)
        return {k: float(v) / count for k, v in zip(keys, totals[1:].tolist())}


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 over the unwrapped state dict (sorted keys, raw bytes): equal iff bit-identical."""
    digest = hashlib.sha256()
    for key, value in sorted(unwrap_model(model).state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def write_debug_hash(model: nn.Module, rank: int) -> None:
    """``$TASKCODECS_DEBUG_WEIGHT_HASH/rank{rank}.sha256`` if that variable is set."""
    folder = os.environ.get(DEBUG_HASH_ENV)
    if folder:  # debug output: each rank's final weights, to compare ranks
        atomic_write_text(Path(folder) / f"rank{rank}.sha256", weights_sha256(model) + "\n")
