"""Entropy models: forward contract, bit-exact real coding, robustness against bad payloads."""

from __future__ import annotations

import math
import random

import pytest
import torch

from taskcodecs.coding.bitstream import BitstreamError
from taskcodecs.coding.context import decoding_schedule
from taskcodecs.coding.entropy import (
    AutoregressiveGaussianModel,
    ConditionalAutoregressiveGaussianModel,
)
from taskcodecs.coding.gaussian import LIKELIHOOD_BOUND, SCALE_BOUND, bits, quantize
from taskcodecs.coding.rans import scale_indexes

N, H, W = 8, 5, 9  # neither square nor powers of two


def _calibrate(model, scale: float) -> None:
    """Make the parameter network predict scales near ``scale`` (an untrained net predicts
    scales below the 0.11 bound, so every symbol would be escape-coded)."""
    last = model.entropy_parameters[-1]
    with torch.no_grad():
        last.weight.mul_(0.05)
        last.bias.zero_()
        last.bias[: model.N] = scale


def _make(kind: str, seed: int = 0, n: int = N, calibrate: float | None = 2.0):
    torch.manual_seed(seed)
    if kind == "conditional":
        model = ConditionalAutoregressiveGaussianModel(n, num_res_blocks=1)
    else:
        model = AutoregressiveGaussianModel(n, hyperprior=kind == "hyperprior")
    if calibrate is not None:
        _calibrate(model, calibrate)
    return model.eval()


def _latent(seed: int = 1, n: int = N, h: int = H, w: int = W, std: float = 2.0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, n, h, w, generator=generator) * std


KINDS = ["plain", "hyperprior", "conditional"]


@pytest.fixture(scope="module")
def models():
    return {kind: _make(kind) for kind in KINDS}


@pytest.fixture(scope="module")
def side():
    return _latent(seed=7)


def _side_for(kind, side):
    return side if kind == "conditional" else None


@pytest.mark.parametrize("kind", KINDS)
def test_running_a_model_leaves_every_parameter_bit_identical(kind, side):
    """Forward (train and eval mode), encode and decode do not write any parameter or
    buffer, masked context taps included (CompressAI's MaskedConv2d did)."""
    model = _make(kind)
    with torch.no_grad():
        model.context_prediction.weight.add_(0.5)  # the masked taps too
    before = {k: v.clone() for k, v in model.state_dict().items()}
    y = _latent()
    side_input = _side_for(kind, side)
    model.train()(y, side_input)
    model.eval()
    with torch.no_grad():
        model(y, side_input)
    encoded = model.encode(y, side_input)
    model.decompress(encoded.data, (H, W), side_input)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


# -- quantization and rate -------------------------------------------------------------------


def test_quantize_modes():
    x = torch.tensor([-1.7, -0.5, 0.2, 0.5, 2.49], requires_grad=True)
    ste = quantize(x)
    assert torch.equal(ste, torch.round(x.detach()))
    ste.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))  # straight-through: d y_hat / d y = 1
    noisy = quantize(x.detach().expand(1000, 5), "noise")
    offset = noisy - x.detach()
    assert offset.abs().max() <= 0.5 and offset.std() > 0.2
    assert torch.equal(quantize(x, "round"), torch.round(x.detach()))
    with pytest.raises(ValueError, match="'ste', 'noise' or 'round'"):
        quantize(x, "floor")


def test_bits_sums_minus_log2_over_dict_and_per_sample():
    likelihoods = {"y": torch.full((2, 3, 2, 2), 0.5), "z": torch.full((2, 1, 1, 1), 0.25)}
    assert bits(likelihoods).item() == pytest.approx(2 * 12 * 1 + 2 * 2)
    assert torch.allclose(bits(likelihoods, per_sample=True), torch.tensor([14.0, 14.0]))
    assert bits(likelihoods["y"]).item() == pytest.approx(24.0)


# -- forward ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_forward_contract_bounds_and_ste_gradient(kind, side):
    model = _make(kind).train()
    y = _latent().requires_grad_(True)
    out = model(y, _side_for(kind, side))
    expected_keys = {"y", "z"} if kind == "hyperprior" else {"y"}
    assert set(out["likelihoods"]) == expected_keys
    assert out["y_hat"].shape == y.shape
    for likelihood in out["likelihoods"].values():
        assert likelihood.min() >= LIKELIHOOD_BOUND and likelihood.max() <= 1.0
    # the straight-through path: d y_hat / d y is exactly the identity, even through μ(y)
    out["y_hat"].backward(torch.ones_like(y), retain_graph=True)
    assert torch.equal(y.grad, torch.ones_like(y))
    # the rate reaches the latent and the entropy-model parameters
    y.grad = None
    bits(out["likelihoods"]).backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    assert model.entropy_parameters[0].weight.grad.abs().sum() > 0
    assert model.context_prediction.weight.grad.abs().sum() > 0


def test_forward_y_hat_is_integer_offset_from_means_in_eval():
    model = _make("plain")
    y = _latent()
    out = model(y)
    # recompute the parallel μ the forward used (context on ⌊y⌉): y_hat − μ is an integer
    features = model.context_prediction(torch.round(y))
    scales, means = model.entropy_parameters(features).chunk(2, dim=1)
    residual = out["y_hat"] - means
    assert torch.allclose(residual, torch.round(residual), atol=1e-5)
    assert (out["y_hat"] - y).abs().max() <= 0.5 + 1e-5


def test_scale_and_likelihood_lower_bounds():
    model = _make("plain")
    last = model.entropy_parameters[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        last.bias[:N] = -5.0  # a negative scale: must be bounded to 0.11
    y = torch.zeros(1, N, H, W)
    y[0, 0, 0, :3] = torch.tensor([1.0, 3.0, 1e4])
    likelihood = model(y)["likelihoods"]["y"][0, 0, 0]

    def gaussian_mass(symbol: float, sigma: float) -> float:
        upper = 0.5 * math.erfc(-(symbol + 0.5) / (sigma * math.sqrt(2)))
        lower = 0.5 * math.erfc(-(symbol - 0.5) / (sigma * math.sqrt(2)))
        return upper - lower

    assert likelihood[3].item() == pytest.approx(gaussian_mass(0.0, SCALE_BOUND), rel=1e-6)
    assert likelihood[0].item() == pytest.approx(gaussian_mass(1.0, SCALE_BOUND), rel=1e-3)
    assert likelihood[1].item() == pytest.approx(LIKELIHOOD_BOUND)  # 3 / 0.11 = 27 σ away
    assert likelihood[2].item() == pytest.approx(LIKELIHOOD_BOUND)
    assert bits(likelihood[2]).item() == pytest.approx(-math.log2(LIKELIHOOD_BOUND), rel=1e-5)


def test_standalone_side_none_equals_zeroed_side(side):
    model = _make("conditional")
    y = _latent()
    zeroed = model(y, torch.zeros_like(side))
    standalone = model(y, None)
    conditioned = model(y, side)
    assert torch.equal(standalone["likelihoods"]["y"], zeroed["likelihoods"]["y"])
    assert not torch.equal(standalone["likelihoods"]["y"], conditioned["likelihoods"]["y"])


# -- real coding ------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["wavefront", "raster"])
@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_is_bit_exact_and_deterministic(models, side, kind, order):
    model = models[kind]
    y = _latent()
    encoded = model.encode(y, _side_for(kind, side), order=order)
    decoded = model.decompress(encoded.data, (H, W), _side_for(kind, side))
    assert decoded.dtype == torch.float32 and decoded.shape == y.shape
    assert torch.equal(decoded, encoded.y_hat)
    # the bitstream's y_hat is within ½ of y and an integer away from its decode-time μ
    assert (decoded - y).abs().max() <= 0.5 + 1e-5
    residual = decoded - encoded.means
    assert torch.allclose(residual, torch.round(residual), atol=1e-5)
    assert model.compress(y, _side_for(kind, side), order=order) == encoded.data


@pytest.mark.parametrize(("height", "width"), [(1, 1), (4, 1), (2, 2), (1, 6)])
def test_round_trip_on_thin_latents(models, height, width):
    model = models["hyperprior"]
    y = _latent(h=height, w=width)
    for order in ("wavefront", "raster"):
        encoded = model.encode(y, order=order)
        assert torch.equal(model.decompress(encoded.data, (height, width)), encoded.y_hat)


def test_standalone_round_trip_and_side_changes_the_stream(models, side):
    model = models["conditional"]
    y = _latent()
    standalone = model.encode(y)
    assert torch.equal(model.decompress(standalone.data, (1, N, H, W)), standalone.y_hat)
    conditioned = model.encode(y, side)
    assert conditioned.data != standalone.data
    with pytest.raises(BitstreamError, match="zeroed side information"):
        model.decompress(standalone.data, (H, W), side)
    with pytest.raises(BitstreamError, match="side=None was given"):
        model.decompress(conditioned.data, (H, W))
    with pytest.raises(BitstreamError):  # different side input: the decoder desynchronizes
        model.decompress(conditioned.data, (H, W), side + 1.0)


@pytest.mark.parametrize("kind", KINDS)
def test_wavefront_and_raster_decode_the_same_latent(models, side, kind):
    model = models[kind]
    y = _latent(seed=3)
    wavefront = model.encode(y, _side_for(kind, side), order="wavefront")
    raster = model.encode(y, _side_for(kind, side), order="raster")
    assert wavefront.data[0] != raster.data[0]  # the order is recorded in the flag byte
    assert torch.equal(wavefront.y_hat, raster.y_hat)
    assert abs(len(wavefront.data) - len(raster.data)) <= 0.01 * len(raster.data)
    decoded = model.decompress(raster.data, (H, W), _side_for(kind, side))
    assert torch.equal(decoded, wavefront.y_hat)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("scale", "shape"), [(0.5, (9, 13)), (4.0, (6, 7))])
def test_coded_size_matches_decode_time_estimate(side, kind, scale, shape):
    """Actual bytes = −log2 likelihood under the decode-time μ, σ + bounded overhead:
    flag byte 8, end check ~16, rANS flush and 4-byte words up to 95, plus scale-table
    snapping (σ coded with the nearest of 64 log-spaced scales)."""
    model = _make(kind, seed=5, n=16, calibrate=scale)
    h, w = shape
    y = _latent(seed=11, n=16, h=h, w=w, std=scale)
    side_input = _latent(seed=12, n=16, h=h, w=w) if kind == "conditional" else None
    encoded = model.encode(y, side_input)
    estimate = sum(encoded.estimated_bits.values())
    num_symbols = y.numel()
    overhead = encoded.num_bits - estimate
    assert -32 <= overhead <= 128 + 0.03 * num_symbols, (encoded.num_bits, estimate)
    assert encoded.num_bits == 8 * len(encoded.data)


# -- bad input --------------------------------------------------------------------------------


def test_encode_rejects_bad_latents_and_arguments(models, side):
    model = models["plain"]
    with pytest.raises(ValueError, match="one latent at a time"):
        model.encode(torch.zeros(2, N, H, W))
    with pytest.raises(ValueError, match=r"\(B, 8, h, w\)"):
        model.encode(torch.zeros(1, N + 1, H, W))
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.encode(torch.full((1, N, H, W), float("nan")))
    with pytest.raises(ValueError, match="order must be one of"):
        model.encode(_latent(), order="zigzag")
    with pytest.raises(ValueError, match="takes no side information"):
        model.encode(_latent(), side)
    with pytest.raises(ValueError, match="side information must have shape"):
        models["conditional"].encode(_latent(), side[..., :4])
    with pytest.raises(ValueError, match="exceeds"):
        model.encode(torch.full((1, N, H, W), 1e9))
    with pytest.raises(ValueError, match="shape must be"):
        model.decompress(b"\x10" + bytes(8), (0, W))


def test_decompress_rejects_payload_of_another_model_kind(models):
    y = _latent()
    plain_payload = models["plain"].compress(y)
    with pytest.raises(BitstreamError, match="hyperprior=False, this model has .*hyperprior=True"):
        models["hyperprior"].decompress(plain_payload, (H, W))
    with pytest.raises(BitstreamError, match="payload version"):
        models["plain"].decompress(b"\x70" + plain_payload[1:], (H, W))
    # same symbol count, wrong shape; or another model's weights: the end check catches both
    with pytest.raises(BitstreamError, match="end check"):
        models["plain"].decompress(plain_payload, (W, H))
    with pytest.raises(BitstreamError, match="end check"):
        _make("plain", seed=9).decompress(plain_payload, (H, W))


def test_decompress_raises_bitstream_error_on_truncation_and_garbage():
    """Every truncation, random bit flips and random/constant garbage give BitstreamError
    (never a crash or hang); only the intact payload decodes."""
    model = _make("hyperprior", n=4, calibrate=1.0)
    y = _latent(n=4, h=3, w=4, std=1.0)
    payload = model.compress(y)
    shape = (3, 4)
    for end in range(len(payload)):
        with pytest.raises(BitstreamError):
            model.decompress(payload[:end], shape)
    rng = random.Random(0)
    flag = payload[:1]
    garbage = [flag + bytes(rng.randrange(256) for _ in range(n)) for n in (8, 12, 64, 200)]
    garbage += [flag + bytes([fill]) * 64 for fill in (0x00, 0xFF, 0x0F, 0xF0)]
    for data in garbage:
        with pytest.raises(BitstreamError):
            model.decompress(data, shape)
    with pytest.raises(BitstreamError, match="too long"):
        model.decompress(flag + bytes(4000), shape)
    with pytest.raises(BitstreamError, match="non-empty bytes"):
        model.decompress(b"", shape)


# -- coding machinery -------------------------------------------------------------------------


@pytest.mark.parametrize(("height", "width"), [(1, 1), (5, 9), (7, 3), (4, 1), (3, 2)])
def test_wavefront_schedule_visits_each_position_once_after_its_context(height, width):
    steps = decoding_schedule(height, width, "wavefront")
    assert all(len(rows) > 0 for rows, _ in steps)
    expected_steps = 3 * (height - 1) + width if width >= 3 else height * width
    assert len(steps) == expected_steps
    decoded_at = {}
    for t, (rows, cols) in enumerate(steps):
        for r, c in zip(rows.tolist(), cols.tolist()):
            assert (r, c) not in decoded_at
            decoded_at[(r, c)] = t
    assert len(decoded_at) == height * width
    taps = [(dy, dx) for dy in (-2, -1) for dx in range(-2, 3)] + [(0, -2), (0, -1)]
    for (r, c), t in decoded_at.items():
        for dy, dx in taps:
            if (r + dy, c + dx) in decoded_at:
                assert decoded_at[(r + dy, c + dx)] < t
    raster = decoding_schedule(height, width, "raster")
    assert len(raster) == height * width


def test_scale_indexes_pick_the_nearest_table_scale_in_log_scale(models):
    gc = models["plain"].gaussian_conditional
    table = gc.scale_table
    scales = torch.cat(
        [torch.rand(500) * 300, table.clone(), -torch.rand(5), torch.rand(20) * 0.11]
    )
    ours = scale_indexes(scales, table, SCALE_BOUND)
    distance = (scales.clamp_min(SCALE_BOUND).double().log()[:, None] - table.double().log()).abs()
    assert torch.equal(ours, distance.argmin(dim=1))
    assert torch.equal(scale_indexes(table, table, SCALE_BOUND), torch.arange(len(table)))
    # never more than one table step away from CompressAI's round-up index
    assert bool(((gc.build_indexes(scales).long() - ours).abs() <= 1).all())
    nan_index = scale_indexes(torch.tensor([float("nan")]), table, SCALE_BOUND)
    assert 0 <= nan_index.item() < len(table)


@pytest.mark.parametrize("kind", KINDS)
def test_autoregressive_forward_gap_is_the_context_input_alone(models, side, kind):
    """The forward estimate and the decode-time one differ only through what the parallel
    context sees: ⌊y⌉ (forward) instead of the decoded ŷ' (bitstream). Fed ŷ', the same
    parallel network gives the decode-time μ', σ' and the decode-time estimate; forward's
    y_hat and ŷ' lie within 1 of each other (both within ½ of y)."""
    model = models[kind]
    y, side_input = _latent(seed=21, std=3.0), _side_for(kind, side)
    encoded = model.encode(y, side_input)
    with torch.no_grad():
        forward = model(y, side_input)
        conditioning, _ = model._condition(y, side_input, "ste")
        scales, means = model._gaussian_parameters(encoded.y_hat, conditioning)
        teacher_forced = model._gaussian_likelihood(encoded.y_hat, scales, means)
    torch.testing.assert_close(means, encoded.means, atol=1e-4, rtol=0)
    torch.testing.assert_close(scales, encoded.scales, atol=1e-4, rtol=1e-4)
    assert -torch.log2(teacher_forced).sum().item() == pytest.approx(
        encoded.estimated_bits["y"], rel=1e-4)
    assert (forward["y_hat"] - encoded.y_hat).abs().max() <= 1 + 1e-5
    # the gap itself is measured, not assumed away: here it is not zero
    forward_bits = bits(forward["likelihoods"]["y"]).item()
    assert forward_bits != pytest.approx(encoded.estimated_bits["y"], rel=1e-6)
