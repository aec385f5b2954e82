"""Shapes and widths of the ELIC-style transforms, and a round trip through padding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from taskcodecs.layers import Padding, crop_padding, pad_to_multiple
from taskcodecs.models.transforms import AnalysisTransform, SynthesisTransform


def _num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _residual_block_params(ch: int) -> int:
    hidden = ch // 2
    return (ch * hidden + hidden) + (9 * hidden * hidden + hidden) + (hidden * ch + ch)


def test_paper_analysis_and_synthesis_shapes_64x64() -> None:
    torch.manual_seed(0)
    g_a, g_s = AnalysisTransform(), SynthesisTransform()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        y = g_a(x)
        x_hat = g_s(y)
    assert y.shape == (2, 192, 4, 4)  # 16x downsampling, N = 192
    assert x_hat.shape == x.shape


def test_non_multiple_size_round_trip_through_padding() -> None:
    torch.manual_seed(0)
    g_a = AnalysisTransform(widths=(8, 12, 16), latent_ch=10, blocks_per_stage=1)
    g_s = SynthesisTransform(latent_ch=10, widths=(16, 12, 8), out_ch=3, blocks_per_stage=1)
    x = torch.rand(1, 3, 50, 70)
    x_padded, padding = pad_to_multiple(x, multiple=16)
    assert x_padded.shape == (1, 3, 64, 80)
    assert padding == Padding(left=0, right=10, top=0, bottom=14)
    y = g_a(x_padded)
    assert y.shape == (1, 10, 4, 5)
    x_hat = crop_padding(g_s(y), padding)
    assert x_hat.shape == x.shape
    x_hat.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in g_a.parameters())


def test_channel_widths_follow_the_config() -> None:
    g_a = AnalysisTransform(in_ch=4, widths=(5, 6, 7), latent_ch=9, blocks_per_stage=2)
    convs = [m for m in g_a.layers if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(4, 5), (5, 6), (6, 7), (7, 9)]
    assert all(c.kernel_size == (5, 5) and c.stride == (2, 2) for c in convs)
    stacks = [m for m in g_a.layers if isinstance(m, nn.Sequential)]
    assert [len(s) for s in stacks] == [2, 2, 2]
    g_s = SynthesisTransform(latent_ch=9, widths=(7, 6, 5), out_ch=2, blocks_per_stage=1)
    deconvs = [m for m in g_s.layers if isinstance(m, nn.ConvTranspose2d)]
    assert [(d.in_channels, d.out_channels) for d in deconvs] == [(9, 7), (7, 6), (6, 5), (5, 2)]
    assert all(d.output_padding == (1, 1) and d.padding == (2, 2) for d in deconvs)


@pytest.mark.parametrize("transform", [AnalysisTransform, SynthesisTransform])
def test_parameter_count_grows_by_the_residual_blocks(transform: type[nn.Module]) -> None:
    widths = (24, 48, 192) if transform is AnalysisTransform else (192, 48, 24)
    with_three = _num_params(transform(blocks_per_stage=3))
    with_one = _num_params(transform(blocks_per_stage=1))
    without = _num_params(transform(blocks_per_stage=0))
    per_stage = sum(_residual_block_params(w) for w in widths)
    assert with_three - with_one == 2 * per_stage
    assert with_one - without == per_stage


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="widths"):
        AnalysisTransform(widths=(24, 48))
    with pytest.raises(ValueError, match="blocks_per_stage"):
        SynthesisTransform(blocks_per_stage=-1)
    with pytest.raises(ValueError, match="latent_ch"):
        AnalysisTransform(latent_ch=0)
