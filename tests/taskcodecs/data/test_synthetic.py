"""The synthetic street-scene generator: determinism, both file layouts, encodings, geometry.

Datasets are small (3 train + 2 val images of 64x128) and built once per module.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from taskcodecs.data.labels import COCO_CATEGORIES, LABEL_ID
from taskcodecs.data.synthetic import (
    MAX_VALID_DEPTH_M,
    MIN_INSTANCE_PIXELS,
    encode_disparity,
    generate_dataset,
    image_rng,
    image_stem,
    main,
)

H, W, N_TRAIN, N_VAL = 64, 128, 3, 2
SPLIT_SIZES = {"train": N_TRAIN, "val": N_VAL}
# Cityscapes labelIds the renderer may emit, and the COCO / Cityscapes label of each object.
ALLOWED_LABELS = {7, 8, 11, 17, 19, 20, 21, 22, 23, 24, 26, 27, 28, 33}
COCO_TO_LABEL = {1: 24, 2: 33, 3: 26, 6: 28, 8: 27, 10: 19}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "seed0"
    generate_dataset(root, train=N_TRAIN, val=N_VAL, height=H, width=W, seed=0, workers=2)
    return root


def _items(root: Path, split: str):
    """(stem, rgb, labelIds, instanceIds, disparity values, camera dict) of every image."""
    for index in range(SPLIT_SIZES[split]):
        city, stem = image_stem(split, index)
        base = f"{split}/{city}/{stem}"
        yield (
            stem,
            np.array(Image.open(root / f"leftImg8bit/{base}_leftImg8bit.png")),
            np.array(Image.open(root / f"gtFine/{base}_gtFine_labelIds.png")),
            np.array(Image.open(root / f"gtFine/{base}_gtFine_instanceIds.png")),
            np.array(Image.open(root / f"disparity/{base}_disparity.png")),
            json.loads((root / f"camera/{base}_camera.json").read_text()),
        )


def test_same_seed_same_bytes_any_workers_and_new_seed_differs(dataset, tmp_path):
    generate_dataset(tmp_path / "again", train=N_TRAIN, val=N_VAL, height=H, width=W, seed=0,
                     workers=1)
    first, again = _files(dataset), _files(tmp_path / "again")
    assert list(first) == list(again)
    assert [name for name in first if first[name] != again[name]] == []
    generate_dataset(tmp_path / "other", train=N_TRAIN, val=N_VAL, height=H, width=W, seed=1,
                     workers=2)
    other = _files(tmp_path / "other")
    images = [n for n in first if n.endswith("_leftImg8bit.png")]
    assert len(images) == N_TRAIN + N_VAL
    assert all(first[n] != other[n] for n in images)
    # the image rng depends on (seed, split, index) only
    draws = {(s, sp, i): image_rng(s, sp, i).random() for s in (0, 1) for sp in ("train", "val")
             for i in (0, 1)}
    assert len(set(draws.values())) == len(draws)
    assert image_rng(0, "val", 1).random() == draws[(0, "val", 1)]


def test_cityscapes_and_coco_layouts_hold_the_same_images(dataset):
    for split, count in SPLIT_SIZES.items():
        coco = COCO(str(dataset / f"annotations/instances_{split}2017.json"))
        assert sorted(coco.getImgIds()) == list(range(1, count + 1))
        assert [(c["id"], c["name"]) for c in coco.loadCats(coco.getCatIds())] \
            == list(COCO_CATEGORIES)
        for index in range(count):
            city, stem = image_stem(split, index)
            record = coco.loadImgs(index + 1)[0]
            assert (record["height"], record["width"]) == (H, W)
            coco_bytes = (dataset / f"{split}2017" / record["file_name"]).read_bytes()
            city_path = dataset / f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png"
            assert coco_bytes == city_path.read_bytes()
            with Image.open(city_path) as image:
                assert (image.mode, image.size) == ("RGB", (W, H))


def test_coco_boxes_areas_and_masks_match_the_label_pngs(dataset):
    n_annotations = 0
    for split in SPLIT_SIZES:
        coco = COCO(str(dataset / f"annotations/instances_{split}2017.json"))
        items = list(_items(dataset, split))
        for ann in coco.loadAnns(coco.getAnnIds()):
            n_annotations += 1
            mask = coco.annToMask(ann).astype(bool)
            rows, cols = np.nonzero(mask)
            assert ann["area"] == mask.sum() >= MIN_INSTANCE_PIXELS
            x, y, w, h = ann["bbox"]
            assert [x, y, w, h] == [cols.min(), rows.min(), cols.max() - cols.min() + 1,
                                    rows.max() - rows.min() + 1]
            assert 0 <= x and 0 <= y and x + w <= W and y + h <= H
            assert ann["iscrowd"] == 0 and isinstance(ann["segmentation"]["counts"], str)
            _, _, labels, instances, _, _ = items[ann["image_id"] - 1]
            assert np.all(labels[mask] == COCO_TO_LABEL[ann["category_id"]])
            if ann["category_id"] != 10:  # traffic lights have no Cityscapes instance id
                ids = np.unique(instances[mask])
                assert len(ids) == 1 and ids[0] // 1000 == COCO_TO_LABEL[ann["category_id"]]
    assert n_annotations >= 5


def test_labels_instances_and_class_coverage(dataset):
    seen = set()
    for split in SPLIT_SIZES:
        for _, rgb, labels, instances, _, _ in _items(dataset, split):
            assert labels.dtype == np.uint8 and labels.shape == (H, W)
            assert set(np.unique(labels)) <= ALLOWED_LABELS
            seen |= set(np.unique(labels).tolist())
            assert instances.dtype == np.uint16
            stuff = instances < 1000
            assert np.array_equal(instances[stuff], labels[stuff])
            assert np.array_equal(instances[~stuff] // 1000, labels[~stuff])
            assert rgb.std() > 20  # textured, not flat
    for name in ("road", "sidewalk", "building", "sky", "car", "person"):
        assert LABEL_ID[name] in seen, name


def test_disparity_png_matches_depth_and_ground_plane_geometry(dataset):
    """Road pixels lie on y = 0: their disparity follows from camera.json alone."""
    for split in SPLIT_SIZES:
        for stem, _, labels, _, raw, camera in _items(dataset, split):
            assert raw.dtype == np.uint16
            intr, extr = camera["intrinsic"], camera["extrinsic"]
            assert np.all(raw[labels == LABEL_ID["sky"]] == 0)
            disparity = (raw.astype(np.float64) - 1) / 256
            # yaw turns rays about the vertical: only pitch changes their world y component
            cp, sp = np.cos(extr["pitch"]), np.sin(extr["pitch"])
            v, u = np.mgrid[0:H, 0:W] + 0.5
            ray_up = cp * -(v - intr["v0"]) / intr["fy"] + sp  # world y of the ray, camera z = 1
            depth = extr["z"] / -np.where(ray_up < 0, ray_up, np.nan)
            road = labels == LABEL_ID["road"]
            assert road.sum() > 0.1 * H * W, stem
            near = road & (depth <= MAX_VALID_DEPTH_M * 0.99)
            expected = extr["baseline"] * intr["fx"] / depth
            assert np.all(raw[near] > 0)
            assert np.abs(disparity[near] - expected[near]).max() <= 1 / 256, stem
            assert np.all(raw[road & (depth > MAX_VALID_DEPTH_M * 1.01)] == 0)
            # road depth grows towards the horizon, row by row, in every column
            road_depth = np.where(road, depth, np.nan)
            steps = np.diff(road_depth, axis=0)
            assert np.all(steps[np.isfinite(steps)] < 0), stem


def test_encode_disparity_round_trip():
    fx, baseline = 141.4, 0.209313
    depth = np.array([[0.5, 3.0, 17.3, 399.0], [401.0, np.inf, 1e-4, 60.0]], np.float32)
    raw = encode_disparity(depth, fx, baseline)
    assert raw.dtype == np.uint16
    valid = raw > 0
    assert valid.tolist() == [[True] * 4, [False, False, True, True]]
    disparity = (raw.astype(np.float64) - 1) / 256
    truth = baseline * fx / depth.astype(np.float64)
    unclipped = valid & (truth < 255)
    assert np.all(np.abs(disparity[unclipped] - truth[unclipped]) <= 0.5 / 256 + 1e-9)
    assert raw[1, 2] == 65535  # 1e-4 m is beyond the 16-bit range: clipped


def test_dataset_json_summary(dataset):
    summary = json.loads((dataset / "dataset.json").read_text())
    assert (summary["seed"], summary["height"], summary["width"]) == (0, H, W)
    assert summary["camera"]["fx"] == pytest.approx(2262.52 * W / 2048)
    for split, count in SPLIT_SIZES.items():
        coco = json.loads((dataset / f"annotations/instances_{split}2017.json").read_text())
        assert summary["splits"][split]["images"] == count
        assert summary["splits"][split]["instances"] == len(coco["annotations"])
        assert sum(summary["coco_instance_counts"][split].values()) == len(coco["annotations"])
        freq = summary["class_pixel_frequencies"][split]
        assert sum(freq.values()) == pytest.approx(1.0)
        assert freq["road"] > 0.1 and freq["sky"] > 0
        rng = summary["depth_range"][split]
        assert 0 < rng["min_depth_m"] < rng["max_depth_m"] <= MAX_VALID_DEPTH_M
        assert 0 < rng["min_disparity_px"] < rng["max_disparity_px"]
    text = (dataset / "dataset.json").read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def test_loaders_read_the_dataset(dataset):
    from taskcodecs.data.cityscapes import CityscapesDataset
    from taskcodecs.data.coco import CocoDetection

    city = CityscapesDataset(dataset, "train")
    assert len(city) == N_TRAIN
    item = city[0]
    assert tuple(item["image"].shape) == (3, H, W)
    coco = CocoDetection(dataset, "val", paper_filter=False)
    assert len(coco) == N_VAL
    image, target = coco[0]
    assert tuple(image.shape) == (3, H, W) and len(target["boxes"]) > 0


@pytest.mark.parametrize("args, message", [
    (["--train", "0"], "positive integer"),
    (["--val", "-2"], "positive integer"),
    (["--height", "16"], "height must be an integer in [32"),
    (["--width", "abc"], "positive integer"),
    (["--seed", "-1"], "a seed must be in [0, 2**63)"),
    (["--workers", "0"], "positive integer"),
])
def test_cli_rejects_bad_values(tmp_path, capsys, args, message):
    base = {"--out": str(tmp_path / "out"), "--train": "1", "--val": "1", "--height": "32",
            "--width": "32", "--seed": "0"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    try:  # argparse's type errors exit 2 through SystemExit, the generator's are returned
        code = main([item for pair in base.items() for item in pair])
    except SystemExit as exit_info:
        code = exit_info.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_bad_output_locations(tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a folder")
    assert main(["--out", str(a_file), "--train", "1", "--val", "1", "--height", "32",
                 "--width", "32", "--seed", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "not a directory" in err
    with pytest.raises(ValueError, match="not empty"):
        generate_dataset(tmp_path, train=1, val=1, height=32, width=32, seed=0)
    with pytest.raises(TypeError, match="seed must be an integer"):
        generate_dataset(tmp_path / "new", train=1, val=1, height=32, width=32, seed=None)


def test_cli_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["--out", str(out), "--train", "1", "--val", "1", "--height", "32",
                 "--width", "48", "--seed", "3", "--workers", "1"]) == 0
    assert "train: 1 images" in capsys.readouterr().out
    with Image.open(out / "val2017/000000000001.png") as image:
        assert image.size == (48, 32)


def test_worker_pool_shuts_down_quietly_under_the_cli(tmp_path):
    """The CLI turns SIGTERM into an exception; the pool's workers must not inherit that
    (the pool stops them with SIGTERM: each used to print a ``Terminated`` traceback, in 2
    of 3 runs before the fix)."""
    for run in range(3):
        done = subprocess.run(
            [sys.executable, "-m", "taskcodecs.data.synthetic", "--out", str(tmp_path / str(run)),
             "--train", "8", "--val", "2", "--height", "32", "--width", "48", "--seed", "0",
             "--workers", "2"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr and "Terminated" not in done.stderr, done.stderr
