"""The training loop of one run on one process: :class:`Trainer` (CLI: :mod:`taskcodecs.training.run`).

The loop: Adam (``lr``, paper 1e-4) on the model's trainable parameters, gradient-norm
clipping (``clip``, 1.0), ``max_steps`` optimizer steps of ``batch_size`` images per process.

Selection rule (the one rule for every experiment). Every ``val_every`` steps, and once
more when training ends off that grid, the model is evaluated in eval mode on the first
``val_limit`` images of the validation split (no augmentation). The *validation objective*
is the run's own training loss -- ``loss`` of ``model.loss``: distortion + rate_weight x
bits per pixel (+ the base's reconstruction term) -- averaged over those images (batch
means weighted by batch size, summed over ranks). The checkpoint with the lowest objective is
``checkpoints/best``; ``checkpoints/last`` is written at every validation. Training stops
early after ``patience`` regular rounds in a row without a strictly lower objective.
Torchvision detectors only return losses in train mode, so during validation they run in
train mode with every batch-norm layer in eval mode (no statistics update); the RNG
state is set from (seed, "validation") before and restored after, so validating never
changes the training run.

Exact resume: the checkpoint holds model, optimizer, step, the early-stopping state and
every rank's RNG state (torch, CUDA, NumPy, Python; one int64 tensor per rank, see
:mod:`taskcodecs.training.distributed`); the data order is a function of (seed, step) and each
item's augmentation of (seed, epoch, index), so nothing else needs storing.

Learning rate: ``lr`` with an optional linear warm-up and cosine decay
(:mod:`taskcodecs.training.lr_schedule`, a function of the step). Rate targeting
(``rate_target_bpp``): the rate weight is adapted after every step by
:class:`taskcodecs.training.rate_control.RateController`, whose state is part of the checkpoint; the
selection rule then prefers validation rounds whose rate is on target (see that module).

What the run writes, and the logs, are in :mod:`taskcodecs.training.outputs`.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from infra.config import ConfigError, config_to_dict
from infra.io import check_writable, exclusive_lock, read_json, write_json
from infra.seeding import seed_everything
from taskcodecs.experiments.table import get_experiment
from taskcodecs.experiments.train_config import TrainConfig
from taskcodecs.runs.checkpoint import load_checkpoint, unwrap_model
from taskcodecs.runs.links import check_links, checkpoint_path
from taskcodecs.runs.resume import ResumePoint, commit_resume
from taskcodecs.runs.run_data import (
    build_dataset,
    check_items,
    collate_for,
    ensure_data,
    move_to_device,
)
from taskcodecs.runs.run_model import build_model, save_run_checkpoint
from taskcodecs.training import distributed as D
from taskcodecs.training.lr_schedule import learning_rate
from taskcodecs.training.outputs import (
    CsvLog,
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

VALIDATION_STREAM = 1  # D.derived_seed(seed, VALIDATION_STREAM): the RNG of every validation
TRAIN_STREAM = 2  # D.derived_seed(seed, TRAIN_STREAM, rank): each rank's training RNG
SELECTION_RULE = ("lowest validation objective = the run's training loss averaged over the "
                  "first val_limit validation images in eval mode; early stop after `patience` "
                  "rounds without a strictly lower value")


@contextlib.contextmanager
def loss_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode in which ``model.loss`` still works: torchvision detectors (which return
    losses only in train mode) run in train mode with their batch norms in eval mode."""
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

    was_training = model.training
    model.eval()
    for module in model.modules():
        if isinstance(module, GeneralizedRCNN):
            module.train()
            for sub in module.modules():
                if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                    sub.eval()
    try:
        yield
    finally:
        model.train(was_training)


TB_IMAGES = 3  # validation images shown in TensorBoard each round (with x̂, disparity)


class Trainer:
    """One run of ``cfg`` on this process (see the module docstring)."""

    def __init__(self, cfg: TrainConfig, info: D.DistInfo) -> None:
        self.cfg, self.info = cfg, info
        self.exp = get_experiment(cfg.experiment)
        self.run_dir = cfg.run_dir
        self.device = info.device
        self.step = 0
        self.best_value = math.inf
        self.best_step: int | None = None
        self.bad_rounds = 0
        self.best_bpp = math.nan  # rate targeting: validation rate of the best round
        self.rate: RateController | None = None
        self.started = time.time()
        self.csv: CsvLog | None = None
        self.tb: SummaryWriter | None = None
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
        optimizers = {"adam": self.optimizer} if self.optimizer else {}
        rng_rows = None
        if resume is not None and resume.which is not None:
            ckpt = load_checkpoint(resume.path, self.model, optimizers, map_location=self.device)
            state = ckpt["metadata"]["trainer"]
            self.step, self.bad_rounds = state["step"], state["bad_rounds"]
            self.best_value = state["best_value"] if state["best_value"] is not None else math.inf
            self.best_step = state["best_step"]
            self.best_bpp = math.nan if state.get("best_bpp") is None else state["best_bpp"]
            if self.rate is not None and state.get("rate_control"):
                self.rate.load_state_dict(state["rate_control"])
            self.started -= state.get("elapsed_s", 0.0)  # elapsed_s continues across resumes
            self.precision.load_state_dict(state.get("grad_scaler"))
            rng_rows = ckpt["extra"].get("rng_state")
            if rng_rows is not None and rng_rows.shape[0] != self.info.world_size:
                log.warning("checkpoint holds the RNG state of %d processes, this run has %d: "
                            "reseeding (the data order is still exact)",
                            rng_rows.shape[0], self.info.world_size)
                rng_rows = None
            log.info("resumed %s at step %d from checkpoint %s (best objective %.6g at step %s)",
                     self.run_dir, self.step, resume.which, self.best_value, self.best_step)
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
            self.tb.add_scalar("rate_control/rate_weight", self.rate.weight, self.step)
            self.tb.add_scalar("rate_control/bpp_running", self.rate.running(), self.step)

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
        row = {"step": self.step, "epoch": epoch, "phase": phase, "lr": lr,
               "elapsed_s": round(time.time() - self.started, 3), **terms}
        if self.rate is not None:
            row.update(rate_weight=self.rate.weight, bpp_running=self.rate.running())
        self.csv.write(row)
        for key, value in terms.items():
            self.tb.add_scalar(f"{phase}/{key}", value, self.step)
        if phase == "train":
            self.tb.add_scalar("train/lr", lr, self.step)
        self.tb.flush()

    @torch.no_grad()
    def _log_images(self) -> None:
        """TensorBoard (rank 0): the first :data:`TB_IMAGES` validation images, each beside
        the model's reconstruction x̂ (clamped to [0, 1]) and, for depth, its predicted
        disparity (min-max normalized per image), as ``val/images/<index>``."""
        model, was_training = self.model, self.model.training
        model.eval()
        try:
            for i in self.val_indices[:TB_IMAGES]:
                batch = move_to_device(self.collate([self.val_set[i]]), self.device,
                                       self.cfg.channels_last)
                with self._autocast():
                    out = model(batch)
                panels = [batch["image"][0].float()]
                if isinstance(out.get("x_hat"), torch.Tensor):
                    panels.append(out["x_hat"][0].float().clamp(0, 1))
                if isinstance(out.get("disparity"), torch.Tensor):
                    d = out["disparity"][0].float()
                    d = (d - d.min()) / (d.max() - d.min()).clamp_min(1e-8)
                    panels.append(d.expand(3, -1, -1))
                if len(panels) > 1:
                    self.tb.add_image(f"val/images/{i}", torch.cat(panels, dim=-1).cpu(),
                                      self.step)
        finally:
            model.train(was_training)

    def _log_hparams(self) -> None:
        """TensorBoard's HParams tab (rank 0): the run's scalar config values (and
        ``model_overrides.*``) against the best validation objective and its step."""
        from torch.utils.tensorboard.summary import hparams

        flat = config_to_dict(self.cfg)
        values: dict[str, Any] = {}
        for key, value in [*flat.items(), *((f"model_overrides.{k}", v) for k, v in
                                            (flat.get("model_overrides") or {}).items())]:
            if isinstance(value, bool | int | float | str):
                values[key] = value
            elif value is None:
                values[key] = "none"
        metrics = {"hparam/best_objective": self.best_value,
                   "hparam/best_step": float(self.best_step if self.best_step is not None else -1)}
        metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
        writer = self.tb._get_file_writer()
        for summary in hparams(values, metrics):
            writer.add_summary(summary)
        for key, value in metrics.items():
            self.tb.add_scalar(key, value, self.step)
        self.tb.flush()

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
                    log.info("early stop at step %d: %d rounds without improvement (best %.6g at "
                             "step %s)", self.step, self.bad_rounds, self.best_value, self.best_step)
                    break
        finally:
            bar.close()

    # .................................................................. validation

    @torch.no_grad()
    def _objective(self) -> dict[str, float]:
        """The run's loss terms averaged over this rank's share of the validation images,
        then over all ranks (weights: images)."""
        from torch.utils.data import Subset

        mine = self.val_indices[self.info.rank :: self.info.world_size]
        loader = DataLoader(Subset(self.val_set, mine), batch_size=self.cfg.val_batch_size,
                            shuffle=False, num_workers=self.cfg.num_workers, collate_fn=self.collate)
        means = TermMeans()
        with loss_mode(self.model), self._autocast():
            for batch in loader:
                batch = move_to_device(batch, self.device, self.cfg.channels_last)
                means.add(self.model.loss(batch, self.model(batch)), batch["image"].shape[0])
        return means.means(self.info)

    def _validate(self, regular: bool) -> bool:
        """One validation round: objective, best/last checkpoints; True means stop early."""
        D.broadcast_buffers(self.model, self.info)
        state = D.rng_state(self.device)
        seed_everything(D.derived_seed(self.cfg.seed, VALIDATION_STREAM))
        terms = self._objective()
        if self.info.is_main and self.tb is not None:
            self._log_images()  # inside the seeded section: the training RNG is unaffected
        D.set_rng_state(state, self.device)
        value = terms["loss"]
        if self.rate is not None:
            value = self.rate.selection_value(value, terms[rate_key(terms)])
            self.rate.calibrate(terms[rate_key(terms)])
        improved = value < self.best_value
        if improved:
            self.best_value, self.best_step = value, self.step
            self.best_bpp = terms.get(rate_key(terms), math.nan) if self.rate else math.nan
        if regular:  # rate targeting: a round off target does not count against patience
            counts = self.rate is None or self.rate.on_target(terms[rate_key(terms)])
            self.bad_rounds = 0 if improved else self.bad_rounds + int(counts)
        self._log_row("val", terms)
        rate = "" if self.rate is None else (
            f"; rate {terms[rate_key(terms)]:.4g} bpp (target {self.rate.target:g}, "
            f"{'on' if self.rate.on_target(terms[rate_key(terms)]) else 'off'} target), "
            f"rate_weight {self.rate.weight:.4g}")
        log.info("step %d: validation objective %.6g%s%s", self.step, value,
                 " (best)" if improved else f" (best {self.best_value:.6g} at step {self.best_step})",
                 rate)
        rng_rows = D.all_gather(D.rng_state(self.device), self.info)
        if self.info.is_main:
            self._save("last", rng_rows, terms)
            if improved:
                self._save("best", rng_rows, terms)
        return self.cfg.patience is not None and self.bad_rounds >= self.cfg.patience

    def _save(self, which: str, rng_rows: torch.Tensor, terms: Mapping[str, float]) -> None:
        metadata = {
            "experiment": self.exp.name,
            "step": self.step,
            "validation": dict(terms),
            "selection_rule": SELECTION_RULE,
            "trainer": {"step": self.step, "bad_rounds": self.bad_rounds,
                        "best_value": None if math.isinf(self.best_value) else self.best_value,
                        "best_step": self.best_step, "world_size": self.info.world_size,
                        "elapsed_s": round(time.time() - self.started, 3),
                        "grad_scaler": self.precision.state_dict(),
                        "best_bpp": None if math.isnan(self.best_bpp) else self.best_bpp,
                        "rate_control": self.rate.state_dict() if self.rate else None},
            "config": config_to_dict(self.cfg),
        }
        if self.rate is not None:
            metadata["rate_control"] = self.rate.summary(self.best_bpp)
        save_run_checkpoint(checkpoint_path(self.run_dir, which), self.model, metadata,
                            optimizers={"adam": self.optimizer} if self.optimizer else None,
                            extra_tensors={"rng_state": rng_rows})

    def _record_rate(self) -> None:
        """Rate targeting: the outcome into meta.json (the run directory's record)."""
        if self.rate is None or not self.info.is_main:
            return
        summary = self.rate.summary(self.best_bpp)
        meta = read_json(self.run_dir / "meta.json")
        meta["rate_control"] = summary
        write_json(self.run_dir / "meta.json", meta)
        log.info("rate target %g bpp: selected checkpoint at %.4g bpp (validation, estimated; "
                 "%s target, tolerance %g%%), final rate_weight %.6g", summary["target_bpp"],
                 summary["selected_val_bpp"], "on" if summary["on_target"] else "OFF",
                 100 * summary["tolerance"], summary["final_rate_weight"])

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
                self.csv, self.tb = open_logs(self.run_dir, self.step if resume else None)
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
                     "in %s", self.step, self.best_value, self.best_step,
                     self.run_dir / "checkpoints")
            write_debug_hash(self.model, self.info.rank)
            self._record_rate()
            if self.info.is_main and self.tb is not None:
                self._log_hparams()
        finally:
            log.removeHandler(held)
            close_logs(self.tb)
        return self.run_dir
