"""Resampling layers: 5x5 stride-2 convs and transposed convs, DownSample and UpSample.

Used where the paper works at half resolution (Cityscapes)::

    DownSample: (n, c_in, H, W) -> bilinear x1/2 -> (n, c_in, H/2, W/2) -> conv 5x5 -> c_out
    UpSample:   (n, c_in, H, W) -> nearest  x2   -> (n, c_in, 2H,  2W)  -> conv 5x5 -> c_out
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from taskcodecs.layers.checks import check_positive

__all__ = ["DownSample", "UpSample", "conv5x5_down", "deconv5x5_up"]


def conv5x5_down(ch_in: int, ch_out: int) -> nn.Conv2d:
    """5x5 conv, stride 2, padding 2: (n, ch_in, H, W) -> (n, ch_out, ceil(H/2), ceil(W/2))."""
    return nn.Conv2d(ch_in, ch_out, kernel_size=5, stride=2, padding=2)


def deconv5x5_up(ch_in: int, ch_out: int) -> nn.ConvTranspose2d:
    """5x5 transposed conv, stride 2, output_padding 1: (n, ch_in, h, w) -> (n, ch_out, 2h, 2w)."""
    return nn.ConvTranspose2d(ch_in, ch_out, kernel_size=5, stride=2, padding=2, output_padding=1)


class DownSample(nn.Module):
    """Bilinear x1/2 then 5x5 conv: (n, ch_in, H, W) -> (n, ch_out, floor(H/2), floor(W/2))."""

    def __init__(self, ch_in: int, ch_out: int) -> None:
        super().__init__()
        check_positive(ch_in=ch_in, ch_out=ch_out)
        self.conv = nn.Conv2d(ch_in, ch_out, kernel_size=5, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
        return self.conv(x)


class UpSample(nn.Module):
    """Nearest x2 then 5x5 conv: (n, ch_in, h, w) -> (n, ch_out, 2h, 2w).

    ``forward(x, size=(H, W))`` resizes (nearest) to exactly ``size`` instead of x2, for
    originals with odd sides.
    """

    def __init__(self, ch_in: int, ch_out: int) -> None:
        super().__init__()
        check_positive(ch_in=ch_in, ch_out=ch_out)
        self.conv = nn.Conv2d(ch_in, ch_out, kernel_size=5, padding=2)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        if size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            x = F.interpolate(x, size=tuple(size), mode="nearest")
        return self.conv(x)
