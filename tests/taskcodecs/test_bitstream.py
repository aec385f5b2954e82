"""The layered container: round trips, layer-wise verification, every failure a BitstreamError."""

from __future__ import annotations

import struct
import zlib

import pytest

from taskcodecs.bitstream import FORMAT_VERSION, MAGIC, Bitstream, BitstreamError, pack, unpack

CODEC = "tiny-depth-base"
BASE = bytes(range(37))
ENHANCEMENT = b"enhancement payload \x00\xff" * 3


def _stream(**overrides) -> bytes:
    arguments = {
        "codec_id": CODEC,
        "image_size": (37, 70),
        "padding": (0, 10, 0, 27),
        "layers": {"base": BASE, "enhancement": ENHANCEMENT},
    }
    arguments.update(overrides)
    return pack(**arguments)


def _payload_offset(data: bytes, layer: str) -> int:
    """Byte offset of ``layer``'s payload, from the parsed sizes (header size = total − sizes)."""
    parsed = unpack(data)
    header = len(data) - sum(parsed.layer_sizes.values())
    offset = header
    for name, size in parsed.layer_sizes.items():
        if name == layer:
            return offset
        offset += size
    raise KeyError(layer)


def test_every_field_round_trips():
    data = _stream(codec_id="scalable-recon-ü")  # non-ASCII UTF-8 id
    parsed = unpack(data, expect_codec="scalable-recon-ü")
    assert parsed == Bitstream(
        codec_id="scalable-recon-ü",
        image_size=(37, 70),
        padding=(0, 10, 0, 27),
        layers={"base": BASE, "enhancement": ENHANCEMENT},
        layer_sizes={"base": len(BASE), "enhancement": len(ENHANCEMENT)},
    )
    assert list(parsed.layers) == ["base", "enhancement"]  # stream order kept
    assert data.startswith(MAGIC + bytes([FORMAT_VERSION]))


def test_header_is_big_endian_struct_layout():
    data = _stream(layers={"base": BASE})
    codec = CODEC.encode()
    expected_header = (
        MAGIC
        + bytes([FORMAT_VERSION, len(codec)])
        + codec
        + struct.pack(">HHHHHHB", 37, 70, 0, 10, 0, 27, 1)
        + bytes([4])
        + b"base"
        + struct.pack(">II", len(BASE), zlib.crc32(BASE))
    )
    assert data == expected_header + BASE


def test_single_layer_and_empty_payload_round_trip():
    parsed = unpack(_stream(layers={"base": b""}))
    assert parsed.layers == {"base": b""}


def test_corrupt_base_payload_names_the_layer():
    data = bytearray(_stream())
    data[_payload_offset(bytes(data), "base") + 5] ^= 0x10
    with pytest.raises(BitstreamError, match="layer 'base' is corrupted: CRC32"):
        unpack(bytes(data))
    with pytest.raises(BitstreamError, match="'base'"):
        unpack(bytes(data), layers=("base",))


def test_corrupt_enhancement_leaves_the_base_decodable():
    data = bytearray(_stream())
    data[_payload_offset(bytes(data), "enhancement") + 3] ^= 0x01
    with pytest.raises(BitstreamError, match="layer 'enhancement' is corrupted"):
        unpack(bytes(data))
    base_only = unpack(bytes(data), layers=("base",))
    assert base_only.layers == {"base": BASE}
    assert base_only.layer_sizes == {"base": len(BASE), "enhancement": len(ENHANCEMENT)}


def test_stream_truncated_after_the_base_still_gives_the_base():
    data = _stream()
    cut = data[: _payload_offset(data, "enhancement")]
    assert unpack(cut, layers=("base",)).layers == {"base": BASE}
    with pytest.raises(BitstreamError, match="layer 'enhancement' truncated"):
        unpack(cut)
    with pytest.raises(BitstreamError, match="layer 'enhancement' truncated"):
        unpack(cut, layers=("enhancement",))


def test_truncation_at_every_byte_offset_raises_bitstream_error():
    data = _stream(layers={"base": b"abc", "enhancement": b"defgh"})
    for end in range(len(data)):
        with pytest.raises(BitstreamError):
            unpack(data[:end])


def test_every_single_byte_corruption_is_rejected_or_changes_only_a_header_value():
    """Flipping any byte: the payloads' CRCs or the header checks catch it, except in the
    image-size/padding fields, which carry no redundancy and parse to a different value."""
    data = _stream(layers={"base": b"abc", "enhancement": b"defgh"})
    original = unpack(data)
    for position in range(len(data)):
        corrupted = bytearray(data)
        corrupted[position] ^= 0xFF
        try:
            parsed = unpack(bytes(corrupted))
        except BitstreamError:
            continue
        assert parsed.layers == original.layers
        assert (parsed.image_size, parsed.padding) != (original.image_size, original.padding)


def test_trailing_bytes_are_rejected_unless_reading_selected_layers():
    data = _stream() + b"\x00"
    with pytest.raises(BitstreamError, match="1 trailing bytes"):
        unpack(data)
    assert unpack(data, layers=("base", "enhancement")).layers["enhancement"] == ENHANCEMENT


def test_wrong_magic_version_and_codec_name_expected_and_found():
    data = _stream()
    with pytest.raises(BitstreamError, match=r"expected magic b'TCBS', found b'\\x89PNG'"):
        unpack(b"\x89PNG" + data[4:])
    with pytest.raises(BitstreamError, match=r"version 9 \(this reader supports version 1\)"):
        unpack(data[:4] + b"\x09" + data[5:])
    with pytest.raises(
        BitstreamError, match="bitstream is for codec 'tiny-depth-base', expected 'tiny-det-base'"
    ):
        unpack(data, expect_codec="tiny-det-base")
    with pytest.raises(BitstreamError, match=r"requested but the stream holds only \['base'"):
        unpack(data, layers=("residual",))


def test_huge_declared_length_fails_before_any_allocation():
    data = bytearray(_stream(layers={"base": BASE}))
    length_at = len(data) - len(BASE) - 8
    data[length_at : length_at + 4] = struct.pack(">I", 0xFFFFFFFF)
    with pytest.raises(BitstreamError, match="layer 'base' truncated"):
        unpack(bytes(data))


def test_non_bytes_input_is_a_bitstream_error():
    with pytest.raises(BitstreamError, match="must be bytes"):
        unpack("TCBS")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"codec_id": ""}, "codec id must be a non-empty string"),
        ({"codec_id": "x" * 256}, "at most 255"),
        ({"image_size": (0, 10)}, r"image_size must be 2 integers in \[1, 65535\]"),
        ({"image_size": (10, 70000)}, "image_size"),
        ({"padding": (0, 1, 2)}, "padding"),
        ({"padding": (0, -1, 0, 0)}, "padding"),
        ({"layers": {}}, "at least one layer"),
        ({"layers": {"": b"x"}}, "layer name must be a non-empty string"),
        ({"layers": {"base": "text"}}, "payload must be bytes"),
    ],
)
def test_pack_rejects_fields_that_do_not_fit(overrides, message):
    with pytest.raises(ValueError, match=message):
        _stream(**overrides)
