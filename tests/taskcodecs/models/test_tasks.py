"""Task heads (tiny: train and eval steps; paper: construction), losses, pretrained loading."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import mobilenet_v3_large

from taskcodecs.models import tasks
from taskcodecs.models.losses import depth_loss, detection_loss, masked_rmse, segmentation_loss
from taskcodecs.models.pretrained import pretrained_weight_files
from taskcodecs.models.tasks import build_task_model, set_detector_resolution


def _detection_batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    images = [torch.rand(3, 128, 256) for _ in range(2)]
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 70.0, 60.0], [120.0, 30.0, 200.0, 110.0]]),
         "labels": torch.tensor([3, 1])},
        {"boxes": torch.tensor([[40.0, 20.0, 100.0, 90.0]]), "labels": torch.tensor([18])},
    ]
    return images, targets


def _grad_norm(parameters) -> float:
    return sum(float(p.grad.abs().sum()) for p in parameters if p.grad is not None)


def test_tiny_detection_train_step_and_eval_outputs() -> None:
    torch.manual_seed(0)
    model = build_task_model("detection", "tiny")
    images, targets = _detection_batch()
    model.train()
    losses = model(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    loss = detection_loss(losses)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, sum(losses.values()))
    loss.backward()
    assert _grad_norm(model.backbone.parameters()) > 0
    assert _grad_norm(model.roi_heads.box_predictor.parameters()) > 0
    model.eval()
    with torch.no_grad():
        detections = model(images)
    assert len(detections) == 2
    for det in detections:
        assert det["boxes"].shape[1:] == (4,) and det["boxes"].shape[0] == det["scores"].shape[0]
        assert det["labels"].dtype == torch.int64
        if len(det["boxes"]):  # boxes come back in input pixels, inside the image
            assert det["boxes"][:, 2].max() <= 256 and det["boxes"][:, 3].max() <= 128
            assert det["labels"].min() >= 1 and det["labels"].max() <= 90


def test_detector_resize_is_identity_at_its_working_resolution() -> None:
    model = build_task_model("detection", "tiny").eval()
    image = torch.rand(3, 128, 256)
    batch, _ = model.transform([image])
    assert batch.image_sizes == [(128, 256)]
    mean = torch.tensor(model.transform.image_mean).view(3, 1, 1)
    std = torch.tensor(model.transform.image_std).view(3, 1, 1)
    torch.testing.assert_close(batch.tensors[0] * std + mean, image)  # only normalized
    set_detector_resolution(model, 64, 128)
    batch, _ = model.transform([image])
    assert batch.image_sizes == [(64, 128)]
    small = build_task_model("detection", "tiny", min_size=96, max_size=192)
    assert small.transform.min_size == (96,) and small.transform.max_size == 192


def test_tiny_depth_train_step_and_eval_shape() -> None:
    torch.manual_seed(0)
    model = build_task_model("depth", "tiny").train()
    x = torch.rand(2, 3, 64, 128)
    target = torch.rand(2, 1, 64, 128) * 40.0
    mask = target > 4.0
    loss = depth_loss(model(x)["out"], target, mask)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert _grad_norm(model.backbone.parameters()) > 0
    with torch.no_grad():
        out = model.eval()(x)["out"]
    assert out.shape == (2, 1, 64, 128)


def test_tiny_segmentation_train_step_and_eval_shapes() -> None:
    torch.manual_seed(0)
    model = build_task_model("segmentation", "tiny").train()
    x = torch.rand(2, 3, 64, 128)
    labels = torch.randint(0, 20, (2, 64, 128))  # 19 = ignore
    outputs = model(x)
    loss = segmentation_loss(outputs, labels)
    assert torch.isfinite(loss)
    loss.backward()
    assert _grad_norm(model.backbone.parameters()) > 0
    assert _grad_norm(model.aux_classifier.parameters()) > 0
    with torch.no_grad():
        outputs = model.eval()(x)
    assert outputs["out"].shape == (2, 19, 64, 128)
    assert outputs["aux"].shape == (2, 19, 64, 128)


def test_paper_presets_construct_with_the_paper_heads() -> None:
    detector = build_task_model("detection", "paper", min_size=512, max_size=1024)
    assert detector.roi_heads.box_predictor.cls_score.out_features == 91
    assert detector.transform.min_size == (512,) and detector.transform.max_size == 1024
    assert all(p.requires_grad for p in detector.parameters())  # random init: all trainable
    assert build_task_model("detection", "paper").transform.min_size == (800,)
    depth = build_task_model("depth", "paper")
    assert depth.classifier.low_classifier.out_channels == 1
    assert depth.classifier.high_classifier.out_channels == 1
    segmenter = build_task_model("segmentation", "paper")
    assert segmenter.classifier[-1].out_channels == 19
    assert segmenter.aux_classifier[-1].out_channels == 19


def test_segmentation_loss_is_twenty_times_main_plus_aux_cross_entropy() -> None:
    torch.manual_seed(0)
    out = torch.randn(2, 19, 4, 6, requires_grad=True)
    aux = torch.randn(2, 19, 4, 6)
    labels = torch.randint(0, 19, (2, 4, 6))
    labels[0, 0] = 19
    expected = 20 * F.cross_entropy(out, labels, ignore_index=19) + 20 * F.cross_entropy(
        aux, labels, ignore_index=19
    )
    torch.testing.assert_close(segmentation_loss({"out": out, "aux": aux}, labels), expected)
    main_only = segmentation_loss({"out": out}, labels)
    torch.testing.assert_close(main_only, 20 * F.cross_entropy(out, labels, ignore_index=19))
    changed = out.detach().clone()
    changed[0, :, 0] += 5.0  # logits at ignored pixels do not count
    torch.testing.assert_close(segmentation_loss({"out": changed}, labels), main_only)
    all_ignored = segmentation_loss({"out": out}, torch.full((2, 4, 6), 19))
    all_ignored.backward()
    assert float(all_ignored.detach()) == 0.0 and torch.isfinite(out.grad).all()
    with pytest.raises(ValueError, match="shape"):
        segmentation_loss({"out": out}, labels[:, :3])


def test_masked_rmse_counts_only_valid_pixels() -> None:
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 10.0]]]], requires_grad=True)
    target = torch.tensor([[[1.0, 4.0], [6.0, 0.0]]])  # (n, H, W) accepted
    mask = torch.tensor([[[True, True], [True, False]]])
    expected = ((0.0 + 4.0 + 9.0) / 3) ** 0.5
    assert float(masked_rmse(pred, target, mask).detach()) == pytest.approx(expected)
    assert float(depth_loss(pred, target, mask, scale=0.5).detach()) == pytest.approx(0.5 * expected)
    empty = masked_rmse(pred, target, torch.zeros_like(mask))
    empty.backward()
    assert float(empty.detach()) == 0.0 and torch.isfinite(pred.grad).all()
    with pytest.raises(TypeError, match="boolean"):
        masked_rmse(pred, target, mask.float())


def test_detection_loss_rejects_eval_outputs() -> None:
    with pytest.raises(TypeError, match="eval mode"):
        detection_loss([{"boxes": torch.zeros(0, 4)}])


def test_bad_task_preset_and_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown task"):
        build_task_model("classification")
    with pytest.raises(ValueError, match="unknown preset"):
        build_task_model("depth", "large")
    with pytest.raises(ValueError, match="detection head only"):
        build_task_model("depth", min_size=64)
    with pytest.raises(ValueError, match="no pretrained weights"):
        build_task_model("segmentation", "tiny", pretrained=True)


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """An empty torch hub cache and a network that fails at once; records download attempts."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    attempts: list[str] = []

    def no_network(url: str, dst: str, *args, **kwargs) -> None:
        attempts.append(url)
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return attempts


@pytest.mark.parametrize("task", ["detection", "depth", "segmentation"])
def test_pretrained_offline_error_names_url_and_cache_path(task: str, offline_hub: list[str]) -> None:
    ((url, path),) = pretrained_weight_files(task)
    assert path.parent == Path(torch.hub.get_dir()) / "checkpoints"
    with pytest.raises(RuntimeError) as info:
        build_task_model(task, "paper", pretrained=True)
    message = str(info.value)
    assert url in message and str(path) in message and "sha256sum" in message
    assert offline_hub == [url]  # tried once, after finding the cache empty


def test_pretrained_depth_backbone_loads_from_the_cache(offline_hub: list[str]) -> None:
    torch.manual_seed(0)
    ((_, path),) = pretrained_weight_files("depth")
    reference = mobilenet_v3_large(weights=None).state_dict()  # torchvision's file layout
    path.parent.mkdir(parents=True)
    torch.save(reference, path)
    model = build_task_model("depth", "paper", pretrained=True)
    assert offline_hub == []  # read from the cache, no download tried
    loaded = model.backbone.state_dict()
    assert len(loaded) == len([k for k in reference if k.startswith("features.")])
    for key, value in loaded.items():
        torch.testing.assert_close(value, reference["features." + key])


def test_pretrained_corrupt_cache_file_is_named(offline_hub: list[str]) -> None:
    ((_, path),) = pretrained_weight_files("segmentation")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="cannot read pretrained weights"):
        build_task_model("segmentation", "paper", pretrained=True)


def test_pretrained_detection_loads_and_freezes_like_torchvision(offline_hub: list[str]) -> None:
    torch.manual_seed(0)
    ((_, path),) = pretrained_weight_files("detection")
    reference = build_task_model("detection", "paper").state_dict()
    path.parent.mkdir(parents=True)
    torch.save(reference, path)
    model = build_task_model("detection", "paper", pretrained=True)
    assert offline_hub == []
    torch.testing.assert_close(model.state_dict(), reference)
    frozen = {n for n, p in model.backbone.body.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("conv1", "bn1", "layer1")) for n in frozen)
    assert all(p.requires_grad for n, p in model.named_parameters() if "layer4" in n)
    assert tasks.COCO_NUM_CLASSES == 91
