"""Train one experiment: ``python -m taskcodecs.train --config NAME [key=value ...]``.

    python -m taskcodecs.train --config tiny-depth-base-proposed out=runs/depth max_steps=200
    python -m taskcodecs.train --config tiny-cityscapes-reconstruction-scalable \\
        base=runs/depth out=runs/recon rate_weight=0.01
    python -m taskcodecs.train resume=runs/recon max_steps=400      # continue a run
    torchrun --standalone --nproc_per_node=2 -m taskcodecs.train --config ...   # DDP

NAME is an experiment of :mod:`taskcodecs.experiments` (or a YAML path); every
:class:`~taskcodecs.experiments.TrainConfig` field is a ``key=value`` override. Multi-node
launch flags are in :mod:`taskcodecs.distributed`.

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
:mod:`taskcodecs.distributed`); the data order is a function of (seed, step) and each
item's augmentation of (seed, epoch, index), so nothing else needs storing.

Synthetic data: a config with a ``synthetic`` section (the tiny presets) whose
``data_root`` is unset or holds no dataset generates the scenes (rank 0, once) into
``data_root`` if given, else ``synthetic_cache`` if given, else
``<parent of out>/synthetic-cache/<H>x<W>-train<N>-val<M>-seed<S>`` (shared by sibling runs);
it says so in the log.

Run directory (``out``): config.yaml/json, meta.json (git commit), pip-freeze.txt,
train.log, log.csv (one row per log/validation event), tensorboard/ (event files),
checkpoints/{best,last}.{safetensors,json}. Rank 0 alone writes.

Debug output: with ``TASKCODECS_DEBUG_WEIGHT_HASH=DIR`` in the environment every rank writes
``DIR/rank{r}.sha256``, the SHA-256 of its final weights (used by the DDP test to check the
ranks agree).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import hashlib
import io
import logging
import math
import os
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

from taskcodecs import distributed as D
from taskcodecs.checkpoint import load_checkpoint, unwrap_model
from taskcodecs.config import (
    ConfigError,
    apply_overrides,
    config_to_dict,
    parse_overrides,
    save_config,
)
from taskcodecs.experiments import (
    TrainConfig,
    build_dataset,
    build_model,
    check_links,
    checkpoint_path,
    collate_for,
    ensure_data,
    get_experiment,
    list_experiments,
    load_experiment,
    move_to_device,
    read_run,
    resolve_links,
    save_run_checkpoint,
)
from taskcodecs.io import atomic_write_text, read_json, write_json
from taskcodecs.rundir import RunDir, git_commit, pip_freeze
from taskcodecs.seeding import seed_everything

log = logging.getLogger("taskcodecs.train")
VALIDATION_STREAM = 1  # D.derived_seed(seed, VALIDATION_STREAM): the RNG of every validation
TRAIN_STREAM = 2  # D.derived_seed(seed, TRAIN_STREAM, rank): each rank's training RNG
SELECTION_RULE = ("lowest validation objective = the run's training loss averaged over the "
                  "first val_limit validation images in eval mode; early stop after `patience` "
                  "rounds without a strictly lower value")
DEBUG_HASH_ENV = "TASKCODECS_DEBUG_WEIGHT_HASH"


# ---------------------------------------------------------------------------- small helpers


@functools.cache
def _pip_freeze() -> str:
    """``pip freeze`` of this interpreter, run once per process (a sweep writes it per run)."""
    return pip_freeze()


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 over the unwrapped state dict (sorted keys, raw bytes): equal iff bit-identical."""
    digest = hashlib.sha256()
    for key, value in sorted(unwrap_model(model).state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


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


# ---------------------------------------------------------------------------- the trainer


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
        self.started = time.time()
        self.csv: CsvLog | None = None
        self.tb: SummaryWriter | None = None

    # .................................................................. setup

    def _prepare_run_dir(self) -> dict[str, Any] | None:
        """Rank 0 creates (or, resuming, updates) the run dir; every rank reads the resume
        checkpoint's metadata. Returns that metadata, or None for a fresh run."""
        cfg, last = self.cfg, checkpoint_path(self.run_dir, "last")
        if cfg.resume:
            if not last.with_suffix(".json").is_file():
                raise ConfigError(f"resume={cfg.resume}: no last checkpoint at {last}.json")
            if self.info.is_main:
                save_config(cfg, self.run_dir / "config.yaml")
                write_json(self.run_dir / "config.json", config_to_dict(cfg))
                meta = read_json(self.run_dir / "meta.json")
                meta.setdefault("resumed", []).append(
                    {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "git_commit": git_commit()})
                write_json(self.run_dir / "meta.json", meta)
            return read_json(last.with_suffix(".json"))
        if last.with_suffix(".json").is_file():
            raise ConfigError(f"out={self.run_dir} already holds a run ({last}.json); continue "
                              f"it with resume={self.run_dir} or choose another out=")
        if self.info.is_main:
            RunDir.create(self.run_dir, cfg, kind=f"{self.exp.role}:{self.exp.name}", freeze=False)
            atomic_write_text(self.run_dir / "pip-freeze.txt", _pip_freeze())
        return None

    def _open_logs(self, resume_step: int | None) -> None:
        if not self.info.is_main:
            return
        handler = logging.FileHandler(self.run_dir / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        self.csv = CsvLog(self.run_dir / "log.csv", resume_step)
        self.tb = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=resume_step)

    def _autocast(self):
        if self.cfg.amp == "bf16" and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _warn_cuda_options(self) -> None:
        for name, on in (("amp=bf16", self.cfg.amp == "bf16"), ("channels_last", self.cfg.channels_last)):
            if on and self.device.type != "cuda":
                warnings.warn(f"{name} is a CUDA option; ignored on {self.device}", stacklevel=2)
                log.warning("%s is a CUDA option; ignored on %s", name, self.device)

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
        n_val = min(len(self.val_set), cfg.val_limit or len(self.val_set))
        if n_val < info.world_size:
            raise ConfigError(f"val_limit/val split gives {n_val} validation images for "
                              f"{info.world_size} processes; need at least one per process")
        self.val_indices = list(range(n_val))
        self.collate = collate_for(cfg.dataset)

    def _model(self, resume_meta: dict[str, Any] | None) -> None:
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
        optimizers = {"adam": self.optimizer} if self.optimizer else {}
        rng_rows = None
        if resume_meta is not None:
            ckpt = load_checkpoint(checkpoint_path(self.run_dir, "last"), self.model, optimizers,
                                   map_location=self.device)
            state = resume_meta["trainer"]
            self.step, self.bad_rounds = state["step"], state["bad_rounds"]
            self.best_value = state["best_value"] if state["best_value"] is not None else math.inf
            self.best_step = state["best_step"]
            self.started -= state.get("elapsed_s", 0.0)  # elapsed_s continues across resumes
            rng_rows = ckpt["extra"].get("rng_state")
            if rng_rows is not None and rng_rows.shape[0] != self.info.world_size:
                log.warning("checkpoint holds the RNG state of %d processes, this run has %d: "
                            "reseeding (the data order is still exact)",
                            rng_rows.shape[0], self.info.world_size)
                rng_rows = None
            log.info("resumed %s at step %d (best objective %.6g at step %s)",
                     self.run_dir, self.step, self.best_value, self.best_step)
        if rng_rows is not None:
            D.set_rng_state(rng_rows[self.info.rank], self.device)
        else:
            seed_everything(D.derived_seed(cfg.seed, TRAIN_STREAM, self.info.rank))
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

    def _train_step(self, batch: Any) -> dict[str, Any]:
        with self._autocast():
            out = self.train_model(batch)
            terms = self.model.loss(batch, out)
        loss = terms["loss"]
        if not torch.isfinite(loss):
            shown = {k: float(v) for k, v in terms.items() if isinstance(v, torch.Tensor) and v.numel() == 1}
            raise FloatingPointError(f"step {self.step + 1}: the loss is not finite ({shown})")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.clip)
        self.optimizer.step()
        return terms

    def _log_row(self, phase: str, terms: Mapping[str, float]) -> None:
        if not self.info.is_main:
            return
        steps = D.steps_per_epoch(len(self.train_set), self.cfg.batch_size, self.info.world_size)
        epoch = max(self.step - 1, 0) // steps  # the epoch of the last batch trained on
        row = {"step": self.step, "epoch": epoch, "phase": phase, "lr": self.cfg.lr,
               "elapsed_s": round(time.time() - self.started, 3), **terms}
        self.csv.write(row)
        for key, value in terms.items():
            self.tb.add_scalar(f"{phase}/{key}", value, self.step)
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
        D.set_rng_state(state, self.device)
        value = terms["loss"]
        improved = value < self.best_value
        if improved:
            self.best_value, self.best_step = value, self.step
        if regular:
            self.bad_rounds = 0 if improved else self.bad_rounds + 1
        self._log_row("val", terms)
        log.info("step %d: validation objective %.6g%s", self.step, value,
                 " (best)" if improved else f" (best {self.best_value:.6g} at step {self.best_step})")
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
                        "elapsed_s": round(time.time() - self.started, 3)},
            "config": config_to_dict(self.cfg),
        }
        save_run_checkpoint(checkpoint_path(self.run_dir, which), self.model, metadata,
                            optimizers={"adam": self.optimizer} if self.optimizer else None,
                            extra_tensors={"rng_state": rng_rows})

    # .................................................................. run

    def run(self) -> Path:
        cfg = self.cfg
        check_links(cfg)  # before anything is written
        root = self._data_root()
        resume_meta = self._prepare_run_dir()
        D.barrier(self.info)
        self._open_logs(resume_meta["trainer"]["step"] if resume_meta else None)
        self._warn_cuda_options()
        log.info("%s: %s; run dir %s; %d process(es) on %s", self.exp.name, self.exp.description,
                 self.run_dir, self.info.world_size, self.device)
        try:
            self._data(root)
            self._model(resume_meta)
            if not self.params:
                log.info("%s has no trainable parameters: validating once, nothing to train",
                         self.exp.name)
                if resume_meta is None:
                    self._validate(regular=False)
            elif self.step >= cfg.max_steps:
                log.info("already at step %d >= max_steps=%d: nothing to do", self.step, cfg.max_steps)
            else:
                self._train()
                D.broadcast_buffers(self.model, self.info)
            log.info("done at step %d; best validation objective %.6g at step %s; checkpoints "
                     "in %s", self.step, self.best_value, self.best_step,
                     self.run_dir / "checkpoints")
            self._debug_hash()
        finally:
            if self.tb is not None:
                self.tb.close()
            for handler in [h for h in log.handlers if isinstance(h, logging.FileHandler)]:
                log.removeHandler(handler)
                handler.close()
        return self.run_dir

    def _debug_hash(self) -> None:
        folder = os.environ.get(DEBUG_HASH_ENV)
        if folder:  # debug output: each rank's final weights, to compare ranks
            atomic_write_text(Path(folder) / f"rank{self.info.rank}.sha256",
                              weights_sha256(self.model) + "\n")


# ---------------------------------------------------------------------------- entry points


def train(cfg: TrainConfig) -> Path:
    """Train ``cfg`` in this process (joining the torchrun group if launched by torchrun);
    returns the run directory."""
    info = D.setup(cfg.device)
    try:
        return Trainer(cfg, info).run()
    finally:
        D.teardown()


def resolve_config(config: str | None, overrides: list[str] | Mapping[str, Any]) -> TrainConfig:
    """The config a command line asks for: ``--config NAME`` + overrides, or the config of
    ``resume=RUN_DIR`` + overrides; a refit's base filled in, ``out`` made explicit."""
    flat = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(overrides)
    resume = flat.pop("resume", None)
    if resume:
        cfg, exp = read_run(resume)
        if config and config not in (exp.name, str(Path(resume) / "config.yaml")):
            raise ConfigError(f"--config {config} differs from the experiment of resume={resume} "
                              f"({exp.name}); leave --config out when resuming")
        if "out" in flat and Path(str(flat["out"])).resolve() != Path(resume).resolve():
            raise ConfigError(f"out={flat['out']} differs from resume={resume}: a resumed run "
                              "continues in its own directory")
        cfg = apply_overrides(cfg, flat, resume=str(resume), out=str(resume))
    else:
        if not config:
            raise ConfigError("give --config NAME (an experiment or YAML file) or resume=RUN_DIR")
        cfg = load_experiment(config, flat)
        cfg = apply_overrides(cfg, {"out": str(cfg.run_dir)})
    return resolve_links(cfg)


def main(argv: list[str] | None = None) -> int:
    from taskcodecs.checkpoint import CheckpointError
    from taskcodecs.data.errors import DatasetError

    parser = argparse.ArgumentParser(prog="python -m taskcodecs.train",
                                     description=__doc__.split("\n\n")[0],
                                     epilog="experiments: " + ", ".join(list_experiments()),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="experiment name (taskcodecs.experiments) or YAML path")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. data_root=DIR out=DIR max_steps=N seed=N "
                             "rate_weight=X reward_weight=X base=RUN_DIR resume=RUN_DIR")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        train(resolve_config(args.config, args.overrides))
    except (ConfigError, DatasetError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
