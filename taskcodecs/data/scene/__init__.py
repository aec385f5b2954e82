"""Ray-cast street scenes: one random scene -> RGB, metric depth, labelIds and object masks.

World frame (metres): x to the right of the street axis, y up, z along the street away from
the camera; the ground is the plane y = 0 and the road is |x| <= road_half_width. The camera
is a pinhole at z = 0 with Cityscapes-like intrinsics scaled to the image width (see
:func:`camera_intrinsics`); every pixel casts one ray whose camera-frame z component is 1,
so the ray parameter t of the nearest hit *is* the metric depth (z-depth, as stereo
disparity = baseline * fx / depth expects).

Data flow (module of each step in brackets)::

    rng ──► sample_scene(rng, height, width) ──► Scene                              [sample]
              street, building rows, trees, poles, signs, lights,   [street]  (primitives:
              cars, buses/trucks, persons, bicycles,                [traffic]  planes, boxes,
              camera, sun and sky                                              cylinders,
                                                                               ellipsoids)
    Scene ──► render_scene(scene)                                                   [render]
              one ray per pixel ─► z-buffer over all primitives (each tested only on the
              screen rectangle its bounding box projects to) ─► depth t, primitive id
              ─► normals                                                            [raycast]
              ─► procedural albedo per material (noise, tiles, lane markings,
                 windows, lights)                                                 [materials]
              ─► sky light + Lambertian sun with shadows ─► fog, sky
              ─► RenderedScene(rgb, depth, label_ids, object_map, objects)

The scene description (primitive kinds, materials, :class:`Scene`, :class:`SceneObject`)
is in :mod:`.primitives`, the camera in :mod:`.camera`. Everything is vectorised over pixels
with NumPy; Python loops only run over primitives. All randomness comes from the generator
passed in, so a scene is a pure function of it.
"""

from __future__ import annotations

import numpy as np

from taskcodecs.data.scene.camera import (
    CITYSCAPES_BASELINE_M,
    CITYSCAPES_FX,
    CITYSCAPES_FY,
    CITYSCAPES_HEIGHT,
    CITYSCAPES_U0,
    CITYSCAPES_V0,
    CITYSCAPES_WIDTH,
    Camera,
    camera_intrinsics,
)
from taskcodecs.data.scene.primitives import (
    ASPHALT,
    BARK,
    BOX,
    BUSBODY,
    CABIN,
    CLOTH,
    CYLINDER,
    ELLIPSOID,
    FACADE,
    FOLIAGE,
    METAL,
    PAINT,
    PAVEMENT,
    PLANE,
    SIGN,
    SKIN,
    TERRAIN,
    TLIGHT,
    TYRE,
    Scene,
    SceneObject,
)
from taskcodecs.data.scene.raycast import INF
from taskcodecs.data.scene.render import RenderedScene, render_scene
from taskcodecs.data.scene.sample import sample_scene
from taskcodecs.data.scene.street import FACADE_COLORS
from taskcodecs.data.scene.traffic import CAR_COLORS, CLOTH_COLORS, SKIN_COLORS


def generate_scene(rng: np.random.Generator, height: int, width: int) -> RenderedScene:
    """Sample and render one scene."""
    return render_scene(sample_scene(rng, height, width))


__all__ = [
    "ASPHALT", "BARK", "BOX", "BUSBODY", "CABIN", "CAR_COLORS", "CITYSCAPES_BASELINE_M",
    "CITYSCAPES_FX", "CITYSCAPES_FY", "CITYSCAPES_HEIGHT", "CITYSCAPES_U0", "CITYSCAPES_V0",
    "CITYSCAPES_WIDTH", "CLOTH", "CLOTH_COLORS", "CYLINDER", "ELLIPSOID", "FACADE",
    "FACADE_COLORS", "FOLIAGE", "INF", "METAL", "PAINT", "PAVEMENT", "PLANE", "SIGN", "SKIN",
    "SKIN_COLORS", "TERRAIN", "TLIGHT", "TYRE", "Camera", "RenderedScene", "Scene",
    "SceneObject", "camera_intrinsics", "generate_scene", "render_scene", "sample_scene",
]
