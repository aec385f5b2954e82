"""The pinhole camera of the synthetic scenes, scaled from Cityscapes' camera.

World frame (metres): x to the right of the street axis, y up, z along the street away from
the camera. The camera is a pinhole at z = 0 with Cityscapes-like intrinsics scaled to the
image width (:func:`camera_intrinsics`); every pixel casts one ray whose camera-frame z
component is 1, so the ray parameter t of the nearest hit *is* the metric depth (z-depth, as
stereo disparity = baseline * fx / depth expects).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Cityscapes camera (2048 x 1024 images); the synthetic camera scales it with the image size.
CITYSCAPES_WIDTH, CITYSCAPES_HEIGHT = 2048, 1024
CITYSCAPES_FX, CITYSCAPES_FY = 2262.52, 2265.3017905988554
CITYSCAPES_U0, CITYSCAPES_V0 = 1096.98, 513.137
CITYSCAPES_BASELINE_M = 0.209313


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
