"""torchvision's pretrained weights for the paper task heads, read from the torch hub cache.

``pretrained=True`` (paper presets only) loads them (:func:`load_pretrained` from
:func:`taskcodecs.models.tasks.build_task_model`), downloading only when the file is missing,
with a short timeout, and raises a RuntimeError naming the URL and the path to put the file
at. Files are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import re
import socket
import urllib.error
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import (
    MobileNet_V3_Large_Weights,
    ResNet50_Weights,
    WeightsEnum,
)
from torchvision.models.detection.faster_rcnn import FasterRCNN_ResNet50_FPN_V2_Weights

DOWNLOAD_TIMEOUT_S = 15.0


_PRETRAINED: dict[str, WeightsEnum] = {
    "detection": FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
    "depth": MobileNet_V3_Large_Weights.IMAGENET1K_V1,
    "segmentation": ResNet50_Weights.IMAGENET1K_V1,
}


def pretrained_weight_files(task: str) -> list[tuple[str, Path]]:
    """(URL, cache path) of the file(s) ``build_task_model(task, "paper", True)`` reads."""
    if task not in _PRETRAINED:
        raise ValueError(f"unknown task {task!r}; expected one of {tuple(_PRETRAINED)}")
    url = _PRETRAINED[task].url
    return [(url, Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path))]


def load_pretrained(task: str, model: nn.Module) -> None:
    url, path = pretrained_weight_files(task)[0]
    state = _read_checkpoint(url, path)
    if task == "detection":
        model.load_state_dict(state)
        _freeze_resnet_layers(model.backbone.body, trainable_layers=3)
    elif task == "depth":  # MobileNetV3 "features.*" -> the IntermediateLayerGetter's keys
        prefix = "features."
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        model.backbone.load_state_dict(state)
    else:  # ResNet-50 without its ImageNet classifier
        model.backbone.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})


def _freeze_resnet_layers(body: nn.Module, trainable_layers: int) -> None:
    """As torchvision does for pretrained detectors: train only the last ``trainable_layers``."""
    layers = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    if trainable_layers == 5:
        layers.append("bn1")
    for name, parameter in body.named_parameters():
        if not any(name.startswith(layer) for layer in layers):
            parameter.requires_grad_(False)


def _read_checkpoint(url: str, path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        _download(url, path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt or truncated file: say which one
        raise RuntimeError(
            f"cannot read pretrained weights {path} ({err}); delete it and fetch it again "
            f"from {url}"
        ) from err


def _download(url: str, path: Path) -> None:
    match = re.search(r"-([a-f0-9]+)\.", path.name)
    hash_prefix = match.group(1) if match else None
    path.parent.mkdir(parents=True, exist_ok=True)
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        torch.hub.download_url_to_file(url, str(path), hash_prefix=hash_prefix, progress=False)
    except (urllib.error.URLError, OSError, RuntimeError) as err:
        check = (
            f"; check it with `sha256sum {path}`: the hash must start with {hash_prefix}"
            if hash_prefix
            else ""
        )
        raise RuntimeError(
            f"pretrained weights not available: {path} is not in the torch hub cache and "
            f"downloading {url} failed ({err}). On a machine with internet access run "
            f"`curl -L -o {path.name} {url}`, copy the file to {path} "
            f"(torch.hub.get_dir()/checkpoints; TORCH_HOME moves it){check}."
        ) from err
    finally:
        socket.setdefaulttimeout(previous_timeout)
