"""What a sampled scene is: a table of primitives (planes, boxes, cylinders, ellipsoids)
with their labels and materials, the countable objects they make up, and the lighting; and
:class:`SceneBuilder`, which the layout code (:mod:`.street`, :mod:`.traffic`) fills.

Geometry is in world metres (see :mod:`.camera` for the frame); the ground is the plane
y = 0 and the road is |x| <= road_half_width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from taskcodecs.data.labels import COCO_ID, LABEL_ID
from taskcodecs.data.scene.camera import Camera

# primitive kinds (Scene.kind) and materials (Scene.material: which procedural albedo)
PLANE, BOX, CYLINDER, ELLIPSOID = 0, 1, 2, 3
(ASPHALT, TERRAIN, PAVEMENT, FACADE, FOLIAGE, BARK, METAL, SIGN, TLIGHT, PAINT, CABIN, TYRE,
 CLOTH, SKIN, BUSBODY) = range(15)


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


class SceneBuilder:
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

    def pick(self, palette: np.ndarray) -> np.ndarray:
        """One row of ``palette``, drawn uniformly."""
        return palette[self.rng.integers(len(palette))]
