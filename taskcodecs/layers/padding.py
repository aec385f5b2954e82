"""Padding an image to a multiple of the codec's downsampling, and cropping it back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = ["Padding", "crop_padding", "pad_to_multiple"]


class Padding(NamedTuple):
    """Pixels added on each side, in ``torch.nn.functional.pad`` order."""

    left: int
    right: int
    top: int
    bottom: int


def pad_to_multiple(
    x: torch.Tensor, multiple: int = 64, mode: str = "replicate"
) -> tuple[torch.Tensor, Padding]:
    """Pad the bottom and right of ``x`` (n, c, H, W) so both sides are multiples of ``multiple``.

    Codecs need sides that are multiples of 16 (the transforms' downsampling); use 64 when a
    hyperprior (another 4x) is on. ``mode="replicate"`` (default) repeats the last row and
    column: no artificial edge, so padding costs few bits; ``mode="constant"`` pads zeros.
    Top and left are never padded, so pixel (0, 0) stays put. Returns the padded tensor and
    the :class:`Padding` to give to :func:`crop_padding` (and to metrics that exclude it).
    """
    if x.dim() != 4:
        raise ValueError(
            f"pad_to_multiple expects an (n, c, H, W) tensor, got shape {tuple(x.shape)}"
        )
    if multiple < 1:
        raise ValueError(f"multiple must be a positive integer, got {multiple}")
    if mode not in ("replicate", "constant"):
        raise ValueError(f"mode must be 'replicate' or 'constant', got {mode!r}")
    height, width = x.shape[-2:]
    padding = Padding(0, (-width) % multiple, 0, (-height) % multiple)
    if padding.right == 0 and padding.bottom == 0:
        return x, padding
    return F.pad(x, tuple(padding), mode=mode), padding


def crop_padding(x: torch.Tensor, padding: Sequence[int]) -> torch.Tensor:
    """Remove ``padding`` = (left, right, top, bottom) pixels from the last two dims of ``x``."""
    left, right, top, bottom = (int(p) for p in padding)
    if min(left, right, top, bottom) < 0:
        raise ValueError(f"padding must be non-negative, got {tuple(padding)}")
    height, width = x.shape[-2:]
    if left + right >= width or top + bottom >= height:
        raise ValueError(f"padding {tuple(padding)} leaves nothing of a {height}x{width} tensor")
    return x[..., top : height - bottom, left : width - right]
