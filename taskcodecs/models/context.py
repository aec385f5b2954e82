"""The autoregressive coding engine: wavefront schedule, masked context as a matmul, rANS I/O.

:mod:`taskcodecs.models.entropy` builds the models; this module runs them symbol by symbol.
Encoder and decoder call the *same* :meth:`AutoregressiveCoder.run` with the same inputs, so
they compute bitwise-identical means and scale indexes (the rANS tables are chosen by scale
index, so any disagreement would desynchronize the stream).

Decoding order. The 5x5 type-A masked context at latent position (r, c) reads the 12 causal
taps (r-2..r-1, c-2..c+2) and (r, c-2..c-1)::

    x x x x x
    x x x x x        t = 3*r + c: every tap lies on a wavefront t' < t, so all positions
    x x o . .        of one wavefront can be decoded together, in 3*(h-1) + w steps
    . . . . .        instead of h*w. (t = 2*r + c would not do: tap (r-1, c+2) has the
    . . . . .        same t.)

Each step gathers the causal patches of the partially decoded latent at that step's
positions, applies the masked conv as one matmul over the taps (future positions are never
read, not even multiplied by a zero weight), then the 1x1 parameter network as matmuls,
then decodes all symbols of the step with one ``RansDecoder.decode_stream`` call.
``order="raster"`` (one position per step) is kept as a reference.

rANS I/O. :class:`SymbolWriter` buffers symbols into one ``BufferedRansEncoder`` stream and
ends it with a 16-bit check value; :class:`SymbolReader` decodes that stream defensively:
it checks the stream length, pads the stream with zeros so that a garbage payload can at
worst give garbage symbols (CompressAI's decoder does not bounds-check its reads), rejects
implausibly large symbols early, and compares the check value at the end. The caller
derives the check value from everything the decoder must share with the encoder (latent
shape, model parameters, side input), so garbage, a desynchronized decoder, a wrong shape,
a different model or different side information is detected with probability 1 - 2**-16.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from compressai._CXX import pmf_to_quantized_cdf
from compressai.ans import BufferedRansEncoder, RansDecoder
from compressai.entropy_models.entropy_models import EntropyModel
from torch import Tensor, nn

from taskcodecs.bitstream import BitstreamError

__all__ = [
    "MAX_ABS_SYMBOL",
    "AutoregressiveCoder",
    "CodingTables",
    "MaskedConv2d",
    "SymbolReader",
    "SymbolWriter",
    "check_order",
    "decoding_schedule",
    "scale_indexes",
    "single_threaded",
]

ORDERS: tuple[str, ...] = ("wavefront", "raster")

# |symbol| bound: float32 holds every integer up to 2**24 exactly, so y_hat = s + mu stays
# meaningful. The encoder refuses larger residuals; the decoder treats them as garbage.
MAX_ABS_SYMBOL = 2**24
_MAX_STREAM_BYTES_PER_SYMBOL = 8  # 16 bits rANS + at most 32 bypass bits, with margin
# A Gaussian-table symbol costs at least -log2(1 - 3/2**16) bits (<= 121k symbols per byte); a
# bottleneck symbol 3x less, but z never has more positions than y: <= 242k per byte.
_MAX_SYMBOLS_PER_STREAM_BYTE = 2**18
_CHECK_SYMBOLS = 2  # the 16-bit check value, as two 8-bit symbols


class MaskedConv2d(nn.Conv2d):
    """A PixelCNN masked conv that never touches its parameters: ``conv(x, weight * mask)``.

    ``mask_type="A"`` masks the centre tap and everything after it in raster order (the
    context model's causal 5x5 taps, see the module docstring); ``"B"`` keeps the centre.
    Unlike CompressAI's ``MaskedConv2d`` (whose ``forward`` rewrites ``weight.data`` in
    place), the weight tensor is left as it is: the masked-out taps never influence the
    output, receive exactly zero gradient, and a frozen model stays bit-identical however
    often it runs. Same constructor, initialization and state-dict keys (``weight``,
    ``bias``, ``mask``) as CompressAI's. (n, C_in, H, W) -> (n, C_out, H', W').
    """

    def __init__(self, *args: Any, mask_type: str = "A", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        mask = torch.ones_like(self.weight.detach())
        _, _, height, width = mask.shape
        mask[:, :, height // 2, width // 2 + (mask_type == "B") :] = 0
        mask[:, :, height // 2 + 1 :] = 0
        self.register_buffer("mask", mask)

    def masked_weight(self) -> Tensor:
        """The weight the convolution uses: ``weight * mask`` (a new tensor)."""
        return self.weight * self.mask

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.masked_weight(), self.bias)


def check_order(order: str) -> str:
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    return order


def decoding_schedule(
    height: int, width: int, order: str, slope: int = 3
) -> list[tuple[Tensor, Tensor]]:
    """(rows, cols) index tensors of each decoding step, in decoding order.

    ``wavefront``: step t holds the positions with ``slope * row + col == t`` (rows
    ascending; empty wavefronts skipped), ``slope * (h - 1) + w`` steps at most;
    ``raster``: one position per step, row by row.
    """
    check_order(order)
    if order == "raster":
        return [(torch.tensor([r]), torch.tensor([c])) for r in range(height) for c in range(width)]
    rows = torch.arange(height)
    steps = []
    for t in range(slope * (height - 1) + width):
        cols = t - slope * rows
        keep = (cols >= 0) & (cols < width)
        if bool(keep.any()):  # latents narrower than the slope leave some wavefronts empty
            steps.append((rows[keep], cols[keep]))
    return steps


def scale_indexes(scales: Tensor, scale_table: Tensor, scale_bound: float) -> Tensor:
    """Index of the CDF table used for each scale: the table scale nearest in log scale.

    Scales are first lower-bounded by ``scale_bound``; the boundary between table scales
    a < b is their geometric mean sqrt(a b), computed in float64 (IEEE-exact products and
    square roots, so every platform picks the same index). CompressAI's ``build_indexes``
    rounds up to the next table scale instead, which with its 64 scales (13 % apart) costs
    ~2 % of the bits at a few bits per pixel; the nearest scale costs a fraction of that.
    Always within [0, len(scale_table) - 1], NaN included.
    """
    table = scale_table.detach().to(torch.float64)
    boundaries = torch.sqrt(table[1:] * table[:-1]).contiguous()
    bounded = torch.clamp_min(scales.detach().to(torch.float64), scale_bound).contiguous()
    indexes = torch.searchsorted(boundaries, bounded)
    return indexes.clamp_(0, len(scale_table) - 1)


@dataclass(frozen=True)
class CodingTables:
    """Quantized CDFs in the layout ``compressai.ans`` expects (rows cut to their lengths)."""

    cdfs: list[list[int]]
    lengths: list[int]
    offsets: list[int]

    @classmethod
    def from_entropy_model(cls, model: EntropyModel) -> CodingTables:
        """Tables of an updated CompressAI entropy model (after its ``update()``)."""
        lengths = [int(n) for n in model._cdf_length.tolist()]
        cdfs = [row[:n] for row, n in zip(model._quantized_cdf.tolist(), lengths)]
        return cls(cdfs, lengths, [int(o) for o in model._offset.tolist()])

    @classmethod
    def uniform(cls, num_values: int) -> CodingTables:
        """One table coding the values 0..num_values-1 with equal probability."""
        cdf = pmf_to_quantized_cdf([1.0 / (num_values + 1)] * (num_values + 1), 16)
        return cls([list(cdf)], [len(cdf)], [0])

    def subset(self, ids: Sequence[int]) -> CodingTables:
        return CodingTables(
            [self.cdfs[i] for i in ids],
            [self.lengths[i] for i in ids],
            [self.offsets[i] for i in ids],
        )


_CHECK_TABLES = CodingTables.uniform(256)


def _check_symbols(check: int) -> Tensor:
    return torch.tensor([(check >> 8) & 0xFF, check & 0xFF])


class SymbolWriter:
    """Collects integer symbols with their table indexes into one rANS stream."""

    def __init__(self) -> None:
        self._encoder = BufferedRansEncoder()
        self.num_symbols = 0

    def write(self, symbols: Tensor, indexes: Tensor, tables: CodingTables) -> None:
        symbols = symbols.reshape(-1)
        if symbols.numel() and symbols.abs().max() > MAX_ABS_SYMBOL:
            raise ValueError(
                f"a symbol of magnitude {int(symbols.abs().max())} exceeds {MAX_ABS_SYMBOL}: "
                "the latent is too large for the entropy coder"
            )
        self._encoder.encode_with_indexes(
            symbols.tolist(),
            indexes.reshape(-1).tolist(),
            tables.cdfs,
            tables.lengths,
            tables.offsets,
        )
        self.num_symbols += symbols.numel()

    def finish(self, check: int) -> bytes:
        """Append the 16-bit ``check`` value; the stream (a multiple of 4 bytes, at least 8)."""
        self.write(
            _check_symbols(check), torch.zeros(_CHECK_SYMBOLS, dtype=torch.int64), _CHECK_TABLES
        )
        return self._encoder.flush()


class SymbolReader:
    """Decodes a :class:`SymbolWriter` stream; garbage raises :class:`BitstreamError`.

    ``max_symbols`` is the number of symbols the caller will read (check excluded); it
    bounds the plausible stream length and sizes the zero padding that keeps the decoder's
    unchecked reads inside our buffer. Worst cases: a run of 0xFF bytes makes the escape
    (bypass) decoder read up to ~15 bytes per stream byte, and past the end each symbol
    reads at most one 4-byte word (plus rare escapes, at most ~120 bytes each). The
    padding is transient memory of the order of the decoded latent itself; callers should
    bound latent shapes taken from untrusted headers.
    """

    def __init__(self, stream: bytes, max_symbols: int) -> None:
        total = max_symbols + _CHECK_SYMBOLS
        if len(stream) < 8 or len(stream) % 4:
            raise BitstreamError(
                f"entropy-coded stream of {len(stream)} bytes is invalid: an rANS stream is a "
                "multiple of 4 bytes and at least 8"
            )
        if len(stream) > _MAX_STREAM_BYTES_PER_SYMBOL * total + 16:
            raise BitstreamError(
                f"entropy-coded stream of {len(stream)} bytes is too long for {total} symbols"
            )
        if total > _MAX_SYMBOLS_PER_STREAM_BYTE * (len(stream) + 8):
            raise BitstreamError(
                f"{total} symbols cannot be carried by a {len(stream)}-byte stream: "
                "wrong latent shape?"
            )
        padding = bytes(16 * len(stream) + 4 * total + 65536)
        self._decoder = RansDecoder()
        self._decoder.set_stream(stream + padding)

    def read(self, indexes: Tensor, tables: CodingTables) -> Tensor:
        """Decode one symbol per entry of ``indexes`` (table ids); same shape, int64."""
        unique, inverse = torch.unique(indexes, return_inverse=True)
        used = tables.subset(unique.tolist())  # pass only the tables this call needs
        values = self._decoder.decode_stream(
            inverse.reshape(-1).tolist(), used.cdfs, used.lengths, used.offsets
        )
        symbols = torch.tensor(values, dtype=torch.int64).reshape(indexes.shape)
        if symbols.numel() and symbols.abs().max() > MAX_ABS_SYMBOL:
            raise BitstreamError(
                "entropy-coded stream decodes to out-of-range symbols: corrupt payload or "
                "encoder/decoder mismatch"
            )
        return symbols

    def finish(self, check: int) -> None:
        """Compare the stream's check value with ``check`` (what the encoder wrote if this
        decoder shares everything with it and consumed the stream exactly as written)."""
        found = self.read(torch.zeros(_CHECK_SYMBOLS, dtype=torch.int64), _CHECK_TABLES)
        expected = _check_symbols(check)
        if not torch.equal(found, expected):
            raise BitstreamError(
                "entropy-coded stream failed its end check: corrupt payload, or the decoder "
                "differs from the encoder (latent shape, model parameters or side information)"
            )


# (rows, cols, means (k, C), scale indexes (k, C)) -> integer symbols (k, C)
SymbolSource = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class CodedLatent:
    """What :meth:`AutoregressiveCoder.run` produced, each (C, h, w), CPU float32."""

    y_hat: Tensor
    means: Tensor
    scales: Tensor


class AutoregressiveCoder:
    """Runs context model + parameter network position group by position group.

    Give it CPU modules: ``context_prediction`` (a type-A :class:`MaskedConv2d`),
    ``entropy_parameters`` (an ``nn.Sequential`` of 1x1 convs and elementwise activations
    whose output splits into scales then means; float64 recommended) and the float32 scale
    table. Arithmetic runs in the parameter network's dtype; the decoded latent, the
    conditioning and the resulting μ, σ are float32 (rounded from float64), so results do
    not depend on how many positions a step holds.
    """

    def __init__(
        self,
        context_prediction: MaskedConv2d,
        entropy_parameters: nn.Sequential,
        scale_table: Tensor,
        scale_bound: float,
    ) -> None:
        dtype = next(entropy_parameters.parameters()).dtype
        weight = context_prediction.masked_weight().detach().to(dtype)
        kernel_h, kernel_w = weight.shape[-2:]
        taps = torch.nonzero(context_prediction.mask[0, 0])  # (T, 2): (ky, kx) of causal taps
        self.dy = taps[:, 0] - kernel_h // 2
        self.dx = taps[:, 1] - kernel_w // 2
        if not bool(((self.dy < 0) | ((self.dy == 0) & (self.dx < 0))).all()):
            raise ValueError("context_prediction must be a type-A (strictly causal) masked conv")
        self.pad = max(kernel_h, kernel_w) // 2
        self.slope = next(
            a for a in range(1, kernel_w + 1) if bool((a * self.dy + self.dx < 0).all())
        )
        # masked conv over the taps as one matrix: (2N, C * T), columns ordered (channel, tap)
        self.context_weight = weight[:, :, taps[:, 0], taps[:, 1]].flatten(1)
        self.context_bias = context_prediction.bias.detach().to(dtype)
        self.dtype = dtype
        for layer in entropy_parameters:
            if isinstance(layer, nn.Conv2d) and (
                layer.kernel_size != (1, 1) or layer.stride != (1, 1)
            ):
                raise ValueError(f"entropy_parameters must use 1x1 convs only, found {layer}")
        self.entropy_parameters = entropy_parameters
        self.scale_table = scale_table.detach().float()
        self.scale_bound = float(scale_bound)

    def run(
        self,
        conditioning: Tensor | None,
        shape: tuple[int, int, int],
        order: str,
        next_symbols: SymbolSource,
    ) -> CodedLatent:
        """Code a (C, h, w) latent; ``conditioning`` (K, h, w) float32, concatenated after the
        context features. ``next_symbols`` supplies each step's symbols (encoder: from the
        latent; decoder: from the stream)."""
        with single_threaded():
            return self._run(conditioning, shape, order, next_symbols)

    def _run(self, conditioning, shape, order, next_symbols) -> CodedLatent:
        channels, height, width = shape
        pad = self.pad
        y_pad = torch.zeros(channels, height + pad, width + 2 * pad)  # causal: no bottom pad
        means_full = torch.zeros(channels, height, width)
        scales_full = torch.zeros(channels, height, width)
        for rows, cols in decoding_schedule(height, width, order, self.slope):
            patch_rows = rows[None, :] + pad + self.dy[:, None]  # (T, k)
            patch_cols = cols[None, :] + pad + self.dx[:, None]
            patches = y_pad[:, patch_rows, patch_cols]  # (C, T, k)
            patches = patches.permute(2, 0, 1).reshape(len(rows), -1).to(self.dtype)  # (k, C*T)
            features = F.linear(patches, self.context_weight, self.context_bias)
            if conditioning is not None:
                side = conditioning[:, rows, cols].T.to(self.dtype)
                features = torch.cat([features, side], dim=1)
            params = _pointwise(self.entropy_parameters, features).float()  # (k, 2C)
            scales, means = params[:, :channels], params[:, channels:]
            indexes = scale_indexes(scales, self.scale_table, self.scale_bound)
            symbols = next_symbols(rows, cols, means, indexes)
            y_pad[:, rows + pad, cols + pad] = (symbols.to(torch.float32) + means).T
            means_full[:, rows, cols] = means.T
            scales_full[:, rows, cols] = scales.T
        y_hat = y_pad[:, pad:, pad : pad + width].clone()
        return CodedLatent(y_hat=y_hat, means=means_full, scales=scales_full)


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch ops on one thread: the per-step ops are tiny, and intra-op thread pools cost
    more in synchronization than they save (several times more on a loaded machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _pointwise(layers: nn.Sequential, features: Tensor) -> Tensor:
    """Apply a stack of 1x1 convs and elementwise activations to (k, channels) features."""
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            features = F.linear(features, layer.weight.flatten(1), layer.bias)
        else:
            features = layer(features)
    return features
