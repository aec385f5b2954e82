"""The layered bitstream container: one file per coded image, a base layer and optional more.

Layout (all integers big-endian, struct-packed)::

    offset  size  field
    0       4     magic b"TCBS"
    4       1     format version (u8, currently 1)
    5       1     codec id length L (u8, 1..255)
    6       L     codec id, UTF-8 (a stable name such as "tiny-depth-base")
    6+L     2+2   original image height, width in pixels (u16 each)
    10+L    4x2   padding left, right, top, bottom in pixels (u16 each; the order of
                  torch.nn.functional.pad and taskcodecs.models.transforms.Padding)
    18+L    1     number of layers K (u8, 1..255)
    then K layer records, in payload order:
            1     layer name length (u8, 1..255)
            n     layer name, UTF-8 ("base", "enhancement", ...)
            4     payload length in bytes (u32)
            4     CRC32 of the payload (u32, zlib.crc32)
    then the K payloads, concatenated in the same order.

The header is small (about 40 bytes for two layers) and counts towards the *actual* rate:
bits per pixel = ``len(data) * 8 / (height * width)`` of the original image.

Reading is defensive: every length is checked against the bytes actually present before
anything is sliced, each requested layer's CRC32 is verified before its payload is
returned (so a corrupt payload never reaches an entropy decoder), and every failure raises
:class:`BitstreamError` with a message that names what was expected and what was found.
``unpack(data, layers=("base",))`` reads and verifies only the base layer: a stream whose
enhancement payload is corrupt, or that was truncated right after the base payload, still
gives a decodable base.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["FORMAT_VERSION", "MAGIC", "Bitstream", "BitstreamError", "pack", "unpack"]

MAGIC = b"TCBS"
FORMAT_VERSION = 1

_U8_MAX = 0xFF
_U16_MAX = 0xFFFF
_U32_MAX = 0xFFFFFFFF
_PREAMBLE = struct.Struct(">4sBB")  # magic, version, codec id length
_GEOMETRY = struct.Struct(">HHHHHHB")  # height, width, pad l/r/t/b, number of layers
_LAYER_TAIL = struct.Struct(">II")  # payload length, CRC32
_U8 = struct.Struct(">B")


class BitstreamError(ValueError):
    """Bytes that are not a valid stream: bad magic/version/codec, truncation, corruption."""


@dataclass(frozen=True)
class Bitstream:
    """A parsed container.

    ``image_size`` is the original (unpadded) (height, width) in pixels; ``padding`` is
    (left, right, top, bottom) pixels that the encoder added before coding. ``layers`` holds
    the verified payloads that were asked for, in stream order; ``layer_sizes`` holds the
    declared payload length in bytes of *every* layer in the header (asked for or not).
    """

    codec_id: str
    image_size: tuple[int, int]
    padding: tuple[int, int, int, int]
    layers: dict[str, bytes]
    layer_sizes: dict[str, int] = field(default_factory=dict)


def pack(
    codec_id: str,
    image_size: Sequence[int],
    padding: Sequence[int],
    layers: Mapping[str, bytes],
) -> bytes:
    """Serialize a container; ``layers`` maps layer name to payload, in stream order.

    Raises ValueError (not BitstreamError: these are caller mistakes, not bad data) when a
    field does not fit its format: empty or over-long names, sizes outside u16, no layers.
    """
    codec_bytes = _encode_name(codec_id, "codec id")
    height, width = _check_ints(image_size, 2, "image_size", minimum=1)
    pad = _check_ints(padding, 4, "padding (left, right, top, bottom)", minimum=0)
    if not layers:
        raise ValueError("a bitstream needs at least one layer, got none")
    if len(layers) > _U8_MAX:
        raise ValueError(f"at most {_U8_MAX} layers fit the format, got {len(layers)}")

    records: list[bytes] = []
    payloads: list[bytes] = []
    for name, payload in layers.items():
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise ValueError(f"layer {name!r}: payload must be bytes, got {type(payload).__name__}")
        payload = bytes(payload)
        if len(payload) > _U32_MAX:
            raise ValueError(f"layer {name!r}: payload of {len(payload)} bytes exceeds u32")
        name_bytes = _encode_name(name, "layer name")
        crc = zlib.crc32(payload) & _U32_MAX
        records.append(bytes([len(name_bytes)]) + name_bytes + _LAYER_TAIL.pack(len(payload), crc))
        payloads.append(payload)

    header = (
        _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(codec_bytes))
        + codec_bytes
        + _GEOMETRY.pack(height, width, *pad, len(layers))
    )
    return header + b"".join(records) + b"".join(payloads)


def unpack(
    data: bytes,
    expect_codec: str | None = None,
    layers: Iterable[str] | None = None,
) -> Bitstream:
    """Parse and verify ``data``; raise :class:`BitstreamError` on anything invalid.

    ``expect_codec``: the codec id the caller can decode; a different id is an error.
    ``layers``: names of the layers to verify and return (default: all). Only those payloads
    must be present and intact; with ``layers=None`` the whole stream must be intact and
    there must be no trailing bytes.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BitstreamError(f"bitstream must be bytes, got {type(data).__name__}")
    reader = _Reader(bytes(data))

    magic, version, codec_len = reader.unpack(_PREAMBLE, "preamble (magic, version)")
    if magic != MAGIC:
        raise BitstreamError(
            f"not a taskcodecs bitstream: expected magic {MAGIC!r}, found {magic!r}"
        )
    if version != FORMAT_VERSION:
        raise BitstreamError(
            f"unsupported bitstream format version {version} "
            f"(this reader supports version {FORMAT_VERSION})"
        )
    codec_id = reader.name(codec_len, "codec id")
    if expect_codec is not None and codec_id != expect_codec:
        raise BitstreamError(f"bitstream is for codec {codec_id!r}, expected {expect_codec!r}")
    height, width, *pad, num_layers = reader.unpack(_GEOMETRY, "image size and padding")
    if height == 0 or width == 0 or num_layers == 0:
        raise BitstreamError(
            f"invalid header: image size {height}x{width}, {num_layers} layers "
            "(size and layer count must be positive)"
        )

    table: list[tuple[str, int, int]] = []
    for index in range(num_layers):
        name_len = reader.unpack(_U8, f"layer {index} name length")[0]
        name = reader.name(name_len, f"layer {index} name")
        if any(name == seen for seen, _, _ in table):
            raise BitstreamError(f"layer name {name!r} appears twice in the header")
        length, crc = reader.unpack(_LAYER_TAIL, f"layer {name!r} length and CRC32")
        table.append((name, length, crc))

    names = [name for name, _, _ in table]
    wanted = names if layers is None else list(layers)
    missing = [name for name in wanted if name not in names]
    if missing:
        raise BitstreamError(f"layers {missing} requested but the stream holds only {names}")

    payloads: dict[str, bytes] = {}
    offset = reader.position
    for name, length, crc in table:
        start, offset = offset, offset + length
        if name not in wanted:
            continue
        if offset > len(reader.data):
            raise BitstreamError(
                f"layer {name!r} truncated: payload needs bytes {start}..{offset} "
                f"but the stream has {len(reader.data)} bytes"
            )
        payload = reader.data[start:offset]
        actual = zlib.crc32(payload) & _U32_MAX
        if actual != crc:
            raise BitstreamError(
                f"layer {name!r} is corrupted: CRC32 {actual:#010x} does not match the "
                f"stored {crc:#010x}"
            )
        payloads[name] = payload
    if layers is None and offset != len(reader.data):
        raise BitstreamError(
            f"{len(reader.data) - offset} trailing bytes after the last payload "
            f"(header declares {offset} bytes in all)"
        )
    return Bitstream(
        codec_id=codec_id,
        image_size=(height, width),
        padding=tuple(pad),  # type: ignore[arg-type]
        layers={name: payloads[name] for name in names if name in payloads},
        layer_sizes={name: length for name, length, _ in table},
    )


class _Reader:
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

    def unpack(self, fmt: struct.Struct, what: str) -> tuple:
        return fmt.unpack(self.take(fmt.size, what))

    def name(self, length: int, what: str) -> str:
        if length == 0:
            raise BitstreamError(f"invalid header: {what} is empty")
        raw = self.take(length, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise BitstreamError(f"invalid header: {what} {raw!r} is not UTF-8") from error


def _encode_name(name: str, what: str) -> bytes:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a non-empty string, got {name!r}")
    encoded = name.encode("utf-8")
    if len(encoded) > _U8_MAX:
        raise ValueError(f"{what} {name!r} is {len(encoded)} bytes in UTF-8; at most {_U8_MAX}")
    return encoded


def _check_ints(values: Sequence[int], count: int, what: str, minimum: int) -> tuple[int, ...]:
    try:
        items = tuple(values)
    except TypeError as error:
        raise ValueError(f"{what} must be {count} integers, got {values!r}") from error
    if len(items) != count or not all(_is_int(v) and minimum <= int(v) <= _U16_MAX for v in items):
        raise ValueError(
            f"{what} must be {count} integers in [{minimum}, {_U16_MAX}], got {values!r}"
        )
    return tuple(int(v) for v in items)


def _is_int(value: object) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return int(value) == value  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return False
