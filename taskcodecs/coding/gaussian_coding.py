"""Real coding of a latent: the encode/compress/decompress half of the Gaussian context model.

:class:`GaussianCoding` is mixed into :class:`taskcodecs.coding.gaussian.GaussianContextModel`
(which holds the parameters, the training forward pass and the hooks named below). It codes
a latent through the rANS coder (:mod:`taskcodecs.coding.rans`) on a float64 CPU copy of
the model -- the *coding state*, cached per model and rebuilt whenever a parameter or
buffer changes -- so that encoder and decoder compute bit-identical Gaussian parameters:

    encode / compress       (1, N, h, w) latent -> payload bytes (:class:`EncodedLatent`)
    decompress              payload bytes -> y_hat, float32 on the model's device
    the model supplies      _encode_condition / _decode_condition / _num_condition_symbols,
                            _gaussian_likelihood, _check_latent, _check_side, _flag_bits,
                            N, context, gaussian_conditional, context_prediction,
                            entropy_parameters, _gaussian_tables_cache (the tables' cache)

The payload: one flag byte (:mod:`taskcodecs.coding.payload`), then the rANS stream ending
in a check value over the model's state, the latent shape and the side information.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from taskcodecs.coding.bitstream import BitstreamError
from taskcodecs.coding.context import AutoregressiveCoder, check_order
from taskcodecs.coding.payload import check_value, make_flags, read_flags, state_crc
from taskcodecs.coding.rans import CodingTables, SymbolReader, SymbolWriter


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
    """What coding needs besides the model: see :meth:`GaussianCoding._coding_state`."""

    key: tuple
    crc: int
    model: nn.Module
    coder: AutoregressiveCoder


# model -> its _CodingState; weak keys: the cache dies with the model and is not part of it
# (not copied by deepcopy, not pickled, not in the state dict)
_CODING_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class GaussianCoding:
    """Entropy coding of :class:`~taskcodecs.coding.gaussian.GaussianContextModel` (see the
    module docstring for what the model supplies)."""

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

    # -- the coding state ----------------------------------------------------------------
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

    def _check_shape(self, shape: Sequence[int]) -> tuple[int, int]:
        dims = tuple(int(s) for s in shape)
        if len(dims) == 4 and dims[:2] == (1, self.N):
            dims = dims[2:]
        if len(dims) != 2 or not all(1 <= s <= 0xFFFF for s in dims):
            raise ValueError(
                f"shape must be the latent's (h, w) or (1, {self.N}, h, w), got {tuple(shape)}"
            )
        return dims  # type: ignore[return-value]
