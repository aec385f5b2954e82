"""The coding half of the Gaussian context model (taskcodecs.coding.gaussian_coding): the
float64 CPU coding state, its cache, and the CDF tables that follow the parameters."""

from __future__ import annotations

import copy

import pytest
import torch

from taskcodecs.coding.entropy import AutoregressiveGaussianModel

N, H, W = 8, 5, 9  # neither square nor powers of two


def _make(seed: int = 0) -> AutoregressiveGaussianModel:
    """A hyperprior model whose parameter network predicts scales near 2 (an untrained net
    predicts scales below the 0.11 bound: every symbol would be escape-coded)."""
    torch.manual_seed(seed)
    model = AutoregressiveGaussianModel(N, hyperprior=True)
    last = model.entropy_parameters[-1]
    with torch.no_grad():
        last.weight.mul_(0.05)
        last.bias.zero_()
        last.bias[:N] = 2.0
    return model.eval()


def _latent(seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, N, H, W, generator=generator) * 2.0


@pytest.fixture(scope="module")
def models():
    return {"hyperprior": _make()}


def test_float64_model_codes_exactly_like_its_float32_original(models):
    """Coding always runs on a float64 CPU copy, so the model's own dtype (or device) does
    not change the bytes: a float64 twin gives the same payload and the same y_hat."""
    model = models["hyperprior"]
    twin = copy.deepcopy(model).double()
    y = _latent()
    encoded = model.encode(y)
    twin_encoded = twin.encode(y.double())
    assert twin_encoded.data == encoded.data
    assert torch.equal(twin_encoded.y_hat, encoded.y_hat)
    assert torch.equal(twin.decompress(encoded.data, (H, W)), encoded.y_hat)


def test_tables_follow_the_parameters_and_stay_out_of_the_state_dict(models):
    model = copy.deepcopy(models["hyperprior"])
    y = _latent()
    before = model.compress(y)
    state = model.state_dict()
    assert not any(key.endswith(("_quantized_cdf", "_cdf_length", "_offset")) for key in state)
    # a fresh model loaded from the state dict codes identically, with no update() call
    fresh = AutoregressiveGaussianModel(N, hyperprior=True).eval()
    fresh.load_state_dict(state)
    assert fresh.compress(y) == before
    # the masked-out context taps are never used: changing them changes no byte
    tapped = copy.deepcopy(fresh)
    with torch.no_grad():
        tapped.context_prediction.weight.add_(1.0 - tapped.context_prediction.mask)
    assert tapped.compress(y) == before
    assert torch.equal(tapped.decompress(before, (H, W)), fresh.decompress(before, (H, W)))
    # change the bottleneck's learned density: tables are rebuilt, never stale
    with torch.no_grad():
        for matrix in model.entropy_bottleneck.matrices:
            matrix.add_(0.3)
    encoded = model.encode(y)
    assert encoded.data != before
    assert torch.equal(model.decompress(encoded.data, (H, W)), encoded.y_hat)


def test_coding_state_is_reused_until_any_parameter_changes():
    model = _make()
    y = _latent()
    first = model._coding_state()
    assert model._coding_state() is first  # cached: no float64 copy rebuilt per call
    payload = model.compress(y)
    weight = model.entropy_parameters[0].weight
    changes = [
        lambda: weight.data.mul_(1.5),  # through .data: the version counter does not move
        lambda: model.load_state_dict(_make(seed=3).state_dict()),
        lambda: model.gaussian_conditional.scale_table.mul_(1.0),  # same values: reused
    ]
    for i, change in enumerate(changes):
        before = model._coding_state()
        with torch.no_grad():
            change()
        after = model._coding_state()
        if i < 2:
            assert after is not before and after.crc != before.crc
            assert model.compress(y) != payload
            payload = model.compress(y)
        else:  # an in-place op that leaves every value as it was still rebuilds the copy
            assert after is not before and after.crc == before.crc
        assert torch.equal(model.decompress(payload, (H, W)), model.encode(y).y_hat)
    clone = copy.deepcopy(model)  # the cache is not part of the module: copies start fresh
    assert clone._coding_state() is not model._coding_state()
    assert clone.compress(y) == model.compress(y)
