"""``sample_scene``: one random street scene -- layout, camera and lighting -- from a generator."""

from __future__ import annotations

import numpy as np

from taskcodecs.data.scene.camera import Camera, camera_intrinsics
from taskcodecs.data.scene.primitives import Scene, SceneBuilder
from taskcodecs.data.scene.street import add_street, add_street_furniture
from taskcodecs.data.scene.traffic import add_traffic


def sample_scene(rng: np.random.Generator, height: int, width: int) -> Scene:
    """Draw a random street scene and a camera for a ``height`` x ``width`` image."""
    b = SceneBuilder(rng)
    rh = rng.uniform(3.5, 7.5)  # road half width, metres
    camera_x = rng.uniform(-0.3 * rh, 0.6 * rh)
    b.claim(camera_x - 1.0, camera_x + 1.0, -10.0, 4.0, margin=0.0)  # nothing on the camera
    street = add_street(b, rh)
    add_street_furniture(b, rh, street["kerb_h"], street["z_end"])
    add_traffic(b, rh, street["kerb_h"], street["sw"])
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
