"""The trainer's state in a checkpoint: what ``checkpoints/{best,last}`` hold besides weights.

Exact resume (:mod:`taskcodecs.training.trainer`) needs, besides the model: the optimizer,
the step, the selection state (:class:`~taskcodecs.training.selection.Selection`), the rate
controller, the loss scaler, the training time so far and every rank's RNG state (one
int64 row per rank, :mod:`taskcodecs.training.distributed`). :func:`save` writes them (the
checkpoint's metadata ``trainer``, ``validation``, ``selection_rule``, ``config`` and,
when targeting a rate, ``rate_control``); :func:`restore` reads them back into a fresh
trainer's objects. :func:`record_rate` writes the rate-targeting outcome into ``meta.json``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from infra.config import config_to_dict
from infra.io import read_json, write_json
from taskcodecs.experiments.train_config import TrainConfig
from taskcodecs.runs.checkpoint import load_checkpoint
from taskcodecs.runs.run_model import save_run_checkpoint
from taskcodecs.training.outputs import log
from taskcodecs.training.precision import Precision
from taskcodecs.training.rate_control import RateController
from taskcodecs.training.selection import SELECTION_RULE, Selection


def save(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None,
         rng_rows: torch.Tensor, terms: Mapping[str, float], *, experiment: str, step: int,
         selection: Selection, world_size: int, elapsed_s: float, precision: Precision,
         rate: RateController | None, cfg: TrainConfig) -> None:
    """Write one checkpoint: the model, Adam, the RNG rows and the trainer's state."""
    metadata = {
        "experiment": experiment,
        "step": step,
        "validation": dict(terms),
        "selection_rule": SELECTION_RULE,
        "trainer": {"step": step, "bad_rounds": selection.bad_rounds,
                    "best_value": None if math.isinf(selection.best_value) else selection.best_value,
                    "best_step": selection.best_step, "world_size": world_size,
                    "elapsed_s": elapsed_s,
                    "grad_scaler": precision.state_dict(),
                    "best_bpp": None if math.isnan(selection.best_bpp) else selection.best_bpp,
                    "best_quality": (None if math.isnan(selection.best_quality)
                                     else selection.best_quality),
                    "rate_control": rate.state_dict() if rate else None},
        "config": config_to_dict(cfg),
    }
    if rate is not None:
        metadata["rate_control"] = rate.summary(selection.best_bpp, selection.won_below_band(rate))
    save_run_checkpoint(path, model, metadata,
                        optimizers={"adam": optimizer} if optimizer else None,
                        extra_tensors={"rng_state": rng_rows})


@dataclass(frozen=True)
class Restored:
    """What :func:`restore` gives back besides the objects it loads into."""

    step: int
    elapsed_s: float  # training time before this resume (elapsed_s continues across resumes)
    rng_rows: torch.Tensor | None  # every rank's RNG state, None if it must be reseeded


def restore(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None,
            device: torch.device, world_size: int, selection: Selection,
            rate: RateController | None, precision: Precision) -> Restored:
    """Load a checkpoint into ``model``, ``optimizer``, ``selection``, ``rate`` and
    ``precision``; the RNG rows only if the checkpoint has one per process of this run."""
    optimizers = {"adam": optimizer} if optimizer else {}
    ckpt = load_checkpoint(path, model, optimizers, map_location=device)
    state = ckpt["metadata"]["trainer"]
    selection.load(state)
    if rate is not None and state.get("rate_control"):
        rate.load_state_dict(state["rate_control"])
    precision.load_state_dict(state.get("grad_scaler"))
    rng_rows = ckpt["extra"].get("rng_state")
    if rng_rows is not None and rng_rows.shape[0] != world_size:
        log.warning("checkpoint holds the RNG state of %d processes, this run has %d: "
                    "reseeding (the data order is still exact)", rng_rows.shape[0], world_size)
        rng_rows = None
    return Restored(state["step"], state.get("elapsed_s", 0.0), rng_rows)


def record_rate(run_dir: Path, rate: RateController, best_bpp: float,
                dominated: bool = False) -> None:
    """Rate targeting: the outcome into meta.json (the run directory's record)."""
    summary = rate.summary(best_bpp, dominated)
    meta = read_json(run_dir / "meta.json")
    meta["rate_control"] = summary
    write_json(run_dir / "meta.json", meta)
    log.info("rate target %g bpp: selected checkpoint at %.4g bpp (validation, estimated; "
             "%s target, tolerance %g%%), final rate_weight %.6g", summary["target_bpp"],
             summary["selected_val_bpp"],
             "on" if summary["on_target"] else
             "below, dominating the best round on" if summary["selected_dominates"] else "OFF",
             100 * summary["tolerance"], summary["final_rate_weight"])
