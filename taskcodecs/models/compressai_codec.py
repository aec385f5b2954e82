"""A CompressAI model as a codec of this toolkit (:class:`~taskcodecs.models.protocol.Codec`).

    model = create_model("tiny-compressai-bmshj2018-hyperprior")   # or paper-..., mbt2018-mean
    out = model(x)                      # {"x_hat", "likelihoods": {"y", "z"}, "bpp": {"base"}}
    data = model.compress(image)        # our layered container, one layer ("base")
    rec = model.decompress(data)["x_hat"]

:class:`CompressAICodec` wraps a CompressAI ``CompressionModel`` (the zoo architectures
``bmshj2018-hyperprior`` = ``ScaleHyperprior`` and ``mbt2018-mean`` = ``MeanScaleHyperprior``,
built untrained at the config's N, M: ``tiny`` N = 16, M = 24; ``paper`` the zoo's
N = 128, M = 192 of qualities 1-5) so that the trainer (``python -m taskcodecs.train --config
tiny-compressai-reconstruction-bmshj2018-hyperprior``), the evaluator and the codec CLI run
it like our codecs: a standalone reconstruction reference trained on the same data.

* Padding: bottom/right by replication to a multiple of 64 (CompressAI's 6 strides of 2 in
  g_a + h_a); outputs cropped back; rates per pixel of the original image.
* Loss (code form): ``rmse255(x_hat, X) + rate_weight · bpp + aux_weight · aux_loss`` in
  train mode, the aux term (CompressAI's entropy-bottleneck quantiles, which get gradient
  from it alone) left out of the validation objective. ``bpp`` is −log2 likelihoods per
  original pixel (``y`` and ``z``).
* Real bitstreams: ``update()`` is called for you before coding whenever the weights changed
  since the last call (parameter versions are tracked), so a freshly trained or loaded model
  codes with its current tables. The "base" payload is ``varint(len(z_string)) | z_string |
  y_string``; the container (:mod:`taskcodecs.coding.bitstream`) carries the size, padding
  and the codec fingerprint.
* Checkpoints hold the weights only: CompressAI's coding tables (``_quantized_cdf``,
  ``_offset``, ``_cdf_length``, ``scale_table``: their shapes change with ``update()``) are
  left out on save and rebuilt on use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from infra.config import ConfigError, check_loss_weights
from taskcodecs.coding.bitstream import BitstreamError
from taskcodecs.layers import Padding, crop_padding, pad_to_multiple
from taskcodecs.models.common import (
    TRAINING_ONLY,
    CodedImage,
    actual_rates,
    architecture_dict,
    as_image_batch,
    bits_per_pixel,
    check_batch_image,
    check_layers,
    check_padding,
    device_of,
    evaluating,
    make_codec_id,
    unpack_for,
)
from taskcodecs.models.losses import rmse255

__all__ = ["ARCHITECTURES", "CompressAICodec", "CompressAICodecConfig"]

# zoo name -> compressai.models class name
ARCHITECTURES = {"bmshj2018-hyperprior": "ScaleHyperprior", "mbt2018-mean": "MeanScaleHyperprior"}
PADDING_MULTIPLE = 64  # g_a (4 strides of 2) + h_a (2 more)
_TABLES = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")


@dataclass
class CompressAICodecConfig:
    """A CompressAI zoo architecture and its sizes (hashed into the codec id), loss weights."""

    architecture: Literal["bmshj2018-hyperprior", "mbt2018-mean"] = "bmshj2018-hyperprior"
    N: int = 16  # channels of the transforms and of z (the zoo: 128 or 192)
    M: int = 24  # channels of y (the zoo: 192 or 320)
    task: Literal["reconstruction"] = "reconstruction"
    rate_weight: float = field(default=1.0, metadata=TRAINING_ONLY)  # per bit/pixel, vs rmse255
    aux_weight: float = field(default=1.0, metadata=TRAINING_ONLY)  # CompressAI's aux_loss

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"architecture must be one of {list(ARCHITECTURES)}, got "
                              f"{self.architecture!r}")
        if self.N < 1 or self.M < 1:
            raise ConfigError(f"N and M must be >= 1, got {self.N} and {self.M}")
        check_loss_weights(self, ("rate_weight", "aux_weight"))


class CompressAICodec(nn.Module):
    """A CompressAI ``CompressionModel`` behind the codec interface (module docstring)."""

    def __init__(self, config: CompressAICodecConfig | None = None,
                 name: str = "custom-compressai",
                 identify: Callable[[bytes], str | None] | None = None) -> None:
        super().__init__()
        import compressai.models

        self.config = config = config or CompressAICodecConfig()
        self.registry_name = name
        self.identify = identify
        self.net = getattr(compressai.models, ARCHITECTURES[config.architecture])(N=config.N,
                                                                                 M=config.M)
        self.padding_multiple = PADDING_MULTIPLE
        self.codec_id = make_codec_id(name, architecture_dict(config))
        self._tables_for: tuple | None = None
        self._register_state_dict_hook(_drop_tables)

    # ------------------------------------------------------------------ training

    def forward(self, batch: Mapping[str, Any] | torch.Tensor) -> dict[str, Any]:
        image = check_batch_image(batch)
        x, padding = pad_to_multiple(image, PADDING_MULTIPLE)
        out = self.net(x)
        likelihoods = dict(out["likelihoods"])
        height, width = image.shape[-2:]
        return {
            "x_hat": crop_padding(out["x_hat"], padding),
            "likelihoods": likelihoods,
            "bpp": {"base": bits_per_pixel(likelihoods, image.shape[0] * height * width)},
            "padding": padding,
        }

    def loss(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """``{"loss", "distortion": rmse255, "rmse255", "bpp_base", "rate", "aux_loss"}``."""
        image = check_batch_image(batch)
        distortion = rmse255(out["x_hat"], image)
        bpp = out["bpp"]["base"]
        rate = self.config.rate_weight * bpp
        aux = self.net.aux_loss()
        total = distortion + rate + (self.config.aux_weight * aux if self.training else 0.0)
        return {"loss": total, "distortion": distortion, "rmse255": distortion,
                "bpp_base": bpp, "rate": rate, "aux_loss": aux.detach()}

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # ------------------------------------------------------------------ real bitstreams

    def update_tables(self, force: bool = False) -> bool:
        """CompressAI's ``update()``, run when the weights changed since the last run (or
        ``force``); returns whether it ran."""
        state = tuple((id(p), p._version, p.device) for p in self.net.parameters())
        if not force and state == self._tables_for:
            return False
        self.net.update(force=True)
        self._tables_for = state
        return True

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any,
                              **kwargs: Any) -> None:
        """Checkpoints leave the coding tables out: keep this module's own, rebuild later."""
        for name, buffer in self.named_buffers(prefix=prefix):
            if name.rsplit(".", 1)[-1] in _TABLES and name not in state_dict:
                state_dict[name] = buffer
        self._tables_for = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def compress_latents(self, image: torch.Tensor) -> CodedImage:
        """Entropy-code one image: the "base" payload and the forward pass's estimate."""
        x = as_image_batch(image).to(device_of(self))
        with evaluating(self):
            self.update_tables()
            padded, padding = pad_to_multiple(x, PADDING_MULTIPLE)
            coded = self.net.compress(padded)
            (y_string,), (z_string,) = coded["strings"]
            estimate = -sum(torch.log2(v).sum() for v in self.net(padded)["likelihoods"].values())
        payload = _varint(len(z_string)) + z_string + y_string
        return CodedImage(codec_id=self.codec_id, size=(x.shape[-2], x.shape[-1]),
                          padding=padding, layers={"base": payload}, y_hat={},
                          estimated_bits={"base": float(estimate)})

    def compress(self, image: torch.Tensor) -> bytes:
        """One image [3, H, W] or [1, 3, H, W] in [0, 1] -> our container (bytes)."""
        return self.compress_latents(image).to_bytes()

    @torch.no_grad()
    def decompress(self, data: bytes, layers: str = "all") -> dict[str, Any]:
        """Bytes from :meth:`compress` -> ``x_hat`` [1, 3, H, W] in [0, 1], ``padding``,
        ``image_size``, ``bpp_actual``, ``bpp_actual_decoded`` (one layer: "all" = "base")."""
        check_layers(layers)
        stream = unpack_for(data, self.codec_id, ["base"], self.identify)
        check_padding(stream, PADDING_MULTIPLE)
        z_string, y_string = _split_payload(stream.layers["base"])
        height, width = stream.image_size
        padding = Padding(*stream.padding)
        shape = ((height + padding.bottom) // PADDING_MULTIPLE,
                 (width + padding.right) // PADDING_MULTIPLE)
        with evaluating(self):
            self.update_tables()
            try:
                out = self.net.decompress([[y_string], [z_string]], shape)
            except (RuntimeError, ValueError) as err:
                raise BitstreamError(f"the {self.codec_id} payload does not decode: {err}") from err
        result = {"x_hat": crop_padding(out["x_hat"], padding).clamp(0.0, 1.0), "y_hat": {},
                  "padding": padding, "image_size": stream.image_size}
        result.update(actual_rates(data, stream))
        return result


def _drop_tables(module: nn.Module, state: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    """State-dict hook: CompressAI's coding tables are not weights (rebuilt by update())."""
    for key in [k for k in state if k.startswith(prefix) and k.rsplit(".", 1)[-1] in _TABLES]:
        del state[key]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _split_payload(payload: bytes) -> tuple[bytes, bytes]:
    """``varint(len(z)) | z | y`` -> (z_string, y_string); a BitstreamError if malformed."""
    length, shift, i = 0, 0, 0
    while True:
        if i >= len(payload) or i > 4:
            raise BitstreamError("CompressAI payload: truncated or invalid z-string length")
        byte = payload[i]
        length |= (byte & 0x7F) << shift
        shift += 7
        i += 1
        if not byte & 0x80:
            break
    if i + length > len(payload):
        raise BitstreamError(f"CompressAI payload: z string of {length} bytes, only "
                             f"{len(payload) - i} present")
    return payload[i:i + length], payload[i + length:]
