"""Enhancement codecs: frozen base, conditioning, modes, layered bitstreams, actual vs estimated bpp."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from taskcodecs.coding.bitstream import BitstreamError, codec_fingerprint, pack, unpack
from taskcodecs.data.scene import render_scene, sample_scene
from taskcodecs.data.synthetic import generate_dataset
from taskcodecs.data.transforms import open_image, rgb_to_tensor
from taskcodecs.experiments.registry import (
    codec_id_from_config,
    create_model,
    identify_codec,
    model_config,
)
from taskcodecs.models.losses import rmse255


def scene_images(count: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Rendered synthetic street scenes, float [count, 3, H, W] in [0, 1]."""
    images = [
        render_scene(sample_scene(np.random.default_rng([seed, i]), height, width)).rgb
        for i in range(count)
    ]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0


def spread(*modules: torch.nn.Module, factor: float = 8.0) -> None:
    """Scale the last conv of analysis transforms so untrained models code non-zero symbols."""
    with torch.no_grad():
        for module in modules:
            module.layers[-1].weight.mul_(factor)


def seg_batch(count: int, height: int, width: int) -> dict:
    labels = torch.randint(0, 20, (count, height, width), generator=torch.Generator().manual_seed(2))
    return {"image": scene_images(count, height, width), "labels": labels}


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# ------------------------------------------------------------------------------ forward


def test_scalable_reconstruction_forward_and_loss() -> None:
    torch.manual_seed(0)
    model = create_model("tiny-cityscapes-reconstruction-scalable").train()
    batch = {"image": scene_images(2, 50, 70)}
    out = model(batch)
    assert out["x_hat"].shape == (2, 3, 50, 70)
    assert out["y_hat"]["enhancement"].shape == out["y_hat"]["base"].shape == (2, 32, 2, 3)
    assert set(out["likelihoods"]) == set(out["bpp"]) == {"base", "enhancement"}
    expected = -torch.log2(out["likelihoods"]["enhancement"]["y"]).sum() / (2 * 50 * 70)
    torch.testing.assert_close(out["bpp"]["enhancement"], expected)
    terms = model.loss(batch, out)
    torch.testing.assert_close(terms["distortion"], rmse255(out["x_hat"], batch["image"]))
    rate = 1e-2 * (terms["bpp_enhancement"] + terms["bpp_base"])
    torch.testing.assert_close(terms["loss"], rate + terms["distortion"])
    assert not out["bpp"]["base"].requires_grad  # the base is frozen
    terms["loss"].backward()
    assert model.f_e.layers[0].weight.grad is not None


def test_segmentation_logits_reach_the_label_resolution() -> None:
    torch.manual_seed(0)
    model = create_model("tiny-cityscapes-segmentation-scalable").train()
    batch = seg_batch(2, 64, 96)
    out = model(batch)
    assert out["segmentation"]["out"].shape == (2, 19, 64, 96)
    assert out["segmentation"]["aux"].shape == (2, 19, 64, 96)
    terms = model.loss(batch, out)
    assert terms["distortion"] > 0 and "rmse255" not in terms
    half = {"image": batch["image"], "labels": batch["labels"][:, ::2, ::2]}  # coarser labels
    assert torch.isfinite(model.loss(half, out)["distortion"])
    terms["loss"].backward()


def test_base_stays_frozen_and_bit_identical_while_training() -> None:
    torch.manual_seed(0)
    model = create_model("tiny-cityscapes-segmentation-scalable")
    before = snapshot(model.base)
    model.train()
    assert not model.base.training and all(not m.training for m in model.base.modules())
    assert all(not p.requires_grad for p in model.base.parameters())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)  # even given every parameter
    batch = seg_batch(2, 64, 64)
    for _ in range(3):
        terms = model.loss(batch, model(batch))
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
    after = snapshot(model.base)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN buffers
    assert not model.base.training
    trainable = {id(p) for p in model.trainable_parameters()}
    assert trainable and not trainable & {id(p) for p in model.base.parameters()}


def test_conditioning_scalable_uses_the_base_standalone_ignores_it() -> None:
    torch.manual_seed(0)
    batch = {"image": scene_images(1, 64, 64)}
    for name, depends in (("tiny-cityscapes-reconstruction-scalable", True),
                          ("tiny-cityscapes-reconstruction-standalone-independent", False)):
        model = create_model(name).eval()
        spread(model.base.f_b, model.f_e)
        with torch.no_grad():
            first = model(batch)["likelihoods"]["enhancement"]["y"]
            model.base.f_b.layers[-1].weight.mul_(3.0)  # another base latent
            second = model(batch)["likelihoods"]["enhancement"]["y"]
        assert torch.equal(first, second) is not depends, name


def test_standalone_refit_trains_only_the_entropy_model() -> None:
    torch.manual_seed(0)
    scalable = create_model("tiny-cityscapes-reconstruction-scalable")
    refit = create_model("tiny-cityscapes-reconstruction-standalone-refit", base=scalable.base)
    refit.init_from(scalable)
    assert all(torch.equal(a, b) for a, b in zip(scalable.state_dict().values(), refit.state_dict().values()))
    trainable = {id(p) for p in refit.trainable_parameters()}
    assert trainable == {id(p) for p in refit.entropy_model.parameters()}
    fixed_before = snapshot(refit.f_e) | {f"g_e.{k}": v for k, v in snapshot(refit.g_e).items()}
    entropy_before = snapshot(refit.entropy_model)
    optimizer = torch.optim.Adam(refit.trainable_parameters(), lr=1e-2)
    refit.train()
    assert not refit.f_e.training and refit.entropy_model.training
    batch = {"image": scene_images(2, 64, 64)}
    terms = refit.loss(batch, refit(batch))
    optimizer.zero_grad()
    terms["loss"].backward()
    optimizer.step()
    fixed_after = snapshot(refit.f_e) | {f"g_e.{k}": v for k, v in snapshot(refit.g_e).items()}
    assert all(torch.equal(fixed_before[k], fixed_after[k]) for k in fixed_before)
    assert any(not torch.equal(v, refit.entropy_model.state_dict()[k]) for k, v in entropy_before.items())


def test_init_from_rejects_another_target() -> None:
    segmentation = create_model("tiny-cityscapes-segmentation-scalable")
    refit = create_model("tiny-cityscapes-reconstruction-standalone-refit")
    with pytest.raises(ValueError, match="target"):
        refit.init_from(segmentation)


def test_direct_modes() -> None:
    torch.manual_seed(0)
    recon = create_model("tiny-cityscapes-reconstruction-direct").eval()
    batch = {"image": scene_images(2, 64, 64)}
    with torch.no_grad():
        out = recon(batch)
        expected = recon.base.reconstruct(out["y_hat"]["base"], out["padding"])
    assert set(out["bpp"]) == {"base"}
    assert torch.equal(out["x_hat"], expected)
    assert recon.trainable_parameters() == []
    seg = create_model("tiny-cityscapes-segmentation-direct").train()
    batch = seg_batch(2, 64, 64)
    out = seg(batch)
    assert set(out["y_hat"]) == {"base"} and out["segmentation"]["out"].shape == (2, 19, 64, 64)
    terms = seg.loss(batch, out)
    assert float(terms["bpp_enhancement"]) == 0.0
    terms["loss"].backward()
    assert seg.g_e.layers[0].weight.grad is not None


def test_codec_id_names_the_base_architecture() -> None:
    first = create_model("tiny-cityscapes-reconstruction-scalable")
    again = create_model("tiny-cityscapes-reconstruction-scalable", rate_weight=0.5)
    other_base = create_model(
        "tiny-cityscapes-reconstruction-scalable", base_overrides={"latent_ch": 16}
    )
    assert first.codec_id == again.codec_id  # rate_weight is training-only
    assert first.codec_id != other_base.codec_id
    assert first.codec_id.startswith("tiny-cityscapes-reconstruction-scalable@")


@pytest.mark.parametrize(
    "name", ["tiny-depth-base", "tiny-cityscapes-reconstruction-scalable",
             "tiny-coco-reconstruction-direct"]
)
def test_codec_id_from_config_is_the_built_models_and_identified(name: str) -> None:
    """Registry ids computed from configs alone (as the decoder's error message does) are
    those of the built models; a fingerprint names its default registry codec."""
    model = create_model(name)
    assert codec_id_from_config(name, model_config(name)) == model.codec_id
    assert identify_codec(codec_fingerprint(model.codec_id)) == model.codec_id
    assert identify_codec(codec_fingerprint(model.codec_id + "x")) is None


# ------------------------------------------------------------------------------ bitstreams


@pytest.mark.parametrize(
    "name", ["tiny-cityscapes-reconstruction-scalable", "tiny-cityscapes-segmentation-scalable",
             "tiny-coco-reconstruction-standalone-independent"]
)
def test_layered_round_trip_is_bit_exact_on_77x131(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    spread(model.base.f_b, model.f_e)
    image = scene_images(1, 77, 131)[0]
    coded = model.compress_latents(image)
    data = coded.to_bytes()
    assert set(coded.layers) == {"base", "enhancement"}
    for layer in ("base", "enhancement"):
        assert int((coded.y_hat[layer] != 0).sum()) > 20, f"trivial {layer} latent"
    out = model.decompress(data, layers="all")
    for layer in ("base", "enhancement"):
        assert torch.equal(out["y_hat"][layer], coded.y_hat[layer]), layer
    assert out["bpp_actual"] == out["bpp_actual_decoded"] == len(data) * 8 / (77 * 131)
    if "segmentation" in name:
        assert out["segmentation"]["out"].shape == (1, 19, 77, 131)
        assert out["labels"].shape == (1, 77, 131) and int(out["labels"].max()) < 19
    else:
        assert out["x_hat"].shape == out["x_hat_base"].shape == (1, 3, 77, 131)

    # the base layer decodes alone, even when the enhancement payload is corrupt
    corrupt = bytearray(data)
    corrupt[-2] ^= 0x5A  # the enhancement payload comes last
    base = model.decompress(bytes(corrupt), layers="base")
    assert torch.equal(base["y_hat"]["base"], coded.y_hat["base"])
    assert "enhancement" not in base["y_hat"]
    base_stream = pack(model.codec_id, (77, 131), coded.padding, {"base": coded.layers["base"]})
    assert base["bpp_actual_decoded"] == len(base_stream) * 8 / (77 * 131) < base["bpp_actual"]
    with pytest.raises(BitstreamError, match="enhancement"):
        model.decompress(bytes(corrupt), layers="all")
    # a stream without the enhancement layer still gives its base
    only_base = model.decompress(base_stream, layers="base")
    assert torch.equal(only_base["y_hat"]["base"], coded.y_hat["base"])


def test_enhancement_stream_is_not_decoded_by_another_codec() -> None:
    torch.manual_seed(0)
    scalable = create_model("tiny-cityscapes-reconstruction-scalable").eval()
    standalone = create_model("tiny-cityscapes-reconstruction-standalone-independent").eval()
    data = scalable.compress(scene_images(1, 32, 64)[0])
    with pytest.raises(BitstreamError) as err:
        standalone.decompress(data)
    assert scalable.codec_id in str(err.value) and standalone.codec_id in str(err.value)


# ------------------------------------------------------------------ actual vs estimated rate

PIXELS = 128 * 256
FRAMING_BITS = 8 + 16 + 64  # per payload: flag byte, 16-bit end check, 64-bit rANS flush
WORD_BITS = 32  # an rANS stream is a whole number of 4-byte words


@pytest.fixture(scope="module")
def synthetic_scenes(tmp_path_factory) -> dict[str, torch.Tensor]:
    """4 train and 2 val scenes of 128 x 256 from the synthetic dataset generator."""
    root = tmp_path_factory.mktemp("scenes")
    generate_dataset(root, train=4, val=2, height=128, width=256, seed=0, workers=1)
    return {
        split: torch.stack([
            rgb_to_tensor(open_image(path))
            for path in sorted((root / "leftImg8bit" / split).rglob("*_leftImg8bit.png"))
        ])
        for split in ("train", "val")
    }


def train_briefly(images: torch.Tensor, steps: int, **overrides) -> torch.nn.Module:
    """A tiny scalable reconstruction codec (over an untrained frozen tiny-detection-base)
    trained ``steps`` Adam steps (lr 1e-3) on batches of 2 of ``images``; eval mode."""
    torch.manual_seed(0)
    model = create_model("tiny-coco-reconstruction-scalable", **overrides)
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-3)
    model.train()
    for step in range(steps):
        start = 2 * step % len(images)
        batch = {"image": images[start : start + 2]}
        terms = model.loss(batch, model(batch))
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
    return model.eval()


def measure_bits(model: torch.nn.Module, image: torch.Tensor) -> dict:
    """Bits of one image: forward-pass estimate and decode-time estimate per layer, payload
    per layer, container header, and the actual total (all bytes x 8)."""
    with torch.no_grad():
        bpp = model({"image": image[None]})["bpp"]
    coded = model.compress_latents(image)
    data = coded.to_bytes()
    return {
        "estimated": {k: float(v) * PIXELS for k, v in bpp.items()},
        "decode_time": dict(coded.estimated_bits),
        "payload": {k: 8 * len(v) for k, v in coded.layers.items()},
        "header": 8 * unpack(data).header_size,
        "actual": 8 * len(data),
    }


@pytest.mark.slow
def test_low_rate_point_excess_is_header_framing_and_a_small_coding_gap(synthetic_scenes):
    """Low-rate point: the tiny preset (N = 32) at its rate_weight 1e-2, 40 steps on the
    synthetic scenes, coded at 128 x 256 (held-out scenes).

    Container overhead of a two-layer stream at 128 x 256: a 29-30 byte header (232-240
    bits; format version 2, taskcodecs.coding.bitstream) plus, per payload, a flag byte, a 16-bit
    end check and the 64-bit rANS flush (88 bits), so 408-416 bits in all. The 3 % bound
    on actual vs estimated bpp can hold only above 408 / (0.03 x 32768) = 0.415 bpp
    (0.236-0.244 bpp for the header alone). This codec codes ~0.28 bpp, below that: measured
    on the 2-core dev machine, estimated 9270 and 9098 bits (0.283, 0.278 bpp), actual 9688
    and 9464 bits (+4.5 %, +4.0 %) = header 232 + framing 176 + coding gap +10 / -42 bits.
    So here the test checks that the excess is *exactly* header + framing + a small coding
    gap (< 3 % of the estimate): the overhead is measured, not hidden. A lower rate_weight
    does not lift this codec over 0.415 bpp (1e-3: 0.26-0.28 bpp after 60 steps, less
    after 120): its rate is capped by N = 32 and the short training, not by the rate term.
    """
    model = train_briefly(synthetic_scenes["train"], steps=40, rate_weight=1e-2)
    for image in synthetic_scenes["val"]:
        bits = measure_bits(model, image)
        estimated = sum(bits["estimated"].values())
        assert estimated / PIXELS < 0.415, f"not a low-rate point: {bits}"
        # exact accounting: every byte is header or payload
        assert bits["actual"] == bits["header"] + sum(bits["payload"].values())
        records = sum(5 + max(1, -(-(n // 8).bit_length() // 7)) for n in bits["payload"].values())
        assert bits["header"] == 8 * (16 + records) and 232 <= bits["header"] <= 240
        coding_gap = 0.0
        for layer in ("base", "enhancement"):
            est, dec, paid = (bits[k][layer] for k in ("estimated", "decode_time", "payload"))
            context_gap = dec - est  # parallel (training) vs sequential (decode-time) context
            table_gap = paid - FRAMING_BITS - dec  # scale snapping, CDF quantization, words
            assert abs(context_gap) <= 0.03 * est + 8, (layer, bits)
            assert -WORD_BITS <= table_gap <= 0.03 * dec + WORD_BITS, (layer, bits)
            coding_gap += context_gap + table_gap
        excess = bits["actual"] - estimated
        overhead = bits["header"] + 2 * FRAMING_BITS
        assert excess == pytest.approx(overhead + coding_gap)  # nothing unaccounted for
        assert abs(coding_gap) < 0.03 * estimated, bits  # the coder itself is within 3 %
        print(f"low-rate: est {estimated:.0f} bit ({estimated / PIXELS:.4f} bpp), actual "
              f"{bits['actual']} bit ({bits['actual'] / PIXELS:.4f} bpp, "
              f"{100 * (bits['actual'] / estimated - 1):+.2f} %), header {bits['header']}, "
              f"framing {2 * FRAMING_BITS}, coding gap {coding_gap:+.0f} bit")


@pytest.mark.slow
def test_actual_bpp_within_3_percent_of_the_estimate_at_a_high_rate_point(synthetic_scenes):
    """High-rate point: the tiny preset with the paper's latent width N = 192 at
    rate_weight 1e-2, 40 steps on the synthetic scenes, coded at 128 x 256 (held-out
    scenes): actual bits (all bytes x 8, header included) within 3 % of the forward-pass
    estimate.

    The fixed overhead of 408-416 bits (see the low-rate test) needs an estimate above
    0.415 bpp for the bound to be reachable; this codec codes ~2.7 bpp, where the overhead
    is 0.5 %. Measured on the 2-core dev machine: estimated 87010 and 88055 bits (2.655,
    2.687 bpp), actual 86808 and 88696 bits (-0.23 %, +0.73 %), header 232 bits. (With
    CompressAI's round-up scale indexes the payloads were ~1.8 % larger, +1.6 % / +2.6 %.)
    """
    model = train_briefly(
        synthetic_scenes["train"], steps=40, rate_weight=1e-2, latent_ch=192
    )
    for image in synthetic_scenes["val"]:
        bits = measure_bits(model, image)
        estimated = sum(bits["estimated"].values())
        assert estimated / PIXELS > 0.415, f"not above the overhead threshold: {bits}"
        assert bits["actual"] == bits["header"] + sum(bits["payload"].values())
        assert abs(bits["actual"] / estimated - 1) < 0.03, bits
        print(f"high-rate: est {estimated:.0f} bit ({estimated / PIXELS:.4f} bpp), actual "
              f"{bits['actual']} bit ({bits['actual'] / PIXELS:.4f} bpp, "
              f"{100 * (bits['actual'] / estimated - 1):+.2f} %), header {bits['header']}")


def test_an_enhancement_is_given_its_base_and_the_registry_builds_it_by_name():
    from taskcodecs.models.enhancement import EnhancementCodec, EnhancementCodecConfig

    with pytest.raises(TypeError, match="an enhancement is given its base"):
        EnhancementCodec(EnhancementCodecConfig())
    model = create_model("tiny-cityscapes-reconstruction-scalable")  # base built from base_model
    assert model.base.registry_name == "tiny-depth-base" and model.identify is identify_codec
