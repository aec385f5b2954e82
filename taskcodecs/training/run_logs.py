"""The metric logs of a training run, written by rank 0: :class:`RunLogs`.

One object holds the two metric logs that :func:`taskcodecs.training.outputs.open_logs`
opens -- ``log.csv`` (:class:`~taskcodecs.training.outputs.CsvLog`) and TensorBoard -- and
writes what the trainer reports to them:

    row           one log.csv row (train window or validation round) and its scalars
    rate_control  the adapted rate weight and the running rate, after every step
    images        the first :data:`TB_IMAGES` validation images beside x̂ and the disparity
    hparams       the HParams tab: the scalar config against the best validation objective

(The log lines of ``train.log`` are :mod:`logging`'s, set up in
:mod:`taskcodecs.training.outputs`.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from infra.config import config_to_dict
from taskcodecs.experiments.train_config import TrainConfig
from taskcodecs.training.outputs import CsvLog
from taskcodecs.training.rate_control import RateController

TB_IMAGES = 3  # validation images shown in TensorBoard each round (with x̂, disparity)


class RunLogs:
    """log.csv and TensorBoard of one run (rank 0 only; the other ranks hold none)."""

    def __init__(self, csv: CsvLog, tb: SummaryWriter) -> None:
        self.csv, self.tb = csv, tb

    def row(self, step: int, epoch: int, phase: str, lr: float, elapsed_s: float,
            terms: Mapping[str, float], rate: RateController | None) -> None:
        """One event: a log.csv row, a scalar per term under ``phase/``, train/lr."""
        row = {"step": step, "epoch": epoch, "phase": phase, "lr": lr,
               "elapsed_s": elapsed_s, **terms}
        if rate is not None:
            row.update(rate_weight=rate.weight, bpp_running=rate.running())
        self.csv.write(row)
        for key, value in terms.items():
            self.tb.add_scalar(f"{phase}/{key}", value, step)
        if phase == "train":
            self.tb.add_scalar("train/lr", lr, step)
        self.tb.flush()

    def rate_control(self, rate: RateController, step: int) -> None:
        """Rate targeting: the rate weight and the running rate after a step."""
        self.tb.add_scalar("rate_control/rate_weight", rate.weight, step)
        self.tb.add_scalar("rate_control/bpp_running", rate.running(), step)

    @torch.no_grad()
    def images(self, model: nn.Module, batches: Iterable[tuple[int, dict[str, Any]]],
               autocast: Callable[[], AbstractContextManager], step: int) -> None:
        """Each ``(index, batch)`` of one validation image beside the model's reconstruction
        x̂ (clamped to [0, 1]) and, for depth, its predicted disparity (min-max normalized
        per image), as ``val/images/<index>``. ``batches`` is read in eval mode (lazily:
        building a batch may draw on the RNG the caller seeded)."""
        was_training = model.training
        model.eval()
        try:
            for i, batch in batches:
                with autocast():
                    out = model(batch)
                panels = [batch["image"][0].float()]
                if isinstance(out.get("x_hat"), torch.Tensor):
                    panels.append(out["x_hat"][0].float().clamp(0, 1))
                if isinstance(out.get("disparity"), torch.Tensor):
                    d = out["disparity"][0].float()
                    d = (d - d.min()) / (d.max() - d.min()).clamp_min(1e-8)
                    panels.append(d.expand(3, -1, -1))
                if len(panels) > 1:
                    self.tb.add_image(f"val/images/{i}", torch.cat(panels, dim=-1).cpu(), step)
        finally:
            model.train(was_training)

    def hparams(self, cfg: TrainConfig, best_value: float, best_step: int | None,
                step: int) -> None:
        """TensorBoard's HParams tab: the run's scalar config values (and
        ``model_overrides.*``) against the best validation objective and its step."""
        from torch.utils.tensorboard.summary import hparams

        flat = config_to_dict(cfg)
        values: dict[str, Any] = {}
        for key, value in [*flat.items(), *((f"model_overrides.{k}", v) for k, v in
                                            (flat.get("model_overrides") or {}).items())]:
            if isinstance(value, bool | int | float | str):
                values[key] = value
            elif value is None:
                values[key] = "none"
        metrics = {"hparam/best_objective": best_value,
                   "hparam/best_step": float(best_step if best_step is not None else -1)}
        metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
        writer = self.tb._get_file_writer()
        for summary in hparams(values, metrics):
            writer.add_summary(summary)
        for key, value in metrics.items():
            self.tb.add_scalar(key, value, step)
        self.tb.flush()
