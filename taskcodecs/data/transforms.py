"""Paired augmentations and image decoding for the real dataset loaders.

Everything here works on torch tensors laid out as the loaders return them:

    image       float32 [3, H, W] in [0, 1]
    disparity   float32 [1, H, W] in pixels, with a bool validity mask [1, H, W]
    labels      int64   [H, W] train ids
    boxes       float32 [K, 4] in pixels, (x1, y1, x2, y2)

Geometric transforms (flip, resize) are applied to an image and all of its targets together
so they stay aligned; colour jitter touches the image only. Randomness never comes from
global state: every random decision is drawn from a ``numpy.random.Generator`` passed in by
the caller, so a loader that seeds one generator per (seed, epoch, index) reproduces its
data exactly, in any worker process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image, UnidentifiedImageError

from taskcodecs.data.errors import DatasetError

# ---------------------------------------------------------------------------------------------
# Decoding: image files -> tensors, with errors that name the file
# ---------------------------------------------------------------------------------------------


def open_image(path: Path, what: str = "image") -> Image.Image:
    """Open and fully decode an image file; an unreadable file raises :class:`DatasetError`.

    ``what`` names the role of the file in the message ("image", "labelIds PNG", ...).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: {what} file not found")
    try:
        with Image.open(path) as handle:
            handle.load()
            return handle.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        message = f"{path}: cannot read {what} (corrupt or truncated file?): {err}"
        raise DatasetError(message) from err


# modes with more than 8 bits per sample: refused as RGB inputs rather than clipped to 255
_DEEP_MODES = ("I", "F", "I;16", "I;16L", "I;16B", "I;16N", "I;32", "RGB;16", "RGBA;16")


def open_rgb_image(path: Path, what: str = "image") -> Image.Image:
    """:func:`open_image` for an RGB input, refusing more than 8 bits per channel.

    The rule: 8-bit images of any layout are converted to RGB by :func:`rgb_to_tensor`
    (grayscale replicated, palette expanded, alpha dropped, CMYK converted); images with
    more bits per sample -- 16-bit PNGs (grayscale or RGB; Pillow would silently reduce a
    16-bit RGB PNG to 8 bits), 32-bit integer or float TIFFs -- are a :class:`DatasetError`:
    the codecs code 8-bit RGB, and no scaling is guessed (convert them to 8 bits first).
    """
    path = Path(path)
    image = open_image(path, what)
    with path.open("rb") as handle:
        header = handle.read(26)
    png = header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR" and len(header) > 24
    depth = header[24] if png else None  # the IHDR bit depth (per sample)
    if image.mode in _DEEP_MODES or (depth is not None and depth > 8):
        bits = f"{depth}-bit" if depth is not None and depth > 8 else f"PIL mode {image.mode}"
        raise DatasetError(f"{path}: {what} has more than 8 bits per channel ({bits}); expected "
                           "an 8-bit image: convert it to 8 bits first (no scaling is guessed)")
    return image


def rgb_to_tensor(image: Image.Image) -> torch.Tensor:
    """Any PIL image (grayscale, palette, RGBA, CMYK, RGB) -> float32 [3, H, W] in [0, 1]."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div_(255.0)


# ---------------------------------------------------------------------------------------------
# Horizontal flip
# ---------------------------------------------------------------------------------------------


def draw_flip(rng: np.random.Generator, probability: float = 0.5) -> bool:
    """Draw whether to flip: True with ``probability``. Always consumes one draw from ``rng``."""
    return bool(rng.random() < probability)


def hflip(tensor: torch.Tensor) -> torch.Tensor:
    """Mirror an image, disparity map, mask or label map left-right (the last axis is W)."""
    return torch.flip(tensor, dims=(-1,))


def hflip_boxes(boxes: torch.Tensor, width: int) -> torch.Tensor:
    """Mirror xyxy boxes in an image ``width`` pixels wide: x1' = W − x2, x2' = W − x1.

    Box coordinates are continuous pixel edges (0 .. W), as in COCO, so flipping twice is
    the identity and a box stays inside [0, W] if it started there.
    """
    flipped = boxes.clone()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return flipped


# ---------------------------------------------------------------------------------------------
# Colour jitter (image only)
# ---------------------------------------------------------------------------------------------

_JITTER_OPS = ("brightness", "contrast", "saturation")


@dataclass(frozen=True)
class ColorJitter:
    """One drawn colour jitter: multiplicative factors and the order they are applied in.

    Like ``torchvision.transforms.ColorJitter(b, c, s)`` without hue: each factor is uniform
    in [max(0, 1 − strength), 1 + strength] and the three operations run in a random order.
    """

    brightness: float
    contrast: float
    saturation: float
    order: tuple[int, ...]  # a permutation of (0, 1, 2) indexing _JITTER_OPS

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        brightness: float = 0.5,
        contrast: float = 0.5,
        saturation: float = 0.5,
    ) -> ColorJitter:
        """Draw factors and order from ``rng`` (always four draws, so streams stay aligned)."""
        factors = [
            float(rng.uniform(max(0.0, 1.0 - strength), 1.0 + strength))
            for strength in (brightness, contrast, saturation)
        ]
        order = tuple(int(i) for i in rng.permutation(len(_JITTER_OPS)))
        return cls(*factors, order=order)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """Apply to a float [3, H, W] image in [0, 1]; the result stays in [0, 1]."""
        for op_index in self.order:
            name = _JITTER_OPS[op_index]
            if name == "brightness":
                image = TF.adjust_brightness(image, self.brightness)
            elif name == "contrast":
                image = TF.adjust_contrast(image, self.contrast)
            else:
                image = TF.adjust_saturation(image, self.saturation)
        return image


# ---------------------------------------------------------------------------------------------
# Resizing
# ---------------------------------------------------------------------------------------------


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(H, W) scaled by ``scale`` and rounded to whole pixels (at least 1)."""
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a float [C, H, W] image to ``size`` = (H', W'), antialiased."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    resized = F.interpolate(
        image[None], size=size, mode="bilinear", align_corners=False, antialias=True
    )[0]
    return resized.clamp_(0.0, 1.0)


def resize_nearest(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of a [..., H, W] map (labels, masks), keeping its dtype.

    Uses pixel-centre sampling (``nearest-exact``, PIL's convention), which commutes with a
    horizontal flip when the sizes divide evenly.
    """
    if tuple(tensor.shape[-2:]) == tuple(size):
        return tensor
    lead = tensor.shape[:-2]
    flat = tensor.reshape(1, -1, *tensor.shape[-2:]).to(torch.float64)
    resized = F.interpolate(flat, size=size, mode="nearest-exact")
    return resized.reshape(*lead, *size).to(tensor.dtype)


def resize_disparity(
    disparity: torch.Tensor, mask: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize a disparity map [1, H, W] (pixels) and its validity mask to ``size``.

    Both are resized nearest-neighbour (averaging would mix valid and invalid pixels), and
    the disparity *values* are multiplied by the width ratio W'/W: disparity is a horizontal
    distance in pixels, so it scales with the image width.
    """
    width_ratio = size[1] / disparity.shape[-1]
    resized = resize_nearest(disparity, size) * width_ratio
    resized_mask = resize_nearest(mask, size)
    return resized * resized_mask, resized_mask
