"""Metrics against known values and hand computations."""

from __future__ import annotations

import contextlib
import io
import math

import pytest
import torch
from pycocotools.coco import COCO

from taskcodecs.data.labels import COCO_ID
from taskcodecs.evaluation.metrics import (
    ConfusionMatrix,
    MaskedRMSE,
    coco_map,
    disparity_rmse,
    psnr,
)
from taskcodecs.layers import pad_to_multiple
from taskcodecs.models.losses import rmse255


def test_psnr_of_a_constant_error_of_a_tenth_is_20_db() -> None:
    x = torch.rand(3, 3, 16, 24) * 0.8
    values = psnr(x, x + 0.1)
    assert values.shape == (3,)
    torch.testing.assert_close(values, torch.full((3,), 20.0), atol=1e-4, rtol=0)
    torch.testing.assert_close(psnr(255 * x, 255 * x + 25.5, data_range=255.0), values)
    assert math.isinf(float(psnr(x, x)[0]))


def test_psnr_excludes_padding() -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 3, 40, 50)
    x_padded, padding = pad_to_multiple(x, multiple=16)  # 48 x 64
    y_padded = x_padded + 0.1
    y_padded[..., 40:, :] += 0.4  # errors only in the padding rows
    excluded = psnr(x_padded, y_padded, padding=padding)
    torch.testing.assert_close(excluded, torch.tensor([20.0]), atol=1e-4, rtol=0)
    included = psnr(x_padded, y_padded)
    assert float(included) < float(excluded) - 1.0
    with pytest.raises(ValueError, match="padding"):
        psnr(x, x, padding=(0, 60, 0, 0))


def test_rmse255_is_a_mean_of_per_image_norms() -> None:
    x = torch.zeros(2, 1, 2, 2)
    y = torch.zeros(2, 1, 2, 2)
    y[0] = 0.1  # image 0: RMSE 0.1
    y[1, 0, 0, 0] = 0.4  # image 1: RMSE sqrt(0.16 / 4) = 0.2
    expected = 255 * (0.1 + 0.2) / 2  # not 255 * sqrt(mean MSE) = 255 * 0.158
    assert float(rmse255(x, y)) == pytest.approx(expected, rel=1e-6)
    x.requires_grad_(True)
    rmse255(x, x.detach()).backward()  # identical images: finite gradient
    assert torch.isfinite(x.grad).all()
    padded = torch.cat([y, torch.ones(2, 1, 2, 2)], dim=-1)
    reference = torch.cat([x.detach(), torch.zeros(2, 1, 2, 2)], dim=-1)
    assert float(rmse255(reference, padded, padding=(0, 2, 0, 0))) == pytest.approx(expected, rel=1e-6)


def test_disparity_rmse_uses_only_valid_pixels() -> None:
    pred = torch.tensor([[[[2.0, 5.0], [1.0, 100.0]]]])
    target = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])
    mask = target > 0
    assert disparity_rmse(pred, target, mask) == pytest.approx(math.sqrt((1 + 16 + 0) / 3))
    accumulator = MaskedRMSE()  # pooled over batches, not a mean of batch RMSEs
    accumulator.update(pred, target, mask)
    accumulator.update(torch.full((1, 1, 1, 1), 3.0), torch.ones(1, 1, 1, 1), torch.ones(1, 1, 1, 1, dtype=torch.bool))
    assert accumulator.compute() == pytest.approx(math.sqrt((1 + 16 + 0 + 4) / 4))
    with pytest.raises(ValueError, match="no valid pixel"):
        disparity_rmse(pred, target, torch.zeros_like(mask))


def test_confusion_matrix_miou_by_hand() -> None:
    matrix = ConfusionMatrix(num_classes=3, ignore_index=255)
    target = torch.tensor([[0, 0, 1, 1, 1, 255]])
    pred = torch.tensor([[0, 1, 1, 1, 0, 2]])  # last pixel ignored; class 2 never occurs
    matrix.update(pred, target)
    scores = matrix.compute()
    # class 0: TP 1, FP 1, FN 1 -> 1/3; class 1: TP 2, FP 1, FN 1 -> 1/2; class 2: empty
    assert scores.iou[0] == pytest.approx(1 / 3) and scores.iou[1] == pytest.approx(1 / 2)
    assert math.isnan(scores.iou[2])
    assert scores.miou == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert scores.pixel_accuracy == pytest.approx(3 / 5)
    logits = torch.nn.functional.one_hot(pred.clamp(max=2), 3).permute(0, 2, 1).float()
    matrix.update(logits.unsqueeze(-1), target.unsqueeze(-1))  # logits (n, C, H, W)
    assert matrix.matrix.sum() == 10 and matrix.compute().miou == pytest.approx(scores.miou)
    with pytest.raises(ValueError, match="0..2"):
        matrix.update(torch.tensor([[5]]), torch.tensor([[0]]))
    matrix.reset()
    with pytest.raises(ValueError, match="empty"):
        matrix.compute()


def test_confusion_matrix_cityscapes_defaults_ignore_19() -> None:
    matrix = ConfusionMatrix()
    target = torch.tensor([[[0, 18, 19, 19]]])
    matrix.update(torch.tensor([[[0, 18, 3, 4]]]), target)
    scores = matrix.compute()
    assert scores.miou == 1.0 and len(scores.iou) == 19


def _targets() -> list[dict[str, torch.Tensor]]:
    return [
        {"boxes": torch.tensor([[10.0, 10.0, 60.0, 50.0], [100.0, 40.0, 180.0, 120.0]]),
         "labels": torch.tensor([COCO_ID["car"], COCO_ID["person"]])},
        {"boxes": torch.tensor([[5.0, 5.0, 30.0, 40.0]]), "labels": torch.tensor([COCO_ID["car"]]),
         "image_id": torch.tensor(42)},
    ]


def _predictions(shift: float = 0.0) -> list[dict[str, torch.Tensor]]:
    return [
        {"boxes": t["boxes"] + torch.tensor([shift, 0.0, shift, 0.0]), "labels": t["labels"],
         "scores": torch.ones(len(t["labels"]))}
        for t in _targets()
    ]


def test_coco_map_perfect_shifted_and_empty_predictions() -> None:
    perfect = coco_map(_predictions(), _targets())
    assert perfect == {"mAP": 1.0, "AP50": 1.0, "AP75": 1.0}
    shifted = coco_map(_predictions(shift=8.0), _targets())
    assert 0.0 < shifted["mAP"] < 1.0 and shifted["AP50"] == 1.0
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
              "scores": torch.zeros(0)}] * 2
    assert coco_map(empty, _targets()) == {"mAP": 0.0, "AP50": 0.0, "AP75": 0.0}
    wrong_class = _predictions()
    wrong_class[0]["labels"] = torch.tensor([COCO_ID["dog"], COCO_ID["person"]])
    assert coco_map(wrong_class, _targets())["mAP"] < 1.0


def test_coco_map_with_a_coco_ground_truth_object() -> None:
    coco_gt = COCO()  # as loaded from an instances_*.json: xywh boxes, segment areas
    coco_gt.dataset = {
        "images": [{"id": 7, "height": 128, "width": 256}, {"id": 42, "height": 128, "width": 256}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3, "bbox": [10, 10, 50, 40], "area": 1500, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [100, 40, 80, 80], "area": 5000, "iscrowd": 0},
            {"id": 3, "image_id": 42, "category_id": 3, "bbox": [5, 5, 25, 35], "area": 700, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
    predictions = _predictions()
    predictions[0]["image_id"] = 7
    predictions[1]["image_id"] = 42
    assert coco_map(predictions, coco_gt)["mAP"] == 1.0
    assert coco_map(predictions[1:], coco_gt)["mAP"] == pytest.approx(1.0)  # named image only
    with pytest.raises(ValueError, match="image_id"):
        coco_map(_predictions(), coco_gt)
    with pytest.raises(ValueError, match="predictions for"):
        coco_map(_predictions()[:1], _targets())
