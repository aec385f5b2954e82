"""Probe families: names, shapes, parameter counts, the zero start of the Z pathway, the
positional null and the autoregressive cores."""

from __future__ import annotations

import pytest
import torch

from taskcodecs.models.transforms import SynthesisTransform
from vinfo.probes.autoregressive import ARCore
from vinfo.probes.families import (
    AR_LADDER,
    GRID_LADDER,
    VECTOR_LADDER,
    FactorizedCore,
    build_core,
    build_zpath,
    count_parameters,
    default_ladder,
    null_spec,
    parse_family,
)
from vinfo.probes.targets import make_target


def test_names_parse_and_ladders_start_linear():
    assert parse_family("mlp-2x256") == parse_family("mlp-2x256")
    spec = parse_family("cnn-3x64")
    assert (spec.kind, spec.depth, spec.width, spec.likelihood) == ("cnn", 3, 64, "factorized")
    assert parse_family("mlp-64").depth == 1
    ar = parse_family("ar-cnn-2x16")
    assert (ar.kind, ar.depth, ar.width, ar.autoregressive) == ("cnn", 2, 16, True)
    assert default_ladder(True, "discretized") == AR_LADDER
    assert default_ladder(True, "categorical") == AR_LADDER
    assert default_ladder(True, "gaussian") == GRID_LADDER
    assert default_ladder(False, "categorical") == VECTOR_LADDER
    assert GRID_LADDER[0] == VECTOR_LADDER[0] == "linear" and AR_LADDER[0] == "ar-linear"
    assert null_spec("autoregressive").kind == "null"
    for bad in ("conv-3", "mlp", "mlp-0", "cnn-0x8", "Linear", "ar-", "ar-rnn-3"):
        with pytest.raises(ValueError, match="probe family"):
            parse_family(bad)


@pytest.mark.parametrize("name", GRID_LADDER)
@pytest.mark.parametrize("stride", [16, 4])
def test_grid_pathways_upsample_and_start_at_zero(name, stride):
    zpath, note = build_zpath(parse_family(name), 6, 5, stride, synthesis_widths=(8, 8, 8))
    out = zpath(torch.randn(2, 6, 2, 3))
    assert out.shape == (2, 5, 2 * stride, 3 * stride)
    assert out.abs().max() == 0  # the head is zero: a member starts at its null
    if name == "synthesis":
        assert isinstance(zpath, SynthesisTransform) == (stride == 16)
        assert ("SynthesisTransform" in note) == (stride == 16)


def test_linear_family_is_one_map_per_latent_patch():
    zpath, _ = build_zpath(parse_family("linear"), 6, 5, 4)
    assert count_parameters(zpath) == (6 + 1) * 5 * 4 * 4
    torch.nn.init.normal_(zpath.head.weight)
    z = torch.zeros(1, 6, 2, 3)
    z[0, :, 1, 2] = 1.0  # only the latent vector at (1, 2) is non-zero
    with torch.no_grad():
        out = zpath(z)[0]
    patch = out[:, 4:8, 8:12]
    assert patch.abs().sum() > 0
    assert out.abs().sum() == pytest.approx(patch.abs().sum().item())


@pytest.mark.parametrize("name", VECTOR_LADDER)
def test_vector_families(name):
    zpath, _ = build_zpath(parse_family(name), 7, 3, None)
    assert zpath(torch.randn(4, 7)).shape == (4, 3)


def test_grid_only_families_reject_vectors_and_odd_strides():
    with pytest.raises(ValueError, match="needs a latent grid"):
        build_zpath(parse_family("cnn-1x8"), 7, 3, None)
    with pytest.raises(ValueError, match="power-of-two stride"):
        build_zpath(parse_family("synthesis"), 7, 3, 6)


def test_positional_null_can_output_any_fixed_map():
    """Optional ignorance: whatever a member outputs for an uninformative input (here a
    linear pathway fed one fixed, spatially varying z) is a fixed map the null reproduces
    exactly by setting its positional map to it."""
    y = torch.randint(0, 3, (10, 1, 8, 12))
    target = make_target("categorical", y, torch.ones_like(y, dtype=torch.bool), 3)
    core = build_core(parse_family("linear"), target, y, torch.ones_like(y, dtype=torch.bool),
                      dense=True)
    assert isinstance(core, FactorizedCore) and core.pos.shape == (3, 8, 12)
    zpath, _ = build_zpath(parse_family("linear"), 4, 3, 4)
    torch.nn.init.normal_(zpath.head.weight)
    fixed = torch.randn(1, 4, 2, 3).expand(5, -1, -1, -1)  # one code for every sample
    mask = torch.ones(5, 1, 8, 12, dtype=torch.bool)
    with torch.no_grad():
        member = core(zpath(fixed), y[:5], mask, 5)
        core.pos.copy_(zpath(fixed[:1])[0])
        null = core(None, y[:5], mask, 5)
    assert torch.allclose(member, null, atol=1e-6)


def _image_target(n=6, h=5, w=7):
    y = torch.randint(0, 256, (n, 3, h, w))
    mask = torch.ones_like(y, dtype=torch.bool)
    return y, mask, make_target("discretized", y, mask)


@pytest.mark.parametrize("kind", ["discretized", "categorical"])
def test_autoregressive_core_is_causal(kind):
    """The parameters at pixel (i, j) do not change when y at (i, j) or any later pixel in
    raster order changes (the masked type-A context), and change with earlier pixels."""
    torch.manual_seed(0)
    if kind == "discretized":
        y, mask, target = _image_target()
    else:
        y = torch.randint(0, 4, (6, 1, 5, 7))
        mask = torch.ones_like(y, dtype=torch.bool)
        target = make_target("categorical", y, mask, 4)
    core = ARCore(target, (5, 7), 8, 5, 2, 3, y, mask)
    with torch.no_grad():
        for p in core.parameters():
            p.normal_(0, 0.5)
        i, j = 2, 3
        base = core(None, y, mask)[:, :, i, j]
        later = y.clone()
        later[:, :, i, j:] = (later[:, :, i, j:] + 1) % (256 if kind == "discretized" else 4)
        later[:, :, i + 1 :] = 0
        assert torch.equal(core(None, later, mask)[:, :, i, j], base)
        earlier = y.clone()
        earlier[:, :, i, j - 1] = (earlier[:, :, i, j - 1] + 7) % (256 if kind ==
                                                                   "discretized" else 4)
        assert not torch.equal(core(None, earlier, mask)[:, :, i, j], base)


def test_discretized_mixture_conditionals_are_normalised():
    """Per channel, P(y_c | y_<c, context) sums to 1 over the 256 values (chain rule)."""
    y, mask, target = _image_target()
    core = ARCore(target, (5, 7), 8, 3, 3, 4, y, mask)
    out = torch.randn(1, core.out.out_channels, 1, 1) * 2
    for c in range(3):
        ys = torch.zeros(256, 3, 1, 1, dtype=torch.long)
        ys[:, :c] = torch.tensor([100, 30, 200][:c]).view(1, -1, 1, 1)
        ys[:, c] = torch.arange(256).view(-1, 1, 1)
        mask1 = torch.ones_like(ys, dtype=torch.bool)
        nll = core.stat(out.expand(256, -1, -1, -1), ys, mask1)[:, c].double()
        assert float(torch.exp(-nll).sum()) == pytest.approx(1.0, abs=1e-5)


def test_autoregressive_families_need_dense_discrete_targets():
    y = torch.randn(6, 1, 4, 4)
    mask = torch.ones_like(y, dtype=torch.bool)
    target = make_target("gaussian", y, mask)
    with pytest.raises(ValueError, match="autoregressive"):
        build_core(parse_family("ar-linear"), target, y, mask, dense=True)
