"""Task heads built from torchvision (their losses: :mod:`taskcodecs.models.losses`).

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

``pretrained=True`` (paper presets only) loads torchvision weights (:mod:`taskcodecs.models.pretrained`).
Detection loads the full COCO Faster R-CNN (91 classes, as here) and, like torchvision,
leaves only ``layer2..4`` of the ResNet trainable; depth and segmentation have other class
counts than torchvision's heads, so only the ImageNet backbone is loaded.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import (
    mobilenet_v3_large,
)
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection import FasterRCNN, fasterrcnn_resnet50_fpn_v2
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import (
    FastRCNNPredictor,
    TwoMLPHead,
)
from torchvision.models.segmentation import deeplabv3_resnet50, lraspp_mobilenet_v3_large
from torchvision.models.segmentation.deeplabv3 import ASPP, DeepLabV3
from torchvision.models.segmentation.fcn import FCNHead
from torchvision.models.segmentation.lraspp import LRASPP
from torchvision.ops import MultiScaleRoIAlign

from taskcodecs.data.labels import NUM_CLASSES
from taskcodecs.models.names import PRESETS
from taskcodecs.models.pretrained import load_pretrained

__all__ = [
    "TASKS",
    "build_task_model",
    "set_detector_resolution",
]

TASKS = ("detection", "depth", "segmentation")
COCO_NUM_CLASSES = 91  # background + COCO category ids 1..90 (80 used)
TINY_WIDTH_MULT = 0.25
TINY_DETECTION_SIZE = (128, 256)  # (min_size, max_size): 128x256 inputs are not resized


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
        load_pretrained(task, model)
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


# --------------------------------------------------------------------------- pretrained weights


