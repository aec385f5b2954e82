"""The training losses: the base task's d_b, the enhancement's d_e, and the reconstruction
distortion (255 x RMSE), each a 0-d tensor with its gradient.

    detection      d_b = detection_loss(detector(images, targets))     (sum of its 4 losses)
    depth          d_b = depth_loss(pred, disparity, valid)            (masked RMSE, pixels)
    segmentation   d_e = segmentation_loss({"out", "aux"}, labels)     (20 CE + 20 CE aux, nats)
    reconstruction d   = rmse255(x_hat, x, padding)                    (255 x RMSE of [0,1] images)

The evaluation metrics that are not losses (PSNR, pooled RMSE, mIoU, COCO mAP) are
:mod:`taskcodecs.evaluation.metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from taskcodecs.data.labels import IGNORE_INDEX

# d_b for depth = DEPTH_LOSS_SCALE x masked RMSE in disparity pixels. 1.0 keeps d_b in pixels;
# experiment configs may pass another ``scale`` to depth_loss.


# d_b for depth = DEPTH_LOSS_SCALE x masked RMSE in disparity pixels. 1.0 keeps d_b in pixels;
# experiment configs may pass another ``scale`` to depth_loss.
DEPTH_LOSS_SCALE = 1.0


SEGMENTATION_LOSS_WEIGHT = 20.0  # d_e = 20 CE(out) + 20 CE(aux), as in the original code


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


def rmse255(
    x: torch.Tensor, y: torch.Tensor, padding: Sequence[int] | None = None
) -> torch.Tensor:
    """255 x mean over images of the per-image RMSE of [0,1] images: a 0-d tensor with grad.

    This is the reconstruction distortion of DESIGN §3 (a norm, not an MSE). The per-image
    MSE is clamped at 1e-20 before the square root so identical images give a finite (zero)
    gradient.
    """
    x, y = image_pair(x, y, padding)
    mse = ((x - y) ** 2).flatten(1).mean(1)
    return 255.0 * mse.clamp_min(1e-20).sqrt().mean()


def image_pair(
    x: torch.Tensor, y: torch.Tensor, padding: Sequence[int] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(
            f"expected two (n, c, H, W) images of the same shape, got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    if padding is not None:
        left, right, top, bottom = (int(p) for p in padding)
        height, width = x.shape[-2:]
        if min(left, right, top, bottom) < 0 or left + right >= width or top + bottom >= height:
            raise ValueError(f"padding {tuple(padding)} does not fit {height}x{width} images")
        x = x[..., top : height - bottom, left : width - right]
        y = y[..., top : height - bottom, left : width - right]
    return x, y


def align_dense(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check a dense prediction, its target and its validity mask; return them aligned.

    ``pred`` (n, 1, H, W) (or any shape); ``target`` and ``mask`` of the same shape, or
    (n, H, W) next to an (n, 1, H, W) ``pred`` (then given the channel axis). Raises
    ValueError for mismatched shapes and TypeError for a non-boolean ``mask``.
    """
    if pred.dim() == 4 and pred.shape[1] == 1:
        target = target.unsqueeze(1) if target.dim() == 3 else target
        mask = mask.unsqueeze(1) if mask.dim() == 3 else mask
    if pred.shape != target.shape or pred.shape != mask.shape:
        raise ValueError(
            f"pred {tuple(pred.shape)}, target {tuple(target.shape)} and mask "
            f"{tuple(mask.shape)} must have the same shape"
        )
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a boolean tensor (True = valid pixel), got {mask.dtype}")
    return pred, target, mask
