"""Probe families V: a ladder of decoders of rising capacity, one name each.

A family is a network architecture *and* its training budget (both are part of V; the budget
lives in :class:`vinfo.fitting.FitSettings`). Names are parsed, so any width/depth works:

    linear        latent grid: a 1x1 conv to C_out·s² channels, then pixel-shuffle by the
                  stride s = H/h: each latent vector maps linearly to its s x s output patch.
                  vectors: one linear layer.
    mlp-W         one hidden layer of width W (1x1 convs on a grid, ReLU), same head
    mlp-DxW       D hidden layers of width W
    cnn-DxW       grid only: D 3x3 convs of width W (ReLU) at latent resolution, same head
    synthesis     grid only: the codec's own synthesis transform (5x5 stride-2 transposed
                  convs + residual blocks, :class:`taskcodecs.models.transforms.SynthesisTransform`)
                  for s = 16; for another power-of-two stride s = 2^k an equivalent stack of
                  k transposed convs built here (see :class:`UpsamplingStack`).

Data flow on a latent grid (all but ``synthesis``)::

    z [n, C_z, h, w] -> trunk (1x1 or 3x3 convs, ReLU) -> head 1x1 conv -> [n, C_out·s², h, w]
                     -> PixelShuffle(s) -> out [n, C_out, s·h, s·w]

Every body has one *head* layer (its last conv or linear layer): :func:`build_body` zeroes
its weights and sets its bias to the marginal solution, so an untrained probe equals the null
model. The null of a family is the same network fed a constant zero input (optional
ignorance, DESIGN §2; inputs are standardized, so zero is the mean representation). With
zero padding, a CNN or synthesis null still sees *where* it is (borders), so its null can
learn a spatial prior that the 1x1 families' nulls cannot: h_null differs between rungs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import nn

from taskcodecs.models.transforms import ResidualBlock, SynthesisTransform

GRID_LADDER = ("linear", "mlp-64", "mlp-256", "cnn-1x32", "cnn-3x64", "synthesis")
VECTOR_LADDER = ("linear", "mlp-64", "mlp-256", "mlp-2x256")

_NAME = re.compile(r"^(?:(linear)|(synthesis)|(mlp|cnn)-(?:(\d+)x)?(\d+))$")


@dataclass(frozen=True)
class FamilySpec:
    """A parsed family name: ``kind`` in linear/mlp/cnn/synthesis, ``depth`` x ``width``."""

    name: str
    kind: str
    depth: int = 0
    width: int = 0


def parse_family(name: str) -> FamilySpec:
    """``"mlp-2x256"`` -> FamilySpec("mlp-2x256", "mlp", 2, 256); ValueError on other names."""
    match = _NAME.match(name.strip())
    if not match:
        raise ValueError(
            f"unknown probe family {name!r}; expected linear, synthesis, mlp-W, mlp-DxW or "
            f"cnn-DxW (e.g. {', '.join(GRID_LADDER)})"
        )
    if match.group(1):
        return FamilySpec(name, "linear")
    if match.group(2):
        return FamilySpec(name, "synthesis")
    depth = int(match.group(4) or 1)
    width = int(match.group(5))
    if depth < 1 or width < 1:
        raise ValueError(f"probe family {name!r}: depth and width must be positive")
    return FamilySpec(name, match.group(3), depth, width)


def default_ladder(grid: bool) -> tuple[str, ...]:
    """The whole ladder for latent grids or for vectors, in order of rising capacity."""
    return GRID_LADDER if grid else VECTOR_LADDER


class PatchDecoder(nn.Module):
    """Latent grid -> trunk -> 1x1 head -> pixel-shuffle by ``stride`` (see module docstring)."""

    def __init__(self, trunk: nn.Module, trunk_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = nn.Conv2d(trunk_ch, out_ch * stride * stride, kernel_size=1)
        self.shuffle = nn.PixelShuffle(stride)
        self.bias_repeat = stride * stride  # head channel c·s² + i·s + j -> output channel c

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.head(self.trunk(z)))


class VectorDecoder(nn.Module):
    """[n, D_z] -> trunk (Linear + ReLU) -> Linear head -> [n, C_out]."""

    def __init__(self, trunk: nn.Module, trunk_dim: int, out_dim: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(trunk_dim, out_dim)
        self.bias_repeat = 1

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(z))


class UpsamplingStack(nn.Module):
    """Synthesis-like decoder for a stride s = 2^k other than 16 (built here, not the codec's).

    k transposed 5x5 stride-2 convs (output_padding 1), the first k-1 each followed by
    ``blocks`` ELIC residual blocks, like :class:`SynthesisTransform`; the intermediate widths
    are the last k-1 of the codec's widths (the finest-resolution stages)::

        z [n, C_z, h, w] -> deconv -> (n, w_1, 2h, 2w) + RB ... -> deconv -> (n, out, s·h, s·w)

    s = 1 (k = 0) is a single 5x5 conv.
    """

    def __init__(
        self, latent_ch: int, widths: tuple[int, ...], out_ch: int, stride: int, blocks: int
    ) -> None:
        super().__init__()
        stages = int(round(math.log2(stride)))
        n_mid = max(stages - 1, 0)
        mid = tuple(widths)[len(widths) - min(n_mid, len(widths)):] if n_mid else ()
        mid = (widths[0],) * (n_mid - len(mid)) + mid  # strides > 16: repeat the widest
        layers: list[nn.Module] = []
        ch = latent_ch
        for width in mid:
            layers.append(nn.ConvTranspose2d(ch, width, 5, stride=2, padding=2, output_padding=1))
            layers += [ResidualBlock(width) for _ in range(blocks)]
            ch = width
        if stages == 0:
            layers.append(nn.Conv2d(ch, out_ch, 5, padding=2))
        else:
            layers.append(nn.ConvTranspose2d(ch, out_ch, 5, stride=2, padding=2, output_padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z)


def _trunk(spec: FamilySpec, in_ch: int, grid: bool) -> tuple[nn.Module, int]:
    """The hidden layers of linear/mlp/cnn families and their output width."""
    if spec.kind == "linear":
        return nn.Identity(), in_ch
    layers: list[nn.Module] = []
    ch = in_ch
    for _ in range(spec.depth):
        if not grid:
            layers.append(nn.Linear(ch, spec.width))
        elif spec.kind == "mlp":
            layers.append(nn.Conv2d(ch, spec.width, kernel_size=1))
        else:
            layers.append(nn.Conv2d(ch, spec.width, kernel_size=3, padding=1))
        layers.append(nn.ReLU())
        ch = spec.width
    return nn.Sequential(*layers), ch


def build_body(
    spec: FamilySpec,
    in_ch: int,
    out_ch: int,
    stride: int | None,
    init_bias: torch.Tensor,
    synthesis_widths: tuple[int, ...] = (192, 48, 24),
    synthesis_blocks: int = 1,
) -> tuple[nn.Module, str]:
    """The network of ``spec`` starting at the marginal solution, and a note on what it is.

    ``stride`` is None for vector representations ([n, D_z] -> [n, out_ch]), else the
    upsampling factor s from the latent grid to the target grid. ``init_bias`` [out_ch] is the
    marginal solution; the head's weights are zero, so ``body(z)`` equals it for every z.
    Raises ValueError for a family that does not fit the representation.
    """
    grid = stride is not None
    note = ""
    if spec.kind == "synthesis":
        if not grid:
            raise ValueError("probe family 'synthesis' needs a latent grid [N, C, h, w]")
        if stride < 1 or stride & (stride - 1):
            raise ValueError(f"probe family 'synthesis' needs a power-of-two stride, got {stride}")
        if stride == SynthesisTransform.upsampling:
            body: nn.Module = SynthesisTransform(in_ch, tuple(synthesis_widths), out_ch,
                                                 synthesis_blocks)
            note = "taskcodecs SynthesisTransform"
        else:
            body = UpsamplingStack(in_ch, tuple(synthesis_widths), out_ch, stride,
                                   synthesis_blocks)
            note = f"vinfo UpsamplingStack (stride {stride}, not the codec's 16)"
    elif grid:
        trunk, ch = _trunk(spec, in_ch, grid=True)
        body = PatchDecoder(trunk, ch, out_ch, stride)
    else:
        if spec.kind == "cnn":
            raise ValueError(f"probe family {spec.name!r} needs a latent grid [N, C, h, w]")
        trunk, ch = _trunk(spec, in_ch, grid=False)
        body = VectorDecoder(trunk, ch, out_ch)
    head = body.layers[-1] if isinstance(body, SynthesisTransform | UpsamplingStack) else body.head
    repeat = getattr(body, "bias_repeat", 1)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(init_bias.to(head.bias.dtype).repeat_interleave(repeat))
    return body, note


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
