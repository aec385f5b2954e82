"""Ray-cast street scenes: one random scene -> RGB, metric depth, labelIds and object masks.

World frame (metres): x to the right of the street axis, y up, z along the street away from
the camera; the ground is the plane y = 0 and the road is |x| <= road_half_width. The camera
is a pinhole at z = 0 with Cityscapes-like intrinsics scaled to the image width (see
:func:`camera_intrinsics`); every pixel casts one ray whose camera-frame z component is 1,
so the ray parameter t of the nearest hit *is* the metric depth (z-depth, as stereo
disparity = baseline * fx / depth expects).

Data flow::

    rng ──► sample_scene(rng, height, width) ──► Scene
              street, building rows, trees, poles, signs, lights,     (primitives: planes,
              cars, buses/trucks, persons, bicycles, sun and sky       boxes, cylinders,
                                                                       ellipsoids)
    Scene ──► render_scene(scene)
              one ray per pixel ─► z-buffer over all primitives (each tested only on the
              screen rectangle its bounding box projects to) ─► depth t, primitive id
              ─► normals ─► procedural albedo per material (noise, tiles, lane markings,
              windows, lights) ─► sky light + Lambertian sun with shadows ─► fog, sky
              ─► RenderedScene(rgb, depth, label_ids, object_map, objects)

Everything is vectorised over pixels with NumPy; Python loops only run over primitives.
All randomness comes from the generator passed in, so a scene is a pure function of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from taskcodecs.data.labels import COCO_ID, LABEL_ID

# Cityscapes camera (2048 x 1024 images); the synthetic camera scales it with the image size.
CITYSCAPES_WIDTH, CITYSCAPES_HEIGHT = 2048, 1024
CITYSCAPES_FX, CITYSCAPES_FY = 2262.52, 2265.3017905988554
CITYSCAPES_U0, CITYSCAPES_V0 = 1096.98, 513.137
CITYSCAPES_BASELINE_M = 0.209313

PLANE, BOX, CYLINDER, ELLIPSOID = 0, 1, 2, 3
(ASPHALT, TERRAIN, PAVEMENT, FACADE, FOLIAGE, BARK, METAL, SIGN, TLIGHT, PAINT, CABIN, TYRE,
 CLOTH, SKIN, BUSBODY) = range(15)
_EPS = 1e-3
_EXPOSURE = 1.25  # linear gain from shaded radiance to 8-bit values
INF = np.float32(np.inf)


def camera_intrinsics(height: int, width: int) -> dict[str, float]:
    """Pinhole intrinsics in pixels: Cityscapes' fx scaled by width / 2048 (square pixels),
    principal point at Cityscapes' relative position."""
    fx = CITYSCAPES_FX * width / CITYSCAPES_WIDTH
    return {"fx": fx, "fy": fx, "u0": CITYSCAPES_U0 * width / CITYSCAPES_WIDTH,
            "v0": CITYSCAPES_V0 * height / CITYSCAPES_HEIGHT}


@dataclass(frozen=True)
class Camera:
    """Pinhole camera: image size (pixels), intrinsics (pixels), pose (metres, radians).

    pitch > 0 looks up, yaw > 0 looks to the right; no roll.
    """

    height: int
    width: int
    fx: float
    fy: float
    u0: float
    v0: float
    position: tuple[float, float, float]
    pitch: float
    yaw: float
    baseline: float = CITYSCAPES_BASELINE_M

    def rotation(self) -> np.ndarray:
        """World-from-camera rotation (3, 3): columns are the camera's right, up, forward."""
        cp, sp, cy, sy = np.cos(self.pitch), np.sin(self.pitch), np.cos(self.yaw), np.sin(self.yaw)
        r_pitch = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
        r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        return r_yaw @ r_pitch

    def ray_directions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World ray directions (three (H, W) float32 arrays) with camera-frame z = 1."""
        u = (np.arange(self.width) + 0.5 - self.u0) / self.fx
        v = -(np.arange(self.height) + 0.5 - self.v0) / self.fy
        rot = self.rotation()
        dirs = []
        for row in rot:
            d = (row[0] * u[None, :] + row[1] * v[:, None] + row[2]).astype(np.float32)
            d[np.abs(d) < 1e-7] = 1e-7  # no exact zeros: slab tests divide by them
            dirs.append(d)
        return dirs[0], dirs[1], dirs[2]

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World points (..., 3) -> pixel u, v and camera depth z (metres)."""
        cam = (points - np.asarray(self.position)) @ self.rotation()
        z = cam[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.fx * cam[..., 0] / z + self.u0, -self.fy * cam[..., 1] / z + self.v0, z


@dataclass(frozen=True)
class SceneObject:
    """One countable thing: Cityscapes labelId and COCO category id."""

    label_id: int
    coco_id: int


@dataclass(frozen=True)
class Scene:
    """A sampled scene: camera, primitive table (one row per primitive), objects, lighting.

    Rows 0 and 1 are the ground plane y = 0 (road where |x| <= road_half_width, terrain
    elsewhere). geom rows: box (lo xyz, hi xyz), cylinder (centre xyz, radius, half length,
    axis 0/1/2), ellipsoid (centre xyz, radii xyz); metres. tex rows: material parameters.
    """

    camera: Camera
    kind: np.ndarray        # (P,) int
    geom: np.ndarray        # (P, 6) float
    label: np.ndarray       # (P,) uint8 labelId
    material: np.ndarray    # (P,) int
    color: np.ndarray       # (P, 3) float32 albedo
    color2: np.ndarray      # (P, 3) float32 secondary albedo
    tex: np.ndarray         # (P, 4) float32
    obj: np.ndarray         # (P,) int, -1 for stuff
    objects: tuple[SceneObject, ...]
    shadow_boxes: np.ndarray  # (B, 7): lo, hi, object index
    rows: tuple[tuple[float, np.ndarray], ...]  # (facade x, (S, 3) z0 z1 height) per side
    sun: np.ndarray         # (3,) unit vector towards the sun
    sun_color: np.ndarray
    ambient: np.ndarray
    sky_horizon: np.ndarray
    sky_zenith: np.ndarray
    fog_distance: float     # metres
    road_half_width: float


@dataclass(frozen=True)
class RenderedScene:
    """Render output: rgb (H, W, 3) uint8, depth (H, W) float32 metres (inf = sky),
    label_ids (H, W) uint8 Cityscapes labelIds, object_map (H, W) int32 (index into
    ``objects``, -1 where no object is visible)."""

    rgb: np.ndarray
    depth: np.ndarray
    label_ids: np.ndarray
    object_map: np.ndarray
    objects: tuple[SceneObject, ...]
    camera: Camera


# --------------------------------------------------------------------------- layout


class _Builder:
    """Accumulates primitives, objects and occupied street footprints."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.rows: dict[str, list] = {k: [] for k in
                                      ("kind", "geom", "label", "mat", "c1", "c2", "tex", "obj")}
        self.objects: list[SceneObject] = []
        self.footprints: list[tuple[float, float, float, float]] = []
        self.shadow_boxes: list[list[float]] = []

    def add(self, kind: int, geom, label: int, mat: int, c1, c2=(0, 0, 0), tex=(0, 0, 0, 0),
            obj: int = -1) -> None:
        rows = self.rows
        rows["kind"].append(kind)
        rows["geom"].append((*geom, 0, 0, 0, 0, 0, 0)[:6])
        rows["label"].append(label)
        rows["mat"].append(mat)
        rows["c1"].append(c1)
        rows["c2"].append(c2)
        rows["tex"].append((*tex, 0, 0, 0, 0)[:4])
        rows["obj"].append(obj)

    def box(self, lo, hi, label, mat, c1, c2=(0, 0, 0), tex=(0, 0, 0, 0), obj=-1,
            shadow=False) -> None:
        self.add(BOX, (*lo, *hi), label, mat, c1, c2, tex, obj)
        if shadow:
            self.shadow_boxes.append([*lo, *hi, obj])

    def cylinder(self, center, radius, half_length, axis, label, mat, c1, c2=(0, 0, 0), obj=-1):
        self.add(CYLINDER, (*center, radius, half_length, axis), label, mat, c1, c2, obj=obj)

    def ellipsoid(self, center, radii, label, mat, c1, c2=(0, 0, 0), obj=-1) -> None:
        self.add(ELLIPSOID, (*center, *radii), label, mat, c1, c2, obj=obj)

    def new_object(self, name: str) -> int:
        self.objects.append(SceneObject(LABEL_ID[name], COCO_ID[name]))
        return len(self.objects) - 1

    def claim(self, x0: float, x1: float, z0: float, z1: float, margin: float = 0.3) -> bool:
        """Reserve a ground footprint; False (nothing reserved) if it overlaps another."""
        for a0, a1, b0, b1 in self.footprints:
            if x0 < a1 + margin and a0 < x1 + margin and z0 < b1 + margin and b0 < z1 + margin:
                return False
        self.footprints.append((x0, x1, z0, z1))
        return True

    def jitter(self, color, amount: float = 0.06) -> np.ndarray:
        return np.clip(np.asarray(color) * (1 + self.rng.uniform(-amount, amount, 3)), 0, 1)


FACADE_COLORS = np.array([[0.78, 0.72, 0.62], [0.62, 0.33, 0.25], [0.55, 0.55, 0.55],
                          [0.86, 0.84, 0.78], [0.80, 0.66, 0.40], [0.45, 0.42, 0.40],
                          [0.70, 0.55, 0.50], [0.60, 0.65, 0.70]])
CAR_COLORS = np.array([[0.75, 0.75, 0.76], [0.08, 0.08, 0.09], [0.92, 0.92, 0.92],
                       [0.55, 0.07, 0.06], [0.10, 0.20, 0.50], [0.35, 0.37, 0.40],
                       [0.15, 0.35, 0.20], [0.85, 0.65, 0.10], [0.45, 0.30, 0.20]])
CLOTH_COLORS = np.array([[0.10, 0.10, 0.12], [0.20, 0.25, 0.45], [0.60, 0.10, 0.10],
                         [0.80, 0.80, 0.75], [0.35, 0.30, 0.25], [0.15, 0.40, 0.30],
                         [0.85, 0.60, 0.20], [0.45, 0.45, 0.50]])
SKIN_COLORS = np.array([[0.90, 0.72, 0.60], [0.75, 0.55, 0.42], [0.50, 0.35, 0.25],
                        [0.35, 0.24, 0.18]])


def _pick(rng: np.random.Generator, palette: np.ndarray) -> np.ndarray:
    return palette[rng.integers(len(palette))]


def _street(b: _Builder, rh: float) -> dict:
    """Ground plane (road / terrain), raised sidewalks and building rows on both sides."""
    rng = b.rng
    asphalt = rng.uniform(0.25, 0.40) * np.array([1.0, 1.0, 1.03]) * rng.uniform(0.97, 1.03, 3)
    b.add(PLANE, (), LABEL_ID["road"], ASPHALT, asphalt,
          (0.85, 0.85, 0.80), (rng.random() < 0.7, rng.random() < 0.5,
                               rng.uniform(12, 45) if rng.random() < 0.3 else -1, rh))
    b.add(PLANE, (), LABEL_ID["terrain"], TERRAIN, b.jitter([0.30, 0.40, 0.18], 0.15),
          (0.42, 0.35, 0.25))
    sidewalk, kerb = b.jitter(_pick(rng, FACADE_COLORS[[0, 2, 3, 6]]) * 0.9, 0.05), [0.6, 0.6, 0.58]
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
                  LABEL_ID["building"], FACADE, b.jitter(_pick(rng, FACADE_COLORS)),
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
                  FACADE, b.jitter(_pick(rng, FACADE_COLORS)), (0.2, 0.22, 0.26),
                  (3.2, 2.5, 0.45, 0.5))
    if rng.random() < 0.55:  # the street ends at a cross building
        z0 = z_end + rng.uniform(10, 30)
        b.box((-150, -0.5, z0), (150, rng.uniform(8, 30), z0 + 20), LABEL_ID["building"],
              FACADE, b.jitter(_pick(rng, FACADE_COLORS)), (0.2, 0.22, 0.26),
              (rng.uniform(2.8, 3.6), rng.uniform(1.8, 3.2), 0.45, 0.5))
    return {"sw": sw, "kerb_h": kerb_h, "rows": tuple(rows), "z_end": z_end}


def _tree(b: _Builder, x: float, z: float, ground: float = 0.0) -> None:
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


def _street_furniture(b: _Builder, rh: float, kerb_h: float, z_end: float) -> None:
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


def _car(b: _Builder, x: float, z: float, along_z: bool, facing: int) -> bool:
    """A car centred at (x, z) on the road: body, cabin and four wheels."""
    rng = b.rng
    length, width = rng.uniform(3.8, 4.9), rng.uniform(1.65, 1.9)
    body_h, cabin_h = rng.uniform(0.55, 0.8), rng.uniform(0.45, 0.62)
    hx, hz = (width / 2, length / 2) if along_z else (length / 2, width / 2)
    if not b.claim(x - hx, x + hx, z - hz, z + hz):
        return False
    obj, label = b.new_object("car"), LABEL_ID["car"]
    paint = b.jitter(_pick(rng, CAR_COLORS), 0.08)
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


def _big_vehicle(b: _Builder, x: float, z: float) -> bool:
    """A bus or a truck driving along the street."""
    rng = b.rng
    is_bus = rng.random() < 0.5
    length, width = (rng.uniform(10, 12.5), 2.55) if is_bus else (rng.uniform(7, 9), 2.5)
    if not b.claim(x - width / 2, x + width / 2, z - length / 2, z + length / 2):
        return False
    name = "bus" if is_bus else "truck"
    obj, label, paint = b.new_object(name), LABEL_ID[name], b.jitter(_pick(rng, CAR_COLORS), 0.1)
    x0, x1, z0, z1 = x - width / 2, x + width / 2, z - length / 2, z + length / 2
    if is_bus:
        b.box((x0, 0.35, z0), (x1, 3.1, z1), label, BUSBODY, paint, (0.1, 0.12, 0.15),
              (0.35,), obj, shadow=True)
    else:
        b.box((x0, 0.45, z0), (x1, 2.9, z0 + 2.2), label, CABIN, paint, (0.1, 0.12, 0.15),
              obj=obj, shadow=True)
        b.box((x0, 0.9, z0 + 2.4), (x1, rng.uniform(3.2, 3.8), z1), label, PAINT,
              b.jitter(_pick(rng, CAR_COLORS[[0, 2, 5]]), 0.1), (0.1, 0.1, 0.1),
              (2, 1, 0.9, 0), obj, shadow=True)
    for wz in (z0 + 1.6, z1 - 1.8):
        for wx in (x0 + 0.15, x1 - 0.15):
            b.cylinder((wx, 0.5, wz), 0.5, 0.15, 0, label, TYRE, (0.06, 0.06, 0.06),
                       (0.6, 0.6, 0.62), obj)
    return True


def _person(b: _Builder, x: float, z: float, ground: float) -> bool:
    """A pedestrian standing at (x, z): legs, torso, arms, neck and head."""
    rng = b.rng
    h = rng.uniform(1.5, 1.95)
    if not b.claim(x - 0.25, x + 0.25, z - 0.2, z + 0.2, 0.05):
        return False
    obj, label = b.new_object("person"), LABEL_ID["person"]
    shirt, trousers = b.jitter(_pick(rng, CLOTH_COLORS)), b.jitter(_pick(rng, CLOTH_COLORS))
    skin = b.jitter(_pick(rng, SKIN_COLORS), 0.05)
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


def _bicycle(b: _Builder, x: float, z: float, ground: float, along_z: bool) -> bool:
    """A parked bicycle: two thin wheels and a frame of thin boxes."""
    rng = b.rng
    hx, hz = (0.05, 0.85) if along_z else (0.85, 0.05)
    if not b.claim(x - hx, x + hx, z - hz, z + hz, 0.1):
        return False
    obj, label = b.new_object("bicycle"), LABEL_ID["bicycle"]
    frame = b.jitter(_pick(rng, CAR_COLORS), 0.1)
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


def _traffic(b: _Builder, rh: float, kerb_h: float, sw: float) -> None:
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


def sample_scene(rng: np.random.Generator, height: int, width: int) -> Scene:
    """Draw a random street scene and a camera for a ``height`` x ``width`` image."""
    b = _Builder(rng)
    rh = rng.uniform(3.5, 7.5)  # road half width, metres
    camera_x = rng.uniform(-0.3 * rh, 0.6 * rh)
    b.claim(camera_x - 1.0, camera_x + 1.0, -10.0, 4.0, margin=0.0)  # nothing on the camera
    street = _street(b, rh)
    _street_furniture(b, rh, street["kerb_h"], street["z_end"])
    _traffic(b, rh, street["kerb_h"], street["sw"])
    camera = Camera(height, width, **camera_intrinsics(height, width),
                    position=(camera_x, rng.uniform(1.2, 1.6), 0.0),
                    pitch=rng.uniform(-0.06, 0.03), yaw=rng.uniform(-0.12, 0.12))
    elevation, azimuth = rng.uniform(0.3, 1.15), rng.uniform(0, 2 * np.pi)
    overcast = rng.random() < 0.25
    sun_power = rng.uniform(0.12, 0.25) if overcast else rng.uniform(0.75, 1.0)
    f32, rows = np.float32, b.rows
    return Scene(
        camera=camera, kind=np.array(rows["kind"]), geom=np.array(rows["geom"], np.float64),
        label=np.array(rows["label"], np.uint8), material=np.array(rows["mat"]),
        color=np.array(rows["c1"], f32), color2=np.array(rows["c2"], f32),
        tex=np.array(rows["tex"], f32), obj=np.array(rows["obj"]),
        objects=tuple(b.objects), shadow_boxes=np.array(b.shadow_boxes).reshape(-1, 7),
        rows=street["rows"],
        sun=np.array([np.cos(elevation) * np.sin(azimuth), np.sin(elevation),
                      np.cos(elevation) * np.cos(azimuth)], f32),
        sun_color=np.array([1.0, 0.95, 0.86], f32) * f32(sun_power),
        ambient=np.array([0.36, 0.39, 0.46], f32) * f32(rng.uniform(1.3, 1.6) if overcast
                                                        else rng.uniform(0.7, 1.0)),
        sky_horizon=b.jitter([0.80, 0.84, 0.88] if overcast else [0.72, 0.80, 0.90], 0.05)
        .astype(f32),
        sky_zenith=b.jitter([0.62, 0.65, 0.70] if overcast else [0.28, 0.45, 0.78], 0.1)
        .astype(f32),
        fog_distance=rng.uniform(120, 500) if overcast else rng.uniform(300, 1500),
        road_half_width=rh,
    )


# --------------------------------------------------------------------------- ray casting


def _box_t(o, d, inv, g) -> np.ndarray:
    """Nearest entry distance of rays o + t d into the axis-aligned box g = (lo, hi)."""
    t_near = t_far = None
    for a in range(3):
        t1, t2 = (g[a] - o[a]) * inv[a], (g[a + 3] - o[a]) * inv[a]
        lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
        t_near = lo if t_near is None else np.maximum(t_near, lo)
        t_far = hi if t_far is None else np.minimum(t_far, hi)
    return np.where((t_near <= t_far) & (t_near > _EPS), t_near, INF)


def _cylinder_t(o, d, g) -> np.ndarray:
    """Nearest hit of rays from the single point o with a capped cylinder g."""
    axis = int(g[5])
    i, j = [k for k in range(3) if k != axis]
    oi, oj, r, hl = o[i] - g[i], o[j] - g[j], g[3], g[4]
    a = d[i] * d[i] + d[j] * d[j]
    half_b = oi * d[i] + oj * d[j]
    disc = half_b * half_b - a * (oi * oi + oj * oj - r * r)
    with np.errstate(invalid="ignore"):
        t = (-half_b - np.sqrt(disc)) / a
    along = o[axis] + t * d[axis] - g[axis]
    t = np.where((disc >= 0) & (t > _EPS) & (np.abs(along) <= hl), t, INF)
    rel = o[axis] - g[axis]
    if abs(rel) > hl:  # the cap facing the origin
        t_cap = (np.sign(rel) * hl - rel) / d[axis]
        pi, pj = oi + t_cap * d[i], oj + t_cap * d[j]
        t = np.where((t_cap > _EPS) & (pi * pi + pj * pj <= r * r) & (t_cap < t), t_cap, t)
    return t


def _ellipsoid_t(o, d, g) -> np.ndarray:
    """Nearest hit of rays from the single point o with an axis-aligned ellipsoid g."""
    oc = [(o[k] - g[k]) / g[k + 3] for k in range(3)]
    dn = [d[k] / g[k + 3] for k in range(3)]
    a = dn[0] * dn[0] + dn[1] * dn[1] + dn[2] * dn[2]
    half_b = oc[0] * dn[0] + oc[1] * dn[1] + oc[2] * dn[2]
    disc = half_b * half_b - a * (oc[0] ** 2 + oc[1] ** 2 + oc[2] ** 2 - 1)
    with np.errstate(invalid="ignore"):
        t = (-half_b - np.sqrt(disc)) / a
    return np.where((disc >= 0) & (t > _EPS), t, INF)


def _bounds(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """World AABBs (P, 3) lo and hi of every primitive (planes: empty)."""
    g, k = scene.geom, scene.kind
    lo, hi = g[:, :3].copy(), g[:, 3:6].copy()
    cyl, ell = k == CYLINDER, k == ELLIPSOID
    ext = np.zeros((len(g), 3))
    for a in range(3):
        ext[:, a] = np.where(g[:, 5] == a, g[:, 4], g[:, 3])
    lo[cyl], hi[cyl] = g[cyl, :3] - ext[cyl], g[cyl, :3] + ext[cyl]
    lo[ell], hi[ell] = g[ell, :3] - g[ell, 3:6], g[ell, :3] + g[ell, 3:6]
    return lo, hi


_EDGES = [(c, c | 1 << a) for c in range(8) for a in range(3) if not c >> a & 1]  # 12 edges
_NEAR = 0.05  # metres: the near plane used to clip boxes that reach behind the camera


def _screen_rects(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Pixel rectangles (P, 4: v0, v1, u0, u1) covering each primitive, and its nearest depth.

    The bounding box is clipped by the near plane (its corners in front plus the points where
    its 12 edges cross the plane), so the rectangle is exact for boxes and conservative for
    cylinders and ellipsoids. Planes and primitives entirely behind the camera get none.
    """
    cam = scene.camera
    lo, hi = _bounds(scene)
    corners = np.stack([np.stack([(lo, hi)[(c >> a) & 1][:, a] for a in range(3)], -1)
                        for c in range(8)], 1)  # (P, 8, 3)
    rot, origin = cam.rotation(), np.asarray(cam.position)
    cam_pts = (corners - origin) @ rot  # camera frame: x right, y up, z forward
    a_idx, b_idx = zip(*_EDGES)
    za, zb = cam_pts[:, a_idx, 2], cam_pts[:, b_idx, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (_NEAR - za) / (zb - za)
        crossing = (s > 0) & (s < 1)
        edge_pts = cam_pts[:, a_idx] + s[..., None] * (cam_pts[:, b_idx] - cam_pts[:, a_idx])
    pts = np.concatenate([cam_pts, edge_pts], 1)  # (P, 20, 3)
    valid = np.concatenate([cam_pts[..., 2] >= _NEAR, crossing], 1)
    z = np.where(valid, np.maximum(pts[..., 2], _NEAR), np.inf)
    u = np.where(valid, cam.fx * pts[..., 0] / z + cam.u0, np.nan)
    v = np.where(valid, -cam.fy * pts[..., 1] / z + cam.v0, np.nan)
    any_valid = valid.any(1) & (scene.kind != PLANE)
    u[~any_valid], v[~any_valid] = 0, 0
    rects = np.stack([np.floor(np.nanmin(v, 1)) - 1, np.ceil(np.nanmax(v, 1)) + 2,
                      np.floor(np.nanmin(u, 1)) - 1, np.ceil(np.nanmax(u, 1)) + 2], 1)
    rects[:, :2] = np.clip(rects[:, :2], 0, cam.height)
    rects[:, 2:] = np.clip(rects[:, 2:], 0, cam.width)
    rects[~any_valid] = 0
    return rects.astype(np.int64), np.where(any_valid, z.min(1), np.inf)


def _cast(scene: Scene, dirs) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffer over all primitives: depth (H, W) float32 (inf = no hit), primitive id."""
    cam = scene.camera
    o = np.asarray(cam.position, np.float64)
    dx, dy, dz = dirs
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = np.where(dy < -1e-6, -o[1] / dy, INF).astype(np.float32)
    depth = t_ground
    x = o[0] + t_ground * dx  # primitives 0 and 1: the road and terrain parts of y = 0
    pid = np.where(np.isfinite(t_ground),
                   np.where(np.abs(x) <= scene.road_half_width, 0, 1), -1).astype(np.int32)
    inv = [1.0 / dx, 1.0 / dy, 1.0 / dz]
    rects, z_near = _screen_rects(scene)
    for k in np.argsort(z_near, kind="stable"):
        v0, v1, u0, u1 = rects[k]
        if v1 <= v0 or u1 <= u0:
            continue
        zbuf = depth[v0:v1, u0:u1]
        if z_near[k] >= zbuf.max():
            continue
        d = [c[v0:v1, u0:u1] for c in (dx, dy, dz)]
        g, kind = scene.geom[k], scene.kind[k]
        if kind == BOX:
            t = _box_t(o, d, [c[v0:v1, u0:u1] for c in inv], g)
        elif kind == CYLINDER:
            t = _cylinder_t(o, d, g)
        else:
            t = _ellipsoid_t(o, d, g)
        np.copyto(pid[v0:v1, u0:u1], k, where=t < zbuf)
        np.minimum(zbuf, t, out=zbuf)
    return depth, pid


def _normals(scene: Scene, p: np.ndarray, pid: np.ndarray) -> np.ndarray:
    """Unit surface normals (N, 3) at hit points p (N, 3) of primitives pid (N,)."""
    kind, g = scene.kind[pid], scene.geom[pid].astype(np.float32)
    n = np.zeros_like(p)
    n[:, 1] = 1.0  # planes
    idx = np.nonzero(kind == BOX)[0]
    d_lo, d_hi = np.abs(p[idx] - g[idx, :3]), np.abs(p[idx] - g[idx, 3:6])
    axis = np.minimum(d_lo, d_hi).argmin(1)
    rows = np.arange(len(idx))
    n[idx] = 0
    n[idx, axis] = np.where(d_lo[rows, axis] < d_hi[rows, axis], -1.0, 1.0)
    idx = np.nonzero(kind == CYLINDER)[0]
    rel = p[idx] - g[idx, :3]
    axis = g[idx, 5].astype(np.int64)
    rows = np.arange(len(idx))
    along = rel[rows, axis]
    radial = rel.copy()
    radial[rows, axis] = 0
    radial_len = np.linalg.norm(radial, axis=1) + 1e-9
    cap = (g[idx, 4] - np.abs(along)) < (g[idx, 3] - radial_len)
    nc = radial / radial_len[:, None]
    nc[cap] = 0
    nc[cap, axis[cap]] = np.sign(along[cap])
    n[idx] = nc
    idx = np.nonzero(kind == ELLIPSOID)[0]
    ne = (p[idx] - g[idx, :3]) / g[idx, 3:6] ** 2
    n[idx] = ne / (np.linalg.norm(ne, axis=1, keepdims=True) + 1e-9)
    return n


# --------------------------------------------------------------------------- materials


@lru_cache(maxsize=1)
def _noise_texture(size: int = 256) -> np.ndarray:
    """A fixed, tileable fractal noise texture (size, size) with values in about [-1, 1]."""
    rng = np.random.default_rng(20240611)
    freq = np.fft.fftfreq(size)
    k = np.sqrt(freq[:, None] ** 2 + freq[None, :] ** 2)
    k[0, 0] = 1.0
    spectrum = np.fft.fft2(rng.standard_normal((size, size))) / k ** 1.1
    spectrum[0, 0] = 0
    tex = np.real(np.fft.ifft2(spectrum))
    return (tex / (3 * tex.std())).clip(-1, 1).astype(np.float32)


def _noise(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear lookup of the noise texture at texel coordinates (u, v); wraps around."""
    tex = _noise_texture()
    mask = tex.shape[0] - 1  # the size is a power of two
    u, v = np.asarray(u, np.float32), np.asarray(v, np.float32)
    u0, v0 = np.floor(u), np.floor(v)
    fu, fv = u - u0, v - v0
    i0, j0 = u0.astype(np.int32) & mask, v0.astype(np.int32) & mask
    i1, j1 = (i0 + 1) & mask, (j0 + 1) & mask
    top = tex[j0, i0] * (1 - fu) + tex[j0, i1] * fu
    bottom = tex[j1, i0] * (1 - fu) + tex[j1, i1] * fu
    return top * (1 - fv) + bottom * fv


def _hash01(i: np.ndarray, j: np.ndarray, salt: int = 0) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer cell (i, j)."""
    h = (i.astype(np.int64) * 73856093) ^ (j.astype(np.int64) * 19349663) ^ (salt * 83492791)
    h &= 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 0x5BD1E995) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0xFFFF).astype(np.float32) / 65536.0


def _albedo(scene: Scene, p: np.ndarray, n: np.ndarray, pid: np.ndarray,
            view_up: np.ndarray) -> np.ndarray:
    """Procedural surface colour (N, 3) per hit point, by material.

    ``view_up`` (N,) in [0, 1] says how much sky the mirrored view ray sees (for glass).
    """
    out = scene.color[pid]
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    fine = _noise(x * 9 + z * 3, z * 9 + y * 7)
    out *= (1 + 0.12 * fine + 0.12 * _noise(x * 0.6 + 40, z * 0.6 + y * 0.6))[:, None]
    mat = scene.material[pid]
    order = np.argsort(mat, kind="stable")
    bounds = np.searchsorted(mat[order], np.arange(BUSBODY + 2))
    groups = {m: order[bounds[m]:bounds[m + 1]] for m in range(BUSBODY + 1)}

    i = groups[ASPHALT]
    if len(i):
        xm, zm, t, c2 = x[i], z[i], scene.tex[pid[i]], scene.color2[pid[i]]
        centre = (t[:, 0] > 0) & (np.abs(xm) < 0.08) & (np.mod(zm, 9.0) < 3.5)
        edge = (t[:, 1] > 0) & (np.abs(np.abs(xm) - (t[:, 3] - 0.4)) < 0.08)
        cross = (t[:, 2] > 0) & (zm > t[:, 2]) & (zm < t[:, 2] + 3.5) & (np.mod(xm, 1.0) < 0.5)
        mark = (centre | edge | cross) & (fine[i] > -0.6)
        out[i[mark]] = c2[mark] * (0.9 + 0.1 * fine[i[mark], None])
    i = groups[TERRAIN]
    if len(i):
        mix = np.clip(0.5 + 1.5 * _noise(x[i] * 0.3, z[i] * 0.3), 0, 1)[:, None]
        out[i] = out[i] * mix + scene.color2[pid[i]] * (1 - mix)
    i = groups[PAVEMENT]
    if len(i):
        top, tile = n[i, 1] > 0.5, scene.tex[pid[i], 0]
        xi, zi = x[i] / tile, z[i] / tile
        grout = (np.mod(xi, 1) < 0.06) | (np.mod(zi, 1) < 0.06)
        shade = (0.88 + 0.24 * _hash01(np.floor(xi), np.floor(zi), 3)) * np.where(grout, 0.75, 1)
        kerb = scene.color2[pid[i]] * (1 + 0.1 * fine[i, None])
        out[i] = np.where(top[:, None], out[i] * shade[:, None], kerb)
    if len(groups[FACADE]):
        _facade(scene, out, groups[FACADE], p, n, pid, view_up)
    i = groups[FOLIAGE]
    if len(i):
        leaves = _noise(x[i] * 7 + z[i] * 5, y[i] * 7 - z[i] * 3)
        mix = np.clip(0.5 + leaves, 0, 1)[:, None]
        out[i] = (out[i] * mix + scene.color2[pid[i]] * (1 - mix)) * (0.75 + 0.35 * leaves[:, None])
    i = groups[BARK]
    if len(i):
        out[i] *= (0.8 + 0.3 * _noise(x[i] * 40 + z[i] * 40, y[i] * 3))[:, None]
    i = groups[SIGN]
    if len(i):
        t, front = scene.tex[pid[i]], np.abs(n[i, 2]) > 0.5
        r = np.maximum(np.abs(x[i] - t[:, 0]) / t[:, 2], np.abs(y[i] - t[:, 1]) / t[:, 3])
        inner = front & (r < 0.72) & (np.abs(y[i] - t[:, 1]) / t[:, 3] > 0.25)
        out[i[inner]] = scene.color2[pid[i[inner]]]
        out[i[~front]] = 0.5
    i = groups[TLIGHT]
    if len(i):
        t, front = scene.tex[pid[i]], n[i, 2] < -0.5
        slot = np.floor((y[i] - t[:, 1]) / 0.85 * 3)
        dist = np.hypot(x[i] - t[:, 0], (y[i] - t[:, 1]) - (slot + 0.5) * 0.85 / 3)
        lamp = front & (dist < 0.1)
        lit = lamp & (slot == 2 - t[:, 2])
        colors = np.array([[1.0, 0.15, 0.1], [1.0, 0.75, 0.1], [0.2, 1.0, 0.4]], np.float32)
        out[i[lamp]] = 0.15
        out[i[lit]] = colors[t[lit, 2].astype(np.int64)] * 3.0
    i = np.concatenate([groups[PAINT], groups[CABIN], groups[BUSBODY]])
    if len(i):
        _vehicle(scene, out, i, p, n, pid, view_up)
    i = groups[TYRE]
    if len(i):
        g = scene.geom[pid[i]].astype(np.float32)
        rel, axis, rows = p[i] - g[:, :3], g[:, 5].astype(np.int64), np.arange(len(i))
        radial = np.sqrt(np.maximum((rel ** 2).sum(1) - rel[rows, axis] ** 2, 0))
        hub = (np.abs(n[i][rows, axis]) > 0.5) & (radial < 0.55 * g[:, 3])
        out[i[hub]] = scene.color2[pid[i[hub]]]
    return out


def _facade(scene: Scene, out, idx, p, n, pid, view_up) -> None:
    """Windows on building faces: a grid of floors and bays; roofs plain grey."""
    pm, nm, k = p[idx], n[idx], pid[idx]
    g, t = scene.geom[k].astype(np.float32), scene.tex[k]
    along = np.where(np.abs(nm[:, 0]) > 0.5, pm[:, 2] - g[:, 2], pm[:, 0] - g[:, 0])
    floor_h, bay, win_w, win_h = t[:, 0], t[:, 1], t[:, 2], t[:, 3]
    a, fl = np.mod(along / bay, 1.0), np.mod(pm[:, 1] / floor_h, 1.0)
    ground = pm[:, 1] < floor_h
    window = (np.abs(a - 0.5) < win_w / 2) & (np.abs(fl - 0.5) < win_h / 2) & ~ground
    shop = ground & (np.abs(a - 0.5) < 0.42) & (fl > 0.08) & (fl < 0.75)
    frame = (np.abs(a - 0.5) < win_w / 2 + 0.04) & (np.abs(fl - 0.5) < win_h / 2 + 0.04) & ~ground
    cornice = fl < 0.04
    cell = _hash01(np.floor(along / bay), np.floor(pm[:, 1] / floor_h), 7)[:, None]
    reflect = (0.25 + 0.5 * view_up[idx])[:, None] * (0.5 + cell)
    glass_col = scene.color2[k] * (0.6 + 0.8 * cell) + 0.25 * reflect
    col = out[idx]
    col = np.where(cornice[:, None], col * 0.8, col)
    col = np.where(frame[:, None], col * 1.1, col)
    col = np.where((window | shop)[:, None], glass_col, col)
    col = np.where((nm[:, 1] > 0.5)[:, None], 0.45, col)
    out[idx] = col


def _vehicle(scene: Scene, out, idx, p, n, pid, view_up) -> None:
    """Car and bus bodies: lights at the ends, glass cabins with pillars, bus window bands."""
    pm, nm, k = p[idx], n[idx], pid[idx]
    g, t, mm, glass = scene.geom[k].astype(np.float32), scene.tex[k], scene.material[k], \
        scene.color2[k]
    col = out[idx]
    glass_col = glass + (0.15 + 0.35 * view_up[idx])[:, None]
    # cabin: glass on the sides except near the vertical edges (pillars)
    horiz = np.abs(nm[:, 1]) < 0.5
    u = np.where(np.abs(nm[:, 0]) > 0.5, pm[:, 2], pm[:, 0])
    u_lo = np.where(np.abs(nm[:, 0]) > 0.5, g[:, 2], g[:, 0])
    u_hi = np.where(np.abs(nm[:, 0]) > 0.5, g[:, 5], g[:, 3])
    pillar = (u - u_lo < 0.09) | (u_hi - u < 0.09) | (g[:, 4] - pm[:, 1] < 0.05)
    cabin_glass = (mm == CABIN) & horiz & ~pillar
    # bus: a window band with posts on every vertical face
    rel_y = pm[:, 1] - g[:, 1]
    bus_glass = (mm == BUSBODY) & horiz & (rel_y > 1.0) & (rel_y < 2.3) & (np.mod(u, 1.3) > 0.12)
    stripe = (mm == BUSBODY) & horiz & (rel_y > 0.7) & (rel_y < 0.85)
    # car body: dark sill, head and tail lights on the end faces
    axis = t[:, 0].astype(np.int64)
    rows = np.arange(len(idx))
    end_face = (mm == PAINT) & (np.abs(nm[rows, axis]) > 0.5)
    lat = np.where(axis == 2, pm[:, 0], pm[:, 2])
    lat_lo, lat_hi = np.where(axis == 2, g[:, 0], g[:, 2]), np.where(axis == 2, g[:, 3], g[:, 5])
    corner = (np.minimum(lat - lat_lo, lat_hi - lat) < 0.35) & (g[:, 4] - pm[:, 1] < 0.22)
    is_front = np.sign(nm[rows, axis]) == t[:, 1]
    lights = end_face & corner
    sill = (mm == PAINT) & (rel_y < 0.12)
    col = np.where(sill[:, None], col * 0.35, col)
    col = np.where(stripe[:, None], glass * 2 + 0.3, col)
    col = np.where((cabin_glass | bus_glass)[:, None], glass_col, col)
    light_col = np.where(is_front[:, None], np.float32([0.95, 0.95, 0.85]),
                         np.float32([0.75, 0.05, 0.05]))
    out[idx] = np.where(lights[:, None], light_col, col)


# --------------------------------------------------------------------------- lighting


def _shadow(scene: Scene, p: np.ndarray, obj: np.ndarray) -> np.ndarray:
    """1 where the sun is visible from p (N, 3), 0 where a building row or an object
    (cars, buses, persons, tree crowns: their proxy boxes) blocks it."""
    sun = np.where(np.abs(scene.sun) < 1e-6, 1e-6, scene.sun)
    lit = np.ones(len(p), bool)
    for face, segments in scene.rows:  # the street-facing building rows, analytically
        if len(segments) == 0 or np.sign(face) != np.sign(sun[0]):
            continue
        s = (face - p[:, 0]) / sun[0]
        cand = np.nonzero(s > 0.05)[0]
        y, z = p[cand, 1] + s[cand] * sun[1], p[cand, 2] + s[cand] * sun[2]
        k = np.searchsorted(segments[:, 0], z, side="right") - 1
        inside = (k >= 0) & (z < segments[np.maximum(k, 0), 1])
        lit[cand[inside & (y < segments[np.maximum(k, 0), 2])]] = False
    # object proxies: points sorted by z, so each box's candidates are one contiguous slice
    inv = 1.0 / sun
    by_z = np.argsort(p[:, 2], kind="stable")
    xs, ys, zs, obj_s = p[by_z, 0], p[by_z, 1], p[by_z, 2], obj[by_z]
    lit_s = lit[by_z]
    for box in scene.shadow_boxes:
        lo, hi = box[:3], box[3:6]
        # points that can be shadowed lie between the box and its shadow on the ground
        reach = hi[1] / sun[1]
        x_ext = sorted((lo[0], hi[0], lo[0] - reach * sun[0], hi[0] - reach * sun[0]))
        z_ext = sorted((lo[2], hi[2], lo[2] - reach * sun[2], hi[2] - reach * sun[2]))
        start, stop = np.searchsorted(zs, (z_ext[0], z_ext[3]))
        if stop <= start:
            continue
        sl = slice(start, stop)
        keep = (ys[sl] < hi[1]) & (xs[sl] > x_ext[0]) & (xs[sl] < x_ext[3])
        if box[6] >= 0:
            keep &= obj_s[sl] != box[6]
        cand = np.nonzero(keep)[0] + start
        if len(cand):
            t = _box_t((xs[cand], ys[cand], zs[cand]), None, inv, box)
            lit_s[cand[np.isfinite(t)]] = False
    lit[by_z] = lit_s
    return lit.astype(np.float32)


def _sky(scene: Scene, dirs: np.ndarray) -> np.ndarray:
    """Sky colour (N, 3) for unit view directions (N, 3): gradient, clouds, sun glow."""
    up = np.clip(dirs[:, 1], 0, 1)
    mix = (up * 2.5).clip(0, 1)[:, None] ** 0.7
    col = scene.sky_horizon * (1 - mix) + scene.sky_zenith * mix
    with np.errstate(divide="ignore"):
        scale = 30.0 / np.maximum(dirs[:, 1], 0.02)
    clouds = _noise(dirs[:, 0] * scale, dirs[:, 2] * scale * 0.5)
    cover = np.clip((clouds + 0.2) * 2.5, 0, 1)[:, None] * (up > 0)[:, None]
    col = col * (1 - 0.7 * cover) + 0.78 * 0.7 * cover
    glow = np.clip(dirs @ scene.sun, 0, 1) ** 64 * np.linalg.norm(scene.sun_color)
    return (col + glow[:, None] * 0.6).astype(np.float32)


def render_scene(scene: Scene) -> RenderedScene:
    """Ray-cast ``scene``: RGB, depth (metres, inf = sky), labelIds and the object map."""
    cam = scene.camera
    dirs = cam.ray_directions()
    depth, pid = _cast(scene, dirs)
    d = np.stack(dirs, -1).reshape(-1, 3)
    flat_pid, flat_t = pid.reshape(-1), depth.reshape(-1)
    hit, miss = np.nonzero(flat_pid >= 0)[0], np.nonzero(flat_pid < 0)[0]
    hp = flat_pid[hit]
    p = np.asarray(cam.position, np.float32) + flat_t[hit, None] * d[hit]
    n = _normals(scene, p, hp)
    obj = scene.obj[hp]
    dh = d[hit]
    # upward component of the mirrored view ray: how much sky glass and paint reflect
    d_dot_n = dh[:, 0] * n[:, 0] + dh[:, 1] * n[:, 1] + dh[:, 2] * n[:, 2]
    norm = np.sqrt(dh[:, 0] ** 2 + dh[:, 1] ** 2 + dh[:, 2] ** 2)
    mirror_up = (dh[:, 1] - 2 * d_dot_n * n[:, 1]) / norm
    albedo = _albedo(scene, p, n, hp, (0.3 + 2.0 * mirror_up).clip(0, 1))
    lambert = (n @ scene.sun).clip(0, None) * _shadow(scene, p, obj)
    sky_light = (0.55 + 0.45 * n[:, 1])[:, None] * scene.ambient
    color = albedo * (sky_light + lambert[:, None] * scene.sun_color)
    fog = np.exp(-flat_t[hit] / np.float32(scene.fog_distance))[:, None]
    color = color * fog + scene.sky_horizon * (1 - fog)
    image = np.empty((len(flat_t), 3), np.float32)
    image[hit] = color
    sky_dirs = d[miss] / np.linalg.norm(d[miss], axis=1, keepdims=True)
    image[miss] = _sky(scene, sky_dirs)
    rgb = np.clip(image * (255 * _EXPOSURE) + 0.5, 0, 255).astype(np.uint8)
    label = np.full(flat_pid.shape, LABEL_ID["sky"], np.uint8)
    label[hit] = scene.label[hp]
    object_map = np.full(flat_pid.shape, -1, np.int32)
    object_map[hit] = obj
    shape = (cam.height, cam.width)
    return RenderedScene(rgb=rgb.reshape(*shape, 3), depth=depth, label_ids=label.reshape(shape),
                         object_map=object_map.reshape(shape), objects=scene.objects, camera=cam)


def generate_scene(rng: np.random.Generator, height: int, width: int) -> RenderedScene:
    """Sample and render one scene."""
    return render_scene(sample_scene(rng, height, width))
