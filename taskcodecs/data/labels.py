"""Label tables shared by the synthetic generator and the real loaders.

Cityscapes: the official labelIds (gtFine ``*_labelIds.png``) and their 19 train classes.
Everything without a train class maps to :data:`IGNORE_INDEX` (19), as in the paper.
COCO 2017: the 80 detection categories with their (non-contiguous) official ids, and the
COCO ids of the 20 PASCAL VOC classes.
"""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = 19
NUM_CLASSES = 19

# (labelId, name, trainId or None) -- the cityscapesScripts table, trainId 255 written as None.
CITYSCAPES_LABELS: tuple[tuple[int, str, int | None], ...] = (
    (0, "unlabeled", None), (1, "ego vehicle", None), (2, "rectification border", None),
    (3, "out of roi", None), (4, "static", None), (5, "dynamic", None), (6, "ground", None),
    (7, "road", 0), (8, "sidewalk", 1), (9, "parking", None), (10, "rail track", None),
    (11, "building", 2), (12, "wall", 3), (13, "fence", 4), (14, "guard rail", None),
    (15, "bridge", None), (16, "tunnel", None), (17, "pole", 5), (18, "polegroup", None),
    (19, "traffic light", 6), (20, "traffic sign", 7), (21, "vegetation", 8),
    (22, "terrain", 9), (23, "sky", 10), (24, "person", 11), (25, "rider", 12),
    (26, "car", 13), (27, "truck", 14), (28, "bus", 15), (29, "caravan", None),
    (30, "trailer", None), (31, "train", 16), (32, "motorcycle", 17), (33, "bicycle", 18),
)

LABEL_ID = {name: label_id for label_id, name, _ in CITYSCAPES_LABELS}
TRAIN_CLASSES: tuple[str, ...] = tuple(
    name for _, name, train_id in sorted(
        (row for row in CITYSCAPES_LABELS if row[2] is not None), key=lambda r: r[2]
    )
)

# labelId (0..255) -> trainId in 0..18, or IGNORE_INDEX. license plate (-1) and any
# value outside the table also map to IGNORE_INDEX.
LABEL_TO_TRAIN = np.full(256, IGNORE_INDEX, dtype=np.uint8)
for _label_id, _name, _train_id in CITYSCAPES_LABELS:
    if _train_id is not None:
        LABEL_TO_TRAIN[_label_id] = _train_id


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map a uint8 labelIds array to train ids (0..18, 19 = ignore)."""
    label_ids = np.asarray(label_ids)
    if label_ids.dtype != np.uint8:
        if label_ids.min(initial=0) < 0 or label_ids.max(initial=0) > 255:
            raise ValueError("labelIds must lie in 0..255")
        label_ids = label_ids.astype(np.uint8)
    return LABEL_TO_TRAIN[label_ids]


COCO_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"),
    (7, "train"), (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"),
    (13, "stop sign"), (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"),
    (18, "dog"), (19, "horse"), (20, "sheep"), (21, "cow"), (22, "elephant"), (23, "bear"),
    (24, "zebra"), (25, "giraffe"), (27, "backpack"), (28, "umbrella"), (31, "handbag"),
    (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"), (36, "snowboard"),
    (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"),
    (46, "wine glass"), (47, "cup"), (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"),
    (52, "banana"), (53, "apple"), (54, "sandwich"), (55, "orange"), (56, "broccoli"),
    (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"), (62, "chair"),
    (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"), (70, "toilet"),
    (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"),
    (77, "cell phone"), (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"),
    (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"), (87, "scissors"),
    (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"),
)
COCO_ID = {name: cat_id for cat_id, name in COCO_CATEGORIES}

# The 20 PASCAL VOC classes as COCO category ids (aeroplane, bicycle, bird, boat, bottle,
# bus, car, cat, chair, cow, diningtable, dog, horse, motorbike, person, pottedplant,
# sheep, sofa, train, tvmonitor).
VOC_COCO_IDS: frozenset[int] = frozenset(
    {5, 2, 16, 9, 44, 6, 3, 17, 62, 21, 67, 18, 19, 4, 1, 64, 20, 63, 7, 72}
)
