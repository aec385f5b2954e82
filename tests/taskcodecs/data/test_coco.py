"""CocoDetection on a hand-written COCO 2017 fixture (seven 40x64 images, val split)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.cocoeval import COCOeval

from taskcodecs.data.coco import CocoDetection, detection_collate
from taskcodecs.data.errors import DatasetError
from taskcodecs.data.labels import COCO_CATEGORIES
from taskcodecs.data.transforms import draw_flip

H, W = 40, 64
PERSON, BICYCLE, CAR, DOG, KITE = 1, 2, 3, 18, 38

# image id -> (file name, PIL mode written)
IMAGES = {
    1: ("000000000001.png", "RGB"),   # kept: 3 usable boxes, a crowd and a degenerate box
    2: ("000000000002.png", "L"),     # kept: one kite (not a VOC class), grayscale
    3: ("000000000003.jpg", "RGB"),   # removed by paper filter: no annotations
    4: ("000000000004.jpg", "RGB"),   # removed by paper filter: only a crowd annotation
    5: ("000000000005.jpg", "RGB"),   # removed by paper filter: all boxes <= 1 px
    6: ("000000000006.jpg", "RGB"),   # removed by paper filter: total area 1000, not > 1000
    7: ("000000000007.jpg", "CMYK"),  # kept: one dog, CMYK JPEG
}
# (annotation id, image id, category, bbox xywh, area, iscrowd)
ANNOTATIONS = [
    (101, 1, PERSON, [10, 5, 20, 30], 600.0, 0),
    (102, 1, CAR, [50, 20, 20, 10], 200.0, 0),  # sticks out on the right: clamped to x=64
    (103, 1, KITE, [0.5, 1.5, 4.25, 3.0], 300.0, 0),
    (104, 1, PERSON, [0, 0, 64, 40], 2560.0, 1),  # crowd: not in the target
    (105, 1, BICYCLE, [5, 5, 0, 10], 0.0, 0),  # zero width: not in the target
    (201, 2, KITE, [0, 0, 40, 30], 1200.0, 0),
    (401, 4, PERSON, [0, 0, 50, 40], 2000.0, 1),
    (501, 5, PERSON, [0, 0, 1, 30], 1500.0, 0),
    (502, 5, DOG, [10, 10, 20, 1], 1500.0, 0),
    (601, 6, CAR, [0, 0, 30, 20], 600.0, 0),
    (602, 6, CAR, [30, 0, 20, 20], 400.0, 0),
    (701, 7, DOG, [1, 2, 30, 35], 1050.0, 0),
]


def annotation_json() -> dict:
    return {
        "info": {"description": "test fixture"},
        "images": [{"id": i, "file_name": name, "width": W, "height": H}
                   for i, (name, _) in IMAGES.items()],
        "annotations": [
            {"id": a, "image_id": i, "category_id": c, "bbox": box, "area": area,
             "iscrowd": crowd, "segmentation": [[0, 0, 1, 0, 1, 1]]}
            for a, i, c, box, area, crowd in ANNOTATIONS
        ],
        "categories": [{"id": c, "name": n, "supercategory": "x"} for c, n in COCO_CATEGORIES],
    }


def write_json(root: Path, data: dict, split: str = "val") -> Path:
    path = root / "annotations" / f"instances_{split}2017.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def coco(tmp_path) -> tuple[Path, dict[int, np.ndarray]]:
    root = tmp_path / "coco"
    (root / "val2017").mkdir(parents=True)
    (root / "train2017").mkdir()
    pixels = {}
    for image_id, (name, mode) in IMAGES.items():
        rng = np.random.default_rng(image_id)
        channels = {"RGB": 3, "L": 1, "CMYK": 4}[mode]
        array = rng.integers(0, 256, (H, W, channels), dtype=np.uint8)
        array = array[..., 0] if channels == 1 else array
        Image.fromarray(array, mode).save(root / "val2017" / name)
        pixels[image_id] = array
    write_json(root, annotation_json())
    return root, pixels


@pytest.mark.parametrize(
    ("paper_filter", "voc_only", "kept"),
    [(True, False, [1, 2, 7]), (False, False, [1, 2, 3, 4, 5, 6, 7]),
     (True, True, [1, 7]), (False, True, [1, 5, 6, 7])],
)
def test_filters(coco, paper_filter, voc_only, kept):
    dataset = CocoDetection(coco[0], "val", paper_filter=paper_filter, voc_only=voc_only)
    assert dataset.image_ids == kept
    assert len(dataset) == len(kept)
    assert [dataset[i][1]["image_id"] for i in range(len(dataset))] == kept


def test_target_is_xyxy_with_raw_ids_without_crowd_or_degenerate_boxes(coco):
    dataset = CocoDetection(coco[0], "val")
    image, target = dataset[0]
    assert target["image_id"] == 1
    assert target["boxes"].dtype == torch.float32 and target["boxes"].shape == (3, 4)
    assert target["boxes"].tolist() == [[10, 5, 30, 35], [50, 20, 64, 30], [0.5, 1.5, 4.75, 4.5]]
    assert target["labels"].dtype == torch.int64
    assert target["labels"].tolist() == [PERSON, CAR, KITE]
    assert target["area"].dtype == torch.float32
    assert target["area"].tolist() == [600.0, 200.0, 300.0]
    assert target["iscrowd"].dtype == torch.int64 and target["iscrowd"].tolist() == [0, 0, 0]


def test_images_decode_to_rgb_floats(coco):
    root, pixels = coco
    dataset = CocoDetection(root, "val")
    rgb, _ = dataset[0]  # PNG: exact
    assert rgb.dtype == torch.float32 and rgb.shape == (3, H, W)
    assert torch.equal(rgb, torch.from_numpy(pixels[1]).permute(2, 0, 1).float() / 255)
    gray, _ = dataset[1]
    assert gray.shape == (3, H, W)
    assert torch.equal(gray[0], torch.from_numpy(pixels[2]).float() / 255)
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    cmyk, _ = dataset[2]
    assert cmyk.shape == (3, H, W) and 0 <= cmyk.min() and cmyk.max() <= 1


def test_flip_flips_image_and_boxes_together(coco):
    root, _ = coco
    plain_image, plain_target = CocoDetection(root, "val")[0]
    image, target = CocoDetection(root, "val", augment=True, flip_probability=1.0)[0]
    assert torch.equal(image, torch.flip(plain_image, dims=(-1,)))
    assert target["boxes"].tolist() == [[34, 5, 54, 35], [0, 20, 14, 30],
                                        [59.25, 1.5, 63.5, 4.5]]
    assert torch.equal(target["labels"], plain_target["labels"])
    assert torch.equal(target["area"], plain_target["area"])


def test_flip_draws_are_reproducible_per_seed_epoch_index(coco):
    root, _ = coco
    plain = CocoDetection(root, "val", paper_filter=False)
    dataset = CocoDetection(root, "val", paper_filter=False, augment=True, seed=11)
    for epoch in (0, 1, 2):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            flip = draw_flip(np.random.default_rng([11, epoch, index]))
            expected = plain[index][0].flip(-1) if flip else plain[index][0]
            assert torch.equal(dataset[index][0], expected)


def test_coco_api_holds_kept_images_and_evaluates(coco):
    root, _ = coco
    dataset = CocoDetection(root, "val")
    api = dataset.coco_api
    assert sorted(api.getImgIds()) == [1, 2, 7]
    assert sorted(api.getAnnIds()) == [101, 102, 103, 104, 105, 201, 701]  # crowd kept here
    assert "segmentation" not in api.anns[101]
    assert CocoDetection(root, "val", paper_filter=False).coco_api.getImgIds() == list(IMAGES)
    detections = [{"image_id": i, "category_id": c, "bbox": box, "score": 1.0}
                  for a, i, c, box, _, crowd in ANNOTATIONS
                  if i in (1, 2, 7) and c in (PERSON, KITE, DOG) and not crowd]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(api, api.loadRes(detections), "bbox")
        evaluator.params.catIds = [PERSON, KITE, DOG]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)  # perfect boxes: mAP@[.5:.95] = 1


def test_detection_collate_keeps_lists(coco):
    loader = torch.utils.data.DataLoader(
        CocoDetection(coco[0], "val"), batch_size=2, collate_fn=detection_collate
    )
    images, targets = next(iter(loader))
    assert isinstance(images, list) and isinstance(targets, list)
    assert [t["image_id"] for t in targets] == [1, 2]
    assert images[0].shape == (3, H, W)


# ------------------------------------------------------------------------------ errors


def test_missing_root(tmp_path):
    with pytest.raises(DatasetError, match=r"nowhere: COCO root folder not found"):
        CocoDetection(tmp_path / "nowhere", "val")


def test_missing_split_folder_lists_existing(coco):
    with pytest.raises(DatasetError, match=r"test2017: split folder not found.*"
                                           r"annotations, train2017, val2017"):
        CocoDetection(coco[0], "test")


def test_missing_annotation_file(coco):
    with pytest.raises(DatasetError, match=r"instances_train2017.json: JSON file not found"):
        CocoDetection(coco[0], "train")


@pytest.mark.parametrize("cut", [0.5, 0.0])
def test_truncated_or_corrupt_json(coco, cut):
    root, _ = coco
    path = root / "annotations" / "instances_val2017.json"
    text = path.read_text()
    path.write_text(text[: int(len(text) * cut)] if cut else "not json at all")
    with pytest.raises(DatasetError, match=r"instances_val2017.json: not valid JSON"):
        CocoDetection(root, "val")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("categories"), r"lacks required key\(s\) \['categories'\]"),
        (lambda d: d["annotations"][3].pop("bbox"), r"annotations\[3\] lacks .*\['bbox'\]"),
        (lambda d: d["annotations"][0].pop("image_id"), r"annotations\[0\] lacks.*image_id"),
        (lambda d: d["annotations"][0].pop("category_id"), r"annotations\[0\] lacks.*category"),
        (lambda d: d["images"][2].pop("file_name"), r"images\[2\] lacks.*file_name"),
        (lambda d: d["annotations"][1].update(bbox=[1, 2, 3]), r"\(id 102\) bbox must be 4"),
        (lambda d: d["annotations"][1].update(image_id=99), r"\(id 102\) refers to image id 99"),
        (lambda d: d["annotations"][1].update(category_id=12), r"category id 12"),
        (lambda d: d["images"][1].update(id=1), r"images\[1\] repeats image id 1"),
        (lambda d: d.update(images={}), r"'images' must be a list"),
    ],
)
def test_malformed_annotation_json(coco, mutate, message):
    root, _ = coco
    data = annotation_json()
    mutate(data)
    write_json(root, data)
    with pytest.raises(DatasetError, match=rf"instances_val2017.json: .*{message}"):
        CocoDetection(root, "val")


def test_no_images_and_nothing_kept(coco):
    root, _ = coco
    write_json(root, {"images": [], "annotations": [], "categories": []})
    with pytest.raises(DatasetError, match=r"instances_val2017.json: no images found"):
        CocoDetection(root, "val")
    data = annotation_json()
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] not in (1, 2, 7)]
    write_json(root, data)
    with pytest.raises(DatasetError, match=r"none of its 7 images pass the filters"):
        CocoDetection(root, "val")


def test_annotation_pointing_to_missing_image_file(coco):
    root, _ = coco
    (root / "val2017" / "000000000002.png").unlink()
    dataset = CocoDetection(root, "val")
    dataset[0]
    with pytest.raises(DatasetError, match=r"000000000002.png: image file not found \(image id 2"):
        dataset[1]


def test_unreadable_image_file(coco):
    root, _ = coco
    (root / "val2017" / "000000000007.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DatasetError, match=r"000000000007.jpg: cannot read image"):
        CocoDetection(root, "val")[2]


def test_image_size_differs_from_json(coco):
    root, _ = coco
    data = annotation_json()
    data["images"][0]["width"] = 65
    write_json(root, data)
    with pytest.raises(DatasetError, match=r"000000000001.png: image is 64x40.*says 65x40"):
        CocoDetection(root, "val")[0]


@pytest.mark.parametrize("name", ["/etc/passwd", "../outside.png", "sub/../../outside.png",
                                  "..\\outside.png", "C:\\x.png", "", 7])
def test_file_name_outside_the_image_folder_is_refused(coco, name):
    """Issue 22 (d): an absolute file_name, or one with '..', is never opened."""
    root, _ = coco
    (root / "outside.png").write_bytes((root / "val2017" / "000000000001.png").read_bytes())
    data = annotation_json()
    data["images"][0]["file_name"] = name
    write_json(root, data)
    with pytest.raises(DatasetError, match=r"images\[0\] file_name .*(outside the image folder|"
                                           r"non-empty string)"):
        CocoDetection(root, "val")
