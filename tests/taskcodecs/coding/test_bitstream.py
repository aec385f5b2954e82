"""The layered container: round trips, layer-wise verification, every failure a BitstreamError."""

from __future__ import annotations

import hashlib
import zlib

import pytest

from taskcodecs.coding.bitstream import (
    FORMAT_VERSION,
    LAYER_CODES,
    MAGIC,
    Bitstream,
    BitstreamError,
    codec_fingerprint,
    pack,
    unpack,
)

CODEC = "tiny-depth-base@0123abcd"
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
    """Byte offset of ``layer``'s payload, from the parsed header size and layer sizes."""
    parsed = unpack(data)
    offset = parsed.header_size
    for name, size in parsed.layer_sizes.items():
        if name == layer:
            return offset
        offset += size
    raise KeyError(layer)


def test_every_field_round_trips():
    data = _stream(codec_id="scalable-recon-ü@00000000")  # non-ASCII UTF-8 id
    parsed = unpack(data, expect_codec="scalable-recon-ü@00000000")
    assert parsed == Bitstream(
        codec_fingerprint=hashlib.sha256("scalable-recon-ü@00000000".encode()).digest()[:4],
        image_size=(37, 70),
        padding=(0, 10, 0, 27),
        layers={"base": BASE, "enhancement": ENHANCEMENT},
        layer_sizes={"base": len(BASE), "enhancement": len(ENHANCEMENT)},
        header_size=len(data) - len(BASE) - len(ENHANCEMENT),
    )
    assert list(parsed.layers) == ["base", "enhancement"]  # stream order kept
    assert data.startswith(MAGIC + bytes([FORMAT_VERSION]))
    assert parsed.to_bytes() == data


def test_header_layout_byte_for_byte():
    """Magic, version, fingerprint, LEB128 sizes/padding, count, then code/length/CRC32 per
    layer, each CRC covering the preamble, the layer code and the payload."""
    big = bytes(200)  # a 2-byte length varint: 200 = 0xC8 -> 0xC8 0x01
    data = _stream(
        image_size=(128, 300), padding=(0, 20, 0, 0), layers={"base": BASE, "enhancement": big}
    )
    preamble = (
        b"TCBS"
        + bytes([2])
        + hashlib.sha256(CODEC.encode()).digest()[:4]
        + bytes([0x80, 0x01])  # height 128
        + bytes([0xAC, 0x02])  # width 300
        + bytes([20, 0])  # padding right, bottom
    )

    def crc(code: int, payload: bytes) -> bytes:
        return zlib.crc32(preamble + bytes([code]) + payload).to_bytes(4, "big")

    header = (
        preamble
        + bytes([2])
        + bytes([0, len(BASE)]) + crc(0, BASE)
        + bytes([1, 0xC8, 0x01]) + crc(1, big)
    )
    assert data == header + BASE + big
    assert len(header) == 15 + 1 + 6 + 7 == unpack(data).header_size
    assert LAYER_CODES == {"base": 0, "enhancement": 1}


@pytest.mark.parametrize(
    ("payloads", "header_bytes"),
    [({"base": 300}, 23), ({"base": 300, "enhancement": 700}, 30),
     ({"base": 100, "enhancement": 20_000}, 30)],
)
def test_header_size_at_128x256(payloads, header_bytes):
    layers = {name: bytes(size) for name, size in payloads.items()}
    data = pack(CODEC, (128, 256), (0, 0, 0, 0), layers)
    assert len(data) - sum(payloads.values()) == header_bytes == unpack(data).header_size


def test_single_layer_and_empty_payload_round_trip():
    parsed = unpack(_stream(layers={"base": b""}))
    assert parsed.layers == {"base": b""}
    assert unpack(_stream(layers={"enhancement": b"x"})).layers == {"enhancement": b"x"}


def test_corrupt_base_payload_names_the_layer():
    data = bytearray(_stream())
    data[_payload_offset(bytes(data), "base") + 5] ^= 0x10
    with pytest.raises(BitstreamError, match="layer 'base' is corrupted .*CRC32"):
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
    assert base_only.to_bytes() == _stream(layers={"base": BASE})


def test_stream_truncated_after_the_base_is_rejected_whatever_is_decoded():
    data = _stream()
    cut = data[: _payload_offset(data, "enhancement")]
    for layers in (None, ("base",), ("enhancement",), ()):
        with pytest.raises(BitstreamError, match="layer 'enhancement' truncated"):
            unpack(cut, layers=layers)
    # sending the base alone is a re-packed stream whose header declares only the base
    assert unpack(unpack(data).to_bytes()).layers == unpack(data).layers
    base_only = Bitstream(**{**unpack(data).__dict__, "layers": {"base": BASE}}).to_bytes()
    assert unpack(base_only, layers=("base",)).layers == {"base": BASE}


def test_truncation_at_every_byte_offset_raises_bitstream_error():
    data = _stream(layers={"base": b"abc", "enhancement": b"defgh"})
    for end in range(len(data)):
        with pytest.raises(BitstreamError):
            unpack(data[:end])


@pytest.mark.parametrize("flip", [0xFF, 0x01, 0x80])
def test_every_single_byte_corruption_is_rejected(flip):
    """The CRCs cover the preamble and the layer codes too: no byte of the stream, header
    included, can change without a BitstreamError (the whole stream read)."""
    data = _stream(layers={"base": b"abc", "enhancement": b"defgh"})
    for position in range(len(data)):
        corrupted = bytearray(data)
        corrupted[position] ^= flip
        with pytest.raises(BitstreamError):
            unpack(bytes(corrupted))


def test_corrupt_preamble_fails_the_base_crc_even_when_reading_the_base_alone():
    data = bytearray(_stream())
    data[9] ^= 0x01  # the height varint (37 -> 36)
    with pytest.raises(BitstreamError, match="layer 'base' is corrupted"):
        unpack(bytes(data), layers=("base",))


def test_trailing_bytes_are_rejected_whatever_layers_are_read():
    data = _stream()
    for extra in (b"\x00", b"garbage" * 3, data):  # appended bytes, two concatenated streams
        for layers in (None, ("base",), ("base", "enhancement"), ()):
            with pytest.raises(BitstreamError, match=f"{len(extra)} trailing bytes"):
                unpack(data + extra, layers=layers)


def test_wrong_magic_version_and_codec_name_expected_and_found():
    data = _stream()
    with pytest.raises(BitstreamError, match=r"expected magic b'TCBS', found b'\\x89PNG'"):
        unpack(b"\x89PNG" + data[4:])
    with pytest.raises(BitstreamError, match=r"version 1 \(this reader supports version 2\)"):
        unpack(data[:4] + b"\x01" + data[5:])
    ours, theirs = codec_fingerprint(CODEC).hex(), codec_fingerprint("tiny-det-base@1").hex()
    with pytest.raises(BitstreamError) as err:
        unpack(data, expect_codec="tiny-det-base@1")
    message = str(err.value)
    assert "expected codec 'tiny-det-base@1'" in message and "an unknown codec" in message
    assert ours in message and theirs in message
    with pytest.raises(BitstreamError, match=f"for codec '{CODEC}' \\(fingerprint {ours}\\)"):
        unpack(data, expect_codec="tiny-det-base@1", identify={codec_fingerprint(CODEC): CODEC}.get)
    with pytest.raises(BitstreamError, match=r"requested but the stream holds only \['base'"):
        unpack(data, layers=("residual",))


def test_fingerprint_is_sha256_prefix_and_stable():
    assert codec_fingerprint("tiny-depth-base@0123abcd") == bytes.fromhex(
        hashlib.sha256(b"tiny-depth-base@0123abcd").hexdigest()[:8]
    )
    with pytest.raises(ValueError, match="non-empty string"):
        codec_fingerprint("")


def test_huge_declared_length_fails_before_any_allocation():
    data = _stream(layers={"base": BASE})
    parsed = unpack(data)
    length_at = parsed.header_size - 5  # the base's 1-byte length varint, then its CRC32
    assert data[length_at] == len(BASE)
    huge = bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F])  # 2**32 - 1, the largest allowed
    with pytest.raises(BitstreamError, match="layer 'base' truncated"):
        unpack(data[:length_at] + huge + data[length_at + 1 :])
    too_big = bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x1F])  # 2**33 - 1
    with pytest.raises(BitstreamError, match=r"length is 8589934591, expected 0\.\.4294967295"):
        unpack(data[:length_at] + too_big + data[length_at + 1 :])
    endless = bytes([0x80] * 6)
    with pytest.raises(BitstreamError, match="varint longer than 5 bytes"):
        unpack(data[:length_at] + endless + data[length_at + 1 :])


def test_invalid_header_values_are_bitstream_errors():
    data = _stream(layers={"base": BASE})
    at = 9  # height varint
    with pytest.raises(BitstreamError, match="image height is 0, expected 1..65535"):
        unpack(data[:at] + b"\x00" + data[at + 1 :])
    with pytest.raises(BitstreamError, match="non-minimal varint"):
        unpack(data[:at] + bytes([0x80 | 37, 0x00]) + data[at + 1 :])
    count_at = 13
    assert data[count_at] == 1
    with pytest.raises(BitstreamError, match="3 layers"):
        unpack(data[:count_at] + b"\x03" + data[count_at + 1 :])
    with pytest.raises(BitstreamError, match="has code 7"):
        unpack(data[:count_at + 1] + b"\x07" + data[count_at + 2 :])
    two = _stream()
    second_code = count_at + 1 + 6  # code, 1-byte length, CRC32 of the base record
    assert two[second_code] == 1
    with pytest.raises(BitstreamError, match="strictly ascending"):
        unpack(two[:second_code] + b"\x00" + two[second_code + 1 :])


def test_non_bytes_input_is_a_bitstream_error():
    with pytest.raises(BitstreamError, match="must be bytes"):
        unpack("TCBS")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"codec_id": ""}, "codec id must be a non-empty string"),
        ({"image_size": (0, 10)}, r"image_size must be 2 integers in \[1, 65535\]"),
        ({"image_size": (10, 70000)}, "image_size"),
        ({"padding": (0, 1, 2)}, "padding"),
        ({"padding": (0, -1, 0, 0)}, "padding"),
        ({"padding": (1, 0, 0, 0)}, "right and bottom padding only"),
        ({"layers": {}}, "at least one layer"),
        ({"layers": {"residual": b"x"}}, "unknown layer name 'residual'"),
        ({"layers": {"enhancement": b"x", "base": b"y"}}, "order"),
        ({"layers": {"base": "text"}}, "payload must be bytes"),
    ],
)
def test_pack_rejects_fields_that_do_not_fit(overrides, message):
    with pytest.raises(ValueError, match=message):
        _stream(**overrides)
