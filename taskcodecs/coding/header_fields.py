"""The container header's fields, byte by byte: minimal LEB128 varints, bounded reads, ints.

The layout is :mod:`taskcodecs.coding.bitstream`'s; this module holds its primitives:

    varint          unsigned LEB128: 7 bits per byte, least significant first
    HeaderReader    a cursor that checks every read against the bytes present and reads
                    only minimal varints within bounds (a corrupt length never runs far)
    check_ints      a caller's integers (sizes, padding) as u16 values, or ValueError
    BitstreamError  what every reader of bad bytes raises (bitstream, payload, rANS)
"""

from __future__ import annotations

from collections.abc import Sequence

U16_MAX = 0xFFFF
U32_MAX = 0xFFFFFFFF


class BitstreamError(ValueError):
    """Bytes that are not a valid stream: bad magic/version/codec, truncation, corruption."""


def varint(value: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, least significant first, high bit = more follow."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


class HeaderReader:
    """A cursor over the header that checks every read against the bytes present."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def take(self, size: int, what: str) -> bytes:
        end = self.position + size
        if end > len(self.data):
            raise BitstreamError(
                f"bitstream truncated in the header: {what} needs bytes "
                f"{self.position}..{end} but the stream has {len(self.data)} bytes"
            )
        chunk = self.data[self.position : end]
        self.position = end
        return chunk

    def varint(self, what: str, minimum: int, maximum: int) -> int:
        """A minimal LEB128 varint in [minimum, maximum]; at most as many bytes as the
        maximum needs are read, so a corrupt length never runs far."""
        start = self.position
        value, shift = 0, 0
        for _ in range(len(varint(maximum))):
            byte = self.take(1, what)[0]
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                if byte == 0 and self.position - start > 1:
                    raise BitstreamError(f"invalid header: {what} is a non-minimal varint")
                if not minimum <= value <= maximum:
                    raise BitstreamError(
                        f"invalid header: {what} is {value}, expected {minimum}..{maximum}"
                    )
                return value
        raise BitstreamError(
            f"invalid header: {what} is a varint longer than {self.position - start} bytes "
            f"(its maximum is {maximum})"
        )


def check_ints(values: Sequence[int], count: int, what: str, minimum: int) -> tuple[int, ...]:
    try:
        items = tuple(values)
    except TypeError as error:
        raise ValueError(f"{what} must be {count} integers, got {values!r}") from error
    if len(items) != count or not all(_is_int(v) and minimum <= int(v) <= U16_MAX for v in items):
        raise ValueError(
            f"{what} must be {count} integers in [{minimum}, {U16_MAX}], got {values!r}"
        )
    return tuple(int(v) for v in items)


def _is_int(value: object) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return int(value) == value  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return False
