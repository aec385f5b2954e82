"""Stock lossless codecs as references for the null: PNG, WebP lossless, JPEG-XL lossless.

DESIGN §7, "stock references for the null": an autoregressive null H_V(Y|∅) is a lossless
codelength of the target images, so it has a yardstick. A null worse than JPEG-XL lossless
is a weak instrument: I_V measured with it is then mostly the null's deficit. Every estimate
on 8-bit images (``discretized`` targets with 1 or 3 channels) codes its evaluation images
with these codecs (``imagecodecs``: libpng at level 9, libwebp lossless at level 100,
libjxl lossless at effort 9), checks that each decodes to the very same values, and reports
the mean of bytes x 8 / (H x W): bits per pixel of the target resolution, all channels,
container headers included — the unit of H_V(Y|∅).
"""

from __future__ import annotations

import numpy as np

CODECS = ("png", "webp", "jpegxl")  # the variables are stock_<name>_bpp


def stock_applicable(target_kind: str, y: np.ndarray) -> bool:
    """True for dense 8-bit image targets a stock codec takes ([N, 1 or 3, H, W], 0..255)."""
    return (target_kind == "discretized" and y.ndim == 4 and y.shape[1] in (1, 3)
            and y.size > 0 and int(y.min()) >= 0 and int(y.max()) <= 255)


def _encode(name: str, image: np.ndarray) -> bytes:
    import imagecodecs

    if name == "png":
        return imagecodecs.png_encode(image, level=9)
    if name == "webp":
        return imagecodecs.webp_encode(image, lossless=True, level=100)
    return imagecodecs.jpegxl_encode(image, lossless=True, effort=9)


def _decode(name: str, data: bytes) -> np.ndarray:
    import imagecodecs

    return {"png": imagecodecs.png_decode, "webp": imagecodecs.webp_decode,
            "jpegxl": imagecodecs.jpegxl_decode}[name](data)


def stock_bits_per_pixel(y: np.ndarray, codecs: tuple[str, ...] = CODECS) -> dict[str, float]:
    """Mean lossless codelength of every image of ``y`` [N, C, H, W] (C = 1 or 3, values
    0..255) per codec, in bits per pixel (all channels); WebP only for C = 3. Raises RuntimeError when a codec does
    not give back the exact values (it would not be a lossless reference)."""
    if y.ndim != 4 or y.shape[1] not in (1, 3):
        raise ValueError(f"stock codecs take [N, 1 or 3, H, W] images, got shape {y.shape}")
    images = np.ascontiguousarray(np.moveaxis(y.astype(np.uint8), 1, -1))  # [N, H, W, C]
    pixels = y.shape[2] * y.shape[3]
    result = {}
    for name in codecs:
        if name == "webp" and y.shape[1] == 1:
            continue  # WebP codes RGB(A) only
        total = 0
        for image in images:
            plane = image[..., 0] if image.shape[-1] == 1 else image
            data = _encode(name, plane)
            back = _decode(name, data)
            if back.shape != plane.shape or not np.array_equal(back, plane):
                raise RuntimeError(f"{name}: the decoded image differs from the input; not a "
                                   "lossless reference")
            total += len(data)
        result[name] = float(total * 8.0 / (len(images) * pixels))
    return result
