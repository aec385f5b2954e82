"""Entropy models for latents: context-model Gaussian conditionals, coded for real (the shared
machinery, quantization and likelihoods: :mod:`taskcodecs.coding.gaussian`).

Data flow (CompressAI / Minnen et al. 2018 names; N channels, h x w latent)::

    AutoregressiveGaussianModel (base layer Ŷ_b)

      y (B, N, h, w) ──► quantize "ste": ⌊y⌉ ──► context_prediction (MaskedConv2d 5x5, type A)
       │                 (checkerboard: ŷ ⊙ anchor_mask ──► MaskedConv2d 5x5, checkerboard)
       │                                               │ (B, 2N, h, w)
       │  [hyperprior=True: y ─► h_a ─► z ─► z_hat = ⌊z − m⌉ + m ─► h_s ─► (B, 2N, h, w),
       │   concatenated after the context; likelihoods["z"] from the EntropyBottleneck]
       │                                               ▼
       │          entropy_parameters: 1x1 convs 2N (4N) → 10N/3 → 8N/3 → 2N, LeakyReLU
       │                                               ▼
       │                                   scales σ, means μ (B, N, h, w each)
       ▼
      y_hat = ⌊y − μ⌉ + μ (straight-through)     symbol coded: s = ⌊y − μ⌉
      likelihoods["y"] = Φ((s + ½)/σ) − Φ((s − ½)/σ),  σ ≥ 0.11, likelihood ≥ 1e-9

    ConditionalAutoregressiveGaussianModel (enhancement layer Ŷ_e): the same, plus
      side Ŷ_b (B, N_b, h, w) ─► ResStack(N_b) ─► conv 5x5 → 2N ─► ResStack(2N) ─► concat
      after the context features; entropy_parameters 4N → 10N/3 → 8N/3 → 2N with ELU.
      side=None feeds zeros (the "standalone" flavour).

Context models (``context``, taskcodecs.coding.context). ``"autoregressive"`` (default): the
type-A 5x5 masked context, decoded wavefront by wavefront (``order="wavefront"``, the
default, 3(h−1) + w steps) or position by position (``order="raster"``, a reference); both
decode the same y_hat. ``"checkerboard"`` (He et al., CVPR 2021): anchors ((row + col) even)
are coded first from the context bias [+ hyperprior / side features] alone, then the
non-anchors with a checkerboard-masked 5x5 conv over the decoded anchors: two steps
whatever the size. A checkerboard model accepts ``order`` ("wavefront" or "raster", still
validated) and ignores it: it always codes in two passes, and the payload is the same.
Codecs are trained with one context and decode only with it (the payload's flag byte
names it, taskcodecs.coding.payload).

Which y_hat is which. The autoregressive ``forward`` is parallel: its context sees ⌊y⌉ at
every causal position (as CompressAI's mbt2018 sees its quantized y), so its μ, σ and
y_hat = ⌊y − μ⌉ + μ are *not* what the bitstream carries. The bitstream is sequential: the
context sees the already decoded ŷ' = ⌊y − μ'⌉ + μ', so μ' differs from μ and so can the
symbols; both y_hat and ŷ' lie within ½ of y, so they differ by at most 1 per element.
The checkerboard ``forward`` (with "ste" quantization) computes both passes exactly as the
decoder does (the anchors' μ in an extra no-gradient pass), so its μ, σ and y_hat equal the
bitstream's up to float32-vs-float64 rounding. Train with ``forward``; decode with
``decompress``, whose output equals ``encode(...).y_hat`` bit for bit. A synthesis that
must match the decoder (and any side input Ŷ_b of an enhancement layer) must use the
*bitstream* y_hat.

Estimated vs actual rate. ``bits(forward(y)["likelihoods"])`` is the training estimate.
``encode`` also reports ``estimated_bits`` from the decode-time μ', σ'; the payload is that
plus the coding overheads: σ' is coded with the nearest (in log scale) of 64 log-spaced
table scales (payload versions 2 and 3; version 1 rounded up to the next one, as CompressAI
does, which cost ~1.8 % more bits at ~2.7 bpp), CDFs are quantized to 16 bits, residuals
beyond ±6.1σ are escape-coded, and each payload carries 1 flag byte, a 16-bit end check and
the 64-bit rANS flush (the stream is a whole number of 4-byte words). The gap between
forward and decode-time estimates comes from the context mismatch above (autoregressive
only), and from nothing else: fed ŷ', the parallel network gives the decode-time μ', σ' and
estimate (tests/taskcodecs/coding/test_entropy.py). Its size is measured per image in
``eval.nc`` (``bpp_estimated`` vs ``bpp_coded_estimate``; 26-55 % at the demo's tiny rates,
benchmarks/RESULTS.md), which is why rate-matched comparisons use the payload.

Determinism. Coding runs on a CPU copy of the model whatever its device; encoder and
decoder use the same code path (taskcodecs.coding.context). The copy computes in float64
and rounds every quantity that crosses from encoder to decoder (conditioning features, μ,
σ) to float32, so the float32 results do not depend on batch shapes, thread counts or
kernel choice, except in the rare case that a float64 value lies within ~1e-15 of a
float32 rounding boundary; y_hat = s + μ is float32. Wavefront and raster order therefore
decode the same y_hat. The stream ends with a 16-bit check of the latent shape, the
model's (masked) parameters and the side input, so a decoder that differs from its
encoder raises BitstreamError instead of returning garbage.

Tables. Coding tables are built by the code that needs them: the Gaussian tables once per
scale table (cached), the hyperprior's EntropyBottleneck tables at every encode/decode from
its current parameters. There is no ``update()`` to remember, and no table buffer ends up
in ``state_dict()``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from compressai.entropy_models import EntropyBottleneck
from torch import Tensor, nn

from taskcodecs.coding.context import (
    CONTEXTS,
)
from taskcodecs.coding.gaussian import LIKELIHOOD_BOUND, GaussianContextModel, quantize
from taskcodecs.coding.payload import (
    CONDITIONAL,
    HYPERPRIOR,
)
from taskcodecs.coding.rans import (
    bottleneck_likelihood,
    bottleneck_tables,
    channel_indexes,
    make_tables_transient,
)
from taskcodecs.layers import ResidualBlock

__all__ = ["CONTEXTS", "AutoregressiveGaussianModel", "ConditionalAutoregressiveGaussianModel"]


class AutoregressiveGaussianModel(GaussianContextModel):
    """Base-layer entropy model: masked 5x5 context (+ optional Ballé/Minnen hyperprior).

    ``hyperprior=True`` adds h_a (3x3 conv, 5x5/2, 5x5/2, LeakyReLU, N channels), an
    EntropyBottleneck on z and h_s (5x5/2 up, 5x5/2 up, 3x3 → 2N), cropped to the latent size
    (so h, w need not be multiples of 4). ``noise_quantization=True`` trains with uniform
    noise instead of straight-through rounding (evaluation always rounds). ``context``:
    "autoregressive" (type-A mask, wavefront/raster decoding) or "checkerboard" (two passes),
    see the module docstring.
    """

    def __init__(
        self,
        N: int,
        hyperprior: bool = False,
        noise_quantization: bool = False,
        context: str = "autoregressive",
    ) -> None:
        self.hyperprior = bool(hyperprior)
        super().__init__(
            N, 2 * N if self.hyperprior else 0, nn.LeakyReLU, noise_quantization, context
        )
        if self.hyperprior:
            self._flag_bits = HYPERPRIOR
            self.h_a = nn.Sequential(
                nn.Conv2d(N, N, 3, padding=1),
                nn.LeakyReLU(),
                nn.Conv2d(N, N, 5, stride=2, padding=2),
                nn.LeakyReLU(),
                nn.Conv2d(N, N, 5, stride=2, padding=2),
            )
            self.h_s = nn.Sequential(
                nn.ConvTranspose2d(N, N, 5, stride=2, padding=2, output_padding=1),
                nn.LeakyReLU(),
                nn.ConvTranspose2d(N, 3 * N // 2, 5, stride=2, padding=2, output_padding=1),
                nn.LeakyReLU(),
                nn.Conv2d(3 * N // 2, 2 * N, 3, padding=1),
            )
            self.entropy_bottleneck = EntropyBottleneck(N, likelihood_bound=LIKELIHOOD_BOUND)
            make_tables_transient(self.entropy_bottleneck)

    def _hyper_features(self, z_hat: Tensor, size: Sequence[int]) -> Tensor:
        """h_s(z_hat) cropped to the latent's (h, w)."""
        return self.h_s(z_hat)[..., : size[0], : size[1]]

    def _z_medians(self) -> Tensor:
        return self.entropy_bottleneck.quantiles[:, 0, 1]

    def _condition(self, y, side, mode):
        self._check_side(side, y.shape)
        if not self.hyperprior:
            return None, {}
        z = self.h_a(y)
        medians = self._z_medians().view(1, -1, 1, 1)
        z_hat = quantize(z - medians, mode) + medians
        return self._hyper_features(z_hat, y.shape[-2:]), {
            "z": bottleneck_likelihood(self.entropy_bottleneck, z_hat)
        }

    def _encode_condition(self, y, side, writer):
        if not self.hyperprior:
            return None, {}
        z = self.h_a(y.double())[0]
        tables, medians = bottleneck_tables(self.entropy_bottleneck)
        residual = z - medians[:, None, None]
        if not bool(torch.isfinite(residual).all()):
            raise ValueError("hyper-latent z is not finite: cannot entropy-code")
        symbols = torch.round(residual).to(torch.int64)
        writer.write(symbols, channel_indexes(z.shape), tables)
        z_hat = (symbols.double() + medians[:, None, None])[None]
        z_bits = -torch.log2(bottleneck_likelihood(self.entropy_bottleneck, z_hat)).sum()
        return self._hyper_features(z_hat, y.shape[-2:]).float(), {"z": float(z_bits)}

    def _num_condition_symbols(self, shape):
        return self.N * _hyper_size(shape[0]) * _hyper_size(shape[1]) if self.hyperprior else 0

    def _decode_condition(self, reader, shape, side):
        if not self.hyperprior:
            return None
        z_shape = (self.N, _hyper_size(shape[0]), _hyper_size(shape[1]))
        tables, medians = bottleneck_tables(self.entropy_bottleneck)
        symbols = reader.read(channel_indexes(z_shape), tables)
        z_hat = (symbols.double() + medians[:, None, None])[None]
        return self._hyper_features(z_hat, shape).float()


class ConditionalAutoregressiveGaussianModel(GaussianContextModel):
    """Enhancement-layer entropy model: context + side branch on the base latent Ŷ_b.

    ``side_channels`` is Ŷ_b's channel count (default N); Ŷ_b must have the latent's h, w.
    Each residual stack has ``num_res_blocks`` blocks (taskcodecs.layers). For
    coding, pass the *bitstream* Ŷ_b (the base's ``encode(...).y_hat`` or ``decompress``
    output) on both sides; side=None zeroes the conditioning input (standalone flavour).
    ``context`` as for :class:`AutoregressiveGaussianModel`.
    """

    _flag_bits = CONDITIONAL

    def __init__(
        self,
        N: int,
        side_channels: int | None = None,
        num_res_blocks: int = 3,
        noise_quantization: bool = False,
        context: str = "autoregressive",
    ) -> None:
        super().__init__(N, 2 * N, nn.ELU, noise_quantization, context)
        self.side_channels = N if side_channels is None else int(side_channels)
        if self.side_channels < 1 or num_res_blocks < 0:
            raise ValueError(
                f"side_channels must be positive and num_res_blocks non-negative, got "
                f"{side_channels!r}, {num_res_blocks!r}"
            )
        self.side_branch = nn.Sequential(
            *(ResidualBlock(self.side_channels) for _ in range(num_res_blocks)),
            nn.Conv2d(self.side_channels, 2 * N, 5, padding=2),
            *(ResidualBlock(2 * N) for _ in range(num_res_blocks)),
        )

    def _check_side(self, side, y_shape):
        if side is None:
            return None
        expected = (y_shape[0], self.side_channels, *y_shape[-2:])
        if not isinstance(side, Tensor) or tuple(side.shape) != tuple(expected):
            got = tuple(side.shape) if isinstance(side, Tensor) else type(side).__name__
            raise ValueError(f"side information must have shape {tuple(expected)}, got {got}")
        if not bool(torch.isfinite(side).all()):
            raise ValueError("side information contains NaN or infinite values")
        return side

    def _side_features(self, side: Tensor | None, like: Tensor) -> Tensor:
        """Side branch on Ŷ_b (zeros if None, shaped like the latent ``like``)."""
        dtype = next(self.side_branch.parameters()).dtype
        if side is None:
            side = torch.zeros(like.shape[0], self.side_channels, *like.shape[-2:], dtype=dtype)
        return self.side_branch(side.to(like.device, dtype))

    def _condition(self, y, side, mode):
        side = self._check_side(side, y.shape)
        return self._side_features(side, y), {}

    def _encode_condition(self, y, side, writer):
        side = None if side is None else side.detach().cpu()
        return self._side_features(side, y).float(), {}

    def _decode_condition(self, reader, shape, side):
        side = None if side is None else side.detach().cpu()
        return self._side_features(side, torch.zeros(1, self.N, *shape)).float()


def _hyper_size(size: int) -> int:
    """Side of z for a latent side: two 5x5 stride-2 convs with padding 2 (ceil halving)."""
    return ((size + 1) // 2 + 1) // 2
