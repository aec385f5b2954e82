"""Evaluation metrics, each with its unit.

==================  ==========================================  ===========================
function            value                                       inputs
==================  ==========================================  ===========================
psnr                dB per image, (n,)                          (n, c, H, W) on [0, 1]
disparity_rmse      disparity pixels, pooled over valid pixels  (n, 1, H, W) + bool mask
ConfusionMatrix     mIoU over 19 classes, per-class IoU          logits or train ids
coco_map            box AP@[.5:.95], AP50, AP75 (COCOeval)      torchvision-style dicts
==================  ==========================================  ===========================

Image metrics take ``padding`` = (left, right, top, bottom) as returned by
``taskcodecs.layers.pad_to_multiple``; padded pixels are cropped from both images
before measuring (255 x RMSE, the reconstruction loss, is
:func:`taskcodecs.models.losses.rmse255`). Values are used as given: clamp (and round to 8 bits) first when the
decoded image is meant as a real picture. MS-SSIM is ``pytorch_msssim.ms_ssim`` (used by
:mod:`taskcodecs.evaluation.images`), not re-implemented here.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from taskcodecs.models.losses import align_dense, image_pair

__all__ = [
    "ConfusionMatrix",
    "MaskedRMSE",
    "SegmentationScores",
    "align_dense",
    "coco_map",
    "disparity_rmse",
    "psnr",
]

# --------------------------------------------------------------------------- images


def psnr(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    padding: Sequence[int] | None = None,
) -> torch.Tensor:
    """PSNR in dB per image, (n,): 10 log10(data_range^2 / MSE); identical images give inf."""
    x, y = image_pair(x, y, padding)
    mse = ((x - y) ** 2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)


# --------------------------------------------------------------------------- depth


class MaskedRMSE:
    """Accumulates squared error over valid pixels; ``compute()`` is the pooled RMSE.

    Pooled over all valid pixels of everything seen (not a mean of per-batch RMSEs), in the
    units of the target (disparity pixels for Cityscapes).
    """

    def __init__(self) -> None:
        self.squared_error_sum = 0.0
        self.count = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        pred, target, mask = align_dense(pred, target, mask)
        error = (pred.detach().double() - target.double())[mask]
        self.squared_error_sum += float((error**2).sum())
        self.count += int(mask.sum())

    def compute(self) -> float:
        if self.count == 0:
            raise ValueError("no valid pixel seen: the RMSE is undefined")
        return (self.squared_error_sum / self.count) ** 0.5


def disparity_rmse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    """RMSE in disparity pixels over the valid (``mask``) pixels of the batch, pooled."""
    accumulator = MaskedRMSE()
    accumulator.update(pred, target, mask)
    return accumulator.compute()


# --------------------------------------------------------------------------- segmentation


@dataclass(frozen=True)
class SegmentationScores:
    """mIoU (fraction, 0..1) over classes with a non-empty union; per-class IoU (NaN if empty)."""

    miou: float
    iou: tuple[float, ...]
    pixel_accuracy: float


class ConfusionMatrix:
    """Pixel confusion counts, rows = target class, columns = predicted class.

    ``update(pred, target)``: ``pred`` is (n, C, H, W) logits (argmax taken) or (n, H, W)
    class ids; ``target`` (n, H, W) train ids with ``ignore_index`` pixels skipped.
    ``compute()``: IoU_c = TP / (TP + FP + FN). Classes whose union is zero (absent from both
    target and prediction) get NaN and are left out of the mean, so mIoU averages over the
    classes that occur.
    """

    def __init__(self, num_classes: int = 19, ignore_index: int = 19) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def reset(self) -> None:
        self.matrix.zero_()

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.dim() == target.dim() + 1:
            pred = pred.argmax(dim=1)
        if pred.shape != target.shape:
            raise ValueError(
                f"pred {tuple(pred.shape)} (class ids or logits) does not match target "
                f"{tuple(target.shape)}"
            )
        pred, target = pred.detach().long().cpu().flatten(), target.detach().long().cpu().flatten()
        keep = target != self.ignore_index
        pred, target = pred[keep], target[keep]
        n = self.num_classes
        for name, ids in (("target", target), ("pred", pred)):
            if ids.numel() and (ids.min() < 0 or ids.max() >= n):
                raise ValueError(
                    f"{name} class ids must lie in 0..{n - 1} (or be {self.ignore_index} in "
                    f"target), got {int(ids.min())}..{int(ids.max())}"
                )
        self.matrix += torch.bincount(target * n + pred, minlength=n * n).view(n, n)

    def compute(self) -> SegmentationScores:
        matrix = self.matrix.double()
        total = float(matrix.sum())
        if total == 0:
            raise ValueError("the confusion matrix is empty: no labelled pixel was seen")
        true_positive = matrix.diag()
        union = matrix.sum(0) + matrix.sum(1) - true_positive
        iou = torch.where(union > 0, true_positive / union.clamp_min(1), torch.nan)
        return SegmentationScores(
            miou=float(iou[union > 0].mean()),
            iou=tuple(float(v) for v in iou),
            pixel_accuracy=float(true_positive.sum()) / total,
        )


# --------------------------------------------------------------------------- detection


def coco_map(
    predictions: Sequence[Mapping[str, object]],
    ground_truth: Sequence[Mapping[str, object]] | COCO,
) -> dict[str, float]:
    """Box AP with pycocotools: {"mAP": AP@[.5:.95], "AP50": ..., "AP75": ...}, fractions.

    ``predictions``: one torchvision-style dict per image, "boxes" (K, 4) xyxy in pixels of
    the annotated image, "scores" (K,), "labels" (K,) category ids. ``ground_truth``: either
    a list of target dicts aligned with ``predictions`` ("boxes", "labels", optional
    "image_id" (default: list position), "iscrowd", "area" (default: box area)), or a
    pycocotools ``COCO`` whose images are named by each prediction's "image_id"; only
    those images are evaluated. No prediction at all gives 0.0 everywhere.
    """
    if isinstance(ground_truth, COCO):
        coco_gt = ground_truth
        try:
            image_ids = [_as_int(p["image_id"]) for p in predictions]
        except KeyError as err:
            raise ValueError("with a COCO ground truth each prediction needs an 'image_id'") from err
        unknown = set(image_ids) - set(coco_gt.getImgIds())
        if unknown:
            raise ValueError(f"predictions name image ids absent from the ground truth: {sorted(unknown)[:5]}")
    else:
        if len(ground_truth) != len(predictions):
            raise ValueError(
                f"{len(predictions)} predictions for {len(ground_truth)} ground-truth images"
            )
        image_ids = [_as_int(t.get("image_id", i)) for i, t in enumerate(ground_truth)]
        coco_gt = _coco_from_targets(ground_truth, image_ids)
    if not coco_gt.getAnnIds(imgIds=image_ids, iscrowd=False):
        raise ValueError("no ground-truth box in the evaluated images: box AP is undefined")
    detections = [
        {"image_id": image_id, "category_id": int(label), "bbox": box, "score": float(score)}
        for image_id, p in zip(image_ids, predictions)
        for box, score, label in zip(
            _boxes_xywh(p["boxes"]), _numbers(p["scores"]), _numbers(p["labels"])
        )
    ]
    if not detections:
        return {"mAP": 0.0, "AP50": 0.0, "AP75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(detections)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.params.imgIds = sorted(set(image_ids))
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    return {"mAP": max(float(stats[0]), 0.0), "AP50": max(float(stats[1]), 0.0),
            "AP75": max(float(stats[2]), 0.0)}


def _coco_from_targets(targets: Sequence[Mapping[str, object]], image_ids: list[int]) -> COCO:
    if len(set(image_ids)) != len(image_ids):
        raise ValueError("ground-truth image ids must be unique")
    annotations = []
    categories: set[int] = set()
    for image_id, target in zip(image_ids, targets):
        boxes = _boxes_xywh(target["boxes"])
        labels = _numbers(target["labels"])
        crowd = _numbers(target["iscrowd"]) if "iscrowd" in target else [0] * len(boxes)
        areas = _numbers(target["area"]) if "area" in target else [w * h for _, _, w, h in boxes]
        if not len(boxes) == len(labels) == len(crowd) == len(areas):
            raise ValueError(f"image {image_id}: boxes, labels, iscrowd and area differ in length")
        for box, label, is_crowd, area in zip(boxes, labels, crowd, areas):
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": int(label),
                "bbox": box, "area": float(area), "iscrowd": int(is_crowd),
            })
            categories.add(int(label))
    coco = COCO()
    coco.dataset = {
        "images": [{"id": image_id} for image_id in image_ids],
        "annotations": annotations,
        "categories": [{"id": c} for c in sorted(categories)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _boxes_xywh(boxes: object) -> list[list[float]]:
    array = np.asarray(_to_numpy(boxes), dtype=np.float64).reshape(-1, 4)
    if np.any(array[:, 2:] < array[:, :2]):
        raise ValueError("boxes must be (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1")
    array[:, 2:] -= array[:, :2]
    return array.tolist()


def _numbers(values: object) -> list:
    return np.asarray(_to_numpy(values)).reshape(-1).tolist()


def _to_numpy(values: object) -> object:
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values


def _as_int(value: object) -> int:
    return int(value.item()) if isinstance(value, torch.Tensor) else int(value)
