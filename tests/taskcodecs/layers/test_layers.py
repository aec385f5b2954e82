"""The building blocks: residual blocks, resampling, padding, masked convolutions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from taskcodecs.layers import (
    DownSample,
    MaskedConv2d,
    Padding,
    ResidualBlock,
    UpSample,
    crop_padding,
    pad_to_multiple,
    residual_stack,
)


def test_residual_block_is_identity_when_last_conv_is_zero() -> None:
    torch.manual_seed(0)
    block = ResidualBlock(16)
    assert block.conv1.out_channels == 8  # ELIC bottleneck at ch // 2
    x = torch.randn(2, 16, 5, 7)
    assert not torch.allclose(block(x), x)
    nn.init.zeros_(block.conv3.weight)
    nn.init.zeros_(block.conv3.bias)
    torch.testing.assert_close(block(x), x)


def _identity_conv(module: nn.Module) -> None:
    with torch.no_grad():
        module.conv.weight.zero_()
        module.conv.weight[0, 0, 2, 2] = 1.0
        module.conv.bias.zero_()


def test_downsample_is_bilinear_half_then_conv() -> None:
    down = DownSample(1, 1)
    _identity_conv(down)
    x = torch.rand(1, 1, 8, 12)
    # bilinear x1/2 without corner alignment samples the centres of 2x2 cells: their mean
    torch.testing.assert_close(down(x), F.avg_pool2d(x, 2))
    assert DownSample(3, 5)(torch.rand(2, 3, 16, 20)).shape == (2, 5, 8, 10)


def test_upsample_is_nearest_double_then_conv() -> None:
    up = UpSample(1, 1)
    _identity_conv(up)
    x = torch.rand(1, 1, 3, 4)
    expected = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    torch.testing.assert_close(up(x), expected)
    assert UpSample(4, 2)(torch.rand(1, 4, 5, 6)).shape == (1, 2, 10, 12)
    assert UpSample(4, 2)(torch.rand(1, 4, 5, 6), size=(11, 13)).shape == (1, 2, 11, 13)


def test_pad_replicates_bottom_right_and_crop_restores() -> None:
    x = torch.rand(2, 3, 33, 65)
    x_padded, padding = pad_to_multiple(x, multiple=64)
    assert x_padded.shape == (2, 3, 64, 128)
    torch.testing.assert_close(x_padded[..., :33, :65], x)  # top/left untouched
    torch.testing.assert_close(x_padded[..., 40, :65], x[..., 32, :])  # last row repeated
    torch.testing.assert_close(x_padded[..., :33, 100], x[..., :, 64])  # last column repeated
    torch.testing.assert_close(crop_padding(x_padded, padding), x)
    zeros, _ = pad_to_multiple(x, multiple=64, mode="constant")
    assert zeros[..., 33:, :].abs().sum() == 0


def test_pad_is_a_no_op_on_multiples() -> None:
    x = torch.rand(1, 3, 32, 48)
    x_padded, padding = pad_to_multiple(x, multiple=16)
    assert x_padded is x and padding == Padding(0, 0, 0, 0)
    torch.testing.assert_close(crop_padding(x, padding), x)


def test_residual_stack_of_zero_blocks_is_the_identity() -> None:
    x = torch.randn(1, 4, 3, 3)
    assert len(residual_stack(4, 0)) == 0 and torch.equal(residual_stack(4, 0)(x), x)
    assert [type(m) for m in residual_stack(4, 2)] == [ResidualBlock, ResidualBlock]


def test_masked_conv_matches_a_conv_with_the_masked_weight_and_never_mutates():
    torch.manual_seed(0)
    conv = MaskedConv2d(3, 4, kernel_size=5, padding=2, mask_type="A")
    assert set(conv.state_dict()) == {"weight", "bias", "mask"}  # CompressAI's keys
    mask = conv.mask[0, 0]
    assert mask.sum() == 12 and mask[2, 1] == 1 and mask[2, 2] == 0 and mask[3:].sum() == 0
    assert MaskedConv2d(3, 4, kernel_size=5, padding=2, mask_type="B").mask[0, 0, 2, 2] == 1
    with torch.no_grad():
        conv.weight.add_(1.0)  # non-zero masked taps
    before = conv.weight.detach().clone()
    x = torch.randn(2, 3, 6, 7, requires_grad=True)
    out = conv(x)
    expected = torch.nn.functional.conv2d(x, before * conv.mask, conv.bias, padding=2)
    assert torch.equal(out, expected)
    assert torch.equal(conv.weight, before)  # forward leaves the parameter alone
    out.square().sum().backward()
    assert torch.all(conv.weight.grad[conv.mask == 0] == 0)  # masked taps: exactly zero
    assert torch.all(conv.weight.grad[conv.mask == 1] != 0)
    with pytest.raises(ValueError, match="mask_type"):
        MaskedConv2d(3, 4, kernel_size=5, mask_type="C")


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="ch_out"):
        DownSample(3, 0)
    with pytest.raises(ValueError, match="hidden_ch"):
        ResidualBlock(4, hidden_ch=0)
    with pytest.raises(ValueError, match=r"\(n, c, H, W\)"):
        pad_to_multiple(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match="mode"):
        pad_to_multiple(torch.rand(1, 3, 16, 16), mode="reflect")
    with pytest.raises(ValueError, match="leaves nothing"):
        crop_padding(torch.rand(1, 3, 8, 8), (0, 8, 0, 0))
