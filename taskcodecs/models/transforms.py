"""ELIC-style analysis/synthesis transforms (no attention, no GDN) and resampling helpers.

Shapes for the paper preset (N = ``latent_ch`` = 192, B = ``blocks_per_stage``)::

    AnalysisTransform (f, encoder)                   SynthesisTransform (g, mirror)
    x       (n, 3,   H,    W)                        y_hat  (n, N,   H/16, W/16)
    conv 5x5/2 -> (n, 24,  H/2,  W/2)  + B x RB      deconv 5x5/2 -> (n, 192, H/8, W/8) + B x RB
    conv 5x5/2 -> (n, 48,  H/4,  W/4)  + B x RB      deconv 5x5/2 -> (n, 48,  H/4, W/4) + B x RB
    conv 5x5/2 -> (n, 192, H/8,  W/8)  + B x RB      deconv 5x5/2 -> (n, 24,  H/2, W/2) + B x RB
    conv 5x5/2 -> (n, N,   H/16, W/16) = y           deconv 5x5/2 -> (n, out, H,   W)

RB is :class:`ResidualBlock`. There is no nonlinearity outside the residual blocks (as in
ELIC). Reconstruction decoders use B = 3, task decoders B = 1. Inputs whose sides are not
multiples of 16 must be padded first (:func:`pad_to_multiple`): the strided convs round odd
sides up, so the synthesis output would not match the input size.

Resampling helpers, used where the paper works at half resolution (Cityscapes)::

    DownSample: (n, c_in, H, W) -> bilinear x1/2 -> (n, c_in, H/2, W/2) -> conv 5x5 -> c_out
    UpSample:   (n, c_in, H, W) -> nearest  x2   -> (n, c_in, 2H,  2W)  -> conv 5x5 -> c_out
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AnalysisTransform",
    "DownSample",
    "Padding",
    "ResidualBlock",
    "SynthesisTransform",
    "UpSample",
    "crop_padding",
    "pad_to_multiple",
]


class ResidualBlock(nn.Module):
    """ELIC residual bottleneck block: ``x + conv1x1(elu(conv3x3(elu(conv1x1(x)))))``.

    Design choice: like ELIC's ``ResidualBottleneckBlock`` the inner 1x1 and 3x3 convs run at
    ``hidden_ch`` = ``ch // 2`` channels (a bottleneck); ELU replaces ELIC's ReLU, as DESIGN
    §3 says. Pass ``hidden_ch=ch`` for a block without bottleneck. Shape is preserved:
    (n, ch, h, w) -> (n, ch, h, w).
    """

    def __init__(self, ch: int, hidden_ch: int | None = None) -> None:
        super().__init__()
        hidden_ch = max(1, ch // 2) if hidden_ch is None else hidden_ch
        _check_positive(ch=ch, hidden_ch=hidden_ch)
        self.conv1 = nn.Conv2d(ch, hidden_ch, kernel_size=1)
        self.conv2 = nn.Conv2d(hidden_ch, hidden_ch, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(hidden_ch, ch, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.elu(self.conv1(x))
        out = F.elu(self.conv2(out))
        return x + self.conv3(out)


def _residual_stack(ch: int, num_blocks: int) -> nn.Sequential:
    return nn.Sequential(*(ResidualBlock(ch) for _ in range(num_blocks)))


def _conv5x5_down(ch_in: int, ch_out: int) -> nn.Conv2d:
    return nn.Conv2d(ch_in, ch_out, kernel_size=5, stride=2, padding=2)


def _deconv5x5_up(ch_in: int, ch_out: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(ch_in, ch_out, kernel_size=5, stride=2, padding=2, output_padding=1)


class AnalysisTransform(nn.Module):
    """Encoder: (n, in_ch, H, W) -> (n, latent_ch, H/16, W/16); see the module docstring.

    ``widths`` are the channels after the first three strided convs; each of those three is
    followed by ``blocks_per_stage`` residual blocks (0 is allowed: a linear conv stack).
    """

    downsampling = 16

    def __init__(
        self,
        in_ch: int = 3,
        widths: Sequence[int] = (24, 48, 192),
        latent_ch: int = 192,
        blocks_per_stage: int = 3,
    ) -> None:
        super().__init__()
        widths = _check_widths(widths)
        _check_positive(in_ch=in_ch, latent_ch=latent_ch)
        _check_blocks(blocks_per_stage)
        layers: list[nn.Module] = []
        ch = in_ch
        for width in widths:
            layers += [_conv5x5_down(ch, width), _residual_stack(width, blocks_per_stage)]
            ch = width
        layers.append(_conv5x5_down(ch, latent_ch))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SynthesisTransform(nn.Module):
    """Decoder: (n, latent_ch, h, w) -> (n, out_ch, 16h, 16w); mirror of the analysis.

    ``widths`` are the channels after the first three transposed convs (paper: 192, 48, 24),
    each followed by ``blocks_per_stage`` residual blocks (3 for reconstruction, 1 for task
    decoders). The output is linear (no clamp, no sigmoid): the caller decides.
    """

    upsampling = 16

    def __init__(
        self,
        latent_ch: int = 192,
        widths: Sequence[int] = (192, 48, 24),
        out_ch: int = 3,
        blocks_per_stage: int = 3,
    ) -> None:
        super().__init__()
        widths = _check_widths(widths)
        _check_positive(latent_ch=latent_ch, out_ch=out_ch)
        _check_blocks(blocks_per_stage)
        layers: list[nn.Module] = []
        ch = latent_ch
        for width in widths:
            layers += [_deconv5x5_up(ch, width), _residual_stack(width, blocks_per_stage)]
            ch = width
        layers.append(_deconv5x5_up(ch, out_ch))
        self.layers = nn.Sequential(*layers)

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        return self.layers(y_hat)


class DownSample(nn.Module):
    """Bilinear x1/2 then 5x5 conv: (n, ch_in, H, W) -> (n, ch_out, floor(H/2), floor(W/2))."""

    def __init__(self, ch_in: int, ch_out: int) -> None:
        super().__init__()
        _check_positive(ch_in=ch_in, ch_out=ch_out)
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
        _check_positive(ch_in=ch_in, ch_out=ch_out)
        self.conv = nn.Conv2d(ch_in, ch_out, kernel_size=5, padding=2)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        if size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            x = F.interpolate(x, size=tuple(size), mode="nearest")
        return self.conv(x)


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


def _check_widths(widths: Sequence[int]) -> tuple[int, int, int]:
    widths = tuple(int(w) for w in widths)
    if len(widths) != 3 or min(widths) < 1:
        raise ValueError(f"widths must be three positive channel counts, got {widths}")
    return widths  # type: ignore[return-value]


def _check_blocks(blocks_per_stage: int) -> None:
    if int(blocks_per_stage) != blocks_per_stage or blocks_per_stage < 0:
        raise ValueError(f"blocks_per_stage must be a non-negative integer, got {blocks_per_stage}")


def _check_positive(**channels: int) -> None:
    for name, value in channels.items():
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
