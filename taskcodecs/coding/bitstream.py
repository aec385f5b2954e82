"""The layered bitstream container: one file per coded image, a base layer and optional more.

Layout, format version 2 (``v`` = unsigned LEB128 varint, the minimal encoding only; fixed
integers big-endian)::

    size  field
    4     magic b"TCBS"
    1     format version (u8, 2)
    4     codec fingerprint: SHA-256(codec id as UTF-8)[:4], the codec id being the stable
          ``name@confighash`` of taskcodecs.models.common.make_codec_id
    v v   original image height, width in pixels (each 1..65535)
    v v   padding right, bottom in pixels (0..65535; the codecs pad bottom/right only,
          taskcodecs.layers.pad_to_multiple: left and top are always 0)
    1     number of layers K (u8, 1..len(LAYER_CODES))
    then K layer records, codes strictly ascending (so the base, if present, comes first):
    1     layer code (u8, LAYER_CODES: 0 = "base", 1 = "enhancement")
    v     payload length in bytes (0..2**32 - 1)
    4     CRC32 (zlib.crc32, u32) of: the preamble (every byte before K), the layer code
          byte and the payload
    then the K payloads, concatenated in the same order.

Size: for a 128 x 256 image the preamble is 15 bytes (9 for magic, version and
fingerprint; height and width >= 128 take 2 bytes each, padding < 128 takes 1 each), then
1 byte of layer count, then 5 bytes per layer plus its length's varint (1 byte below 128
bytes of payload, 2 below 16 KiB, 3 below 2 MiB): 23 bytes for one layer of 128..16383
bytes, 30 bytes (240 bits) for two. The header counts towards the *actual* rate: bits per
pixel = ``len(data) * 8 / (height * width)`` of the original image.

Integrity. Every layer's CRC32 also covers the preamble and its own layer code, so a
corrupt magic/version/fingerprint/size/padding or a changed layer code fails the CRC of
each layer that is read, and a changed payload length misaligns the payloads (CRC
mismatch, truncation or trailing bytes). Format version 1 (a string codec id, string layer
names, u16/u32 fields, ~95 bytes for two layers) was never released; version-1 bytes are
rejected by the version check.

Reading is defensive: every varint is bounded and every length is checked against the
bytes actually present before anything is sliced, each requested layer's CRC32 is verified
before its payload is returned (so a corrupt payload never reaches an entropy decoder),
and every failure raises :class:`BitstreamError` with a message that names what was
expected and what was found. A container ends exactly where its last declared layer ends,
whichever layers are decoded: appended garbage, a second stream concatenated after the
first, or a stream cut short (even right after the base payload) is an error, not a
silent decode of a prefix. To send fewer layers, re-pack them (``Bitstream.to_bytes``):
the header then declares only those. ``unpack(data, layers=("base",))`` verifies the base
payload only, so a stream whose enhancement payload is corrupt still gives a decodable base.

Which image sizes a header may declare. The container checks its own fields (bounds, a
minimal varint per field, strictly ascending layer codes, the exact total length, the CRCs);
a codec then checks them against its latent (``taskcodecs.models.common.check_padding`` and
the payload's check value over the latent shape): the padding must be exactly what the
codec adds, right = (-W) mod m and bottom = (-H) mod m for its padding multiple m
(``padding_multiple``: 16, x2 at half resolution, x4 with a hyperprior), and the payload's
latent must be (H + bottom) / s by (W + right) / s (s = 16, or 32 at half resolution). So
the accepted sizes are exactly those whose padded size gives the payload's latent: every
H in (m(k-1), mk] with its own padding shares one latent height, and likewise for W: a header whose size is changed within that range *and* whose padding and CRCs are
recomputed is a valid stream of the other size (the decoder crops to it); every accidental
change of a size or padding byte fails a CRC, and a size outside the range fails the
latent check. ``expect_codec`` compares
fingerprints; on a mismatch the error names the expected codec id, both fingerprints and,
through the caller's ``identify`` callback, the codec the stream is for if it is known.

The fields' primitives (varints, the bounds-checked header reader, :class:`BitstreamError`)
are in :mod:`taskcodecs.coding.header_fields`.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from taskcodecs.coding.header_fields import (
    U16_MAX,
    U32_MAX,
    BitstreamError,
    HeaderReader,
    check_ints,
    varint,
)

__all__ = [
    "FINGERPRINT_SIZE",
    "FORMAT_VERSION",
    "LAYER_CODES",
    "MAGIC",
    "Bitstream",
    "BitstreamError",
    "codec_fingerprint",
    "pack",
    "unpack",
]

MAGIC = b"TCBS"
FORMAT_VERSION = 2
FINGERPRINT_SIZE = 4
LAYER_CODES: dict[str, int] = {"base": 0, "enhancement": 1}  # never renumber: it is the format
_LAYER_NAMES = {code: name for name, code in LAYER_CODES.items()}


def codec_fingerprint(codec_id: str) -> bytes:
    """The 4 bytes identifying ``codec_id`` in a stream: the first 4 bytes of its SHA-256."""
    if not isinstance(codec_id, str) or not codec_id:
        raise ValueError(f"codec id must be a non-empty string, got {codec_id!r}")
    return hashlib.sha256(codec_id.encode("utf-8")).digest()[:FINGERPRINT_SIZE]


@dataclass(frozen=True)
class Bitstream:
    """A parsed container.

    ``codec_fingerprint`` is the 4-byte fingerprint of the codec id (:func:`codec_fingerprint`);
    ``image_size`` is the original (unpadded) (height, width) in pixels; ``padding`` is
    (left, right, top, bottom) pixels that the encoder added before coding (left = top = 0).
    ``layers`` holds the verified payloads that were asked for, in stream order;
    ``layer_sizes`` holds the declared payload length in bytes of *every* layer in the
    header (asked for or not); ``header_size`` is the number of bytes before the first payload.
    """

    codec_fingerprint: bytes
    image_size: tuple[int, int]
    padding: tuple[int, int, int, int]
    layers: dict[str, bytes]
    layer_sizes: dict[str, int] = field(default_factory=dict)
    header_size: int = 0

    def to_bytes(self) -> bytes:
        """A container of the same codec, size and padding holding only ``self.layers``."""
        return _pack(self.codec_fingerprint, self.image_size, self.padding, self.layers)


def pack(
    codec_id: str,
    image_size: Sequence[int],
    padding: Sequence[int],
    layers: Mapping[str, bytes],
) -> bytes:
    """Serialize a container; ``layers`` maps layer name (a key of :data:`LAYER_CODES`) to
    payload, in stream order (base before enhancement). ``padding`` is (left, right, top,
    bottom) with left = top = 0.

    Raises ValueError (not BitstreamError: these are caller mistakes, not bad data) when a
    field does not fit its format: an empty codec id, sizes outside u16, padding on the left
    or top, unknown or misordered layer names, no layers, a payload of 4 GiB or more.
    """
    return _pack(codec_fingerprint(codec_id), image_size, padding, layers)


def unpack(
    data: bytes,
    expect_codec: str | None = None,
    layers: Iterable[str] | None = None,
    identify: Callable[[bytes], str | None] | None = None,
) -> Bitstream:
    """Parse and verify ``data``; raise :class:`BitstreamError` on anything invalid.

    ``expect_codec``: the codec id the caller can decode; a stream whose fingerprint differs
    is an error. ``identify``: optional, maps a fingerprint to the codec id it belongs to
    (or None); called only on a mismatch, to name the stream's codec in the error.
    ``layers``: names of the layers to verify and return (default: all). Whatever is asked
    for, the stream must end exactly where its last declared layer ends (no byte missing, no
    byte trailing); only the asked-for payloads' CRCs are checked, so a corrupt enhancement
    payload still leaves the base decodable.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BitstreamError(f"bitstream must be bytes, got {type(data).__name__}")
    reader = HeaderReader(bytes(data))

    magic = reader.take(len(MAGIC), "magic")
    if magic != MAGIC:
        raise BitstreamError(
            f"not a taskcodecs bitstream: expected magic {MAGIC!r}, found {magic!r}"
        )
    version = reader.take(1, "format version")[0]
    if version != FORMAT_VERSION:
        raise BitstreamError(
            f"unsupported bitstream format version {version} "
            f"(this reader supports version {FORMAT_VERSION})"
        )
    fingerprint = reader.take(FINGERPRINT_SIZE, "codec fingerprint")
    if expect_codec is not None:
        _check_codec(fingerprint, expect_codec, identify)
    height = reader.varint("image height", 1, U16_MAX)
    width = reader.varint("image width", 1, U16_MAX)
    pad_right = reader.varint("padding right", 0, U16_MAX)
    pad_bottom = reader.varint("padding bottom", 0, U16_MAX)
    preamble_crc = zlib.crc32(reader.data[: reader.position])
    num_layers = reader.take(1, "number of layers")[0]
    if not 1 <= num_layers <= len(LAYER_CODES):
        raise BitstreamError(
            f"invalid header: {num_layers} layers (expected 1..{len(LAYER_CODES)})"
        )

    table: list[tuple[str, int, int, int]] = []  # name, code, length, crc
    for index in range(num_layers):
        code = reader.take(1, f"layer {index} code")[0]
        if code not in _LAYER_NAMES:
            raise BitstreamError(
                f"invalid header: layer {index} has code {code}, expected one of {_LAYER_NAMES}"
            )
        if table and code <= table[-1][1]:
            raise BitstreamError(
                f"invalid header: layer code {code} after {table[-1][1]} "
                "(codes must be strictly ascending)"
            )
        name = _LAYER_NAMES[code]
        length = reader.varint(f"layer {name!r} length", 0, U32_MAX)
        crc = int.from_bytes(reader.take(4, f"layer {name!r} CRC32"), "big")
        table.append((name, code, length, crc))

    names = [name for name, _, _, _ in table]
    wanted = names if layers is None else list(layers)
    missing = [name for name in wanted if name not in names]
    if missing:
        raise BitstreamError(f"layers {missing} requested but the stream holds only {names}")

    header_size = reader.position
    declared = header_size + sum(length for _, _, length, _ in table)
    if declared < len(reader.data):  # checked whatever layers are asked for
        raise BitstreamError(
            f"{len(reader.data) - declared} trailing bytes after the last payload "
            f"(the header declares {declared} bytes in all; appended or concatenated data?)"
        )
    payloads: dict[str, bytes] = {}
    offset = header_size
    for name, code, length, crc in table:
        start, offset = offset, offset + length
        if offset > len(reader.data):
            raise BitstreamError(
                f"layer {name!r} truncated: payload needs bytes {start}..{offset} "
                f"but the stream has {len(reader.data)} bytes"
            )
        if name not in wanted:
            continue
        payload = reader.data[start:offset]
        actual = _layer_crc(preamble_crc, code, payload)
        if actual != crc:
            raise BitstreamError(
                f"layer {name!r} is corrupted (payload or header): CRC32 {actual:#010x} does "
                f"not match the stored {crc:#010x}"
            )
        payloads[name] = payload
    return Bitstream(
        codec_fingerprint=fingerprint,
        image_size=(height, width),
        padding=(0, pad_right, 0, pad_bottom),
        layers={name: payloads[name] for name in names if name in payloads},
        layer_sizes={name: length for name, _, length, _ in table},
        header_size=header_size,
    )


# ------------------------------------------------------------------------------ internals


def _pack(
    fingerprint: bytes,
    image_size: Sequence[int],
    padding: Sequence[int],
    layers: Mapping[str, bytes],
) -> bytes:
    if not isinstance(fingerprint, bytes) or len(fingerprint) != FINGERPRINT_SIZE:
        raise ValueError(f"codec fingerprint must be {FINGERPRINT_SIZE} bytes, got {fingerprint!r}")
    height, width = check_ints(image_size, 2, "image_size", minimum=1)
    left, right, top, bottom = check_ints(
        padding, 4, "padding (left, right, top, bottom)", minimum=0
    )
    if left or top:
        raise ValueError(
            f"padding {tuple(padding)}: the format stores right and bottom padding only "
            "(left and top must be 0)"
        )
    if not layers:
        raise ValueError("a bitstream needs at least one layer, got none")
    preamble = (
        MAGIC
        + bytes([FORMAT_VERSION])
        + fingerprint
        + b"".join(varint(v) for v in (height, width, right, bottom))
    )
    preamble_crc = zlib.crc32(preamble)
    records: list[bytes] = []
    payloads: list[bytes] = []
    previous = -1
    for name, payload in layers.items():
        if name not in LAYER_CODES:
            raise ValueError(f"unknown layer name {name!r}: expected one of {list(LAYER_CODES)}")
        code = LAYER_CODES[name]
        if code <= previous:
            raise ValueError(
                f"layers must be given in the order {list(LAYER_CODES)}, got {list(layers)}"
            )
        previous = code
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise ValueError(f"layer {name!r}: payload must be bytes, got {type(payload).__name__}")
        payload = bytes(payload)
        if len(payload) > U32_MAX:
            raise ValueError(f"layer {name!r}: payload of {len(payload)} bytes exceeds 4 GiB - 1")
        crc = _layer_crc(preamble_crc, code, payload)
        records.append(bytes([code]) + varint(len(payload)) + crc.to_bytes(4, "big"))
        payloads.append(payload)
    return preamble + bytes([len(records)]) + b"".join(records) + b"".join(payloads)


def _layer_crc(preamble_crc: int, code: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(bytes([code]), preamble_crc)) & U32_MAX


def _check_codec(
    fingerprint: bytes, expect_codec: str, identify: Callable[[bytes], str | None] | None
) -> None:
    expected = codec_fingerprint(expect_codec)
    if fingerprint == expected:
        return
    known = identify(fingerprint) if identify is not None else None
    found = f"codec {known!r}" if known else "an unknown codec"
    raise BitstreamError(
        f"bitstream is for {found} (fingerprint {fingerprint.hex()}), expected codec "
        f"{expect_codec!r} (fingerprint {expected.hex()})"
    )
