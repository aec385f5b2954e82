"""rANS entropy-coding primitives: the tables symbols are coded with, and the streams.

Tables. Two kinds of latent are entropy-coded (taskcodecs.coding.entropy):

* y, Gaussian conditionals: the CDF of the table scale nearest (in log scale) to the
  predicted σ (:func:`scale_indexes`), from CompressAI's 64 log-spaced scales;
* z (the hyperprior's hyper-latent), a learned factorized density per channel
  (:class:`~compressai.entropy_models.EntropyBottleneck`): one table per channel
  (:func:`bottleneck_tables`, :func:`channel_indexes`), rebuilt from the current parameters
  whenever they are needed.

:class:`CodingTables` holds CDFs in the layout ``compressai.ans`` expects. No table ends up
in a ``state_dict()`` (:func:`make_tables_transient`): tables are derived, never stored.

Streams. :class:`SymbolWriter` buffers symbols into one ``BufferedRansEncoder`` stream and
ends it with a 16-bit check value; :class:`SymbolReader` decodes that stream defensively:
it checks the stream length, pads the stream with zeros so that a garbage payload can at
worst give garbage symbols (CompressAI's decoder does not bounds-check its reads), rejects
implausibly large symbols early, compares the check value at the end, and finally re-encodes
the decoded symbols (cheap: no model involved) to require that the stream is exactly their
encoding -- so bytes appended after the rANS stream's end, which the decoder never reads,
are an error too. The caller
derives the check value from everything the decoder must share with the encoder (latent
shape, model parameters, side input), so garbage, a desynchronized decoder, a wrong shape,
a different model or different side information is detected with probability 1 - 2**-16.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from compressai._CXX import pmf_to_quantized_cdf
from compressai.ans import BufferedRansEncoder, RansDecoder
from compressai.entropy_models import EntropyBottleneck
from compressai.entropy_models.entropy_models import EntropyModel
from torch import Tensor, nn

from taskcodecs.coding.bitstream import BitstreamError

__all__ = [
    "BOTTLENECK_TABLE_RADIUS",
    "MAX_ABS_SYMBOL",
    "CodingTables",
    "SymbolReader",
    "SymbolWriter",
    "bottleneck_likelihood",
    "bottleneck_tables",
    "channel_indexes",
    "make_tables_transient",
    "scale_indexes",
    "single_threaded",
]

# |symbol| bound: float32 holds every integer up to 2**24 exactly, so y_hat = s + mu stays
# meaningful. The encoder refuses larger residuals; the decoder treats them as garbage.
MAX_ABS_SYMBOL = 2**24
_MAX_STREAM_BYTES_PER_SYMBOL = 8  # 16 bits rANS + at most 32 bypass bits, with margin
# A Gaussian-table symbol costs at least -log2(1 - 3/2**16) bits (<= 121k symbols per byte); a
# bottleneck symbol 3x less, but z never has more positions than y: <= 242k per byte.
_MAX_SYMBOLS_PER_STREAM_BYTE = 2**18
_CHECK_SYMBOLS = 2  # the 16-bit check value, as two 8-bit symbols

BOTTLENECK_TABLE_RADIUS = 256  # z tables span median ± this; beyond is escape-coded


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


def make_tables_transient(model: nn.Module) -> None:
    """Keep CompressAI's CDF buffers out of state_dict(): they are derived, never stored."""
    for name in ("_offset", "_quantized_cdf", "_cdf_length"):
        model.register_buffer(name, getattr(model, name), persistent=False)


def bottleneck_likelihood(bottleneck: EntropyBottleneck, z_hat: Tensor) -> Tensor:
    """Likelihoods of z_hat (B, C, h, w) under the learned factorized density, bounded."""
    batch, channels, height, width = z_hat.shape
    values = z_hat.transpose(0, 1).reshape(channels, 1, -1)
    likelihood = bottleneck.likelihood_lower_bound(bottleneck._likelihood(values)[0])
    return likelihood.reshape(channels, batch, height, width).transpose(0, 1)


def bottleneck_tables(bottleneck: EntropyBottleneck) -> tuple[CodingTables, Tensor]:
    """Coding tables of the bottleneck's *current* parameters, built on a CPU copy, and
    the per-channel medians (float64) the symbols are taken relative to.

    The table for channel c spans median ± k where k is the first integer offset whose
    cumulative tail mass is below tail_mass / 2 (at most ±256; farther values escape).
    The median stays the learned ``quantiles[:, 0, 1]`` that ``forward`` uses; no aux loss
    is needed for correct (or reasonably tight) tables.
    """
    eb = copy.deepcopy(bottleneck).to("cpu", torch.float64)
    if not all(bool(torch.isfinite(p).all()) for p in eb.parameters()):
        raise ValueError("entropy bottleneck parameters are not finite: cannot build coding tables")
    with torch.no_grad(), single_threaded():
        medians = eb.quantiles[:, 0, 1].clone()
        offsets = torch.arange(BOTTLENECK_TABLE_RADIUS + 1, dtype=torch.float64)
        lower = eb._logits_cumulative((medians[:, None] - offsets - 0.5)[:, None], True)[:, 0]
        upper = eb._logits_cumulative((medians[:, None] + offsets + 0.5)[:, None], True)[:, 0]
        target = math.log(2 / eb.tail_mass - 1)
        below, above = _first_true(lower <= -target), _first_true(upper >= target)
        eb.quantiles[:, 0, 0] = medians - below
        eb.quantiles[:, 0, 2] = medians + above
        eb.update(force=True)
    return CodingTables.from_entropy_model(eb), medians


def channel_indexes(shape: Sequence[int]) -> Tensor:
    """Table index of every element of a (C, ...) tensor: its channel."""
    channels = shape[0]
    return torch.arange(channels).view(-1, *([1] * (len(shape) - 1))).expand(*shape)


def _first_true(mask: Tensor) -> Tensor:
    """Per row, the first column where ``mask`` holds (the last column if none)."""
    first = mask.to(torch.int8).argmax(dim=1)
    return torch.where(mask.any(dim=1), first, mask.shape[1] - 1).double()


# -- streams ------------------------------------------------------------------------------


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
        self._stream = stream
        self._reads: list[tuple[Tensor, Tensor, CodingTables]] = []

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
        self._reads.append((symbols, indexes, tables))
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
        # the stream must be exactly the encoding of what it decoded to: rANS never reads
        # bytes after its end, so this is what catches bytes appended inside a payload
        writer, runs = SymbolWriter(), []
        for symbols, indexes, tables in self._reads[:-1]:  # one write per run of one table set
            if runs and runs[-1][2] is tables:
                runs[-1][0].append(symbols.reshape(-1))
                runs[-1][1].append(indexes.reshape(-1))
            else:
                runs.append(([symbols.reshape(-1)], [indexes.reshape(-1)], tables))
        for symbols, indexes, tables in runs:
            writer.write(torch.cat(symbols), torch.cat(indexes), tables)
        if writer.finish(check) != self._stream:
            raise BitstreamError(
                f"entropy-coded stream of {len(self._stream)} bytes is not the encoding of the "
                "symbols it decodes to (bytes appended or changed after its end): corrupt payload"
            )


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
