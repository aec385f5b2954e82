"""``render_scene``: a sampled :class:`~.primitives.Scene` -> RGB, metric depth, labelIds
and the object map.

    one ray per pixel ─► cast_rays: depth t, primitive id ─► surface_normals
    ─► surface_albedo per material ─► sky light + Lambertian sun with shadows
    ─► fog; sky colour where no ray hits ─► RenderedScene(rgb, depth, label_ids, object_map)

Everything is vectorised over pixels with NumPy; Python loops only run over primitives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from taskcodecs.data.labels import LABEL_ID
from taskcodecs.data.scene.camera import Camera
from taskcodecs.data.scene.materials import noise, surface_albedo
from taskcodecs.data.scene.primitives import Scene, SceneObject
from taskcodecs.data.scene.raycast import box_t, cast_rays, surface_normals

_EXPOSURE = 1.25  # linear gain from shaded radiance to 8-bit values


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
            t = box_t((xs[cand], ys[cand], zs[cand]), None, inv, box)
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
    clouds = noise(dirs[:, 0] * scale, dirs[:, 2] * scale * 0.5)
    cover = np.clip((clouds + 0.2) * 2.5, 0, 1)[:, None] * (up > 0)[:, None]
    col = col * (1 - 0.7 * cover) + 0.78 * 0.7 * cover
    glow = np.clip(dirs @ scene.sun, 0, 1) ** 64 * np.linalg.norm(scene.sun_color)
    return (col + glow[:, None] * 0.6).astype(np.float32)


def render_scene(scene: Scene) -> RenderedScene:
    """Ray-cast ``scene``: RGB, depth (metres, inf = sky), labelIds and the object map."""
    cam = scene.camera
    dirs = cam.ray_directions()
    depth, pid = cast_rays(scene, dirs)
    d = np.stack(dirs, -1).reshape(-1, 3)
    flat_pid, flat_t = pid.reshape(-1), depth.reshape(-1)
    hit, miss = np.nonzero(flat_pid >= 0)[0], np.nonzero(flat_pid < 0)[0]
    hp = flat_pid[hit]
    p = np.asarray(cam.position, np.float32) + flat_t[hit, None] * d[hit]
    n = surface_normals(scene, p, hp)
    obj = scene.obj[hp]
    dh = d[hit]
    # upward component of the mirrored view ray: how much sky glass and paint reflect
    d_dot_n = dh[:, 0] * n[:, 0] + dh[:, 1] * n[:, 1] + dh[:, 2] * n[:, 2]
    norm = np.sqrt(dh[:, 0] ** 2 + dh[:, 1] ** 2 + dh[:, 2] ** 2)
    mirror_up = (dh[:, 1] - 2 * d_dot_n * n[:, 1]) / norm
    albedo = surface_albedo(scene, p, n, hp, (0.3 + 2.0 * mirror_up).clip(0, 1))
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
