"""Traffic: parked and moving cars, buses and trucks, pedestrians and bicycles, each a
countable object (:class:`~.primitives.SceneObject`) built from several primitives.

Every random draw comes from the builder's generator, in a fixed order.
"""

from __future__ import annotations

import numpy as np

from taskcodecs.data.labels import LABEL_ID
from taskcodecs.data.scene.primitives import (
    BUSBODY,
    CABIN,
    CLOTH,
    METAL,
    PAINT,
    SKIN,
    TYRE,
    SceneBuilder,
)

CAR_COLORS = np.array([[0.75, 0.75, 0.76], [0.08, 0.08, 0.09], [0.92, 0.92, 0.92],
                       [0.55, 0.07, 0.06], [0.10, 0.20, 0.50], [0.35, 0.37, 0.40],
                       [0.15, 0.35, 0.20], [0.85, 0.65, 0.10], [0.45, 0.30, 0.20]])
CLOTH_COLORS = np.array([[0.10, 0.10, 0.12], [0.20, 0.25, 0.45], [0.60, 0.10, 0.10],
                         [0.80, 0.80, 0.75], [0.35, 0.30, 0.25], [0.15, 0.40, 0.30],
                         [0.85, 0.60, 0.20], [0.45, 0.45, 0.50]])
SKIN_COLORS = np.array([[0.90, 0.72, 0.60], [0.75, 0.55, 0.42], [0.50, 0.35, 0.25],
                        [0.35, 0.24, 0.18]])



def _car(b: SceneBuilder, x: float, z: float, along_z: bool, facing: int) -> bool:
    """A car centred at (x, z) on the road: body, cabin and four wheels."""
    rng = b.rng
    length, width = rng.uniform(3.8, 4.9), rng.uniform(1.65, 1.9)
    body_h, cabin_h = rng.uniform(0.55, 0.8), rng.uniform(0.45, 0.62)
    hx, hz = (width / 2, length / 2) if along_z else (length / 2, width / 2)
    if not b.claim(x - hx, x + hx, z - hz, z + hz):
        return False
    obj, label = b.new_object("car"), LABEL_ID["car"]
    paint = b.jitter(b.pick(CAR_COLORS), 0.08)
    axis = 2 if along_z else 0
    b.box((x - hx, 0.28, z - hz), (x + hx, 0.28 + body_h, z + hz), label, PAINT, paint,
          (0.1, 0.1, 0.1), (axis, facing, 0.28, 0), obj, shadow=True)
    c_len, c_off = length * rng.uniform(0.45, 0.6), length * rng.uniform(-0.1, 0.05)
    cx0, cz0 = (x, z + c_off * facing) if along_z else (x + c_off * facing, z)
    cx = hx - 0.1 if along_z else c_len / 2
    cz = c_len / 2 if along_z else hz - 0.1
    b.box((cx0 - cx, 0.28 + body_h, cz0 - cz), (cx0 + cx, 0.28 + body_h + cabin_h, cz0 + cz),
          label, CABIN, paint, (0.10, 0.12, 0.15), obj=obj, shadow=True)
    r = rng.uniform(0.29, 0.34)
    for s_long in (-1, 1):
        for s_side in (-1, 1):
            lon, lat = s_long * (length / 2 - 0.75), s_side * (width / 2 - 0.12)
            wx, wz = (x + lat, z + lon) if along_z else (x + lon, z + lat)
            b.cylinder((wx, r, wz), r, 0.11, 0 if along_z else 2, label, TYRE,
                       (0.06, 0.06, 0.06), (0.6, 0.6, 0.62), obj)
    return True


def _big_vehicle(b: SceneBuilder, x: float, z: float) -> bool:
    """A bus or a truck driving along the street."""
    rng = b.rng
    is_bus = rng.random() < 0.5
    length, width = (rng.uniform(10, 12.5), 2.55) if is_bus else (rng.uniform(7, 9), 2.5)
    if not b.claim(x - width / 2, x + width / 2, z - length / 2, z + length / 2):
        return False
    name = "bus" if is_bus else "truck"
    obj, label, paint = b.new_object(name), LABEL_ID[name], b.jitter(b.pick(CAR_COLORS), 0.1)
    x0, x1, z0, z1 = x - width / 2, x + width / 2, z - length / 2, z + length / 2
    if is_bus:
        b.box((x0, 0.35, z0), (x1, 3.1, z1), label, BUSBODY, paint, (0.1, 0.12, 0.15),
              (0.35,), obj, shadow=True)
    else:
        b.box((x0, 0.45, z0), (x1, 2.9, z0 + 2.2), label, CABIN, paint, (0.1, 0.12, 0.15),
              obj=obj, shadow=True)
        b.box((x0, 0.9, z0 + 2.4), (x1, rng.uniform(3.2, 3.8), z1), label, PAINT,
              b.jitter(b.pick(CAR_COLORS[[0, 2, 5]]), 0.1), (0.1, 0.1, 0.1),
              (2, 1, 0.9, 0), obj, shadow=True)
    for wz in (z0 + 1.6, z1 - 1.8):
        for wx in (x0 + 0.15, x1 - 0.15):
            b.cylinder((wx, 0.5, wz), 0.5, 0.15, 0, label, TYRE, (0.06, 0.06, 0.06),
                       (0.6, 0.6, 0.62), obj)
    return True


def _person(b: SceneBuilder, x: float, z: float, ground: float) -> bool:
    """A pedestrian standing at (x, z): legs, torso, arms, neck and head."""
    rng = b.rng
    h = rng.uniform(1.5, 1.95)
    if not b.claim(x - 0.25, x + 0.25, z - 0.2, z + 0.2, 0.05):
        return False
    obj, label = b.new_object("person"), LABEL_ID["person"]
    shirt, trousers = b.jitter(b.pick(CLOTH_COLORS)), b.jitter(b.pick(CLOTH_COLORS))
    skin = b.jitter(b.pick(SKIN_COLORS), 0.05)
    sideways = rng.random() < 0.4  # walking along x: stance offsets swap axes
    hip, stride = ground + 0.48 * h, rng.uniform(-0.15, 0.15)
    for s in (-1, 1):
        dx, dz = (s * stride, s * 0.09) if sideways else (s * 0.09, s * stride)
        b.cylinder((x + dx, ground + 0.24 * h, z + dz), 0.075, 0.24 * h, 1, label, CLOTH,
                   trousers, obj=obj)
        ax, az = (0.0, s * 0.24) if sideways else (s * 0.24, 0.0)
        b.cylinder((x + ax, hip + 0.14 * h, z + az), 0.05, 0.17 * h, 1, label, CLOTH, shirt,
                   obj=obj)
    radii = (0.13, 0.17 * h, 0.2) if sideways else (0.2, 0.17 * h, 0.13)
    b.ellipsoid((x, hip + 0.16 * h, z), radii, label, CLOTH, shirt, obj=obj)
    b.cylinder((x, ground + 0.82 * h, z), 0.05, 0.05 * h, 1, label, SKIN, skin, obj=obj)
    b.ellipsoid((x, ground + 0.93 * h, z), (0.09, 0.07 * h, 0.1), label, SKIN, skin, obj=obj)
    b.shadow_boxes.append([x - 0.2, ground, z - 0.2, x + 0.2, ground + h, z + 0.2, obj])
    return True


def _bicycle(b: SceneBuilder, x: float, z: float, ground: float, along_z: bool) -> bool:
    """A parked bicycle: two thin wheels and a frame of thin boxes."""
    hx, hz = (0.05, 0.85) if along_z else (0.85, 0.05)
    if not b.claim(x - hx, x + hx, z - hz, z + hz, 0.1):
        return False
    obj, label = b.new_object("bicycle"), LABEL_ID["bicycle"]
    frame = b.jitter(b.pick(CAR_COLORS), 0.1)
    r = 0.34
    for s in (-1, 1):
        cx, cz = (x, z + s * 0.55) if along_z else (x + s * 0.55, z)
        b.cylinder((cx, ground + r, cz), r, 0.02, 0 if along_z else 2, label, TYRE,
                   (0.05, 0.05, 0.05), (0.5, 0.5, 0.5), obj)
    lo = (x - 0.02, z - 0.55) if along_z else (x - 0.55, z - 0.02)
    hi = (x + 0.02, z + 0.55) if along_z else (x + 0.55, z + 0.02)
    b.box((lo[0], ground + 0.62, lo[1]), (hi[0], ground + 0.67, hi[1]), label, METAL, frame,
          obj=obj)
    b.box((x - 0.02, ground + 0.34, z - 0.02), (x + 0.02, ground + 0.95, z + 0.02), label,
          METAL, frame, obj=obj)
    return True


def add_traffic(b: SceneBuilder, rh: float, kerb_h: float, sw: float) -> None:
    """Parked and moving cars, buses/trucks, pedestrians and bicycles at 4-70 m."""
    rng = b.rng
    for side in (-1, 1):  # parked cars along both kerbs
        if rng.random() < 0.75:
            z = rng.uniform(3, 9)
            while z < 70:
                if rng.random() < 0.75:
                    _car(b, side * (rh - rng.uniform(0.95, 1.2)), z + 2.4, True,
                         int(rng.choice([-1, 1])))
                z += rng.uniform(5.2, 11)
    lanes = [-rh / 2, rh / 2] if rh > 4.5 else [0.0]
    for _ in range(rng.integers(0, 5)):  # moving cars
        x = lanes[rng.integers(len(lanes))] + rng.uniform(-0.4, 0.4)
        _car(b, x, rng.uniform(7, 65), True, 1 if x > 0 else -1)
    if rng.random() < 0.15:  # a car crossing the street
        _car(b, rng.uniform(-rh, rh), rng.uniform(12, 45), False, int(rng.choice([-1, 1])))
    if rng.random() < 0.3:
        _big_vehicle(b, lanes[rng.integers(len(lanes))], rng.uniform(14, 60))
    n_people = rng.integers(1, 11)
    for i in range(n_people * 3):
        if sum(o.label_id == LABEL_ID["person"] for o in b.objects) >= n_people:
            break
        if rng.random() < 0.2:  # crossing the road
            _person(b, rng.uniform(-rh + 0.5, rh - 0.5), rng.uniform(5, 40), 0.0)
        else:
            side = rng.choice([-1, 1])
            z = rng.uniform(4, 45) if i % 3 else rng.uniform(4, 14)
            _person(b, side * (rh + rng.uniform(0.4, sw - 0.3)), z, kerb_h)
    if rng.random() < 0.35:
        for _ in range(rng.integers(1, 3)):
            side = rng.choice([-1, 1])
            _bicycle(b, side * (rh + rng.uniform(0.5, max(0.6, sw - 0.9))), rng.uniform(5, 30),
                     kerb_h, rng.random() < 0.4)
