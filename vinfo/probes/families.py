"""Probe families V: a ladder of decoders of rising capacity, one name each.

A family is an architecture *and* its training budget (both are part of V; the budget lives
in :class:`vinfo.fit.settings.FitSettings`). Every member is a *core* (what the family outputs
without Z: its null) plus a *Z pathway* (how much of Z it can use; the rung)::

    factorized:      out = bias + pos + zpath(z)              each value scored on its own
    autoregressive:  out = ARCore(y before each pixel, pos, zpath(z))  (vinfo.probes.autoregressive)

Names (parsed, so any width/depth works; ``ar-`` selects the autoregressive likelihood)::

    linear        latent grid: a 1x1 conv to C_out·s² channels, then pixel-shuffle by the
                  stride s = H/h: each latent vector maps linearly to its s x s output patch.
                  vectors: one linear layer.
    mlp-W         one hidden layer of width W (1x1 convs on a grid, ReLU), same head
    mlp-DxW       D hidden layers of width W
    cnn-DxW       grid only: D 3x3 convs of width W (ReLU) at latent resolution, same head
    synthesis     grid only: the codec's own synthesis transform (5x5 stride-2 transposed
                  convs + residual blocks, :class:`taskcodecs.models.transforms.SynthesisTransform`)
                  for s = 16; another power-of-two stride s = 2^k gets an equivalent stack of
                  k transposed convs built here (:class:`UpsamplingStack`).
    ar-<any of the above>   the same Z pathway, feeding ``context_width`` features per
                  target pixel into the causal context of
                  :class:`vinfo.probes.autoregressive.ARCore` (dense categorical and
                  discretized targets only). The ladder then varies
                  only what the rungs can extract from Z; the causal context is the same.

Z pathway on a latent grid (all but ``synthesis``)::

    z [n, C_z, h, w] -> trunk (1x1 or 3x3 convs, ReLU) -> head 1x1 conv -> [n, F·s², h, w]
                     -> PixelShuffle(s) -> [n, F, s·h, s·w]    (F = C_out or context_width)

Optional ignorance (Xu et al. 2020; DESIGN §2), and how every family meets it. The null of
a family must be able to produce everything the family produces from an input that carries
no information about the sample (a constant, a position code). Fed such an input, any Z
pathway outputs one fixed map [F, H, W] (a fixed vector for vector targets). Every core
holds a learned map ``pos`` of exactly that size (a *positional null*; for vectors the bias
is the whole map), which the Z pathway's output is added to. So:

* the null of every rung — the core alone, equivalently the whole member fed zeros — can
  output any fixed map, hence everything a member can output from an uninformative input;
  Z ⊥ Y gives I_V ≈ 0 for the 1x1 rungs, the shallow CNNs (whose zero padding makes their
  output vary at the borders) and constant or position-like Z alike;
* the null is itself a member (Z pathway head at zero), so the conditional can always do
  at least as well in expectation;
* the null *family* is the same for every rung of one likelihood (the rungs differ only in
  their Z pathway). Factorized rungs therefore share one fitted null per refit seed and
  fold (:class:`vinfo.fit.nulls.NullBank`), and their conditionals start from it (Z-pathway head
  zero: a probe at step 0 *is* its null). Autoregressive rungs train null and conditional
  as one member with Z dropout (:mod:`vinfo.joint`), so both get the same optimization;
* a fitted conditional that does worse on the selection samples than its null is replaced
  by it (or, autoregressive, by the member fed zeros): the best member of the family may be
  one that ignores Z.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import nn

from vinfo.adapter.layers import ResidualBlock, SynthesisTransform
from vinfo.probes.autoregressive import ARCore
from vinfo.probes.targets import Target

GRID_LADDER = ("linear", "mlp-64", "mlp-256", "cnn-1x32", "cnn-3x64", "synthesis")
AR_LADDER = ("ar-linear", "ar-mlp-64", "ar-cnn-3x64", "ar-synthesis")
VECTOR_LADDER = ("linear", "mlp-64", "mlp-256", "mlp-2x256")
AR_KINDS = ("categorical", "discretized")  # target kinds with an autoregressive likelihood
LIKELIHOODS = ("factorized", "autoregressive")

_NAME = re.compile(r"^(ar-)?(?:(linear)|(synthesis)|(mlp|cnn)-(?:(\d+)x)?(\d+))$")


@dataclass(frozen=True)
class FamilySpec:
    """A parsed family name: ``kind`` in linear/mlp/cnn/synthesis (``null``: a core alone),
    ``depth`` x ``width``, and the ``likelihood`` (factorized or autoregressive)."""

    name: str
    kind: str
    depth: int = 0
    width: int = 0
    likelihood: str = "factorized"

    @property
    def autoregressive(self) -> bool:
        return self.likelihood == "autoregressive"


def parse_family(name: str) -> FamilySpec:
    """``"mlp-2x256"`` -> FamilySpec("mlp-2x256", "mlp", 2, 256); ``"ar-linear"`` has the
    autoregressive likelihood; ValueError on other names."""
    match = _NAME.match(name.strip())
    if not match:
        raise ValueError(
            f"unknown probe family {name!r}; expected linear, synthesis, mlp-W, mlp-DxW or "
            f"cnn-DxW, optionally prefixed ar- (e.g. {', '.join(GRID_LADDER + AR_LADDER[:1])})"
        )
    likelihood = "autoregressive" if match.group(1) else "factorized"
    if match.group(2):
        return FamilySpec(name, "linear", likelihood=likelihood)
    if match.group(3):
        return FamilySpec(name, "synthesis", likelihood=likelihood)
    depth = int(match.group(5) or 1)
    width = int(match.group(6))
    if depth < 1 or width < 1:
        raise ValueError(f"probe family {name!r}: depth and width must be positive")
    return FamilySpec(name, match.group(4), depth, width, likelihood)


def null_spec(likelihood: str) -> FamilySpec:
    """The shared null of every family with this likelihood: the core alone."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    return FamilySpec(f"null ({likelihood})", "null", likelihood=likelihood)


def default_ladder(grid: bool, target_kind: str = "categorical") -> tuple[str, ...]:
    """The default ladder: autoregressive rungs for dense categorical/discretized targets
    (their codelengths sit next to a rate), factorized rungs for dense continuous targets,
    the vector ladder otherwise; in order of rising capacity."""
    if not grid:
        return VECTOR_LADDER
    return AR_LADDER if target_kind in AR_KINDS else GRID_LADDER


class PixelShuffle(nn.PixelShuffle):
    """``nn.PixelShuffle`` as one reshape-permute copy: the same values, about 3x faster
    forward on one CPU thread than torch's kernel at the rungs' sizes (measured, torch 2.x:
    [8, 1024, 8, 16] -> [8, 16, 64, 128] in 1.2 ms instead of 4.1 ms)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.upscale_factor
        return (x.reshape(b, c // (s * s), s, s, h, w).permute(0, 1, 4, 2, 5, 3)
                .reshape(b, c // (s * s), h * s, w * s))


class PatchDecoder(nn.Module):
    """Latent grid -> trunk -> 1x1 head -> pixel-shuffle by ``stride`` (see module docstring)."""

    def __init__(self, trunk: nn.Module, trunk_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = nn.Conv2d(trunk_ch, out_ch * stride * stride, kernel_size=1)
        self.shuffle = PixelShuffle(stride)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.head(self.trunk(z)))


class VectorDecoder(nn.Module):
    """[n, D_z] -> trunk (Linear + ReLU) -> Linear head -> [n, C_out]."""

    def __init__(self, trunk: nn.Module, trunk_dim: int, out_dim: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(trunk_dim, out_dim)

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


class FactorizedCore(nn.Module):
    """The factorized null: ``bias`` [C_out] plus, for dense targets, the positional map
    ``pos`` [C_out, H, W]; a member adds its Z pathway's output. Scored by ``target.stat``.

    ``forward(features, y, mask, batch)`` -> [batch, C_out, ...] (``y`` is not read); without
    features (the null) the one output is broadcast to the batch (a stride-0 view)."""

    def __init__(self, target: Target, init_bias: torch.Tensor,
                 shape: tuple[int, int] | None) -> None:
        super().__init__()
        self.target = target
        self.bias = nn.Parameter(init_bias.detach().clone().float())
        self.pos = None if shape is None else nn.Parameter(torch.zeros(len(init_bias), *shape))

    def offset(self) -> torch.Tensor:
        """The null's output for one sample: [1, C_out] or [1, C_out, H, W]."""
        if self.pos is None:
            return self.bias.reshape(1, -1)
        return (self.bias.reshape(-1, 1, 1) + self.pos).unsqueeze(0)

    def forward(self, features: torch.Tensor | None, y: torch.Tensor | None,
                mask: torch.Tensor | None, batch: int) -> torch.Tensor:
        base = self.offset()
        if features is None:
            return base.expand(batch, *base.shape[1:])
        return features + base

    def stat(self, out: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.target.stat(out, y, mask)


def build_core(
    spec: FamilySpec, target: Target, y: torch.Tensor, mask: torch.Tensor, dense: bool,
    context_width: int = 32, context_kernel: int = 5, mixtures: int = 2, embedding: int = 4,
    layers: int = 2,
) -> nn.Module:
    """The core of ``spec``'s likelihood, at the marginal solution of (``y``, ``mask``)."""
    shape = tuple(y.shape[2:]) if dense else None
    if not spec.autoregressive:
        return FactorizedCore(target, target.marginal_bias(y, mask), shape)
    if not dense or target.kind not in AR_KINDS:
        raise ValueError(f"probe family {spec.name!r} (autoregressive) needs a dense "
                         f"categorical or discretized target, not a "
                         f"{'dense' if dense else 'per-sample'} {target.kind} one")
    return ARCore(target, shape, context_width, context_kernel, mixtures, embedding, y, mask,
                  layers)


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


def build_zpath(
    spec: FamilySpec, in_ch: int, out_ch: int, stride: int | None,
    synthesis_widths: tuple[int, ...] = (192, 48, 24), synthesis_blocks: int = 1,
) -> tuple[nn.Module, str]:
    """The Z pathway of ``spec`` with its head at zero (output 0 for every z), and a note.

    ``stride`` is None for vector representations ([n, D_z] -> [n, out_ch]), else the
    upsampling factor s from the latent grid to the target grid. Raises ValueError for a
    family that does not fit the representation.
    """
    grid = stride is not None
    note = ""
    if spec.kind == "synthesis":
        if not grid:
            raise ValueError(f"probe family {spec.name!r} needs a latent grid [N, C, h, w]")
        if stride < 1 or stride & (stride - 1):
            raise ValueError(f"probe family {spec.name!r} needs a power-of-two stride, got "
                             f"{stride}")
        if stride == SynthesisTransform.upsampling:
            body: nn.Module = SynthesisTransform(in_ch, tuple(synthesis_widths), out_ch,
                                                 synthesis_blocks)
            note = "taskcodecs SynthesisTransform"
        else:
            body = UpsamplingStack(in_ch, tuple(synthesis_widths), out_ch, stride,
                                   synthesis_blocks)
            note = f"vinfo UpsamplingStack (stride {stride}, not the codec's 16)"
        head = body.layers[-1]
    elif grid:
        trunk, ch = _trunk(spec, in_ch, grid=True)
        body = PatchDecoder(trunk, ch, out_ch, stride)
        head = body.head
    else:
        if spec.kind == "cnn":
            raise ValueError(f"probe family {spec.name!r} needs a latent grid [N, C, h, w]")
        trunk, ch = _trunk(spec, in_ch, grid=False)
        body = VectorDecoder(trunk, ch, out_ch)
        head = body.head
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
    return body, note


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
