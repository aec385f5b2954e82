"""Street layout: the ground (road and terrain), sidewalks, building rows, trees, lamp posts,
traffic signs and traffic lights, added to a :class:`~.primitives.SceneBuilder`.

Every random draw comes from the builder's generator, in a fixed order: the layout is a pure
function of it.
"""

from __future__ import annotations

import numpy as np

from taskcodecs.data.labels import LABEL_ID
from taskcodecs.data.scene.primitives import (
    ASPHALT,
    BARK,
    FACADE,
    FOLIAGE,
    METAL,
    PAVEMENT,
    PLANE,
    SIGN,
    TERRAIN,
    TLIGHT,
    SceneBuilder,
)

FACADE_COLORS = np.array([[0.78, 0.72, 0.62], [0.62, 0.33, 0.25], [0.55, 0.55, 0.55],
                          [0.86, 0.84, 0.78], [0.80, 0.66, 0.40], [0.45, 0.42, 0.40],
                          [0.70, 0.55, 0.50], [0.60, 0.65, 0.70]])


def add_street(b: SceneBuilder, rh: float) -> dict:
    """Ground plane (road / terrain), raised sidewalks and building rows on both sides."""
    rng = b.rng
    asphalt = rng.uniform(0.25, 0.40) * np.array([1.0, 1.0, 1.03]) * rng.uniform(0.97, 1.03, 3)
    b.add(PLANE, (), LABEL_ID["road"], ASPHALT, asphalt,
          (0.85, 0.85, 0.80), (rng.random() < 0.7, rng.random() < 0.5,
                               rng.uniform(12, 45) if rng.random() < 0.3 else -1, rh))
    b.add(PLANE, (), LABEL_ID["terrain"], TERRAIN, b.jitter([0.30, 0.40, 0.18], 0.15),
          (0.42, 0.35, 0.25))
    sidewalk, kerb = b.jitter(b.pick(FACADE_COLORS[[0, 2, 3, 6]]) * 0.9, 0.05), [0.6, 0.6, 0.58]
    sw, kerb_h = rng.uniform(1.5, 4.5), rng.uniform(0.10, 0.18)
    tile = rng.uniform(0.4, 1.0)
    rows = []
    z_end = rng.uniform(70, 180)
    for side in (-1, 1):
        x_in, x_out = side * rh, side * (rh + sw)
        b.box((min(x_in, x_out), -0.5, -30), (max(x_in, x_out), kerb_h, 3000),
              LABEL_ID["sidewalk"], PAVEMENT, sidewalk, kerb, (tile,))
        setback = rng.uniform(0.5, 4) if rng.random() < 0.4 else 0.0
        face = side * (rh + sw + setback)
        if setback > 1.2 and rng.random() < 0.6:  # hedge along the green strip
            x0 = side * (rh + sw + 0.2)
            b.box((min(x0, x0 + side * 0.8), 0, -10), (max(x0, x0 + side * 0.8),
                  rng.uniform(0.6, 1.4), z_end), LABEL_ID["vegetation"], FOLIAGE,
                  b.jitter([0.18, 0.32, 0.12], 0.2), (0.10, 0.22, 0.08))
        segments = []
        z = -20.0
        while z < z_end:
            length = rng.uniform(8, 35)
            if rng.random() < 0.15 and z > 5:  # gap between buildings, maybe a tree in it
                gap = rng.uniform(3, 12)
                if rng.random() < 0.5:
                    _tree(b, face + side * rng.uniform(2, 4), z + gap / 2)
                z += gap
                continue
            height, depth = rng.uniform(6, 28), rng.uniform(8, 20)
            x_far = face + side * depth
            b.box((min(face, x_far), -0.5, z), (max(face, x_far), height, z + length),
                  LABEL_ID["building"], FACADE, b.jitter(b.pick(FACADE_COLORS)),
                  b.jitter([0.18, 0.22, 0.28], 0.3),
                  (rng.uniform(2.8, 3.6), rng.uniform(1.8, 3.2), rng.uniform(0.3, 0.6),
                   rng.uniform(0.35, 0.6)))
            segments.append((z, z + length, height))
            z += length
        rows.append((face, np.array(segments, dtype=np.float64).reshape(-1, 3)))
        for _ in range(2):  # a second, farther row fills the gaps
            x0 = face + side * rng.uniform(25, 40)
            z0 = rng.uniform(-20, z_end * 0.6)
            b.box((min(x0, x0 + side * 30), -0.5, z0), (max(x0, x0 + side * 30),
                  rng.uniform(10, 35), z0 + rng.uniform(30, 120)), LABEL_ID["building"],
                  FACADE, b.jitter(b.pick(FACADE_COLORS)), (0.2, 0.22, 0.26),
                  (3.2, 2.5, 0.45, 0.5))
    if rng.random() < 0.55:  # the street ends at a cross building
        z0 = z_end + rng.uniform(10, 30)
        b.box((-150, -0.5, z0), (150, rng.uniform(8, 30), z0 + 20), LABEL_ID["building"],
              FACADE, b.jitter(b.pick(FACADE_COLORS)), (0.2, 0.22, 0.26),
              (rng.uniform(2.8, 3.6), rng.uniform(1.8, 3.2), 0.45, 0.5))
    return {"sw": sw, "kerb_h": kerb_h, "rows": tuple(rows), "z_end": z_end}


def _tree(b: SceneBuilder, x: float, z: float, ground: float = 0.0) -> None:
    rng = b.rng
    trunk_h, trunk_r = rng.uniform(1.8, 3.5), rng.uniform(0.1, 0.22)
    radii = (rng.uniform(1.2, 2.8), rng.uniform(1.5, 3.5), rng.uniform(1.2, 2.8))
    if not b.claim(x - trunk_r, x + trunk_r, z - trunk_r, z + trunk_r, 0.5):
        return
    veg = LABEL_ID["vegetation"]
    b.cylinder((x, ground + trunk_h / 2, z), trunk_r, trunk_h / 2 + 0.3, 1, veg, BARK,
               b.jitter([0.30, 0.22, 0.15], 0.2))
    centre = (x, ground + trunk_h + 0.7 * radii[1], z)
    b.ellipsoid(centre, radii, veg, FOLIAGE, b.jitter([0.24, 0.42, 0.14], 0.25),
                b.jitter([0.42, 0.52, 0.18], 0.2))
    b.shadow_boxes.append([centre[0] - radii[0] * 0.8, centre[1] - radii[1] * 0.7,
                           centre[2] - radii[2] * 0.8, centre[0] + radii[0] * 0.8,
                           centre[1] + radii[1] * 0.7, centre[2] + radii[2] * 0.8, -1])


def add_street_furniture(b: SceneBuilder, rh: float, kerb_h: float, z_end: float) -> None:
    """Trees and lamp posts along the kerbs, traffic signs and traffic lights."""
    rng = b.rng
    pole, metal = LABEL_ID["pole"], b.jitter([0.45, 0.46, 0.48], 0.2)
    for side in (-1, 1):
        if rng.random() < 0.6:
            x, z = side * (rh + rng.uniform(0.7, 1.3)), rng.uniform(2, 10)
            while z < min(z_end, 90):
                if rng.random() < 0.8:
                    _tree(b, x, z, kerb_h)
                z += rng.uniform(6, 14)
        if rng.random() < 0.7:
            x, z = side * (rh + 0.35), rng.uniform(3, 20)
            while z < 110:
                height, r = rng.uniform(5, 8), rng.uniform(0.07, 0.1)
                if b.claim(x - r, x + r, z - r, z + r, 0.2):
                    b.cylinder((x, height / 2, z), r, height / 2, 1, pole, METAL, metal)
                    arm = x - side * 1.4
                    b.box((min(x, arm), height - 0.12, z - 0.06), (max(x, arm), height, z + 0.06),
                          pole, METAL, metal)
                z += rng.uniform(18, 35)
    for _ in range(rng.integers(0, 4)):  # traffic signs on their own posts
        side, z = rng.choice([-1, 1]), rng.uniform(6, 50)
        x, top = side * (rh + 0.3), rng.uniform(2.2, 2.9)
        if not b.claim(x - 0.05, x + 0.05, z - 0.05, z + 0.05, 0.4):
            continue
        b.cylinder((x, top / 2, z), 0.04, top / 2, 1, pole, METAL, metal)
        half_w, half_h = rng.uniform(0.25, 0.4), rng.uniform(0.25, 0.4)
        colors = [[0.75, 0.08, 0.08], [0.10, 0.25, 0.65], [0.90, 0.75, 0.10], [0.9, 0.9, 0.9]]
        b.box((x - half_w, top, z - 0.03), (x + half_w, top + 2 * half_h, z + 0.03),
              LABEL_ID["traffic sign"], SIGN, colors[rng.integers(4)], (0.95, 0.95, 0.95),
              (x, top + half_h, half_w, half_h))
    if rng.random() < 0.35:  # traffic lights at a crossing, both kerbs
        z = rng.uniform(15, 45)
        for side in (-1, 1):
            x, top = side * (rh + 0.4), rng.uniform(2.6, 3.4)
            if not b.claim(x - 0.1, x + 0.1, z - 0.1, z + 0.1, 0.3):
                continue
            b.cylinder((x, top / 2, z), 0.06, top / 2, 1, pole, METAL, metal)
            obj = b.new_object("traffic light")
            b.box((x - 0.16, top, z - 0.15), (x + 0.16, top + 0.85, z + 0.1),
                  LABEL_ID["traffic light"], TLIGHT, (0.08, 0.08, 0.08),
                  tex=(x, top, rng.integers(3), 0), obj=obj)
