"""taskcodecs.coding.payload: the flag byte's layout and checks, the 16-bit end check value
and the model CRC it binds (the entropy models' coding round trips are in
tests/taskcodecs/coding/test_entropy.py and test_checkerboard.py)."""

from __future__ import annotations

import itertools
import zlib

import pytest
import torch
from torch import nn

from taskcodecs.coding.bitstream import BitstreamError
from taskcodecs.coding.entropy import AutoregressiveGaussianModel
from taskcodecs.coding.payload import (
    CONDITIONAL,
    HYPERPRIOR,
    check_value,
    make_flags,
    read_flags,
    state_crc,
)
from taskcodecs.layers import MaskedConv2d

CONTEXTS = ("autoregressive", "checkerboard")
MODEL_BITS = (0, HYPERPRIOR, CONDITIONAL, HYPERPRIOR | CONDITIONAL)
ORDERS = ("wavefront", "raster")
ALL_KINDS = list(itertools.product(CONTEXTS, MODEL_BITS, (False, True)))


@pytest.mark.parametrize(("context", "model_bits", "side_zeroed"), ALL_KINDS)
@pytest.mark.parametrize("order", ORDERS)
def test_flags_round_trip_for_every_model_kind(context, model_bits, side_zeroed, order):
    flags = make_flags(context, model_bits, order, side_zeroed)
    assert 0 <= flags <= 0xFF  # one byte
    # checkerboard payloads record no order: they always read back as "wavefront"
    expected = order if context == "autoregressive" else "wavefront"
    assert read_flags(flags, context, model_bits, side_zeroed) == expected


def test_flag_byte_layout_is_the_documented_one():
    # bits 7-4 version (2 autoregressive, 3 checkerboard), 3 side zeroed, 2 conditional,
    # 1 hyperprior, 0 raster
    assert make_flags("autoregressive", 0, "wavefront", False) == 0b0010_0000
    assert make_flags("autoregressive", 0, "raster", False) == 0b0010_0001
    assert make_flags("autoregressive", HYPERPRIOR, "wavefront", False) == 0b0010_0010
    assert make_flags("autoregressive", CONDITIONAL, "wavefront", False) == 0b0010_0100
    assert make_flags("autoregressive", HYPERPRIOR | CONDITIONAL, "raster", True) == 0b0010_1111
    assert make_flags("checkerboard", 0, "wavefront", False) == 0b0011_0000
    # the raster bit is always 0 in checkerboard payloads, whatever order was asked for
    assert make_flags("checkerboard", CONDITIONAL, "raster", True) == 0b0011_1100
    # "side zeroed" only exists for conditional models
    for context, bits in itertools.product(CONTEXTS, (0, HYPERPRIOR)):
        assert make_flags(context, bits, "wavefront", True) & 0b1000 == 0
        assert make_flags(context, bits, "wavefront", True) == \
            make_flags(context, bits, "wavefront", False)


@pytest.mark.parametrize("version", [v for v in range(16) if v not in (2, 3)])
def test_unknown_versions_are_rejected_naming_the_known_ones(version):
    # version 1 (round-up scale indexes) is retired; 0 and 4..15 were never defined
    for context in CONTEXTS:
        with pytest.raises(
            BitstreamError,
            match=rf"version {version} is not supported \(known: 2 \(autoregressive context\), "
                  r"3 \(checkerboard context\)\)",
        ):
            read_flags(version << 4, context, 0, False)


def test_a_payload_of_the_other_context_names_both():
    autoregressive = make_flags("autoregressive", HYPERPRIOR, "raster", False)
    checkerboard = make_flags("checkerboard", HYPERPRIOR, "wavefront", False)
    with pytest.raises(BitstreamError, match="context='autoregressive', this model has "
                                             "context='checkerboard'"):
        read_flags(autoregressive, "checkerboard", HYPERPRIOR, False)
    with pytest.raises(BitstreamError, match="context='checkerboard', this model has "
                                             "context='autoregressive'"):
        read_flags(checkerboard, "autoregressive", HYPERPRIOR, False)


def test_checkerboard_payload_with_its_raster_bit_set_is_corrupt():
    flags = make_flags("checkerboard", CONDITIONAL, "wavefront", False) | 1
    with pytest.raises(BitstreamError, match="checkerboard entropy payload has its raster bit "
                                             "set: corrupt"):
        read_flags(flags, "checkerboard", CONDITIONAL, False)


def test_model_bits_mismatch_describes_both_models():
    with pytest.raises(BitstreamError, match=r"coded by a model with no side information, "
                                             r"hyperprior=True, this model has side "
                                             r"information, hyperprior=False"):
        read_flags(make_flags("autoregressive", HYPERPRIOR, "wavefront", False),
                   "autoregressive", CONDITIONAL, False)
    # every pair of different model kinds is refused, in both contexts
    for context, coded, model in itertools.product(CONTEXTS, MODEL_BITS, MODEL_BITS):
        flags = make_flags(context, coded, "wavefront", False)
        if coded == model:
            assert read_flags(flags, context, model, False) == "wavefront"
        else:
            with pytest.raises(BitstreamError, match="this model has"):
                read_flags(flags, context, model, False)


@pytest.mark.parametrize("context", CONTEXTS)
def test_side_input_given_or_not_must_match_the_payload(context):
    zeroed = make_flags(context, CONDITIONAL, "wavefront", True)
    given = make_flags(context, CONDITIONAL, "wavefront", False)
    with pytest.raises(BitstreamError, match=r"coded with zeroed side information "
                                             r"\(side=None\), but a side input was given"):
        read_flags(zeroed, context, CONDITIONAL, False)
    with pytest.raises(BitstreamError, match=r"coded with a side input, but side=None was "
                                             r"given"):
        read_flags(given, context, CONDITIONAL, True)
    # models without a side branch ignore side_zeroed
    plain = make_flags(context, HYPERPRIOR, "wavefront", False)
    assert read_flags(plain, context, HYPERPRIOR, True) == "wavefront"


def _framing(flags: int, channels: int, h: int, w: int, model_crc: int) -> bytes:
    """The documented fields, big-endian: flag byte, channels, h, w (16 bit), model CRC."""
    return (bytes([flags]) + channels.to_bytes(2, "big") + h.to_bytes(2, "big")
            + w.to_bytes(2, "big") + model_crc.to_bytes(4, "big"))


def test_check_value_is_16_bits_of_a_crc32_over_the_shared_fields():
    side = torch.linspace(-2.0, 3.0, 2 * 3 * 4).reshape(1, 2, 3, 4)
    model_crc, flags = 0xDEADBEEF, make_flags("autoregressive", CONDITIONAL, "raster", False)
    head = zlib.crc32(_framing(flags, 192, 5, 9, model_crc))
    assert check_value(model_crc, flags, 192, (5, 9), None) == head & 0xFFFF
    with_side = zlib.crc32(side.numpy().tobytes(), head) & 0xFFFF
    assert check_value(model_crc, flags, 192, (5, 9), side) == with_side
    # the side input is hashed as float32 values in C order, however it is stored
    assert check_value(model_crc, flags, 192, (5, 9), side.double()) == with_side
    transposed = side.transpose(2, 3).contiguous().transpose(2, 3)  # same values, other strides
    assert not transposed.is_contiguous()
    assert check_value(model_crc, flags, 192, (5, 9), transposed) == with_side


def test_check_value_changes_with_each_shared_field():
    side = torch.arange(12, dtype=torch.float32).reshape(1, 1, 3, 4) / 7
    flags = make_flags("autoregressive", CONDITIONAL, "wavefront", False)
    base = check_value(12345, flags, 8, (3, 4), side)
    changed = {
        "flags": check_value(12345, flags | 1, 8, (3, 4), side),
        "channels": check_value(12345, flags, 9, (3, 4), side),
        "shape swapped": check_value(12345, flags, 8, (4, 3), side),
        "model": check_value(12346, flags, 8, (3, 4), side),
        "side value": check_value(12345, flags, 8, (3, 4), side + 2**-20),
        "no side": check_value(12345, flags, 8, (3, 4), None),
        "zero side": check_value(12345, flags, 8, (3, 4), torch.zeros_like(side)),
    }
    assert all(0 <= v <= 0xFFFF for v in (base, *changed.values()))
    assert {name for name, v in changed.items() if v == base} == set()


def test_state_crc_is_the_crc32_of_the_state_dict_tensors_in_order():
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(3, 2)
            self.register_buffer("count", torch.tensor([7, -1], dtype=torch.int64))

    net = Net()
    # state-dict order: the module's own buffers, then its children's tensors
    assert list(net.state_dict()) == ["count", "linear.weight", "linear.bias"]
    crc = 0
    for tensor in (net.count, net.linear.weight, net.linear.bias):
        crc = zlib.crc32(tensor.detach().numpy().tobytes(), crc)
    assert state_crc(net) == crc
    # floats are hashed as float32: a float64 twin with the same values has the same CRC
    twin = Net().double()
    twin.load_state_dict(net.state_dict())
    assert twin.linear.weight.dtype == torch.float64 and twin.count.dtype == torch.int64
    assert state_crc(twin) == crc
    # any parameter or buffer value changes it
    with torch.no_grad():
        twin.linear.bias[1] += 2**-10
    assert state_crc(twin) != crc
    twin.load_state_dict(net.state_dict())
    twin.count[0] = 8
    assert state_crc(twin) != crc


def test_state_crc_ignores_the_masked_out_taps_of_masked_convs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 2, 1), MaskedConv2d(2, 3, 5, padding=2, mask_type="A"))
    masked = model[1]
    reference = state_crc(model)
    with torch.no_grad():  # explicit +0.0 in the unused taps: the documented hash
        zeroed = torch.where(masked.mask != 0, masked.weight, 0.0)
    for fill in (0.0, -0.0, 1e6, float("nan")):
        with torch.no_grad():
            masked.weight.copy_(torch.where(masked.mask != 0, masked.weight,
                                            torch.full_like(masked.weight, fill)))
        assert state_crc(model) == reference
        assert torch.equal(masked.weight[masked.mask != 0], zeroed[masked.mask != 0])
    # state_crc leaves the weight as it is (the last fill, NaN, is still in the unused taps)
    assert torch.isnan(masked.weight[masked.mask == 0]).all()
    # a used tap does change it; so does the mask (a buffer of the state dict)
    with torch.no_grad():
        masked.weight[0, 0, 0, 0] += 0.5  # (0, 0) is causal: before the centre
    assert masked.mask[0, 0, 0, 0] == 1 and state_crc(model) != reference
    # a MaskedConv2d at the top level (no name prefix) is handled the same way
    conv = MaskedConv2d(1, 1, 5, padding=2, mask_type="checkerboard")
    before = state_crc(conv)
    with torch.no_grad():
        conv.weight[conv.mask == 0] = 3.0
    assert state_crc(conv) == before


@pytest.mark.parametrize(("hyperprior", "context", "expected"), [
    (False, "autoregressive", 0x20), (True, "autoregressive", 0x22), (False, "checkerboard", 0x30),
])
def test_a_real_payload_starts_with_its_flag_byte_and_binds_it_in_the_end_check(
        hyperprior, context, expected):
    torch.manual_seed(0)
    model = AutoregressiveGaussianModel(4, hyperprior=hyperprior, context=context).eval()
    y = torch.randn(1, 4, 3, 4, generator=torch.Generator().manual_seed(1)) * 2
    wavefront, raster = model.compress(y, order="wavefront"), model.compress(y, order="raster")
    assert wavefront[0] == expected == make_flags(context, expected & 0b0110, "wavefront", True)
    if context == "checkerboard":
        assert raster == wavefront  # the order is not recorded
        return
    assert raster[0] == expected | 1
    assert torch.equal(model.decompress(raster, (3, 4)), model.decompress(wavefront, (3, 4)))
    # the flag byte is part of what the end check covers: a payload whose order bit was
    # flipped still has a valid flag byte, and is refused by the end check
    with pytest.raises(BitstreamError, match="end check"):
        model.decompress(bytes([raster[0] ^ 1]) + raster[1:], (3, 4))
