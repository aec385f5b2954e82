"""CityscapesDataset on hand-written fixtures in the official layout (16x32 images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from taskcodecs.data.cityscapes import CityscapesDataset
from taskcodecs.data.errors import DatasetError
from taskcodecs.data.transforms import ColorJitter, draw_flip

H, W = 16, 32
# labelId -> expected trainId, written out by hand (not read from the table under test)
LABEL_CASES = {7: 0, 8: 1, 11: 2, 26: 13, 33: 18, 0: 19, 1: 19, 9: 19, 29: 19, 255: 19}
# 2x2-constant blocks so that any nearest-neighbour downscale by 2 picks the same values
BLOCK_IDS = np.array(list(LABEL_CASES), dtype=np.uint8)


def _paths(root: Path, split: str, city: str, stem: str) -> dict[str, Path]:
    return {
        "image": root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
        "labels": root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png",
        "disparity": root / "disparity" / split / city / f"{stem}_disparity.png",
    }


def write_item(root: Path, split: str, city: str, stem: str, seed: int) -> dict[str, np.ndarray]:
    """Write one image / labelIds / 16-bit disparity triple; return the arrays written."""
    rng = np.random.default_rng(seed)
    blocks = (H // 2, W // 2)
    arrays = {
        "image": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        "labels": np.kron(rng.choice(BLOCK_IDS, blocks), np.ones((2, 2), np.uint8)),
        "disparity": np.kron(
            rng.choice(np.array([0, 0, 1, 257, 513, 12345, 65535]), blocks), np.ones((2, 2))
        ).astype(np.uint16),
    }
    for kind, path in _paths(root, split, city, stem).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arrays[kind]).save(path)
    return arrays


@pytest.fixture
def cityscapes(tmp_path) -> tuple[Path, dict[str, dict[str, np.ndarray]]]:
    """train: zurich/b, aachen/a, aachen/c (written out of order); val: one image."""
    root = tmp_path / "cityscapes"
    written = {
        "zurich_000001_000019": write_item(root, "train", "zurich", "zurich_000001_000019", 1),
        "aachen_000002_000019": write_item(root, "train", "aachen", "aachen_000002_000019", 2),
        "aachen_000000_000019": write_item(root, "train", "aachen", "aachen_000000_000019", 3),
    }
    write_item(root, "val", "lindau", "lindau_000000_000019", 4)
    return root, written


def test_discovery_is_sorted_by_city_then_name(cityscapes):
    root, _ = cityscapes
    dataset = CityscapesDataset(root, "train")
    assert len(dataset) == 3
    assert dataset.names == ["aachen_000000_000019", "aachen_000002_000019",
                             "zurich_000001_000019"]
    assert [dataset[i]["name"] for i in range(3)] == dataset.names
    assert [dataset[i]["index"] for i in range(3)] == [0, 1, 2]
    assert len(CityscapesDataset(root, "val")) == 1


def test_decoded_values_are_exact(cityscapes):
    root, written = cityscapes
    dataset = CityscapesDataset(root, "train")
    for item in dataset:
        arrays = written[item["name"]]
        assert item["image"].dtype == torch.float32 and item["image"].shape == (3, H, W)
        expected_image = torch.from_numpy(arrays["image"]).permute(2, 0, 1).float() / 255
        assert torch.equal(item["image"], expected_image)

        p = arrays["disparity"].astype(np.float64)
        assert item["disparity"].shape == (1, H, W) and item["disparity"].dtype == torch.float32
        assert item["disparity_mask"].dtype == torch.bool
        assert item["disparity_mask"][0].numpy().tolist() == (p > 0).tolist()
        expected = np.where(p > 0, (p - 1) / 256, 0.0)
        assert np.array_equal(item["disparity"][0].numpy(), expected.astype(np.float32))

        assert item["labels"].dtype == torch.int64 and item["labels"].shape == (H, W)
        expected_labels = np.vectorize(LABEL_CASES.get)(arrays["labels"])
        assert item["labels"].numpy().tolist() == expected_labels.tolist()
    # the fixture really exercises the special values
    all_p = np.concatenate([a["disparity"].ravel() for a in written.values()])
    assert {0, 1, 65535} <= set(all_p.tolist())
    all_labels = torch.cat([dataset[i]["labels"].ravel() for i in range(3)])
    assert 19 in all_labels.tolist() and 0 in all_labels.tolist()


def test_targets_choose_what_is_loaded(cityscapes):
    root, _ = cityscapes
    only_labels = CityscapesDataset(root, "train", targets=("labels",))
    assert set(only_labels[0]) == {"image", "labels", "name", "index"}
    only_disparity = CityscapesDataset(root, "train", targets=("disparity",))
    assert set(only_disparity[0]) == {"image", "disparity", "disparity_mask", "name", "index"}
    with pytest.raises(ValueError, match="depth"):
        CityscapesDataset(root, "train", targets=("depth",))


def test_root_without_disparity_folder_loads_labels(cityscapes):
    root, _ = cityscapes
    for path in sorted((root / "disparity").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (root / "disparity").rmdir()
    dataset = CityscapesDataset(root, "train", targets=("labels",))
    assert dataset[1]["labels"].shape == (H, W)
    with pytest.raises(DatasetError, match=r"disparity.*not found.*targets="):
        CityscapesDataset(root, "train")


def test_scale_halves_sizes_and_disparity_values(cityscapes):
    root, written = cityscapes
    full = CityscapesDataset(root, "train")[0]
    half = CityscapesDataset(root, "train", scale=0.5)[0]
    assert half["image"].shape == (3, H // 2, W // 2)
    assert half["labels"].shape == (H // 2, W // 2)
    assert half["disparity"].shape == half["disparity_mask"].shape == (1, H // 2, W // 2)
    # the fixture is constant on 2x2 blocks, so the nearest pick is any pixel of the block
    assert torch.equal(half["labels"], full["labels"][::2, ::2])
    assert torch.equal(half["disparity_mask"], full["disparity_mask"][:, ::2, ::2])
    assert torch.equal(half["disparity"], full["disparity"][:, ::2, ::2] * 0.5)
    # antialiased bilinear = PIL's BILINEAR reduction (which rounds to 8 bits)
    pil = Image.fromarray(written[half["name"]]["image"]).resize((W // 2, H // 2), Image.BILINEAR)
    expected = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1).float() / 255
    assert torch.allclose(half["image"], expected, atol=1.01 / 255)
    assert not torch.allclose(half["image"], full["image"][:, ::2, ::2], atol=0.05)
    with pytest.raises(ValueError, match="scale"):
        CityscapesDataset(root, "train", scale=0)


def test_augmented_item_is_flip_then_jitter_from_the_item_generator(cityscapes):
    root, _ = cityscapes
    plain = CityscapesDataset(root, "train")
    augmented = CityscapesDataset(root, "train", augment=True, seed=5)
    augmented.set_epoch(3)
    flips = []
    for index in range(len(plain)):
        base, item = plain[index], augmented[index]
        rng = np.random.default_rng([5, 3, index])
        flip, jitter = draw_flip(rng), ColorJitter.draw(rng)
        flips.append(flip)
        expect = {k: torch.flip(v, dims=(-1,)) if flip else v
                  for k, v in base.items() if torch.is_tensor(v)}
        # targets flip with the image and are not jittered
        for key in ("labels", "disparity", "disparity_mask"):
            assert torch.equal(item[key], expect[key])
        assert torch.equal(item["image"], jitter(expect["image"]))
        assert not torch.allclose(item["image"], expect["image"], atol=1e-3)  # jitter happened
        assert item["name"] == base["name"]


def test_flip_keeps_image_and_targets_aligned(cityscapes):
    root, _ = cityscapes
    plain = CityscapesDataset(root, "train", scale=0.5)[2]
    flipped = CityscapesDataset(
        root, "train", augment=True, scale=0.5, flip_probability=1.0, jitter=(0.0, 0.0, 0.0)
    )[2]
    for key in ("image", "labels", "disparity", "disparity_mask"):
        assert torch.equal(flipped[key], torch.flip(plain[key], dims=(-1,))), key


def test_augmentation_reproducible_per_seed_epoch_index(cityscapes):
    root, _ = cityscapes
    first = CityscapesDataset(root, "train", augment=True, seed=0)
    second = CityscapesDataset(root, "train", augment=True, seed=0)
    order = [2, 0, 1]  # access order (as in another worker) does not matter
    for i in order:
        second[i]
    assert all(torch.equal(first[i]["image"], second[i]["image"]) for i in range(3))
    epoch0 = [first[i]["image"] for i in range(3)]
    first.set_epoch(1)
    epoch1 = [first[i]["image"] for i in range(3)]
    assert not any(torch.equal(a, b) for a, b in zip(epoch0, epoch1))
    other_seed = CityscapesDataset(root, "train", augment=True, seed=1)
    assert not torch.equal(other_seed[0]["image"], epoch0[0])
    with pytest.raises(TypeError, match="epoch"):
        first.set_epoch(None)


def test_dataloader_batches(cityscapes):
    root, _ = cityscapes
    loader = torch.utils.data.DataLoader(CityscapesDataset(root, "train"), batch_size=2)
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 3, H, W) and batch["labels"].shape == (2, H, W)
    assert batch["name"] == ["aachen_000000_000019", "aachen_000002_000019"]


# ------------------------------------------------------------------------------ errors


def test_missing_root(tmp_path):
    with pytest.raises(DatasetError, match=r"nowhere.*root folder not found"):
        CityscapesDataset(tmp_path / "nowhere", "train")


def test_missing_split_names_existing_splits(cityscapes):
    root, _ = cityscapes
    with pytest.raises(DatasetError, match=r"leftImg8bit/test.*has: train, val"):
        CityscapesDataset(root, "test")


def test_missing_image_folder(tmp_path):
    (tmp_path / "gtFine").mkdir()
    with pytest.raises(DatasetError, match=r"leftImg8bit: folder not found.*contains: gtFine"):
        CityscapesDataset(tmp_path, "train")


def test_no_images_found(tmp_path):
    (tmp_path / "leftImg8bit" / "train" / "aachen").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"leftImg8bit/train: no images found"):
        CityscapesDataset(tmp_path, "train")


@pytest.mark.parametrize("kind", ["labels", "disparity"])
def test_image_without_counterpart(cityscapes, kind):
    root, _ = cityscapes
    missing = _paths(root, "train", "aachen", "aachen_000002_000019")[kind]
    missing.unlink()
    with pytest.raises(DatasetError, match=rf"{missing.name}.*not found for image.*1 of 3"):
        CityscapesDataset(root, "train")


@pytest.mark.parametrize("kind", ["labels", "disparity"])
def test_target_of_different_size(cityscapes, kind):
    root, _ = cityscapes
    path = _paths(root, "train", "aachen", "aachen_000000_000019")[kind]
    dtype = np.uint16 if kind == "disparity" else np.uint8
    Image.fromarray(np.ones((H, W - 2), dtype=dtype)).save(path)
    dataset = CityscapesDataset(root, "train")
    with pytest.raises(DatasetError, match=rf"{path.name}: size 30x16.*does not match.*32x16"):
        dataset[0]


def test_disparity_that_is_not_16_bit(cityscapes):
    root, _ = cityscapes
    path = _paths(root, "train", "aachen", "aachen_000000_000019")["disparity"]
    Image.fromarray(np.ones((H, W), dtype=np.uint8)).save(path)
    with pytest.raises(DatasetError, match=rf"{path.name}: .*16-bit.*mode 'L' \(8-bit"):
        CityscapesDataset(root, "train")[0]


def test_colour_label_png_is_rejected(cityscapes):
    root, _ = cityscapes
    path = _paths(root, "train", "aachen", "aachen_000000_000019")["labels"]
    Image.fromarray(np.zeros((H, W, 3), dtype=np.uint8)).save(path)
    with pytest.raises(DatasetError, match=rf"{path.name}: .*single-channel.*'RGB'"):
        CityscapesDataset(root, "train")[0]


def test_unreadable_image(cityscapes):
    root, _ = cityscapes
    path = _paths(root, "train", "zurich", "zurich_000001_000019")["image"]
    path.write_bytes(path.read_bytes()[:200])  # truncated
    dataset = CityscapesDataset(root, "train")
    with pytest.raises(DatasetError, match=rf"{path.name}: cannot read image"):
        dataset[2]
