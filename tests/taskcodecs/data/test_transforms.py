"""Paired transforms: flips stay aligned, jitter is reproducible, resizes scale disparity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from taskcodecs.data.errors import DatasetError
from taskcodecs.data.transforms import (
    ColorJitter,
    draw_flip,
    hflip,
    hflip_boxes,
    open_image,
    resize_disparity,
    resize_image,
    resize_nearest,
    rgb_to_tensor,
    scaled_size,
)


def test_hflip_mirrors_last_axis():
    labels = torch.arange(12).reshape(3, 4)
    flipped = hflip(labels)
    assert flipped[:, 0].tolist() == labels[:, 3].tolist()
    assert torch.equal(hflip(flipped), labels)


def test_hflip_boxes_values_and_twice_is_identity():
    boxes = torch.tensor([[1.0, 2.0, 5.0, 7.0], [0.0, 0.0, 10.0, 3.5]])
    flipped = hflip_boxes(boxes, width=10)
    assert flipped.tolist() == [[5.0, 2.0, 9.0, 7.0], [0.0, 0.0, 10.0, 3.5]]
    assert torch.equal(hflip_boxes(flipped, width=10), boxes)


def test_flipped_box_still_covers_the_flipped_object():
    image = torch.zeros(3, 8, 12)
    box = torch.tensor([[2.0, 1.0, 5.0, 4.0]])  # pixel columns 2..4, rows 1..3
    image[:, 1:4, 2:5] = 1.0
    x1, y1, x2, y2 = hflip_boxes(box, width=12)[0].int().tolist()
    flipped = hflip(image)
    assert flipped[:, y1:y2, x1:x2].min() == 1.0
    assert flipped.sum() == image.sum() == flipped[:, y1:y2, x1:x2].sum()


def test_draw_flip_uses_the_given_generator_only():
    draws = [draw_flip(np.random.default_rng([3, i])) for i in range(400)]
    again = [draw_flip(np.random.default_rng([3, i])) for i in range(400)]
    assert draws == again
    assert 150 < sum(draws) < 250  # p = 0.5
    assert not any(draw_flip(np.random.default_rng(i), probability=0.0) for i in range(20))
    assert all(draw_flip(np.random.default_rng(i), probability=1.0) for i in range(20))


def test_color_jitter_draw_is_reproducible_and_in_range():
    jitters = [ColorJitter.draw(np.random.default_rng([0, 0, i])) for i in range(50)]
    assert jitters[7] == ColorJitter.draw(np.random.default_rng([0, 0, 7]))
    for jitter in jitters:
        for factor in (jitter.brightness, jitter.contrast, jitter.saturation):
            assert 0.5 <= factor <= 1.5
        assert sorted(jitter.order) == [0, 1, 2]
    assert len({j.order for j in jitters}) > 1  # the order is random too
    assert len({j.brightness for j in jitters}) == 50


def test_color_jitter_operations():
    image = torch.rand(3, 6, 7, generator=torch.Generator().manual_seed(0))
    identity = ColorJitter.draw(np.random.default_rng(0), 0.0, 0.0, 0.0)
    assert torch.equal(identity(image), image)
    brighter = ColorJitter(brightness=1.3, contrast=1.0, saturation=1.0, order=(0, 1, 2))
    assert torch.allclose(brighter(image), (image * 1.3).clamp(0, 1))
    gray = image[:1].expand(3, -1, -1).clone()
    saturate = ColorJitter(brightness=1.0, contrast=1.0, saturation=1.5, order=(2, 0, 1))
    # saturation leaves gray alone (torchvision's gray weights sum to 0.9999, hence atol)
    assert torch.allclose(saturate(gray), gray, atol=1e-3)
    assert not torch.allclose(saturate(image), image, atol=1e-2)
    flat = ColorJitter(brightness=1.0, contrast=0.0, saturation=1.0, order=(1, 0, 2))(image)
    assert float(flat.std()) < 1e-6  # contrast 0 -> uniform gray
    out = ColorJitter.draw(np.random.default_rng(1))(image)
    assert out.min() >= 0 and out.max() <= 1 and out.dtype == torch.float32


def test_resize_image_and_nearest():
    image = torch.rand(3, 16, 32)
    assert scaled_size(16, 32, 0.5) == (8, 16)
    assert resize_image(image, (8, 16)).shape == (3, 8, 16)
    constant = torch.full((3, 16, 32), 0.25)
    assert torch.allclose(resize_image(constant, (8, 16)), torch.full((3, 8, 16), 0.25))
    labels = torch.arange(4).repeat_interleave(2).repeat(4, 1)  # [4, 8], 2-px blocks
    small = resize_nearest(labels, (2, 4))
    assert small.dtype == torch.int64
    assert small.tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]]
    mask = torch.zeros(1, 4, 8, dtype=torch.bool)
    mask[..., :4] = True
    assert resize_nearest(mask, (2, 4)).dtype == torch.bool
    assert resize_nearest(mask, (2, 4))[0, 0].tolist() == [True, True, False, False]


def test_resize_disparity_scales_values_by_width_ratio():
    disparity = torch.tensor([[[8.0, 8.0, 0.0, 0.0], [8.0, 8.0, 0.0, 0.0]]])
    mask = disparity > 0
    half, half_mask = resize_disparity(disparity, mask, (1, 2))
    assert half.tolist() == [[[4.0, 0.0]]]
    assert half_mask.tolist() == [[[True, False]]]
    double, _ = resize_disparity(disparity, mask, (4, 8))
    assert double.max() == 16.0


def test_rgb_to_tensor_converts_modes(tmp_path):
    gray = Image.fromarray(np.array([[0, 255], [51, 102]], dtype=np.uint8), "L")
    tensor = rgb_to_tensor(gray)
    assert tensor.shape == (3, 2, 2) and tensor.dtype == torch.float32
    assert torch.equal(tensor[0], tensor[2])
    assert torch.allclose(tensor[0], torch.tensor([[0.0, 1.0], [0.2, 0.4]]))
    cmyk = Image.fromarray(np.zeros((2, 2, 4), dtype=np.uint8), "CMYK")
    assert torch.equal(rgb_to_tensor(cmyk), torch.ones(3, 2, 2))  # no ink = white


def test_open_image_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(DatasetError, match="nope.png.*not found"):
        open_image(missing)
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"definitely not an image")
    with pytest.raises(DatasetError, match="garbage.png.*cannot read"):
        open_image(garbage)
    good = tmp_path / "good.png"
    noise = np.random.default_rng(0).integers(0, 256, (16, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(good)  # noise does not compress: cutting it cuts pixels
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DatasetError, match="truncated.png"):
        open_image(truncated)
