"""Base codecs: forward contract, loss terms, gradient paths of the reward, real bitstreams."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from taskcodecs.coding.bitstream import BitstreamError, codec_fingerprint
from taskcodecs.data.scene import render_scene, sample_scene
from taskcodecs.experiments.registry import create_model
from taskcodecs.models.base import BaseCodec
from taskcodecs.models.losses import rmse255


def scene_images(count: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Rendered synthetic street scenes, float [count, 3, H, W] in [0, 1]."""
    images = [
        render_scene(sample_scene(np.random.default_rng([seed, i]), height, width)).rgb
        for i in range(count)
    ]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0


def depth_batch(count: int, height: int, width: int) -> dict:
    generator = torch.Generator().manual_seed(1)
    return {
        "image": scene_images(count, height, width),
        "disparity": torch.rand(count, 1, height, width, generator=generator) * 30.0,
        "disparity_mask": torch.rand(count, 1, height, width, generator=generator) > 0.2,
    }


def detection_batch(count: int, height: int, width: int) -> dict:
    boxes = torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0, 10.0, 60.0, 30.0]])
    return {
        "image": scene_images(count, height, width),
        "targets": [{"boxes": boxes.clone(), "labels": torch.tensor([3, 1])} for _ in range(count)],
    }


def spread_latent(model: BaseCodec, factor: float = 8.0) -> BaseCodec:
    """Scale f_b's last conv so an untrained model codes non-zero symbols."""
    with torch.no_grad():
        model.f_b.layers[-1].weight.mul_(factor)
    return model


# ------------------------------------------------------------------------------ forward


def test_depth_forward_contract_on_odd_size() -> None:
    torch.manual_seed(0)
    model = create_model("tiny-depth-base").train()
    batch = depth_batch(2, 50, 70)
    out = model(batch)
    assert out["x_hat"].shape == (2, 3, 50, 70)
    assert out["disparity"].shape == (2, 1, 50, 70)
    # padded to 64 x 96 (multiple 32 at half resolution), halved, / 16
    assert out["y_hat"]["base"].shape == (2, 32, 2, 3)
    assert tuple(out["padding"]) == (0, 26, 0, 14)
    likelihoods = out["likelihoods"]  # flat, as CompressAI's single-layer models
    assert set(likelihoods) == {"y"}
    expected_bpp = -torch.log2(likelihoods["y"]).sum() / (2 * 50 * 70)
    torch.testing.assert_close(out["bpp"]["base"], expected_bpp)
    terms = model.loss(batch, out)
    assert set(terms) == {"loss", "distortion", "bpp_base", "rate", "rmse255", "reward"}
    torch.testing.assert_close(terms["rmse255"], rmse255(out["x_hat"], batch["image"]))
    total = terms["distortion"] + 1e-3 * terms["bpp_base"] + 1.0 * terms["rmse255"]
    torch.testing.assert_close(terms["loss"], total)
    terms["loss"].backward()
    assert model.f_b.layers[0].weight.grad is not None


def test_detection_forward_train_and_eval() -> None:
    torch.manual_seed(0)
    model = create_model("tiny-detection-base").train()
    batch = detection_batch(2, 48, 80)
    out = model(batch)
    assert out["x_hat"].shape == (2, 3, 48, 80)
    assert out["y_hat"]["base"].shape == (2, 32, 3, 5)  # 48 x 80 padded to 48 x 80, / 16
    assert set(out["task_losses"]) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    terms = model.loss(batch, out)
    torch.testing.assert_close(terms["distortion"], sum(out["task_losses"].values()))
    terms["loss"].backward()
    model.eval()
    with torch.no_grad():
        detections = model({"image": batch["image"]})["detections"]
    assert len(detections) == 2 and set(detections[0]) == {"boxes", "labels", "scores"}


def test_detection_train_mode_without_targets_says_what_is_missing() -> None:
    model = create_model("tiny-detection-base").train()
    with pytest.raises(KeyError, match="targets"):
        model({"image": torch.rand(1, 3, 32, 32)})


# ------------------------------------------------------------------------------ gradient paths


def _grads(module: torch.nn.Module) -> list[torch.Tensor | None]:
    return [p.grad for p in module.parameters()]


def test_baseline_encoder_gets_no_reconstruction_gradient() -> None:
    torch.manual_seed(0)
    model = create_model("tiny-depth-base", reward_weight=0.0).train()
    batch = depth_batch(2, 64, 64)
    terms = model.loss(batch, model(batch))
    terms["reward"].backward()  # the reconstruction term alone
    for module in (model.down, model.f_b, model.entropy_model):
        assert all(g is None or not g.any() for g in _grads(module))
    assert all(g is not None and g.abs().sum() > 0 for g in _grads(model.g_s))
    torch.testing.assert_close(terms["reward"], terms["rmse255"])  # weight 1 on the detached latent


def test_proposed_reward_gradient_scales_with_reward_weight() -> None:
    torch.manual_seed(0)
    first = create_model("tiny-depth-base", reward_weight=0.1).train()
    second = create_model("tiny-depth-base", reward_weight=0.2).train()
    second.load_state_dict(first.state_dict())
    batch = depth_batch(2, 64, 64)
    grads = []
    for model in (first, second):
        model.loss(batch, model(batch))["reward"].backward()
        grads.append([p.grad.clone() for p in model.f_b.parameters()])
    assert any(g.abs().sum() > 0 for g in grads[0])
    for g1, g2 in zip(*grads):
        assert torch.equal(g2, 2 * g1)  # exact: scaling by a power of two is lossless


# ------------------------------------------------------------------------------ bitstreams


@pytest.mark.parametrize("name", ["tiny-depth-base", "tiny-detection-base"])
def test_round_trip_is_bit_exact_on_77x131(name: str) -> None:
    torch.manual_seed(0)
    model = spread_latent(create_model(name)).eval()
    image = scene_images(1, 77, 131)[0]
    coded = model.compress_latents(image)
    data = coded.to_bytes()
    assert bytes(data) == model.compress(image)  # deterministic encoder
    nonzero = int((coded.y_hat["base"] != 0).sum())
    assert nonzero > 20, "the test latent should not be trivially zero"
    out = model.decompress(data)
    assert torch.equal(out["y_hat"]["base"], coded.y_hat["base"])
    assert out["x_hat"].shape == (1, 3, 77, 131)
    assert 0.0 <= float(out["x_hat"].min()) and float(out["x_hat"].max()) <= 1.0
    assert out["bpp_actual"] == len(data) * 8 / (77 * 131)
    assert out["bpp_actual_decoded"] == out["bpp_actual"]  # a base codec has one layer
    if name == "tiny-depth-base":
        assert out["disparity"].shape == (1, 1, 77, 131)
    else:
        assert len(out["detections"]) == 1
    base_only = model.decompress(data, layers="base")
    assert torch.equal(base_only["y_hat"]["base"], coded.y_hat["base"])


def test_hyperprior_base_round_trip() -> None:
    torch.manual_seed(0)
    model = spread_latent(create_model("tiny-depth-base", hyperprior=True)).eval()
    assert model.padding_multiple == 128  # 16 x 2 (half resolution) x 4 (hyperprior)
    image = scene_images(1, 40, 70)[0]
    with torch.no_grad():
        forward = model.eval()({"image": image[None]})
    assert set(forward["likelihoods"]) == {"y", "z"}
    coded = model.compress_latents(image)
    decoded = model.decompress(coded.to_bytes())
    assert torch.equal(decoded["y_hat"]["base"], coded.y_hat["base"])
    assert decoded["x_hat"].shape == (1, 3, 40, 70)


def test_wrong_codec_and_corrupt_streams_are_rejected() -> None:
    torch.manual_seed(0)
    model = spread_latent(create_model("tiny-depth-base")).eval()
    other = create_model("tiny-depth-base", latent_ch=16).eval()
    data = model.compress(scene_images(1, 32, 64)[0])
    with pytest.raises(BitstreamError) as err:
        other.decompress(data)
    assert model.codec_id in str(err.value) and other.codec_id in str(err.value)
    corrupt = bytearray(data)
    corrupt[-3] ^= 0xFF
    with pytest.raises(BitstreamError, match="corrupt"):
        model.decompress(bytes(corrupt))
    with pytest.raises(BitstreamError):
        model.decompress(b"not a bitstream at all")
    with pytest.raises(ValueError, match="layers"):
        model.decompress(data, layers="enhancement")


def test_stream_of_a_non_default_codec_is_named_by_fingerprint_only() -> None:
    torch.manual_seed(0)
    custom = spread_latent(create_model("tiny-depth-base", latent_ch=16)).eval()
    model = create_model("tiny-depth-base").eval()
    data = custom.compress(scene_images(1, 32, 64)[0])
    with pytest.raises(BitstreamError) as err:
        model.decompress(data)
    message = str(err.value)
    assert "an unknown codec" in message and model.codec_id in message
    assert codec_fingerprint(custom.codec_id).hex() in message
    assert codec_fingerprint(model.codec_id).hex() in message


def test_running_the_codec_leaves_every_parameter_bit_identical() -> None:
    """Eval-mode forward, compress and decompress write no parameter or buffer; the masked
    context taps (non-zero from initialization) included."""
    torch.manual_seed(0)
    model = spread_latent(create_model("tiny-depth-base")).eval()
    conv = model.entropy_model.context_prediction
    assert bool((conv.weight[conv.mask == 0] != 0).any())  # unused taps stay as initialized
    before = {k: v.clone() for k, v in model.state_dict().items()}
    image = scene_images(1, 32, 64)[0]
    with torch.no_grad():
        model({"image": image[None]})
    model.decompress(model.compress(image))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_compress_checks_its_input() -> None:
    model = create_model("tiny-depth-base")
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        model.compress(torch.rand(2, 3, 32, 32))
    with pytest.raises(TypeError, match="float"):
        model.compress(torch.zeros(3, 32, 32, dtype=torch.uint8))


def test_compress_restores_train_mode_and_bpp_units() -> None:
    torch.manual_seed(0)
    model = spread_latent(create_model("tiny-depth-base")).train()
    image = scene_images(1, 64, 64)[0]
    coded = model.compress_latents(image)
    assert model.training  # compress runs in eval mode and restores the mode
    assert coded.bits_per_pixel() == len(coded.to_bytes()) * 8 / (64 * 64)
    assert math.isfinite(coded.estimated_bits["base"]) and coded.estimated_bits["base"] > 0


@pytest.mark.parametrize("size", [(1, 1), (20, 20), (64, 64), (100, 33)])
def test_small_and_thin_images_round_trip(size: tuple[int, int]) -> None:
    """Latents of 1x1, 1x1, 2x2 and 4x2 positions: padding and the wavefront schedule hold."""
    torch.manual_seed(0)
    model = spread_latent(create_model("tiny-depth-base")).eval()
    image = torch.rand(3, *size, generator=torch.Generator().manual_seed(1))
    coded = model.compress_latents(image)
    out = model.decompress(coded.to_bytes())
    assert torch.equal(out["y_hat"]["base"], coded.y_hat["base"])
    assert out["x_hat"].shape == (1, 3, *size) and out["disparity"].shape == (1, 1, *size)
