"""Procedural materials: the surface colour (albedo) of every hit point, by material --
asphalt with lane markings, terrain, paving tiles and kerbs, facades with windows, foliage,
bark, signs, traffic lights, car and bus bodies with glass and lights, tyres.

Textures are a fixed tileable noise texture and a per-cell hash, looked up at world
coordinates: deterministic, with no random generator.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from taskcodecs.data.scene.primitives import (
    ASPHALT,
    BARK,
    BUSBODY,
    CABIN,
    FACADE,
    FOLIAGE,
    PAINT,
    PAVEMENT,
    SIGN,
    TERRAIN,
    TLIGHT,
    TYRE,
    Scene,
)


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


def noise(u: np.ndarray, v: np.ndarray) -> np.ndarray:
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


def surface_albedo(scene: Scene, p: np.ndarray, n: np.ndarray, pid: np.ndarray,
                   view_up: np.ndarray) -> np.ndarray:
    """Procedural surface colour (N, 3) per hit point, by material.

    ``view_up`` (N,) in [0, 1] says how much sky the mirrored view ray sees (for glass).
    """
    out = scene.color[pid]
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    fine = noise(x * 9 + z * 3, z * 9 + y * 7)
    out *= (1 + 0.12 * fine + 0.12 * noise(x * 0.6 + 40, z * 0.6 + y * 0.6))[:, None]
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
        mix = np.clip(0.5 + 1.5 * noise(x[i] * 0.3, z[i] * 0.3), 0, 1)[:, None]
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
        leaves = noise(x[i] * 7 + z[i] * 5, y[i] * 7 - z[i] * 3)
        mix = np.clip(0.5 + leaves, 0, 1)[:, None]
        out[i] = (out[i] * mix + scene.color2[pid[i]] * (1 - mix)) * (0.75 + 0.35 * leaves[:, None])
    i = groups[BARK]
    if len(i):
        out[i] *= (0.8 + 0.3 * noise(x[i] * 40 + z[i] * 40, y[i] * 3))[:, None]
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
