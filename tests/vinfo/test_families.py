"""Probe families: names, shapes, parameter counts, and the start at the null solution."""

from __future__ import annotations

import pytest
import torch

from taskcodecs.models.transforms import SynthesisTransform
from vinfo.families import (
    GRID_LADDER,
    VECTOR_LADDER,
    build_body,
    count_parameters,
    default_ladder,
    parse_family,
)


def test_names_parse_and_ladders_start_linear():
    assert parse_family("mlp-2x256") == parse_family("mlp-2x256")
    spec = parse_family("cnn-3x64")
    assert (spec.kind, spec.depth, spec.width) == ("cnn", 3, 64)
    assert parse_family("mlp-64").depth == 1
    assert default_ladder(True) == GRID_LADDER and default_ladder(False) == VECTOR_LADDER
    assert GRID_LADDER[0] == VECTOR_LADDER[0] == "linear"
    for bad in ("conv-3", "mlp", "mlp-0", "cnn-0x8", "Linear"):
        with pytest.raises(ValueError, match="probe family"):
            parse_family(bad)


@pytest.mark.parametrize("name", GRID_LADDER)
@pytest.mark.parametrize("stride", [16, 4])
def test_grid_families_upsample_and_start_at_the_bias(name, stride):
    bias = torch.randn(5)
    body, note = build_body(parse_family(name), 6, 5, stride, bias, synthesis_widths=(8, 8, 8))
    z = torch.randn(2, 6, 2, 3)
    out = body(z)
    assert out.shape == (2, 5, 2 * stride, 3 * stride)
    # the head is zero: the output is the marginal bias everywhere, whatever z is
    assert torch.allclose(out, bias.reshape(1, 5, 1, 1).expand_as(out), atol=1e-6)
    if name == "synthesis":
        assert isinstance(body, SynthesisTransform) == (stride == 16)
        assert ("SynthesisTransform" in note) == (stride == 16)


def test_linear_family_is_one_map_per_latent_patch():
    body, _ = build_body(parse_family("linear"), 6, 5, 4, torch.zeros(5))
    assert count_parameters(body) == (6 + 1) * 5 * 4 * 4
    torch.nn.init.normal_(body.head.weight)
    z = torch.zeros(1, 6, 2, 3)
    z[0, :, 1, 2] = 1.0  # only the latent vector at (1, 2) is non-zero
    with torch.no_grad():
        out = body(z)[0]
    patch = out[:, 4:8, 8:12]
    assert patch.abs().sum() > 0
    assert out.abs().sum() == pytest.approx(patch.abs().sum().item())


@pytest.mark.parametrize("name", VECTOR_LADDER)
def test_vector_families(name):
    bias = torch.randn(3)
    body, _ = build_body(parse_family(name), 7, 3, None, bias)
    out = body(torch.randn(4, 7))
    assert out.shape == (4, 3) and torch.allclose(out, bias.expand(4, 3))


def test_grid_only_families_reject_vectors_and_odd_strides():
    with pytest.raises(ValueError, match="needs a latent grid"):
        build_body(parse_family("cnn-1x8"), 7, 3, None, torch.zeros(3))
    with pytest.raises(ValueError, match="power-of-two stride"):
        build_body(parse_family("synthesis"), 7, 3, 6, torch.zeros(3))
