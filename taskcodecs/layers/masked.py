"""MaskedConv2d: a convolution that reads only some of its taps (type A, B, checkerboard).

Masks of a 5x5 kernel (``x`` read, ``o`` the centre, ``.`` masked)::

    type A             type B             checkerboard
    x x x x x          x x x x x          . x . x .
    x x x x x          x x x x x          x . x . x
    x x . . .          x x o . .          . x . x .
    . . . . .          . . . . .          x . x . x
    . . . . .          . . . . .          . x . x .

The coding engine that runs these convs step by step is :mod:`taskcodecs.coding.context`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["MASK_TYPES", "MaskedConv2d"]

MASK_TYPES: tuple[str, ...] = ("A", "B", "checkerboard")


class MaskedConv2d(nn.Conv2d):
    """A masked conv that never touches its parameters: ``conv(x, weight * mask)``.

    ``mask_type="A"`` masks the centre tap and everything after it in raster order (the
    autoregressive context's causal taps, drawn above); ``"B"`` keeps the
    centre; ``"checkerboard"`` keeps the taps with odd dy + dx (12 of a 5x5 kernel).
    Unlike CompressAI's ``MaskedConv2d`` (whose ``forward`` rewrites ``weight.data`` in
    place), the weight tensor is left as it is: the masked-out taps never influence the
    output, receive exactly zero gradient, and a frozen model stays bit-identical however
    often it runs. Same constructor, initialization and state-dict keys (``weight``,
    ``bias``, ``mask``) as CompressAI's. (n, C_in, H, W) -> (n, C_out, H', W').
    """

    def __init__(self, *args: Any, mask_type: str = "A", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if mask_type not in MASK_TYPES:
            raise ValueError(f"mask_type must be one of {MASK_TYPES}, got {mask_type!r}")
        self.mask_type = mask_type
        mask = torch.ones_like(self.weight.detach())
        _, _, height, width = mask.shape
        if mask_type == "checkerboard":
            dy = torch.arange(height)[:, None] - height // 2
            dx = torch.arange(width)[None, :] - width // 2
            mask *= ((dy + dx) % 2 == 1).to(mask.dtype)
        else:
            mask[:, :, height // 2, width // 2 + (mask_type == "B") :] = 0
            mask[:, :, height // 2 + 1 :] = 0
        self.register_buffer("mask", mask)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        """Refuse a stored mask other than this conv's (e.g. weights of another context
        model): ``load_state_dict`` raises instead of silently changing the taps."""
        own_mask = self.mask.clone()
        stored = state_dict.get(f"{prefix}mask")
        super()._load_from_state_dict(state_dict, prefix, *args)
        if isinstance(stored, Tensor) and not torch.equal(stored.to(own_mask), own_mask):
            self.mask.copy_(own_mask)  # load_state_dict raises; the taps stay this conv's
            error_msgs = args[-1]
            error_msgs.append(
                f"{prefix}mask: the stored mask is not this conv's {self.mask_type!r} mask "
                "(weights of a model with another context?)"
            )

    def masked_weight(self) -> Tensor:
        """The weight the convolution uses: ``weight * mask`` (a new tensor)."""
        return self.weight * self.mask

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.masked_weight(), self.bias)
