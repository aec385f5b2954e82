"""The model of a run: built from its config (a registry codec, its frozen base loaded; or
the codec-free reference), loaded from a run directory, saved as a checkpoint.

The registry is imported inside the functions that need it, so that it may import
:mod:`taskcodecs.experiments` (which re-exports this module).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from infra.config import ConfigError
from taskcodecs.experiments.table import Experiment, get_experiment
from taskcodecs.experiments.train_config import TrainConfig
from taskcodecs.models.losses import depth_loss, detection_loss, segmentation_loss
from taskcodecs.models.protocol import check_codec
from taskcodecs.models.tasks import build_task_model
from taskcodecs.runs.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
    unwrap_model,
)
from taskcodecs.runs.links import check_base_run, check_init_run, checkpoint_path, read_run


class ReferenceModel(nn.Module):
    """The task model alone on uncompressed images (the "uncompressed" reference).

    No codec and no bitstream (``codec_id`` is None). The dict contract of the codecs::

        depth         batch["image"] -> task model -> {"disparity" (B, 1, H, W) pixels}
        detection     train mode: {"task_losses"}; eval mode: {"detections"} (boxes in px)
        segmentation  {"segmentation": {"out", "aux"} (B, 19, H, W) logits}

    ``loss(batch, out)`` -> {"loss": d, "distortion": d}, d the task loss the codec runs use
    (masked disparity RMSE, the detector's summed losses, 20 CE + 20 CE aux).
    """

    codec_id = None

    def __init__(self, task: str, preset: str, **task_kwargs: Any) -> None:
        super().__init__()
        self.task, self.preset = task, preset
        self.registry_name = f"{preset}-{task}-uncompressed"
        self.task_model = build_task_model(task, preset, **task_kwargs)

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        image = batch["image"]
        if self.task == "depth":
            return {"disparity": self.task_model(image)["out"]}
        if self.task == "segmentation":
            logits = self.task_model(image)
            return {"segmentation": {
                key: value if value.shape[-2:] == image.shape[-2:]
                else F.interpolate(value, size=image.shape[-2:], mode="bilinear", align_corners=False)
                for key, value in logits.items()}}
        images = list(image.unbind(0))
        if self.task_model.training:
            return {"task_losses": self.task_model(images, batch["targets"])}
        return {"detections": self.task_model(images)}

    def loss(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        if self.task == "depth":
            d = depth_loss(out["disparity"], batch["disparity"], batch["disparity_mask"])
        elif self.task == "segmentation":
            d = segmentation_loss(out["segmentation"], batch["labels"])
        else:
            d = detection_loss(out["task_losses"])
        return {"loss": d, "distortion": d}


def build_model(cfg: TrainConfig) -> nn.Module:
    """The untrained model of ``cfg`` (a codec from the registry, with its frozen base loaded
    from ``cfg.base`` for enhancements; or the codec-free reference), initialised from
    ``cfg.init_from`` if given. Loss weights not None are passed as config overrides."""
    exp = get_experiment(cfg.experiment)
    if exp.role == "reference":
        if cfg.task is None:
            raise ConfigError(f"{exp.name}: a reference run needs task=depth|detection|segmentation")
        return ReferenceModel(cfg.task, exp.preset, **cfg.model_overrides)
    if cfg.model is None:
        raise ConfigError(f"{exp.name}: model= must name a registry codec")
    from taskcodecs.experiments.registry import create_model
    from taskcodecs.runs.codecs import load_codec, load_weights

    overrides = dict(cfg.model_overrides)
    for name in ("rate_weight", "reward_weight"):
        if getattr(cfg, name) is not None:
            overrides[name] = getattr(cfg, name)
    if exp.role == "enhancement":
        base = load_codec(check_base_run(cfg, exp))
        model = create_model(cfg.model, base=base, **overrides)
    else:
        model = create_model(cfg.model, **overrides)
    check_codec(model, f"model={cfg.model}")  # the interface the trainer and evaluator use
    if cfg.init_from:
        path = check_init_run(cfg, exp)
        if hasattr(model, "init_from"):
            model.init_from(load_codec(path))
        else:
            load_weights(model, path)
    return model


def load_run_model(
    run_dir: str | os.PathLike, which: str = "best"
) -> tuple[nn.Module, TrainConfig, Experiment, dict[str, Any]]:
    """(model in eval mode with the ``which`` checkpoint's weights, the run's config, its
    table row, the checkpoint's metadata)."""
    cfg, exp = read_run(run_dir)
    path = checkpoint_path(run_dir, which)
    if not path.with_suffix(".json").is_file():
        raise CheckpointError(f"run {run_dir}: no {which} checkpoint ({path}.json not found)")
    if exp.role == "reference":
        model = ReferenceModel(cfg.task, exp.preset, **cfg.model_overrides)
        load_checkpoint(path, model)
    else:
        from taskcodecs.runs.codecs import load_codec

        model = load_codec(path)
    return model.eval(), cfg, exp, read_metadata(path)


def save_run_checkpoint(path: str | os.PathLike, model: nn.Module, metadata: Mapping[str, Any],
                        **kwargs: Any) -> Path:
    """A codec through ``registry.save_codec`` (so ``load_codec`` and the codec CLI read it),
    a reference model through ``checkpoint.save_checkpoint``; kwargs: optimizers, extra_tensors."""
    model = unwrap_model(model)
    if getattr(model, "codec_id", None) is None:
        return save_checkpoint(path, model, dict(metadata), **kwargs)
    from taskcodecs.runs.codecs import save_codec

    return save_codec(model, path, metadata, **kwargs)
