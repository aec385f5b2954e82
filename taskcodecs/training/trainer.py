"""The training loop of one run on one process: :class:`Trainer` (CLI: :mod:`taskcodecs.train`).

The loop: Adam (``lr``, paper 1e-4) on the model's trainable parameters, gradient-norm
clipping (``clip``, 1.0), ``max_steps`` optimizer steps of ``batch_size`` images per process.

Selection rule (the one rule for every experiment). Every ``val_every`` steps, and once
more when training ends off that grid, the model is evaluated in eval mode on the first
``val_limit`` images of the validation split (no augmentation). The *validation objective*
is the run's own training loss -- ``loss`` of ``model.loss``: distortion + rate_weight x
bits per pixel (+ the base's reconstruction term) -- averaged over those images
(:mod:`taskcodecs.training.selection`). The checkpoint with the lowest objective is
``checkpoints/best``; ``checkpoints/last`` is written at every validation. Training stops
early after ``patience`` regular rounds in a row without a strictly lower objective. The
RNG state is set from (seed, "validation") before and restored after, so validating never
changes the training run.

Exact resume: the checkpoint holds model, optimizer, step, the early-stopping state and
every rank's RNG state (torch, CUDA, NumPy, Python; one int64 tensor per rank, see
:mod:`taskcodecs.training.distributed`); the data order is a function of (seed, step) and each
item's augmentation of (seed, epoch, index), so nothing else needs storing (written and
read back by :mod:`taskcodecs.training.trainer_state`).

Learning rate: ``lr`` with an optional linear warm-up and cosine decay
(:mod:`taskcodecs.training.lr_schedule`, a function of the step). Rate targeting
(``rate_target_bpp``): the rate weight is adapted after every step by
:class:`taskcodecs.training.rate_control.RateController`, whose state is part of the checkpoint; the
selection rule then prefers validation rounds whose rate is on target (see that module).

What the run writes is in :mod:`taskcodecs.training.outputs`; its metric logs (log.csv,
TensorBoard) are written through :mod:`taskcodecs.training.run_logs`.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from infra.config import ConfigError
from infra.io import check_writable
from infra.locks import exclusive_lock
from infra.seeding import seed_everything
from taskcodecs.experiments.table import get_experiment
from taskcodecs.experiments.train_config import TrainConfig
from taskcodecs.runs.checkpoint import unwrap_model
from taskcodecs.runs.links import check_links, checkpoint_path
from taskcodecs.runs.resume import ResumePoint, commit_resume
from taskcodecs.runs.run_data import (
    build_dataset,
    check_items,
    collate_for,
    ensure_data,
    move_to_device,
)
from taskcodecs.runs.run_model import build_model
from taskcodecs.training import distributed as D
from taskcodecs.training import trainer_state
from taskcodecs.training.lr_schedule import learning_rate
from taskcodecs.training.outputs import (
    HeldLines,
    TermMeans,
    close_logs,
    create_run_dir,
    log,
    open_logs,
    prepare_run_dir,
    write_debug_hash,
)
from taskcodecs.training.precision import Precision, compile_transforms
from taskcodecs.training.rate_control import RateController, rate_key
from taskcodecs.training.run_logs import TB_IMAGES, RunLogs
from taskcodecs.training.selection import Selection, objective, rate_adjusted

VALIDATION_STREAM = 1  # D.derived_seed(seed, VALIDATION_STREAM): the RNG of every validation
TRAIN_STREAM = 2  # D.derived_seed(seed, TRAIN_STREAM, rank): each rank's training RNG


class Trainer:
    """One run of ``cfg`` on this process (see the module docstring)."""

    def __init__(self, cfg: TrainConfig, info: D.DistInfo) -> None:
        self.cfg, self.info = cfg, info
        self.exp = get_experiment(cfg.experiment)
        self.run_dir = cfg.run_dir
        self.device = info.device
        self.step = 0
        self.selection = Selection()  # best round, early stopping: taskcodecs.training.selection
        self.rate: RateController | None = None
        self.started = time.time()
        self.logs: RunLogs | None = None  # rank 0: log.csv and TensorBoard
        self.precision = Precision(cfg.amp, self.device)  # amp, loss scaling: taskcodecs.training.precision

    # .................................................................. setup

    def _autocast(self):
        return self.precision.autocast()

    def _warn_cuda_options(self) -> None:
        if self.cfg.channels_last and self.device.type != "cuda":
            warnings.warn(f"channels_last is a CUDA option; ignored on {self.device}", stacklevel=2)
            log.warning("channels_last is a CUDA option; ignored on %s", self.device)

    def _data_root(self) -> Path:
        """The dataset folder; rank 0 generates synthetic scenes first if the config asks."""
        cfg, info = self.cfg, self.info
        root = ensure_data(cfg, is_main=True, log=log) if info.is_main else None
        D.barrier(info)
        return root or ensure_data(cfg, is_main=False)

    def _data(self, root: Path) -> None:
        cfg, info = self.cfg, self.info
        log.info("data: %s %s (train split %r, val split %r)", cfg.dataset, root,
                 cfg.train_split, cfg.val_split)
        self.train_set = build_dataset(cfg, root, cfg.train_split, train=True)
        self.val_set = build_dataset(cfg, root, cfg.val_split, train=False)
        for split, dataset in ((cfg.train_split, self.train_set), (cfg.val_split, self.val_set)):
            check_items(dataset, f"{cfg.dataset} split {split!r}")  # before the run dir exists
        n_val = min(len(self.val_set), cfg.val_limit or len(self.val_set))
        if n_val < info.world_size:
            raise ConfigError(f"val_limit/val split gives {n_val} validation images for "
                              f"{info.world_size} processes; need at least one per process")
        self.val_indices = list(range(n_val))
        self.collate = collate_for(cfg.dataset)

    def _model(self, resume: ResumePoint | None) -> None:
        cfg = self.cfg
        seed_everything(cfg.seed)  # identical initial weights on every rank
        self.model = build_model(cfg).to(self.device)
        if cfg.channels_last and self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        if hasattr(self.model, "trainable_parameters"):
            self.params = list(self.model.trainable_parameters())
        else:
            self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=cfg.lr) if self.params else None
        if cfg.rate_target_bpp is not None:
            if not self.params or self.exp.role == "reference":
                raise ConfigError(f"{self.exp.name} codes nothing it trains: rate_target_bpp "
                                  "has no rate weight to adapt")
            self.rate = RateController(cfg.rate_target_bpp, cfg.rate_weight, cfg.rate_tolerance,
                                       cfg.rate_gain, hold=cfg.warmup_steps)
        rng_rows = None
        if resume is not None and resume.which is not None:
            restored = trainer_state.restore(resume.path, self.model, self.optimizer, self.device,
                                             self.info.world_size, self.selection, self.rate,
                                             self.precision)
            self.step, rng_rows = restored.step, restored.rng_rows
            self.started -= restored.elapsed_s  # elapsed_s continues across resumes
            log.info("resumed %s at step %d from checkpoint %s (best objective %.6g at step %s)",
                     self.run_dir, self.step, resume.which, self.selection.best_value,
                     self.selection.best_step)
        self._set_rate_weight()
        if rng_rows is not None:
            D.set_rng_state(rng_rows[self.info.rank], self.device)
        else:
            seed_everything(D.derived_seed(cfg.seed, TRAIN_STREAM, self.info.rank))
        if cfg.compile:
            names = compile_transforms(self.model, cfg.compile_backend)
            log.info("compile=true: %d transforms compiled (%s backend): %s", len(names),
                     cfg.compile_backend, ", ".join(names))
        self.train_model: nn.Module = self.model
        if self.info.distributed and self.params:
            self.train_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=cfg.find_unused_parameters)

    # .................................................................. loop

    def _loader(self) -> DataLoader:
        cfg, info = self.cfg, self.info
        sampler = D.StepBatchSampler(len(self.train_set), cfg.batch_size, cfg.seed, self.step,
                                     info.rank, info.world_size)
        generator = torch.Generator().manual_seed(D.derived_seed(cfg.seed, TRAIN_STREAM, info.rank))
        return DataLoader(D.EpochIndexed(self.train_set), batch_sampler=sampler,
                          num_workers=cfg.num_workers, collate_fn=self.collate,
                          pin_memory=self.device.type == "cuda", generator=generator)

    def _lr(self) -> float:
        cfg = self.cfg
        return learning_rate(self.step, lr=cfg.lr, max_steps=cfg.max_steps,
                             schedule=cfg.lr_schedule, warmup_steps=cfg.warmup_steps,
                             min_ratio=cfg.lr_min_ratio)

    def _set_rate_weight(self) -> None:
        if self.rate is not None:
            unwrap_model(self.model).config.rate_weight = self.rate.weight

    def _control_rate(self, terms: Mapping[str, Any], n: int) -> None:
        """One dual-ascent step on the rate weight from this step's estimated rate (the
        batch mean, averaged over ranks)."""
        if self.rate is None:
            return
        bpp = D.all_reduce_sum(torch.tensor([float(terms[rate_key(terms)].detach()) * n, n],
                                            dtype=torch.float64), self.info)
        self.rate.update(float(bpp[0] / bpp[1]), self.optimizer.param_groups[0]["lr"] / self.cfg.lr)
        self._set_rate_weight()
        if self.info.is_main:
            self.logs.rate_control(self.rate, self.step)

    def _train_step(self, batch: Any) -> dict[str, Any]:
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr()
        with self._autocast():
            out = self.train_model(batch)
            terms = self.model.loss(batch, out)
        loss = terms["loss"]
        if not torch.isfinite(loss):
            shown = {k: float(v) for k, v in terms.items() if isinstance(v, torch.Tensor) and v.numel() == 1}
            raise FloatingPointError(f"step {self.step + 1}: the loss is not finite ({shown})")
        self.precision.step(loss, self.optimizer, self.params, self.cfg.clip)
        return terms

    def _log_row(self, phase: str, terms: Mapping[str, float]) -> None:
        if not self.info.is_main:
            return
        steps = D.steps_per_epoch(len(self.train_set), self.cfg.batch_size, self.info.world_size)
        epoch = max(self.step - 1, 0) // steps  # the epoch of the last batch trained on
        lr = self.optimizer.param_groups[0]["lr"] if self.optimizer else self.cfg.lr
        self.logs.row(self.step, epoch, phase, lr, round(time.time() - self.started, 3), terms,
                      self.rate)

    def _log_images(self) -> None:
        """TensorBoard (rank 0): the first :data:`TB_IMAGES` validation images."""
        batches = ((i, move_to_device(self.collate([self.val_set[i]]), self.device,
                                      self.cfg.channels_last))
                   for i in self.val_indices[:TB_IMAGES])
        self.logs.images(self.model, batches, self._autocast, self.step)

    def _train(self) -> None:
        cfg, info = self.cfg, self.info
        data = iter(self._loader())
        window = TermMeans()
        self.model.train()
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc=self.exp.name, dynamic_ncols=True,
                   disable=not (info.is_main and sys.stderr.isatty()))
        try:
            while self.step < cfg.max_steps:
                batch = move_to_device(next(data), self.device, cfg.channels_last)
                terms = self._train_step(batch)
                self.step += 1
                self._control_rate(terms, batch["image"].shape[0])
                window.add(terms, batch["image"].shape[0])
                bar.update(1)
                if self.step % cfg.log_every == 0:
                    means = window.means(info)
                    window = TermMeans()
                    self._log_row("train", means)
                    bar.set_postfix(loss=f"{means.get('loss', math.nan):.4g}")
                regular = self.step % cfg.val_every == 0
                if (regular or self.step == cfg.max_steps) and self._validate(regular):
                    best = self.selection
                    log.info("early stop at step %d: %d rounds without improvement (best %.6g at "
                             "step %s)", self.step, best.bad_rounds, best.best_value, best.best_step)
                    break
        finally:
            bar.close()

    # .................................................................. validation

    def _validate(self, regular: bool) -> bool:
        """One validation round: objective, best/last checkpoints; True means stop early."""
        D.broadcast_buffers(self.model, self.info)
        state = D.rng_state(self.device)
        seed_everything(D.derived_seed(self.cfg.seed, VALIDATION_STREAM))
        terms = objective(self.model, self.val_set, self.val_indices, self.cfg, self.info,
                          self.collate, self.precision)
        if self.info.is_main and self.logs is not None:
            self._log_images()  # inside the seeded section: the training RNG is unaffected
        D.set_rng_state(state, self.device)
        value = terms["loss"]
        if self.rate is not None:
            value = rate_adjusted(value, terms, self.rate, self.selection)
            self.rate.calibrate(terms[rate_key(terms)])
        improved = self.selection.record(value, self.step, terms, self.rate, regular)
        best = self.selection
        self._log_row("val", terms)
        rate = "" if self.rate is None else (
            f"; rate {terms[rate_key(terms)]:.4g} bpp (target {self.rate.target:g}, "
            f"{'on' if self.rate.on_target(terms[rate_key(terms)]) else 'off'} target), "
            f"rate_weight {self.rate.weight:.4g}")
        log.info("step %d: validation objective %.6g%s%s", self.step, value,
                 " (best)" if improved else f" (best {best.best_value:.6g} at step {best.best_step})",
                 rate)
        rng_rows = D.all_gather(D.rng_state(self.device), self.info)
        if self.info.is_main:
            self._save("last", rng_rows, terms)
            if improved:
                self._save("best", rng_rows, terms)
        return self.selection.should_stop(self.cfg.patience)

    def _save(self, which: str, rng_rows: torch.Tensor, terms: Mapping[str, float]) -> None:
        trainer_state.save(checkpoint_path(self.run_dir, which), self.model, self.optimizer,
                           rng_rows, terms, experiment=self.exp.name, step=self.step,
                           selection=self.selection, world_size=self.info.world_size,
                           elapsed_s=round(time.time() - self.started, 3),
                           precision=self.precision, rate=self.rate, cfg=self.cfg)

    # .................................................................. run

    def run(self) -> Path:
        with contextlib.ExitStack() as stack:
            check_links(self.cfg)  # before anything is written
            if self.info.is_main:  # rank 0 writes for all: one writer per run directory
                check_writable(self.run_dir)  # an unwritable out= fails now, not after data
                stack.enter_context(exclusive_lock(self.run_dir, f"run directory {self.run_dir}"))
            return self._run()

    def _run(self) -> Path:
        cfg = self.cfg
        fresh = not cfg.resume
        held = HeldLines()  # a fresh run's lines, for its train.log once the directory exists
        if fresh and self.info.is_main:
            log.addHandler(held)
        try:
            # nothing is written to the run directory before config, data and model are
            # validated: a run that fails on them leaves no directory behind
            resume = prepare_run_dir(cfg, self.exp, self.info.is_main)  # writes nothing
            root = self._data_root()
            self._warn_cuda_options()
            log.info("%s: %s; run dir %s; %d process(es) on %s", self.exp.name,
                     self.exp.description, self.run_dir, self.info.world_size, self.device)
            self._data(root)
            self._model(resume)
            if fresh and self.info.is_main:
                log.removeHandler(held)
                create_run_dir(cfg, self.exp, held.records)
            D.barrier(self.info)
            if self.info.is_main:  # the resume is going ahead: now record it
                if resume is not None:
                    commit_resume(cfg, resume)
                self.logs = RunLogs(*open_logs(self.run_dir, self.step if resume else None))
            if not self.params:
                log.info("%s has no trainable parameters: validating once, nothing to train",
                         self.exp.name)
                if resume is None or resume.which is None:
                    self._validate(regular=False)
            elif self.step >= cfg.max_steps:
                log.info("already at step %d >= max_steps=%d: nothing to do", self.step, cfg.max_steps)
            else:
                self._train()
                D.broadcast_buffers(self.model, self.info)
            log.info("done at step %d; best validation objective %.6g at step %s; checkpoints "
                     "in %s", self.step, self.selection.best_value, self.selection.best_step,
                     self.run_dir / "checkpoints")
            write_debug_hash(self.model, self.info.rank)
            if self.rate is not None and self.info.is_main:
                trainer_state.record_rate(self.run_dir, self.rate, self.selection.best_bpp,
                                          self.selection.won_below_band(self.rate))
            if self.info.is_main and self.logs is not None:
                self.logs.hparams(self.cfg, self.selection.best_value, self.selection.best_step,
                                  self.step)
        finally:
            log.removeHandler(held)
            close_logs(self.logs.tb if self.logs is not None else None)
        return self.run_dir
