"""Checkerboard context (He et al. 2021): mask, two-pass schedule, causality check, bit-exact
coding, forward = decoder, payload flags, codecs and training with ``context="checkerboard"``."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from infra.config import ConfigError
from taskcodecs.coding import rans
from taskcodecs.coding.bitstream import BitstreamError
from taskcodecs.coding.context import (
    AutoregressiveCoder,
    anchor_mask,
    check_schedule,
    context_sources,
    decoding_schedule,
)
from taskcodecs.coding.entropy import (
    AutoregressiveGaussianModel,
    ConditionalAutoregressiveGaussianModel,
)
from taskcodecs.coding.gaussian import bits
from taskcodecs.data.scene import render_scene, sample_scene
from taskcodecs.experiments.registry import create_model
from taskcodecs.layers import MaskedConv2d
from taskcodecs.models.base import BaseCodecConfig
from taskcodecs.models.enhancement import EnhancementCodecConfig

N, H, W = 8, 5, 9
KINDS = ["plain", "hyperprior", "conditional"]
CB_TAPS = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if (dy + dx) % 2]


def _make(kind: str, context: str = "checkerboard", seed: int = 0, n: int = N, scale: float = 2.0):
    """An entropy model whose untrained parameter network predicts scales near ``scale``."""
    torch.manual_seed(seed)
    if kind == "conditional":
        model = ConditionalAutoregressiveGaussianModel(n, num_res_blocks=1, context=context)
    else:
        model = AutoregressiveGaussianModel(n, hyperprior=kind == "hyperprior", context=context)
    last = model.entropy_parameters[-1]
    with torch.no_grad():
        last.weight.mul_(0.05)
        last.bias.zero_()
        last.bias[:n] = scale
    return model.eval()


def _latent(seed: int = 1, n: int = N, h: int = H, w: int = W, std: float = 2.0):
    return torch.randn(1, n, h, w, generator=torch.Generator().manual_seed(seed)) * std


@pytest.fixture(scope="module")
def models():
    return {kind: _make(kind) for kind in KINDS}


def _side(kind: str, n: int = N, h: int = H, w: int = W):
    return _latent(seed=7, n=n, h=h, w=w) if kind == "conditional" else None


# -- mask and schedule ------------------------------------------------------------------------


def test_checkerboard_mask_has_the_12_odd_taps_and_never_touches_its_parameters():
    torch.manual_seed(0)
    conv = MaskedConv2d(3, 4, kernel_size=5, padding=2, mask_type="checkerboard")
    taps = {(int(r) - 2, int(c) - 2) for r, c in torch.nonzero(conv.mask[0, 0])}
    assert taps == set(CB_TAPS) and len(taps) == 12
    assert bool((conv.mask == conv.mask[:1, :1]).all())  # the same for every channel pair
    with torch.no_grad():
        conv.weight.add_(1.0)
    before = conv.weight.detach().clone()
    x = torch.randn(2, 3, 6, 7)
    out = conv(x)
    assert torch.equal(out, torch.nn.functional.conv2d(x, before * conv.mask, conv.bias, padding=2))
    assert torch.equal(conv.weight, before)
    out.square().sum().backward()
    assert torch.all(conv.weight.grad[conv.mask == 0] == 0)
    assert torch.all(conv.weight.grad[conv.mask == 1] != 0)
    # at an anchor of ŷ ⊙ anchor_mask the conv reads only zeroed non-anchors: the bias alone
    anchors = anchor_mask(6, 7)
    out = conv(x * anchors)
    bias = conv.bias.detach().view(1, -1, 1, 1).expand_as(out)
    assert torch.equal(out[..., anchors], bias[..., anchors])
    assert not torch.allclose(out[..., ~anchors], bias[..., ~anchors])


def test_stored_mask_of_another_context_is_refused():
    autoregressive = _make("plain", context="autoregressive")
    checkerboard = _make("plain")
    mask_before = checkerboard.context_prediction.mask.clone()
    with pytest.raises(RuntimeError, match="'checkerboard' mask"):
        checkerboard.load_state_dict(autoregressive.state_dict())
    assert torch.equal(checkerboard.context_prediction.mask, mask_before)
    _make("plain", seed=3).load_state_dict(checkerboard.state_dict())  # same context loads


@pytest.mark.parametrize(("height", "width"), [(1, 1), (1, 2), (2, 1), (5, 9), (4, 4)])
def test_two_pass_schedule_codes_anchors_then_non_anchors(height, width):
    steps = decoding_schedule(height, width, "two-pass")
    assert len(steps) == (1 if height * width == 1 else 2)
    anchors = anchor_mask(height, width)
    first_rows, first_cols = steps[0]
    assert bool(anchors[first_rows, first_cols].all()) and len(first_rows) == int(anchors.sum())
    if len(steps) == 2:
        rows, cols = steps[1]
        assert not bool(anchors[rows, cols].any()) and len(rows) == int((~anchors).sum())
    dy, dx = (torch.tensor(t) for t in zip(*CB_TAPS))
    check_schedule(steps, dy, dx, anchors)  # the checkerboard's taps fit the two passes


def _coder(mask_type: str, context: str) -> AutoregressiveCoder:
    conv = MaskedConv2d(2, 4, kernel_size=5, padding=2, mask_type=mask_type)
    network = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 1))
    return AutoregressiveCoder(conv, network, torch.tensor([0.11, 1.0]), 0.11, context)


def test_causality_check_rejects_masks_that_read_undecoded_positions():
    """Generic rule: each tap lands on padding, a position the context ignores, or one
    decoded in an earlier step; the matching mask/schedule pairs pass."""
    assert len(_coder("checkerboard", "checkerboard").schedule(4, 5, "raster")) == 2
    assert len(_coder("A", "autoregressive").schedule(4, 5, "wavefront")) == 3 * 3 + 5
    assert len(_coder("A", "autoregressive").schedule(4, 5, "raster")) == 20
    with pytest.raises(ValueError, match="does not fit this decoding schedule"):
        _coder("A", "checkerboard").schedule(4, 5, "wavefront")  # anchor reads anchor (-1,-1)
    with pytest.raises(ValueError, match="does not fit this decoding schedule"):
        _coder("checkerboard", "autoregressive").schedule(4, 5, "raster")  # reads below
    with pytest.raises(ValueError, match="no wavefront schedule"):
        _coder("checkerboard", "autoregressive").schedule(4, 5, "wavefront")
    with pytest.raises(ValueError, match="no wavefront schedule"):
        _coder("B", "autoregressive").schedule(4, 5, "wavefront")
    with pytest.raises(ValueError, match=r"tap \(dy=0, dx=0\)"):
        _coder("B", "autoregressive").schedule(4, 5, "raster")  # reads itself
    # the right taps in the wrong order: non-anchors before the anchors they read
    dy, dx = (torch.tensor(t) for t in zip(*CB_TAPS))
    reversed_passes = decoding_schedule(3, 3, "two-pass")[::-1]
    with pytest.raises(ValueError, match="does not fit"):
        check_schedule(reversed_passes, dy, dx, context_sources("checkerboard", 3, 3))
    # every tap of an autoregressive context reads ŷ: the same steps fail there too
    with pytest.raises(ValueError, match="does not fit"):
        check_schedule(decoding_schedule(3, 3, "two-pass"), dy, dx, torch.ones(3, 3, dtype=bool))
    with pytest.raises(ValueError, match="exactly once"):
        check_schedule(decoding_schedule(3, 3, "two-pass")[:1], dy, dx, anchor_mask(3, 3))


# -- real coding ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_is_bit_exact_in_two_passes(models, kind, monkeypatch):
    model = models[kind]
    y, side = _latent(), _side(kind)
    encoded = model.encode(y, side)
    reads = []
    original_read = rans.SymbolReader.read

    def counting_read(self, indexes, tables):
        reads.append(indexes.numel())
        return original_read(self, indexes, tables)

    monkeypatch.setattr(rans.SymbolReader, "read", counting_read)
    decoded = model.decompress(encoded.data, (H, W), side)
    assert decoded.dtype == torch.float32 and torch.equal(decoded, encoded.y_hat)
    # [z,] anchors, non-anchors, end check: the latent takes two decoding steps
    anchors = int(anchor_mask(H, W).sum())
    expected = [N * anchors, N * (H * W - anchors), 2]
    if kind == "hyperprior":
        expected.insert(0, N * 2 * 3)  # z: (5, 9) -> (2, 3)
    assert reads == expected
    assert (decoded - y).abs().max() <= 0.5 + 1e-5
    residual = decoded - encoded.means
    assert torch.allclose(residual, torch.round(residual), atol=1e-5)
    assert model.compress(y, side) == encoded.data  # deterministic
    # order is validated, then ignored: both orders give the same payload
    assert model.compress(y, side, order="raster") == encoded.data
    with pytest.raises(ValueError, match="order must be one of"):
        model.encode(y, side, order="two-pass")


@pytest.mark.parametrize(("height", "width"), [(1, 1), (1, 2), (3, 1), (2, 2)])
def test_round_trip_on_thin_latents(models, height, width):
    for kind in ("hyperprior", "conditional"):
        y, side = _latent(h=height, w=width), _side(kind, h=height, w=width)
        encoded = models[kind].encode(y, side)
        assert torch.equal(
            models[kind].decompress(encoded.data, (height, width), side), encoded.y_hat
        )


def test_standalone_round_trip_and_side_mismatch(models):
    model = models["conditional"]
    y, side = _latent(), _side("conditional")
    standalone = model.encode(y)
    assert torch.equal(model.decompress(standalone.data, (H, W)), standalone.y_hat)
    with pytest.raises(BitstreamError, match="zeroed side information"):
        model.decompress(standalone.data, (H, W), side)
    conditioned = model.encode(y, side)
    with pytest.raises(BitstreamError, match="end check"):
        model.decompress(conditioned.data, (H, W), side + 1.0)


@pytest.mark.parametrize("kind", KINDS)
def test_forward_computes_what_the_decoder_computes(models, kind):
    """In eval, the parallel forward equals the two-pass coder (float32 vs float64 rounding):
    the same y_hat, and the masked conv of the coder's ŷ ⊙ anchor_mask gives its μ, σ."""
    model = models[kind]
    y, side = _latent(seed=3), _side(kind)
    encoded = model.encode(y, side)
    with torch.no_grad():
        out = model(y, side)
        assert (out["y_hat"] - encoded.y_hat).abs().max() < 1e-4
        forward_bits = float(bits(out["likelihoods"]))
        assert forward_bits == pytest.approx(sum(encoded.estimated_bits.values()), rel=1e-4)
        if kind == "hyperprior":
            return  # its conditioning comes from a z_hat the test cannot rebuild exactly
        conditioning = None if side is None else model._side_features(side, y)
        features = model.context_prediction(encoded.y_hat * anchor_mask(H, W))
        if conditioning is not None:
            features = torch.cat([features, conditioning], dim=1)
        scales, means = model.entropy_parameters(features).chunk(2, dim=1)
    torch.testing.assert_close(means, encoded.means, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scales, encoded.scales, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("scale", "shape"), [(0.5, (9, 13)), (4.0, (6, 7))])
def test_coded_size_matches_the_estimate(kind, scale, shape):
    """Actual bits = estimate + flag byte, end check, rANS flush and table-scale snapping."""
    model = _make(kind, seed=5, n=16, scale=scale)
    h, w = shape
    y = _latent(seed=11, n=16, h=h, w=w, std=scale)
    encoded = model.encode(y, _side(kind, n=16, h=h, w=w))
    overhead = encoded.num_bits - sum(encoded.estimated_bits.values())
    assert -32 <= overhead <= 128 + 0.03 * y.numel(), (encoded.num_bits, encoded.estimated_bits)


@pytest.mark.parametrize("kind", ["plain", "conditional"])
def test_a_decoder_of_the_other_context_fails_naming_both(models, kind):
    checkerboard = models[kind]
    autoregressive = _make(kind, context="autoregressive")
    y, side = _latent(), _side(kind)
    with pytest.raises(
        BitstreamError, match="context='checkerboard', this model has context='autoregressive'"
    ):
        autoregressive.decompress(checkerboard.compress(y, side), (H, W), side)
    with pytest.raises(
        BitstreamError, match="context='autoregressive', this model has context='checkerboard'"
    ):
        checkerboard.decompress(autoregressive.compress(y, side), (H, W), side)
    payload = bytearray(checkerboard.compress(y, side))
    payload[0] |= 1  # the raster bit has no meaning in a checkerboard payload
    with pytest.raises(BitstreamError, match="raster bit"):
        checkerboard.decompress(bytes(payload), (H, W), side)
    with pytest.raises(BitstreamError, match="version 9 is not supported"):
        checkerboard.decompress(b"\x90" + bytes(payload[1:]), (H, W), side)


def test_running_leaves_parameters_bit_identical_and_unused_taps_unused(models):
    model = copy.deepcopy(models["hyperprior"])
    y = _latent()
    payload = model.compress(y)
    with torch.no_grad():
        model.context_prediction.weight.add_(0.5 * (1 - model.context_prediction.mask))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()(y)
    assert model.eval().compress(y) == payload  # masked-out taps change nothing
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_entropy_model_rejects_an_unknown_context():
    with pytest.raises(ValueError, match="'zigzag'"):
        AutoregressiveGaussianModel(4, context="zigzag")


# -- training ---------------------------------------------------------------------------------


@pytest.mark.parametrize("noise", [False, True])
def test_forward_gradients_reach_the_used_taps_only(noise):
    torch.manual_seed(0)
    model = AutoregressiveGaussianModel(N, context="checkerboard", noise_quantization=noise)
    model.train()
    y = _latent().requires_grad_(True)
    out = model(y)
    out["y_hat"].backward(torch.ones_like(y), retain_graph=True)
    assert torch.equal(y.grad, torch.ones_like(y))  # straight-through (or additive noise)
    bits(out["likelihoods"]).backward()
    grad = model.context_prediction.weight.grad
    mask = model.context_prediction.mask
    assert torch.all(grad[mask == 0] == 0) and grad[mask == 1].abs().sum() > 0
    assert model.entropy_parameters[0].weight.grad.abs().sum() > 0


def _scene(height: int, width: int) -> torch.Tensor:
    rgb = render_scene(sample_scene(np.random.default_rng(0), height, width)).rgb
    return torch.from_numpy(rgb).permute(2, 0, 1).float()[None] / 255.0


def test_base_codec_trains_and_round_trips_with_a_checkerboard_context():
    torch.manual_seed(0)
    model = create_model("tiny-depth-base", context="checkerboard").train()
    assert model.entropy_model.context == "checkerboard"
    assert model.codec_id != create_model("tiny-depth-base").codec_id  # context is hashed
    generator = torch.Generator().manual_seed(1)
    batch = {
        "image": torch.cat([_scene(64, 64), _scene(64, 64).flip(-1)]),
        "disparity": torch.rand(2, 1, 64, 64, generator=generator) * 30.0,
        "disparity_mask": torch.rand(2, 1, 64, 64, generator=generator) > 0.2,
    }
    last = model.entropy_model.entropy_parameters[-1]
    with torch.no_grad():  # scales near 1: an untrained net's sit at the bound (no gradient)
        last.bias[: model.latent_ch] = 1.0
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-3)
    conv = model.entropy_model.context_prediction
    for _ in range(3):
        optimizer.zero_grad()
        loss = model.loss(batch, model(batch))["loss"]
        assert math.isfinite(loss.item())
        loss.backward()
        assert torch.all(conv.weight.grad[conv.mask == 0] == 0)
        assert conv.weight.grad[conv.mask == 1].abs().sum() > 0
        optimizer.step()
    model.eval()
    with torch.no_grad():
        model.f_b.layers[-1].weight.mul_(8.0)  # non-trivial symbols
    image = _scene(50, 70)[0]
    coded = model.compress_latents(image)
    assert int((coded.y_hat["base"] != 0).sum()) > 10
    data = coded.to_bytes()
    out = model.decompress(data)
    assert torch.equal(out["y_hat"]["base"], coded.y_hat["base"])
    assert out["x_hat"].shape == (1, 3, 50, 70) and out["bpp_actual"] == len(data) * 8 / (50 * 70)
    with pytest.raises(BitstreamError):  # the autoregressive codec does not take this stream
        create_model("tiny-depth-base").eval().decompress(data)


def test_enhancement_codec_round_trips_with_checkerboard_layers():
    torch.manual_seed(0)
    model = create_model(
        "tiny-cityscapes-reconstruction-scalable",
        context="checkerboard",
        base_overrides={"context": "checkerboard"},
    ).eval()
    assert model.entropy_model.context == model.base.entropy_model.context == "checkerboard"
    with torch.no_grad():
        for module in (model.base.f_b, model.f_e):
            module.layers[-1].weight.mul_(8.0)
    image = _scene(40, 70)[0]
    coded = model.compress_latents(image)
    out = model.decompress(coded.to_bytes())
    for layer in ("base", "enhancement"):
        assert int((coded.y_hat[layer] != 0).sum()) > 10, layer
        assert torch.equal(out["y_hat"][layer], coded.y_hat[layer]), layer
    assert out["x_hat"].shape == (1, 3, 40, 70)


def test_config_fields_validate_and_reach_the_model_through_train_overrides():
    with pytest.raises(ConfigError, match="'zigzag'"):
        BaseCodecConfig(context="zigzag")
    with pytest.raises(ConfigError, match="'zigzag'"):
        EnhancementCodecConfig(context="zigzag")
    with pytest.raises(ConfigError, match="zigzag"):
        create_model("tiny-depth-base", context="zigzag")
    from taskcodecs.experiments.table import load_experiment
    from taskcodecs.runs.run_model import build_model

    cfg = load_experiment("tiny-depth-base-baseline", ["model_overrides.context=checkerboard"])
    assert build_model(cfg).entropy_model.context == "checkerboard"


def test_standalone_refit_starts_only_from_a_model_of_the_same_context():
    scalable = create_model("tiny-cityscapes-reconstruction-scalable", context="checkerboard")
    refit = create_model("tiny-cityscapes-reconstruction-standalone-refit")
    with pytest.raises(ValueError, match="context 'checkerboard' differs from 'autoregressive'"):
        refit.init_from(scalable)
    refit = create_model("tiny-cityscapes-reconstruction-standalone-refit", context="checkerboard")
    refit.init_from(scalable)
    weight = refit.entropy_model.context_prediction.weight
    assert torch.equal(weight, scalable.entropy_model.context_prediction.weight)
