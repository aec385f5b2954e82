"""CompressAI conventions out: forward(x) on a tensor, flat likelihoods, CompressAI's own
RateDistortionLoss trains our single-layer model; layered codecs offer a flat view."""

import json

import pytest
import torch
from compressai.losses import RateDistortionLoss

from taskcodecs.experiments.registry import create_model
from taskcodecs.models.common import compressai_view, flat_likelihoods


def test_single_layer_model_trains_one_step_with_compressai_rate_distortion_loss():
    torch.manual_seed(0)
    model = create_model("tiny-depth-base", reward_weight=0.1).train()
    x = torch.rand(2, 3, 64, 64)
    out = model(x)  # a bare tensor, as CompressAI's forward(x)
    assert set(out["likelihoods"]) == {"y"} and out["x_hat"].shape == x.shape
    criterion = RateDistortionLoss(lmbda=0.01)
    terms = criterion(out, x)
    # CompressAI's rate is ours: -log2 likelihoods per pixel of the original image
    torch.testing.assert_close(terms["bpp_loss"], out["bpp"]["base"])
    trained = {"f_b": model.f_b, "g_s": model.g_s}
    before = {name: [p.detach().clone() for p in m.parameters()] for name, m in trained.items()}
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-3)
    optimizer.zero_grad()
    terms["loss"].backward()
    optimizer.step()
    assert torch.isfinite(terms["loss"])
    for name, module in trained.items():  # (the task head is not in CompressAI's loss)
        moved = [not torch.equal(a, b) for a, b in zip(before[name], module.parameters())]
        assert any(moved), f"{name} did not move"


def test_dict_batch_and_tensor_give_the_same_forward():
    model = create_model("tiny-depth-base").eval()
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        a, b = model(x), model({"image": x})
    torch.testing.assert_close(a["likelihoods"]["y"], b["likelihoods"]["y"])
    torch.testing.assert_close(a["x_hat"], b["x_hat"])


def test_layered_codec_nests_by_layer_and_offers_a_flat_view():
    model = create_model("tiny-cityscapes-reconstruction-scalable").eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
    assert set(out["likelihoods"]) == {"base", "enhancement"}
    flat = flat_likelihoods(out["likelihoods"])
    assert set(flat) == {"base.y", "enhancement.y"}
    view = compressai_view(out)
    terms = RateDistortionLoss(lmbda=0.01)(view, x)
    total = out["bpp"]["base"] + out["bpp"]["enhancement"]
    torch.testing.assert_close(terms["bpp_loss"], total)
    assert flat_likelihoods({"y": flat["base.y"]}) == {"y": flat["base.y"]}
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.rand(3, 64, 64))


def test_g_a_and_g_s_mean_what_compressai_means_and_old_checkpoints_load(tmp_path):
    from safetensors.torch import load_file, save_file

    from taskcodecs.runs.codecs import load_codec, save_codec

    model = create_model("tiny-depth-base")
    assert model.g_a is model.f_b  # analysis
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert model.g_a(x).shape[1] == model.latent_ch
    assert any(k.startswith("g_s.") for k in model.state_dict())
    assert not any(k.startswith("g_a.") for k in model.state_dict())
    # a checkpoint written when the reconstruction decoder was called g_a
    path = save_codec(model, tmp_path / "old")
    tensors = load_file(path)
    legacy = {k.replace("model.g_s.", "model.g_a."): v for k, v in tensors.items()}
    assert any(k.startswith("model.g_a.") for k in legacy)
    save_file(legacy, path)
    meta = path.with_suffix(".json")
    record = json.loads(meta.read_text())  # as an old version wrote it: no manifest, no
    record.pop("weights"), record.pop("record_sha256")  # checksum of its own
    meta.write_text(json.dumps(record))
    loaded = load_codec(tmp_path / "old", unverified=True)  # an old record: no manifest
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    # and inside an enhancement codec (keys base.g_a.*)
    enhancement = create_model("tiny-cityscapes-reconstruction-scalable")
    state = {k.replace("base.g_s.", "base.g_a."): v for k, v in enhancement.state_dict().items()}
    fresh = create_model("tiny-cityscapes-reconstruction-scalable")
    assert fresh.load_state_dict(state, strict=True) is not None
    torch.testing.assert_close(fresh.base.g_s.layers[0].weight, enhancement.base.g_s.layers[0].weight)
