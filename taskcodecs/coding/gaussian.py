"""The machinery both entropy models share (:mod:`taskcodecs.coding.entropy` draws the data
flow): quantization, the Gaussian conditional over a context model and its likelihoods, and
real coding of a latent: ``encode``/``compress``/``decompress`` through the rANS coder, on a
float64 CPU copy of the model (the coding state, cached per model).

    GaussianContextModel     forward (training), encode/compress/decompress (bytes)
      subclasses say what conditions the Gaussian besides the context:
      _condition / _encode_condition / _decode_condition / _num_condition_symbols
    quantize, bits           ⌊·⌉ with straight-through or noise; likelihoods -> bits
    EncodedLatent            what ``encode`` returns (payload bytes, y_hat, estimated bits)
"""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from compressai.entropy_models import GaussianConditional
from torch import Tensor, nn

from taskcodecs.coding.bitstream import BitstreamError
from taskcodecs.coding.context import (
    AutoregressiveCoder,
    anchor_mask,
    check_context,
    check_order,
)
from taskcodecs.coding.payload import (
    check_value,
    make_flags,
    read_flags,
    state_crc,
)
from taskcodecs.coding.rans import (
    CodingTables,
    SymbolReader,
    SymbolWriter,
    make_tables_transient,
)
from taskcodecs.layers import MaskedConv2d

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
    """What coding needs besides the model: see :meth:`GaussianContextModel._coding_state`."""

    key: tuple
    crc: int
    model: nn.Module
    coder: AutoregressiveCoder


# model -> its _CodingState; weak keys: the cache dies with the model and is not part of it
# (not copied by deepcopy, not pickled, not in the state dict)
_CODING_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class GaussianContextModel(nn.Module):
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
            return self._forward(float32_if_half(y), float32_if_half(side))

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


def float32_if_half(x: Tensor | None) -> Tensor | None:
    """``x`` in float32 if it is a half-precision tensor (autocast output), else as is."""
    if isinstance(x, Tensor) and x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    return x
