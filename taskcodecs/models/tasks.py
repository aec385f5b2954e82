"""Task heads built from torchvision, and the task losses d_b / d_e.

One entry point, :func:`build_task_model` (task x preset), returns a real torchvision model:

==============  ==================================================  =========================
task            paper preset                                        tiny preset (CPU tests)
==============  ==================================================  =========================
detection       ``fasterrcnn_resnet50_fpn_v2``, 91 classes          ``FasterRCNN`` on a 4-conv
                (labels are COCO category ids, 0 = background)      stride-16 backbone
depth           ``lraspp_mobilenet_v3_large``, 1 channel            ``LRASPP`` on MobileNetV3-
                (disparity in pixels, regression)                   Large at width x0.25
segmentation    ``deeplabv3_resnet50``, 19 classes + aux head       ``DeepLabV3`` on MobileNetV3-
                                                                    Large x0.25, aux head
==============  ==================================================  =========================

Inputs and outputs::

    detection     train: model(list of (3, H, W) in [0,1], list of {"boxes" (K,4) xyxy px,
                         "labels" (K,) int64}) -> dict of 4 losses; d_b = detection_loss(it)
                  eval:  model(images) -> list of {"boxes", "labels", "scores"} in input px
    depth         model((n, 3, H, W)) -> {"out": (n, 1, H, W)} disparity (pixels)
    segmentation  model((n, 3, H, W)) -> {"out": (n, 19, H, W), "aux": (n, 19, H, W)} logits

Detection and pixels: in the codec the detector runs *after* the synthesis transform g_b, so
its input is the codec's [0,1] image at the detector's working resolution (the paper measures
PSNR on these de-normalized pixels). torchvision's ``GeneralizedRCNNTransform`` still
normalizes (ImageNet mean/std) and resizes internally: a resize happens unless
``min_size``/``max_size`` match the input. Build with ``min_size=min(H, W),
max_size=max(H, W)`` (or call :func:`set_detector_resolution`) and the resize is the
identity; the tiny preset defaults to 128x256 inputs. Boxes come back in input pixels.

Batch norm: DeepLabV3's ASPP pooling branch normalizes a 1x1 map, so segmentation heads need
a batch of >= 2 images in train mode (torch raises otherwise).

``pretrained=True`` (paper presets only) loads torchvision weights from the torch hub cache
(``torch.hub.get_dir()/checkpoints``), downloading only when the file is missing, with a
short timeout, and raises a RuntimeError naming the URL and the path to put the file at.
Detection loads the full COCO Faster R-CNN (91 classes, as here) and, like torchvision,
leaves only ``layer2..4`` of the ResNet trainable; depth and segmentation have other class
counts than torchvision's heads, so only the ImageNet backbone is loaded. Files are read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import re
import socket
import urllib.error
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import (
    MobileNet_V3_Large_Weights,
    ResNet50_Weights,
    WeightsEnum,
    mobilenet_v3_large,
)
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection import FasterRCNN, fasterrcnn_resnet50_fpn_v2
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import (
    FasterRCNN_ResNet50_FPN_V2_Weights,
    FastRCNNPredictor,
    TwoMLPHead,
)
from torchvision.models.segmentation import deeplabv3_resnet50, lraspp_mobilenet_v3_large
from torchvision.models.segmentation.deeplabv3 import ASPP, DeepLabV3
from torchvision.models.segmentation.fcn import FCNHead
from torchvision.models.segmentation.lraspp import LRASPP
from torchvision.ops import MultiScaleRoIAlign

from taskcodecs.data.labels import IGNORE_INDEX, NUM_CLASSES
from taskcodecs.metrics import align_dense

__all__ = [
    "DEPTH_LOSS_SCALE",
    "PRESETS",
    "SEGMENTATION_LOSS_WEIGHT",
    "TASKS",
    "build_task_model",
    "depth_loss",
    "detection_loss",
    "masked_rmse",
    "pretrained_weight_files",
    "segmentation_loss",
    "set_detector_resolution",
]

TASKS = ("detection", "depth", "segmentation")
PRESETS = ("paper", "tiny")
COCO_NUM_CLASSES = 91  # background + COCO category ids 1..90 (80 used)
TINY_WIDTH_MULT = 0.25
TINY_DETECTION_SIZE = (128, 256)  # (min_size, max_size): 128x256 inputs are not resized
DOWNLOAD_TIMEOUT_S = 15.0
# d_b for depth = DEPTH_LOSS_SCALE x masked RMSE in disparity pixels. 1.0 keeps d_b in pixels;
# experiment configs may pass another ``scale`` to depth_loss.
DEPTH_LOSS_SCALE = 1.0
SEGMENTATION_LOSS_WEIGHT = 20.0  # d_e = 20 CE(out) + 20 CE(aux), as in the original code


# --------------------------------------------------------------------------- model builders


def build_task_model(
    task: str,
    preset: str = "tiny",
    pretrained: bool = False,
    *,
    min_size: int | None = None,
    max_size: int | None = None,
) -> nn.Module:
    """Build the task head ``task`` ("detection", "depth", "segmentation") in ``preset``.

    ``min_size``/``max_size`` (detection only) set the detector's working resolution; None
    keeps the preset default (paper: torchvision's 800/1333; tiny: 128/256).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {PRESETS}")
    if task != "detection" and (min_size is not None or max_size is not None):
        raise ValueError(f"min_size/max_size apply to the detection head only, not {task!r}")
    if pretrained and preset == "tiny":
        raise ValueError(
            f"the tiny {task} head has no pretrained weights (it is a CPU test model); "
            "use preset='paper' or pretrained=False"
        )
    if task == "detection":
        model = _build_detection(preset, min_size, max_size)
    elif task == "depth":
        model = _build_depth(preset)
    else:
        model = _build_segmentation(preset)
    if pretrained:
        _load_pretrained(task, model)
    return model


def _build_detection(preset: str, min_size: int | None, max_size: int | None) -> FasterRCNN:
    if preset == "paper":
        sizes = {k: v for k, v in (("min_size", min_size), ("max_size", max_size)) if v is not None}
        return fasterrcnn_resnet50_fpn_v2(
            weights=None, weights_backbone=None, num_classes=COCO_NUM_CLASSES, **sizes
        )
    backbone = _TinyDetectionBackbone(out_channels=64)
    return FasterRCNN(
        backbone,
        num_classes=None,  # set by box_predictor
        min_size=TINY_DETECTION_SIZE[0] if min_size is None else min_size,
        max_size=TINY_DETECTION_SIZE[1] if max_size is None else max_size,
        rpn_anchor_generator=AnchorGenerator(
            sizes=((16, 32, 64),), aspect_ratios=((0.5, 1.0, 2.0),)
        ),
        rpn_pre_nms_top_n_train=300,
        rpn_post_nms_top_n_train=100,
        rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=100,
        box_roi_pool=MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(backbone.out_channels * 7 * 7, 128),
        box_predictor=FastRCNNPredictor(128, COCO_NUM_CLASSES),
        box_batch_size_per_image=64,
    )


class _TinyDetectionBackbone(nn.Sequential):
    """Four 3x3 stride-2 convs with ReLU: (n, 3, H, W) -> (n, out_channels, H/16, W/16)."""

    def __init__(self, out_channels: int = 64) -> None:
        widths = (16, 32, out_channels, out_channels)
        layers: list[nn.Module] = []
        ch = 3
        for width in widths:
            layers += [nn.Conv2d(ch, width, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            ch = width
        super().__init__(*layers)
        self.out_channels = out_channels


def _mobilenet_stages(width_mult: float) -> tuple[nn.Sequential, int, int]:
    """Dilated MobileNetV3-Large features (output stride 16) and the positions of C2 and C5,
    chosen as torchvision's LRASPP/DeepLabV3 builders do."""
    features = mobilenet_v3_large(weights=None, width_mult=width_mult, dilated=True).features
    stage_indices = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)]
    stage_indices.append(len(features) - 1)
    return features, stage_indices[-4], stage_indices[-1]


def _build_depth(preset: str) -> LRASPP:
    if preset == "paper":
        return lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=1)
    features, low_pos, high_pos = _mobilenet_stages(TINY_WIDTH_MULT)
    backbone = IntermediateLayerGetter(
        features, return_layers={str(low_pos): "low", str(high_pos): "high"}
    )
    return LRASPP(
        backbone,
        low_channels=features[low_pos].out_channels,
        high_channels=features[high_pos].out_channels,
        num_classes=1,
        inter_channels=32,
    )


def _build_segmentation(preset: str) -> DeepLabV3:
    if preset == "paper":
        return deeplabv3_resnet50(
            weights=None, weights_backbone=None, num_classes=NUM_CLASSES, aux_loss=True
        )
    features, aux_pos, out_pos = _mobilenet_stages(TINY_WIDTH_MULT)
    backbone = IntermediateLayerGetter(
        features, return_layers={str(out_pos): "out", str(aux_pos): "aux"}
    )
    width = 32  # ASPP width (torchvision: 256); atrous rates scaled down for small inputs
    classifier = nn.Sequential(
        ASPP(features[out_pos].out_channels, atrous_rates=(2, 4, 6), out_channels=width),
        nn.Conv2d(width, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, NUM_CLASSES, 1),
    )
    aux_classifier = FCNHead(features[aux_pos].out_channels, NUM_CLASSES)
    return DeepLabV3(backbone, classifier, aux_classifier)


def set_detector_resolution(detector: FasterRCNN, height: int, width: int) -> None:
    """Make ``detector``'s internal resize the identity for (height, width) inputs."""
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    detector.transform.min_size = (min(height, width),)
    detector.transform.max_size = max(height, width)


# --------------------------------------------------------------------------- losses


def detection_loss(loss_dict: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """d_b = sum of the detector's training losses (classifier, box_reg, objectness, rpn_box)."""
    if not isinstance(loss_dict, Mapping) or not loss_dict:
        raise TypeError(
            "detection_loss expects the non-empty loss dict a torchvision detector returns in "
            f"train mode, got {type(loss_dict).__name__} (is the detector in eval mode?)"
        )
    return torch.stack([value for value in loss_dict.values()]).sum()


def masked_rmse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RMSE over the valid pixels of the whole batch (pooled), in the units of ``target``.

    ``pred`` (n, 1, H, W); ``target`` and boolean ``mask`` (n, 1, H, W) or (n, H, W). With
    no valid pixel the result is a zero that keeps the graph (no NaN gradient).
    """
    pred, target, mask = align_dense(pred, target, mask)
    squared = torch.where(mask, (pred - target) ** 2, torch.zeros_like(pred))
    count = mask.sum()
    if count == 0:
        return pred.sum() * 0.0
    # clamp keeps the gradient of sqrt finite (zero) when the error is exactly 0
    return (squared.sum() / count).clamp_min(1e-20).sqrt()


def depth_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, scale: float = DEPTH_LOSS_SCALE
) -> torch.Tensor:
    """d_b for depth: ``scale`` x :func:`masked_rmse` (disparity pixels when scale = 1)."""
    return scale * masked_rmse(pred, target, mask)


def segmentation_loss(
    outputs: Mapping[str, torch.Tensor],
    labels: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    weight: float = SEGMENTATION_LOSS_WEIGHT,
) -> torch.Tensor:
    """d_e = weight * CE(outputs["out"]) + weight * CE(outputs["aux"]) (aux when present).

    ``labels`` (n, H, W) int64 train ids, ``ignore_index`` pixels excluded; cross-entropy is
    the mean over valid pixels, in nats. All-ignore batches give a graph-keeping zero.
    """
    if "out" not in outputs:
        raise KeyError(f"segmentation outputs need an 'out' entry, got keys {sorted(outputs)}")
    if labels.dtype not in (torch.int64, torch.int32, torch.uint8):
        raise TypeError(f"labels must be an integer tensor of train ids, got {labels.dtype}")
    labels = labels.long()
    valid = labels != ignore_index
    total = outputs["out"].sum() * 0.0
    for key in ("out", "aux"):
        logits = outputs.get(key)
        if logits is None:
            continue
        if (
            logits.dim() != 4
            or logits.shape[0] != labels.shape[0]
            or logits.shape[-2:] != labels.shape[-2:]
        ):
            raise ValueError(
                f"outputs[{key!r}] has shape {tuple(logits.shape)}; expected (n, C, H, W) "
                f"matching labels of shape {tuple(labels.shape)}"
            )
        if valid.any():
            total = total + weight * F.cross_entropy(logits, labels, ignore_index=ignore_index)
    return total


# --------------------------------------------------------------------------- pretrained weights

_PRETRAINED: dict[str, WeightsEnum] = {
    "detection": FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
    "depth": MobileNet_V3_Large_Weights.IMAGENET1K_V1,
    "segmentation": ResNet50_Weights.IMAGENET1K_V1,
}


def pretrained_weight_files(task: str) -> list[tuple[str, Path]]:
    """(URL, cache path) of the file(s) ``build_task_model(task, "paper", True)`` reads."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    url = _PRETRAINED[task].url
    return [(url, Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path))]


def _load_pretrained(task: str, model: nn.Module) -> None:
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
