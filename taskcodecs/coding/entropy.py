"""Entropy models for latents: quantization, context-model Gaussian conditionals, real coding.

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
only) and is for the codec to measure.

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

import copy
import math
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from torch import Tensor, nn

from taskcodecs.coding.bitstream import BitstreamError
from taskcodecs.coding.context import (
    CONTEXTS,
    AutoregressiveCoder,
    MaskedConv2d,
    anchor_mask,
    check_context,
    check_order,
)
from taskcodecs.coding.payload import (
    CONDITIONAL,
    HYPERPRIOR,
    check_value,
    make_flags,
    read_flags,
    state_crc,
)
from taskcodecs.coding.rans import (
    CodingTables,
    SymbolReader,
    SymbolWriter,
    bottleneck_likelihood,
    bottleneck_tables,
    channel_indexes,
    make_tables_transient,
)
from taskcodecs.models.transforms import ResidualBlock

__all__ = [
    "CONTEXTS",
    "LIKELIHOOD_BOUND",
    "SCALE_BOUND",
    "SCALE_TABLE",
    "AutoregressiveGaussianModel",
    "ConditionalAutoregressiveGaussianModel",
    "EncodedLatent",
    "bits",
    "quantize",
]

SCALE_BOUND = 0.11
LIKELIHOOD_BOUND = 1e-9
# CompressAI's default: 64 log-spaced scales from 0.11 to 256.
SCALE_TABLE: tuple[float, ...] = tuple(
    torch.exp(torch.linspace(math.log(SCALE_BOUND), math.log(256.0), 64)).tolist()
)


def quantize(x: Tensor, mode: str = "ste") -> Tensor:
    """``ste``: ⌊x⌉ forward, identity gradient; ``noise``: x + U(−½, ½); ``round``: ⌊x⌉."""
    if mode == "ste":
        return x + (torch.round(x) - x).detach()
    if mode == "noise":
        return x + torch.empty_like(x).uniform_(-0.5, 0.5)
    if mode == "round":
        return torch.round(x)
    raise ValueError(f"quantize mode must be 'ste', 'noise' or 'round', got {mode!r}")


def bits(likelihoods: Tensor | Mapping[str, Tensor], per_sample: bool = False) -> Tensor:
    """Rate in bits: −log2 of the likelihoods, summed (over a dict's entries too).

    ``per_sample=True`` keeps the batch dimension: a (B,) tensor of bits per item.
    """
    tensors = list(likelihoods.values()) if isinstance(likelihoods, Mapping) else [likelihoods]
    if not tensors:
        raise ValueError("bits() needs at least one likelihood tensor")
    if per_sample:
        return sum(-torch.log2(t).flatten(1).sum(dim=1) for t in tensors)  # type: ignore[return-value]
    return sum(-torch.log2(t).sum() for t in tensors)  # type: ignore[return-value]


@dataclass(frozen=True)
class EncodedLatent:
    """Result of ``encode``: the payload and what the decoder will reconstruct from it.

    ``y_hat`` (1, N, h, w) on the model's device is exactly what ``decompress(data, ...)``
    returns. ``means``/``scales`` (1, N, h, w, CPU) are the decode-time μ', σ' (σ' before
    the 0.11 lower bound). ``estimated_bits`` is −log2 of the Gaussian (and, with a
    hyperprior, bottleneck) likelihoods under those parameters, in bits, keyed "y" ("z").
    """

    data: bytes
    y_hat: Tensor
    means: Tensor
    scales: Tensor
    estimated_bits: dict[str, float]

    @property
    def num_bits(self) -> int:
        """Actual size of the payload in bits (flag byte included)."""
        return 8 * len(self.data)


@dataclass(frozen=True)
class _CodingState:
    """What coding needs besides the model: see :meth:`_AutoregressiveGaussian._coding_state`."""

    key: tuple
    crc: int
    model: nn.Module
    coder: AutoregressiveCoder


# model -> its _CodingState; weak keys: the cache dies with the model and is not part of it
# (not copied by deepcopy, not pickled, not in the state dict)
_CODING_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _AutoregressiveGaussian(nn.Module):
    """Shared forward/encode/decompress; subclasses add what is concatenated after the context."""

    _flag_bits = 0  # taskcodecs.coding.payload: HYPERPRIOR | CONDITIONAL

    def __init__(
        self,
        N: int,
        conditioning_channels: int,
        activation: type[nn.Module],
        noise_quantization: bool,
        context: str,
    ) -> None:
        super().__init__()
        if isinstance(N, bool) or int(N) != N or N < 1:
            raise ValueError(f"N (latent channels) must be a positive integer, got {N!r}")
        self.N = N = int(N)
        self.noise_quantization = bool(noise_quantization)
        self.context = check_context(context)
        mask_type = "checkerboard" if context == "checkerboard" else "A"
        self.context_prediction = MaskedConv2d(
            N, 2 * N, kernel_size=5, padding=2, mask_type=mask_type
        )
        self.entropy_parameters = nn.Sequential(
            nn.Conv2d(2 * N + conditioning_channels, 10 * N // 3, 1),
            activation(),
            nn.Conv2d(10 * N // 3, 8 * N // 3, 1),
            activation(),
            nn.Conv2d(8 * N // 3, 2 * N, 1),
        )
        self.gaussian_conditional = GaussianConditional(
            list(SCALE_TABLE), scale_bound=SCALE_BOUND, likelihood_bound=LIKELIHOOD_BOUND
        )
        make_tables_transient(self.gaussian_conditional)
        self._gaussian_tables_cache: tuple[tuple, CodingTables] | None = None

    # -- hooks for subclasses ------------------------------------------------------------
    def _condition(self, y: Tensor, side: Tensor | None, mode: str) -> tuple[Tensor | None, dict]:
        """Parallel (training) conditioning features and extra likelihoods."""
        raise NotImplementedError

    def _encode_condition(self, y: Tensor, side: Tensor | None, writer: SymbolWriter):
        """CPU coding copy: conditioning features (1, K, h, w) or None, and extra bits."""
        raise NotImplementedError

    def _decode_condition(self, reader: SymbolReader, shape, side: Tensor | None):
        """CPU coding copy, mirror of ``_encode_condition``: conditioning features or None."""
        raise NotImplementedError

    def _num_condition_symbols(self, shape: Sequence[int]) -> int:
        """How many symbols ``_encode_condition`` writes before the latent's (hyper-latent)."""
        return 0

    # -- training / evaluation -----------------------------------------------------------
    def forward(self, y: Tensor, side: Tensor | None = None) -> dict:
        """{"y_hat": (B, N, h, w), "likelihoods": {"y": (B, N, h, w)[, "z": ...]}}.

        Always computed in float32 with autocast disabled (mixed-precision training casts
        only the transforms; likelihoods need float32, taskcodecs.training.precision)."""
        self._check_latent(y, batch_one=False)
        with torch.autocast(y.device.type, enabled=False):
            return self._forward(_full(y), _full(side))

    def _forward(self, y: Tensor, side: Tensor | None) -> dict:
        mode = "noise" if self.training and self.noise_quantization else "ste"
        conditioning, extra = self._condition(y, side, mode)
        if self.context == "checkerboard":
            y_hat, scales, means = self._checkerboard_forward(y, conditioning, mode)
        else:
            y_hat, scales, means = self._autoregressive_forward(y, conditioning, mode)
        likelihoods = {"y": self._gaussian_likelihood(y_hat, scales, means), **extra}
        return {"y_hat": y_hat, "likelihoods": likelihoods}

    def _gaussian_parameters(self, context_input: Tensor, conditioning: Tensor | None):
        """(scales, means) from the masked conv of ``context_input`` [+ conditioning]."""
        features = self.context_prediction(context_input)
        if conditioning is not None:
            features = torch.cat([features, conditioning], dim=1)
        return self.entropy_parameters(features).chunk(2, dim=1)

    def _autoregressive_forward(self, y: Tensor, conditioning: Tensor | None, mode: str):
        """The context sees ⌊y⌉ (or y + noise) at every causal position, in parallel."""
        if mode == "noise":
            y_hat = quantize(y, "noise")
            return (y_hat, *self._gaussian_parameters(y_hat, conditioning))
        scales, means = self._gaussian_parameters(quantize(y, "ste"), conditioning)
        return quantize(y - means, "ste") + means, scales, means

    def _checkerboard_forward(self, y: Tensor, conditioning: Tensor | None, mode: str):
        """Both passes in parallel; in "ste" mode exactly what the decoder computes.

        Pass 1 (no gradient): the anchors' μ from the context bias alone (a conv of zeros)
        [+ conditioning], so their ŷ = ⌊y − μ⌉ + μ is the decoder's. Pass 2: the checkerboard
        conv of ŷ ⊙ anchor_mask; at anchors it reads only zeroed non-anchors (the same μ, σ
        as pass 1, now with gradient), at non-anchors the anchors' ŷ. "noise" mode: one pass
        on (y + u) ⊙ anchor_mask.
        """
        anchors = anchor_mask(*y.shape[-2:]).to(y.device)
        if mode == "noise":
            y_hat = quantize(y, "noise")
            return (y_hat, *self._gaussian_parameters(y_hat * anchors, conditioning))
        with torch.no_grad():
            _, anchor_means = self._gaussian_parameters(torch.zeros_like(y), conditioning)
        anchor_hat = y + (torch.round(y - anchor_means) + anchor_means - y).detach()
        scales, means = self._gaussian_parameters(anchor_hat * anchors, conditioning)
        y_hat = torch.where(anchors, anchor_hat, quantize(y - means, "ste") + means)
        return y_hat, scales, means

    def _gaussian_likelihood(self, y_hat: Tensor, scales: Tensor, means: Tensor) -> Tensor:
        gc = self.gaussian_conditional
        return gc.likelihood_lower_bound(gc._likelihood(y_hat, scales, means))

    # -- coding --------------------------------------------------------------------------
    def compress(self, y: Tensor, side: Tensor | None = None, order: str = "wavefront") -> bytes:
        """Entropy-code a (1, N, h, w) latent; the payload bytes. See :meth:`encode`."""
        return self.encode(y, side, order).data

    @torch.no_grad()
    def encode(
        self, y: Tensor, side: Tensor | None = None, order: str = "wavefront"
    ) -> EncodedLatent:
        """Code ``y`` (1, N, h, w) and report what the decoder will see (:class:`EncodedLatent`).

        ``order``: "wavefront" or "raster", the decoding order of an autoregressive model
        (recorded in the payload; both give the same y_hat). A checkerboard model accepts
        either and codes in two passes regardless (identical payloads).
        """
        check_order(order)
        self._check_latent(y, batch_one=True)
        side = self._check_side(side, y.shape)
        height, width = y.shape[-2:]
        state = self._coding_state()
        model = state.model
        y_cpu = y.detach().to("cpu", torch.float32)  # the residual y − μ is taken in float32
        writer = SymbolWriter()
        conditioning, extra_bits = model._encode_condition(y_cpu, side, writer)
        recorded: list[tuple[Tensor, Tensor]] = []

        def from_latent(rows: Tensor, cols: Tensor, means: Tensor, indexes: Tensor) -> Tensor:
            residual = y_cpu[0, :, rows, cols].T - means
            if not bool(torch.isfinite(residual).all()):
                raise ValueError("non-finite means or latent: cannot entropy-code")
            symbols = torch.round(residual).to(torch.int64)
            recorded.append((symbols, indexes))
            return symbols

        coded = state.coder.run(
            None if conditioning is None else conditioning[0],
            (self.N, height, width),
            order,
            from_latent,
        )
        writer.write(
            torch.cat([s.reshape(-1) for s, _ in recorded]),
            torch.cat([i.reshape(-1) for _, i in recorded]),
            self._gaussian_tables(),
        )
        flags = make_flags(self.context, self._flag_bits, order, side is None)
        check = check_value(state.crc, flags, self.N, (height, width), side)
        data = bytes([flags]) + writer.finish(check)
        y_hat, means, scales = coded.y_hat[None], coded.means[None], coded.scales[None]
        y_likelihood = model._gaussian_likelihood(y_hat.double(), scales.double(), means.double())
        y_bits = -torch.log2(y_likelihood).sum()
        return EncodedLatent(
            data=data,
            y_hat=y_hat.to(self._device()),
            means=means,
            scales=scales,
            estimated_bits={"y": float(y_bits), **extra_bits},
        )

    @torch.no_grad()
    def decompress(self, data: bytes, shape: Sequence[int], side: Tensor | None = None) -> Tensor:
        """Decode a payload into y_hat (1, N, h, w), float32 on the model's device.

        ``shape`` is the latent's (h, w) (or (1, N, h, w)). Garbage, a wrong shape, wrong
        side information or a model that differs from the encoder's raise BitstreamError.
        """
        height, width = self._check_shape(shape)
        if not isinstance(data, bytes | bytearray | memoryview) or len(data) < 1:
            raise BitstreamError("entropy payload must be non-empty bytes")
        data = bytes(data)
        flags, stream = data[0], data[1:]
        side = self._check_side(side, (1, self.N, height, width))
        order = read_flags(flags, self.context, self._flag_bits, side is None)
        state = self._coding_state()
        model = state.model
        num_symbols = self.N * height * width + self._num_condition_symbols((height, width))
        reader = SymbolReader(stream, num_symbols)
        conditioning = model._decode_condition(reader, (height, width), side)
        tables = self._gaussian_tables()
        coded = state.coder.run(
            None if conditioning is None else conditioning[0],
            (self.N, height, width),
            order,
            lambda rows, cols, means, indexes: reader.read(indexes, tables),
        )
        reader.finish(check_value(state.crc, flags, self.N, (height, width), side))
        return coded.y_hat[None].to(self._device())

    # -- helpers -------------------------------------------------------------------------
    def _gaussian_tables(self) -> CodingTables:
        """CDF tables for the (fixed) scale table; rebuilt only if the scale table changed."""
        gc = self.gaussian_conditional
        key = (tuple(gc.scale_table.tolist()), gc.tail_mass, gc.entropy_coder_precision)
        if self._gaussian_tables_cache is None or self._gaussian_tables_cache[0] != key:
            gc_cpu = copy.deepcopy(gc).to("cpu", torch.float64)
            gc_cpu.update()
            self._gaussian_tables_cache = (key, CodingTables.from_entropy_model(gc_cpu))
        return self._gaussian_tables_cache[1]

    def _coding_state(self) -> _CodingState:
        """The float64 CPU coding copy of this model, its coder and the CRC of its state.

        Built once and reused while the parameters and buffers stay the same: the key is
        the CRC of their values (computed on every call, a few ms) together with each
        tensor's storage and in-place version counter, so any change made through the
        tensors' own ops (optimizer steps, load_state_dict, ``.to``) and any change of
        their values (even through ``.data``) rebuilds it.
        """
        crc = state_crc(self)
        key = (crc, *((t.data_ptr(), t._version) for t in self.state_dict().values()))
        cached = _CODING_STATES.get(self)
        if cached is None or cached.key != key:
            tables, self._gaussian_tables_cache = self._gaussian_tables_cache, None
            try:  # the tables cache stays with the original
                model = copy.deepcopy(self).to("cpu", torch.float64)
            finally:
                self._gaussian_tables_cache = tables
            gc = model.gaussian_conditional
            coder = AutoregressiveCoder(
                model.context_prediction,
                model.entropy_parameters,
                gc.scale_table.float(),
                float(gc.scale_bound),
                model.context,
            )
            cached = _CodingState(key, crc, model, coder)
            _CODING_STATES[self] = cached
        return cached

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _check_latent(self, y: Tensor, batch_one: bool) -> None:
        if not isinstance(y, Tensor) or y.dim() != 4 or y.shape[1] != self.N:
            got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise ValueError(f"latent y must be a (B, {self.N}, h, w) tensor, got {got}")
        if batch_one and y.shape[0] != 1:
            raise ValueError(
                f"entropy coding takes one latent at a time (B = 1), got B = {y.shape[0]}"
            )
        if min(y.shape[-2:]) < 1 or max(y.shape[-2:]) > 0xFFFF:
            raise ValueError(
                f"latent height and width must be in [1, 65535], got {tuple(y.shape[-2:])}"
            )
        if batch_one and not bool(torch.isfinite(y).all()):
            raise ValueError("latent y contains NaN or infinite values: cannot entropy-code")

    def _check_shape(self, shape: Sequence[int]) -> tuple[int, int]:
        dims = tuple(int(s) for s in shape)
        if len(dims) == 4 and dims[:2] == (1, self.N):
            dims = dims[2:]
        if len(dims) != 2 or not all(1 <= s <= 0xFFFF for s in dims):
            raise ValueError(
                f"shape must be the latent's (h, w) or (1, {self.N}, h, w), got {tuple(shape)}"
            )
        return dims  # type: ignore[return-value]

    def _check_side(self, side: Tensor | None, y_shape: Sequence[int]) -> Tensor | None:
        """Base models take no side input; conditional ones override this."""
        if side is not None:
            raise ValueError(
                f"{type(self).__name__} takes no side information; got side={type(side).__name__}"
            )
        return None


class AutoregressiveGaussianModel(_AutoregressiveGaussian):
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


class ConditionalAutoregressiveGaussianModel(_AutoregressiveGaussian):
    """Enhancement-layer entropy model: context + side branch on the base latent Ŷ_b.

    ``side_channels`` is Ŷ_b's channel count (default N); Ŷ_b must have the latent's h, w.
    Each residual stack has ``num_res_blocks`` blocks (taskcodecs.models.transforms). For
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


def _full(x: Tensor | None) -> Tensor | None:
    """``x`` in float32 if it is a half-precision tensor (autocast output), else as is."""
    if isinstance(x, Tensor) and x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    return x


def _hyper_size(size: int) -> int:
    """Side of z for a latent side: two 5x5 stride-2 convs with padding 2 (ceil halving)."""
    return ((size + 1) // 2 + 1) // 2
