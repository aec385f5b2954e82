"""Ray casting of the synthetic scenes: the screen-rectangle culling is exact."""

from __future__ import annotations

import numpy as np

from taskcodecs.data.scene import raycast
from taskcodecs.data.scene.primitives import PLANE
from taskcodecs.data.scene.sample import sample_scene
from taskcodecs.data.synthetic import image_rng


def test_screen_rectangle_culling_changes_nothing(monkeypatch):
    """Testing each primitive only on its projected rectangle gives the brute-force result."""
    original = raycast._screen_rects

    def whole_image(scene):
        rects, z_near = original(scene)
        solid = scene.kind != PLANE
        rects[solid] = (0, scene.camera.height, 0, scene.camera.width)
        z_near[solid] = 0.0
        return rects, z_near

    for index in range(3):
        scene = sample_scene(image_rng(7, "train", index), 48, 96)
        depth, pid = raycast.cast_rays(scene, scene.camera.ray_directions())
        monkeypatch.setattr(raycast, "_screen_rects", whole_image)
        brute_depth, brute_pid = raycast.cast_rays(scene, scene.camera.ray_directions())
        monkeypatch.setattr(raycast, "_screen_rects", original)
        assert np.array_equal(depth, brute_depth)
        assert (pid != brute_pid).mean() < 1e-3  # equal-depth ties may resolve differently
