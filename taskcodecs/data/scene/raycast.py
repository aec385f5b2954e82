"""Ray casting: the nearest primitive and its distance along every pixel's ray, and the
surface normal there.

Rays start at the camera position with directions whose camera-frame z is 1 (see
:meth:`~.camera.Camera.ray_directions`), so the hit distance t is the metric z-depth. Each
primitive is intersected only on the screen rectangle its bounding box projects to, nearest
first, against a z-buffer.
"""

from __future__ import annotations

import numpy as np

from taskcodecs.data.scene.primitives import BOX, CYLINDER, ELLIPSOID, PLANE, Scene

_EPS = 1e-3
INF = np.float32(np.inf)


def box_t(o, d, inv, g) -> np.ndarray:
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


def cast_rays(scene: Scene, dirs) -> tuple[np.ndarray, np.ndarray]:
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
            t = box_t(o, d, [c[v0:v1, u0:u1] for c in inv], g)
        elif kind == CYLINDER:
            t = _cylinder_t(o, d, g)
        else:
            t = _ellipsoid_t(o, d, g)
        np.copyto(pid[v0:v1, u0:u1], k, where=t < zbuf)
        np.minimum(zbuf, t, out=zbuf)
    return depth, pid


def surface_normals(scene: Scene, p: np.ndarray, pid: np.ndarray) -> np.ndarray:
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
