"""Helpers shared by the base and enhancement codecs: rate in bits per pixel, the padding
multiple, the codec identifier (and its lookup from a stream's fingerprint), architecture-only
config fields, image preparation, and the coding side (:class:`CodedImage`, actual rates,
header checks, eval-mode context).

Units: a rate is always *bits per pixel of the original image* (before padding and before
any half-resolution downsampling), summed over every latent of a layer (``y`` and, with a
hyperprior, ``z``) and averaged over the images of the batch: ``-log2 likelihoods`` summed
over the whole batch divided by ``B * H * W``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from infra.config import config_to_dict
from taskcodecs.coding.bitstream import Bitstream, BitstreamError, pack, unpack
from taskcodecs.layers import Padding

TRANSFORM_DOWNSAMPLING = 16  # the analysis transform's four stride-2 convs
HYPERPRIOR_DOWNSAMPLING = 4  # a Ballé-2018 hyperprior adds two more stride-2 stages
TRAINING_ONLY = {"training_only": True}  # field metadata: left out of the codec id hash


def padding_multiple(half_resolution: bool, hyperprior: bool) -> int:
    """The multiple the original image's sides are padded to before coding.

    16 for the transforms, x2 when the codec works at half resolution (DownSample first),
    x4 more when the entropy model has a hyperprior: 16, 32, 64 or 128 pixels.
    """
    multiple = TRANSFORM_DOWNSAMPLING
    if half_resolution:
        multiple *= 2
    if hyperprior:
        multiple *= HYPERPRIOR_DOWNSAMPLING
    return multiple


def bits_per_pixel(likelihoods: Mapping[str, torch.Tensor], num_pixels: int) -> torch.Tensor:
    """Estimated rate, bits per pixel: ``sum over latents of -log2 likelihood / num_pixels``.

    ``num_pixels`` is ``B * H * W`` of the original images (batch included), so the result
    is the mean over images of each image's bits per original pixel. A 0-d tensor with grad.
    """
    if num_pixels < 1:
        raise ValueError(f"num_pixels must be positive, got {num_pixels}")
    if not likelihoods:
        raise ValueError("bits_per_pixel needs at least one likelihood tensor")
    total = sum(torch.log(lik).sum() for lik in likelihoods.values())
    return -total / (math.log(2.0) * num_pixels)


def architecture_dict(config: Any) -> dict[str, Any]:
    """The config fields that define the architecture (weights' shapes and decoding).

    Fields declared with ``metadata=TRAINING_ONLY`` (loss weights, pretrained flags) are
    dropped; nested dataclass fields are kept whole.
    """
    plain = config_to_dict(config)
    for field in dataclasses.fields(config):
        if field.metadata.get("training_only"):
            plain.pop(field.name, None)
    return plain


def make_codec_id(name: str, architecture: Mapping[str, Any]) -> str:
    """``name@hash``: the registry name and the first 8 hex digits of the SHA-256 of the
    architecture config as sorted JSON. Stable across runs, machines and Python versions."""
    text = json.dumps(architecture, sort_keys=True, separators=(",", ":"))
    return f"{name}@{hashlib.sha256(text.encode('utf-8')).hexdigest()[:8]}"


def enhancement_codec_id(name: str, config: Any, base_name: str, base_codec_id: str) -> str:
    """The codec id of an enhancement codec: its architecture fields, with the base named by
    registry name and codec id instead of by its config overrides."""
    architecture = architecture_dict(config)
    architecture.pop("base_overrides", None)
    architecture["base"] = {"name": base_name, "codec_id": base_codec_id}
    return make_codec_id(name, architecture)


def unpack_for(data: bytes, codec_id: str, layers: Sequence[str],
               identify: Callable[[bytes], str | None] | None = None) -> Bitstream:
    """:func:`taskcodecs.coding.bitstream.unpack` for the codec ``codec_id``: a stream of
    another codec raises BitstreamError naming both (the stream's too if ``identify``, the
    registry's :func:`~taskcodecs.experiments.registry.identify_codec`, knows it)."""
    return unpack(data, expect_codec=codec_id, layers=layers, identify=identify)


def as_image_batch(image: torch.Tensor) -> torch.Tensor:
    """A [3, H, W] or [1, 3, H, W] float image in [0, 1] as a [1, 3, H, W] float32 tensor."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"expected an image tensor, got {type(image).__name__}")
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4 or image.shape[0] != 1 or image.shape[1] != 3:
        raise ValueError(
            f"expected one RGB image of shape [3, H, W] or [1, 3, H, W], got {tuple(image.shape)}"
        )
    if not image.is_floating_point():
        raise TypeError(f"expected a float image in [0, 1], got dtype {image.dtype}")
    return image.float()


def as_batch(batch: Mapping[str, Any] | torch.Tensor) -> Mapping[str, Any]:
    """A batch dict; a bare tensor ``x`` (CompressAI's ``forward(x)``) becomes ``{"image": x}``."""
    return {"image": batch} if isinstance(batch, torch.Tensor) else batch


def check_batch_image(batch: Mapping[str, Any] | torch.Tensor) -> torch.Tensor:
    """``batch["image"]`` (or the tensor ``batch`` itself) checked to be a float [B, 3, H, W]
    tensor."""
    batch = as_batch(batch)
    if "image" not in batch:
        raise KeyError(f"the batch needs an 'image' entry [B, 3, H, W], got keys {sorted(batch)}")
    image = batch["image"]
    if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[1] != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"batch['image'] must be a [B, 3, H, W] tensor, got {shape}")
    if not image.is_floating_point():
        raise TypeError(f"batch['image'] must be a float tensor in [0, 1], got {image.dtype}")
    return image


def flat_likelihoods(likelihoods: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The likelihoods of a forward pass as CompressAI's flat ``{name: tensor}``: a layered
    codec's ``{"base": {"y": ..}, "enhancement": {"y": ..}}`` becomes ``{"base.y": ..,
    "enhancement.y": ..}``; an already flat dict is returned as is (a new dict)."""
    flat: dict[str, torch.Tensor] = {}
    for name, value in likelihoods.items():
        if isinstance(value, Mapping):
            flat.update({f"{name}.{k}": v for k, v in flat_likelihoods(value).items()})
        else:
            flat[name] = value
    return flat


def compressai_view(out: Mapping[str, Any]) -> dict[str, Any]:
    """``{"x_hat", "likelihoods": flat}`` of a forward pass, what CompressAI's losses and tools
    read (``compressai.losses.RateDistortionLoss()(compressai_view(out), x)``): the rate is
    then the sum over every layer, as the codecs' ``bpp_total``."""
    return {"x_hat": out["x_hat"], "likelihoods": flat_likelihoods(out["likelihoods"])}


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    """Eval mode and ``requires_grad=False`` on every parameter of ``module``."""
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


# ------------------------------------------------------------------ coding helpers


class evaluating:
    """Context manager: ``module.eval()`` inside, the previous train/eval mode restored after."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.was_training = module.training

    def __enter__(self) -> torch.nn.Module:
        self.module.eval()
        return self.module

    def __exit__(self, *exc: object) -> None:
        self.module.train(self.was_training)


@dataclass
class CodedImage:
    """One image, entropy-coded (the result of ``compress_latents``).

    ``layers``: payload bytes per layer; ``y_hat``: per layer, the quantized latent exactly
    as the decoder reconstructs it from those bytes; ``estimated_bits``: per layer,
    −log2 likelihood under the decode-time (sequential) entropy parameters, in bits.
    """

    codec_id: str
    size: tuple[int, int]  # original (H, W)
    padding: Padding
    layers: dict[str, bytes]
    y_hat: dict[str, torch.Tensor]
    estimated_bits: dict[str, float]

    def to_bytes(self) -> bytes:
        """The layered container (taskcodecs.coding.bitstream), header included."""
        return pack(self.codec_id, self.size, tuple(self.padding), self.layers)

    def bits_per_pixel(self, layers: Sequence[str] | None = None) -> float:
        """Actual bits per original pixel of a container holding ``layers`` (default all)."""
        names = list(self.layers) if layers is None else list(layers)
        data = pack(
            self.codec_id, self.size, tuple(self.padding), {n: self.layers[n] for n in names}
        )
        return bytes_to_bpp(len(data), self.size)


def bytes_to_bpp(num_bytes: int, size: Sequence[int]) -> float:
    """Actual rate: ``num_bytes * 8 / (H * W)`` bits per pixel of the original image."""
    height, width = size
    return num_bytes * 8.0 / (height * width)


def actual_rates(data: bytes, stream: Bitstream) -> dict[str, float]:
    """``bpp_actual`` of all of ``data`` and ``bpp_actual_decoded`` of a container holding
    only the layers in ``stream.layers`` (what a decoder of those layers needs)."""
    decoded = stream.to_bytes()
    return {
        "bpp_actual": bytes_to_bpp(len(data), stream.image_size),
        "bpp_actual_decoded": bytes_to_bpp(len(decoded), stream.image_size),
    }


def device_of(module: torch.nn.Module) -> torch.device:
    """The device of ``module``'s first parameter."""
    return next(module.parameters()).device


def check_layers(layers: str) -> None:
    if layers not in ("all", "base"):
        raise ValueError(f"layers must be 'all' or 'base', got {layers!r}")


def check_padding(stream: Bitstream, multiple: int) -> None:
    """The header's padding must be what this codec adds to an image of that size."""
    height, width = stream.image_size
    expected = (0, (-width) % multiple, 0, (-height) % multiple)
    if tuple(stream.padding) != expected:
        raise BitstreamError(
            f"bitstream padding {tuple(stream.padding)} does not match a {height}x{width} image "
            f"padded to a multiple of {multiple} (expected {expected})"
        )
