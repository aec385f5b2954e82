"""The selection rule of every run: the validation objective, the best round, early stopping.

The *validation objective* is the run's own training loss -- ``loss`` of ``model.loss`` --
averaged over the first ``val_limit`` validation images in eval mode (:func:`objective`;
batch means weighted by batch size, summed over ranks). :class:`Selection` keeps the best
round (the lowest objective, rate-adjusted when targeting a rate) and counts the regular
rounds in a row without a strictly lower one, against ``patience``. Its state is part of
every checkpoint (the trainer writes it; :mod:`taskcodecs.training.trainer`).

Torchvision detectors only return losses in train mode, so during validation they run in
train mode with every batch-norm layer in eval mode (:func:`loss_mode`: no statistics update).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from taskcodecs.experiments.train_config import TrainConfig
from taskcodecs.runs.run_data import move_to_device
from taskcodecs.training import distributed as D
from taskcodecs.training.outputs import TermMeans
from taskcodecs.training.precision import Precision
from taskcodecs.training.rate_control import OFF_TARGET, RateController, rate_key

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


@torch.no_grad()
def objective(model: nn.Module, val_set: Dataset, indices: Sequence[int], cfg: TrainConfig,
              info: D.DistInfo, collate: Any, precision: Precision) -> dict[str, float]:
    """The run's loss terms averaged over this rank's share of the validation images
    ``indices``, then over all ranks (weights: images)."""
    from torch.utils.data import Subset

    mine = list(indices)[info.rank :: info.world_size]
    loader = DataLoader(Subset(val_set, mine), batch_size=cfg.val_batch_size,
                        shuffle=False, num_workers=cfg.num_workers, collate_fn=collate)
    means = TermMeans()
    with loss_mode(model), precision.autocast():
        for batch in loader:
            batch = move_to_device(batch, info.device, cfg.channels_last)
            means.add(model.loss(batch, model(batch)), batch["image"].shape[0])
    return means.means(info)


@dataclass
class Selection:
    """The best validation round so far and the early-stopping count."""

    best_value: float = math.inf
    best_step: int | None = None
    bad_rounds: int = 0
    best_bpp: float = math.nan  # rate targeting: validation rate of the best round
    best_quality: float = math.nan  # rate targeting: its rate-free objective (quality())

    def record(self, value: float, step: int, terms: Mapping[str, float],
               rate: RateController | None, regular: bool) -> bool:
        """One round of selection value ``value`` (the objective, rate-adjusted when
        targeting a rate) at ``step``; True if it is the new best. A regular round off the
        rate target does not count against patience."""
        improved = value < self.best_value
        if improved:
            self.best_value, self.best_step = value, step
            self.best_bpp = terms.get(rate_key(terms), math.nan) if rate else math.nan
            self.best_quality = quality(terms) if rate else math.nan
        if regular:
            counts = rate is None or rate.on_target(terms[rate_key(terms)])
            self.bad_rounds = 0 if improved else self.bad_rounds + int(counts)
        return improved

    def quality_to_beat(self) -> float:
        """Rate targeting: the rate-free objective a round below the band must not exceed to
        dominate the best round (NaN while that round is off target: nothing to dominate)."""
        return self.best_quality if self.best_value < OFF_TARGET else math.nan

    def won_below_band(self, rate: RateController | None) -> bool:
        """Rate targeting: the best round is off target yet competed as on target (it
        dominated the best round on target from below the band)."""
        return (rate is not None and not rate.on_target(self.best_bpp)
                and self.best_value < OFF_TARGET)

    def should_stop(self, patience: int | None) -> bool:
        return patience is not None and self.bad_rounds >= patience

    def load(self, state: Mapping[str, Any]) -> None:
        """Restore from a checkpoint's ``trainer`` metadata."""
        self.bad_rounds = state["bad_rounds"]
        self.best_value = state["best_value"] if state["best_value"] is not None else math.inf
        self.best_step = state["best_step"]
        self.best_bpp = math.nan if state.get("best_bpp") is None else state["best_bpp"]
        self.best_quality = (math.nan if state.get("best_quality") is None
                             else state["best_quality"])


def rate_adjusted(value: float, terms: Mapping[str, float], rate: RateController,
                  selection: Selection) -> float:
    """A rate-targeted round's selection value (RateController.selection_value): the
    exception for a round that dominates the best round on target below the band applies to
    enhancements only (rate key ``bpp_total``); a base's target is what matches the bases."""
    key = rate_key(terms)
    to_beat = selection.quality_to_beat() if key == "bpp_total" else math.nan
    return rate.selection_value(value, terms[key], quality(terms), to_beat)


def quality(terms: Mapping[str, float]) -> float:
    """The rate-free objective of a round: its loss minus its rate term (λ · bpp)."""
    return float(terms["loss"]) - float(terms.get("rate", 0.0))
