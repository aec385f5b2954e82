"""ELIC-style analysis/synthesis transforms (no attention, no GDN).

Shapes for the paper preset (N = ``latent_ch`` = 192, B = ``blocks_per_stage``)::

    AnalysisTransform (f, encoder)                   SynthesisTransform (g, mirror)
    x       (n, 3,   H,    W)                        y_hat  (n, N,   H/16, W/16)
    conv 5x5/2 -> (n, 24,  H/2,  W/2)  + B x RB      deconv 5x5/2 -> (n, 192, H/8, W/8) + B x RB
    conv 5x5/2 -> (n, 48,  H/4,  W/4)  + B x RB      deconv 5x5/2 -> (n, 48,  H/4, W/4) + B x RB
    conv 5x5/2 -> (n, 192, H/8,  W/8)  + B x RB      deconv 5x5/2 -> (n, 24,  H/2, W/2) + B x RB
    conv 5x5/2 -> (n, N,   H/16, W/16) = y           deconv 5x5/2 -> (n, out, H,   W)

RB is :class:`taskcodecs.layers.ResidualBlock`. There is no nonlinearity outside the residual
blocks (as in ELIC). Reconstruction decoders use B = 3, task decoders B = 1. Inputs whose
sides are not multiples of 16 must be padded first (:func:`taskcodecs.layers.pad_to_multiple`):
the strided convs round odd sides up, so the synthesis output would not match the input size.
The building blocks (residual blocks, resampling, padding) are in :mod:`taskcodecs.layers`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from taskcodecs.layers import conv5x5_down, deconv5x5_up, residual_stack
from taskcodecs.layers.checks import check_positive

__all__ = ["AnalysisTransform", "SynthesisTransform"]


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
        check_positive(in_ch=in_ch, latent_ch=latent_ch)
        _check_blocks(blocks_per_stage)
        layers: list[nn.Module] = []
        ch = in_ch
        for width in widths:
            layers += [conv5x5_down(ch, width), residual_stack(width, blocks_per_stage)]
            ch = width
        layers.append(conv5x5_down(ch, latent_ch))
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
        check_positive(latent_ch=latent_ch, out_ch=out_ch)
        _check_blocks(blocks_per_stage)
        layers: list[nn.Module] = []
        ch = latent_ch
        for width in widths:
            layers += [deconv5x5_up(ch, width), residual_stack(width, blocks_per_stage)]
            ch = width
        layers.append(deconv5x5_up(ch, out_ch))
        self.layers = nn.Sequential(*layers)

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        return self.layers(y_hat)


def _check_widths(widths: Sequence[int]) -> tuple[int, int, int]:
    widths = tuple(int(w) for w in widths)
    if len(widths) != 3 or min(widths) < 1:
        raise ValueError(f"widths must be three positive channel counts, got {widths}")
    return widths  # type: ignore[return-value]


def _check_blocks(blocks_per_stage: int) -> None:
    if int(blocks_per_stage) != blocks_per_stage or blocks_per_stage < 0:
        raise ValueError(f"blocks_per_stage must be a non-negative integer, got {blocks_per_stage}")
