"""The model registry: names, typed configs, every entry builds and trains, checkpoints."""

from __future__ import annotations

import json
import time

import pytest
import torch

from infra.config import ConfigError
from taskcodecs import create_model as lazy_create_model
from taskcodecs.experiments.registry import create_model, list_models, model_config, register_model
from taskcodecs.models.base import BaseCodecConfig
from taskcodecs.models.common import architecture_dict, make_codec_id
from taskcodecs.models.enhancement import EnhancementCodecConfig
from taskcodecs.runs.checkpoint import CheckpointError, save_checkpoint
from taskcodecs.runs.codecs import load_codec, load_weights, save_codec

TINY = list_models("tiny-*")
PAPER = list_models("paper-*")
ENHANCEMENTS = [
    f"{dataset}-{target}-{mode}"
    for dataset, targets in (("cityscapes", ("reconstruction", "segmentation")), ("coco", ("reconstruction",)))
    for target in targets
    for mode in ("scalable", "direct", "standalone-refit", "standalone-independent")
]


def tiny_batch(name: str, height: int = 64, width: int = 128) -> dict:
    generator = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(2, 3, height, width, generator=generator)}
    if name.endswith("depth-base"):
        batch["disparity"] = torch.rand(2, 1, height, width, generator=generator) * 20
        batch["disparity_mask"] = torch.ones(2, 1, height, width, dtype=torch.bool)
    if name.endswith("detection-base"):
        box = torch.tensor([[8.0, 8.0, 40.0, 30.0]])
        batch["targets"] = [{"boxes": box, "labels": torch.tensor([1])} for _ in range(2)]
    if "segmentation" in name:
        batch["labels"] = torch.randint(0, 20, (2, height, width), generator=generator)
    return batch


def test_names_cover_every_codec_in_both_presets() -> None:
    for preset in ("tiny", "paper"):
        expected = {f"{preset}-depth-base", f"{preset}-detection-base"}
        expected |= {f"{preset}-{rest}" for rest in ENHANCEMENTS}
        expected |= {f"{preset}-compressai-{a}" for a in ("bmshj2018-hyperprior", "mbt2018-mean")}
        assert set(list_models(f"{preset}-*")) == expected
    assert list_models() == sorted(TINY + PAPER)
    assert list_models("*-segmentation-*") == sorted(n for n in TINY + PAPER if "segmentation" in n)


def test_model_config_is_typed_and_validated() -> None:
    cfg = model_config("paper-depth-base", reward_weight=0.1)
    assert isinstance(cfg, BaseCodecConfig)
    assert (cfg.latent_ch, cfg.widths, cfg.analysis_blocks, cfg.task_blocks) == (192, (24, 48, 192), 3, 1)
    assert cfg.reward_weight == 0.1 and cfg.half_resolution
    tiny = model_config("tiny-coco-reconstruction-scalable")
    assert isinstance(tiny, EnhancementCodecConfig)
    assert (tiny.latent_ch, tiny.widths, tiny.base_model) == (32, (8, 16, 32), "tiny-detection-base")
    nested = model_config("tiny-cityscapes-reconstruction-scalable", **{"base_overrides.latent_ch": 16})
    assert nested.base_overrides == {"latent_ch": 16}
    with pytest.raises(ConfigError, match="reward_wieght"):
        model_config("tiny-depth-base", reward_wieght=0.1)
    with pytest.raises(ConfigError, match="latent_ch"):
        model_config("tiny-depth-base", latent_ch="big")
    with pytest.raises(ConfigError, match="reward_weight must be >= 0"):
        model_config("tiny-depth-base", reward_weight=-1)
    with pytest.raises(ConfigError, match="did you mean tiny-depth-base"):
        create_model("tiny-depht-base")


def test_register_model_guards_names() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny-depth-base", BaseCodecConfig(), lambda cfg, name: None)
    with pytest.raises(ValueError, match="'@'"):
        register_model("x@y", BaseCodecConfig(), lambda cfg, name: None)
    with pytest.raises(TypeError, match="dataclass instance"):
        register_model("brand-new", {"latent_ch": 8}, lambda cfg, name: None)


def test_codec_id_is_name_and_architecture_hash() -> None:
    model = lazy_create_model("tiny-depth-base")
    expected = make_codec_id("tiny-depth-base", architecture_dict(model.config))
    assert model.codec_id == expected
    assert create_model("tiny-depth-base", reward_weight=0.3, rate_weight=5.0).codec_id == expected
    assert create_model("tiny-depth-base", latent_ch=16).codec_id != expected
    name, digest = expected.split("@")
    assert name == "tiny-depth-base" and len(digest) == 8 and int(digest, 16) >= 0


@pytest.mark.parametrize("name", TINY)
def test_every_tiny_entry_runs_forward_and_backward(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).train()
    batch = tiny_batch(name, 32, 64)
    start = time.perf_counter()
    out = model(batch)
    terms = model.loss(batch, out)
    assert torch.isfinite(terms["loss"])
    if model.trainable_parameters():
        terms["loss"].backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads)
    else:  # direct reconstruction: the base's g_a, nothing to train
        assert not terms["loss"].requires_grad
    assert time.perf_counter() - start < 30  # about a second on a free CPU core


@pytest.mark.slow
@pytest.mark.parametrize("name", PAPER)
def test_every_paper_entry_builds(name: str) -> None:
    """Paper presets are built; those without a ResNet-50 also run one forward at 64 x 64."""
    torch.manual_seed(0)
    model = create_model(name)
    cfg = model.config
    if "compressai" in name:  # the zoo's sizes of qualities 1-5
        assert (cfg.N, cfg.M) == (128, 192)
    else:
        assert cfg.latent_ch == 192 and tuple(cfg.widths) == (24, 48, 192)
    if name.endswith("detection-base") or "segmentation" in name:
        return  # Faster R-CNN / DeepLabV3 on ResNet-50: construction only
    start = time.perf_counter()
    model.eval()
    with torch.no_grad():
        out = model(tiny_batch(name, 64, 64))
    assert out["x_hat"].shape == (2, 3, 64, 64)
    assert time.perf_counter() - start < 60


# ------------------------------------------------------------------------------ checkpoints


def test_save_and_load_codec_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    base = create_model("tiny-depth-base", reward_weight=0.1)
    enhancement = create_model("tiny-cityscapes-segmentation-scalable", base=base)
    with torch.no_grad():
        for parameter in enhancement.parameters():
            parameter.add_(0.01)
    path = save_codec(enhancement, tmp_path / "best", {"step": 7})
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["model_name"] == "tiny-cityscapes-segmentation-scalable"
    assert meta["codec_id"] == enhancement.codec_id and meta["step"] == 7
    assert meta["model_config"]["base_overrides"]["reward_weight"] == 0.1
    loaded = load_codec(tmp_path / "best", expect="tiny-cityscapes-segmentation-scalable")
    assert not loaded.training and loaded.codec_id == enhancement.codec_id
    assert loaded.base.config.reward_weight == 0.1
    reference = enhancement.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in loaded.state_dict().items())
    with pytest.raises(CheckpointError, match="expected tiny-depth-base"):
        load_codec(tmp_path / "best", expect="tiny-depth-base")


def test_wrong_architecture_and_foreign_files_give_checkpoint_errors(tmp_path) -> None:
    model = create_model("tiny-depth-base")
    save_codec(model, tmp_path / "depth")
    other = create_model("tiny-depth-base", latent_ch=16)
    with pytest.raises(CheckpointError) as err:
        load_weights(other, tmp_path / "depth")
    assert model.codec_id in str(err.value) and other.codec_id in str(err.value)

    save_checkpoint(tmp_path / "plain", model)  # weights without codec metadata
    with pytest.raises(CheckpointError, match="not a codec checkpoint"):
        load_codec(tmp_path / "plain")
    with pytest.raises(CheckpointError, match="another architecture|do not fit|do not match"):
        save_checkpoint(tmp_path / "mismatch", create_model("tiny-detection-base"))
        load_weights(model, tmp_path / "mismatch")

    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 64)
    (tmp_path / "garbage.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="garbage.json"):
        load_codec(tmp_path / "garbage")
    (tmp_path / "noweights.json").write_text(json.dumps({"format_version": 1, **json.loads(
        (tmp_path / "depth.json").read_text())}))
    (tmp_path / "noweights.safetensors").write_bytes(b"this is not safetensors")
    with pytest.raises(CheckpointError, match="noweights.safetensors"):
        load_codec(tmp_path / "noweights")
    with pytest.raises(CheckpointError, match="not found"):
        load_codec(tmp_path / "missing")
