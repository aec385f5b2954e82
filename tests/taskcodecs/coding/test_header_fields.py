"""The container header's field primitives (taskcodecs.coding.header_fields): minimal LEB128
varints, the bounds-checked reader and the u16 checks of a caller's integers."""

from __future__ import annotations

import pytest

from taskcodecs.coding.header_fields import (
    U16_MAX,
    U32_MAX,
    BitstreamError,
    HeaderReader,
    check_ints,
    varint,
)


@pytest.mark.parametrize(("value", "encoded"), [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"),
                                                (300, b"\xac\x02"), (U16_MAX, b"\xff\xff\x03")])
def test_varint_is_unsigned_leb128_and_reads_back(value, encoded):
    assert varint(value) == encoded
    reader = HeaderReader(encoded + b"rest")
    assert reader.varint("field", 0, U16_MAX) == value
    assert reader.position == len(encoded)


def test_every_u32_length_round_trips_in_at_most_five_bytes():
    for value in (0, 1, 2**14, 2**21 - 1, 2**28, U32_MAX):
        data = varint(value)
        assert len(data) <= 5 and HeaderReader(data).varint("length", 0, U32_MAX) == value


@pytest.mark.parametrize(("data", "message"), [
    (b"\x80\x00", "non-minimal varint"),
    (b"\x05", r"is 5, expected 6\.\.9"),
    (b"\xff\xff\xff\xff", "longer than 3 bytes"),  # a u16's varint needs at most 3
    (b"\x80", "truncated in the header: field needs bytes 1..2"),
])
def test_reader_refuses_bad_varints_naming_the_field(data, message):
    bound = 9 if data == b"\x05" else U16_MAX
    with pytest.raises(BitstreamError, match=message):
        HeaderReader(data).varint("field", 6 if data == b"\x05" else 0, bound)


def test_take_checks_the_bytes_present():
    reader = HeaderReader(b"abc")
    assert reader.take(2, "two") == b"ab"
    with pytest.raises(BitstreamError, match="three needs bytes 2..5 but the stream has 3"):
        reader.take(3, "three")


def test_check_ints_accepts_integral_u16_values_only():
    assert check_ints([1, 2.0], 2, "size", minimum=1) == (1, 2)
    for bad in ([0, 1], [1, U16_MAX + 1], [1, True], [1], "ab", 5, [1, 1.5]):
        with pytest.raises(ValueError, match="size must be 2 integers"):
            check_ints(bad, 2, "size", minimum=1)


def test_bitstream_error_is_a_value_error_and_the_containers_own():
    from taskcodecs.coding import bitstream

    assert issubclass(BitstreamError, ValueError) and bitstream.BitstreamError is BitstreamError
