"""Base codecs: one compressed representation Ŷ_b serving a machine task (DESIGN §3).

Names: f_b is the analysis transform (CompressAI's ``g_a``; ``model.g_a`` is an alias of
``model.f_b``), g_s the reconstruction synthesis (CompressAI's ``g_s``; DESIGN and the paper
call it g_a -- checkpoints written with that name, keys ``g_a.*``, load mapped to ``g_s.*``),
g_b the task synthesis. RB = residual block. Data flow::

    X (B,3,H,W) ─pad─▶ [DownSample] ─▶ f_b ─▶ y ─Q─▶ ŷ_b (B,N,h,w) ─┬─▶ g_b ─▶ task model ─▶ [UpSample] ─crop─▶ task
                      (half res,                ▲                  │   (3 ch image-like, 1 RB/stage)
                       depth only)              │                  └─▶ g_s ─▶ [UpSample] ─crop─▶ x̂ (B,3,H,W)
                                   entropy model p(ŷ_b | context):         (3 ch, 3 RB/stage)
                                   masked 5x5 context (autoregressive or
                                   checkerboard) + parameter net,
                                   Q = round(y − μ) + μ (straight-through) → −log2 p = bits

    depth      X (full res) → DownSample → f_b → ŷ_b → g_b → LRASPP (1 ch) → UpSample → disparity
    detection  X → f_b → ŷ_b → g_b → Faster R-CNN (its GeneralizedRCNNTransform resizes and
               normalizes the image-like tensor internally) → boxes in X's pixels

Loss (code form), :meth:`BaseCodec.loss`::

    d_b + rate_weight · bpp_b + reward_weight · rmse255(g_s(ŷ_b), X)        proposed (reward_weight > 0)
    d_b + rate_weight · bpp_b + 1 · rmse255(g_s(ŷ_b.detach()), X)           baseline (reward_weight = 0)

In the baseline g_s is still trained, on a detached copy of ŷ_b, so the encoder f_b (and the
entropy model) receive exactly zero gradient from the reconstruction term.

Defaults chosen here (DESIGN leaves them open):

* Padding: the image is padded bottom/right by replication to a multiple of 16 (32 when the
  codec works at half resolution, x4 more with a hyperprior), see
  :func:`~taskcodecs.models.common.padding_multiple`; every output is cropped back to H x W.
* Detection resize placement: the codec codes the image it is given, at that image's own
  resolution. The detector's ``GeneralizedRCNNTransform`` then resizes (paper preset:
  shorter side 800, longer ≤ 1333; tiny: 128/256) and ImageNet-normalizes g_b's output;
  boxes come back in the pixels of X. PSNR / rmse255 are measured on x̂ vs X in [0, 1],
  padding excluded; bpp is per pixel of X.
* Depth loss scale: d_b = ``depth_loss_scale`` x masked RMSE in disparity pixels of the
  full-resolution target; the default scale is 1.0 (d_b in disparity pixels).
* Rates are bits per pixel of the original H x W image (``bpp``), from the likelihoods.
* Training vs bitstream latents: ``forward`` quantizes with the parallel (training) context,
  :meth:`BaseCodec.compress_latents` with the sequential decode-time context; both are
  within ½ of y, so ŷ_b differs between them by a small fraction of a step at most
  positions and by one step at ~1-3 % of them (taskcodecs.coding.entropy; with
  ``context="checkerboard"`` the forward pass computes the decoder's two passes, and they
  agree up to float rounding). Whatever depends on the decoded ŷ_b (x̂, the task, an
  enhancement's side input) uses the bitstream's.

The batch is a dict: ``image`` float [B, 3, H, W] in [0, 1] (all images of a batch share one
size), plus ``disparity`` [B, 1, H, W] and ``disparity_mask`` (bool) for depth, or
``targets`` (list of torchvision target dicts, boxes in pixels of ``image``) for detection
in train mode.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from infra.config import ConfigError, check_loss_weights
from taskcodecs.coding.bitstream import Bitstream
from taskcodecs.coding.entropy import CONTEXTS, AutoregressiveGaussianModel
from taskcodecs.layers import DownSample, Padding, UpSample, crop_padding, pad_to_multiple
from taskcodecs.models.common import (
    TRAINING_ONLY,
    CodedImage,
    actual_rates,
    architecture_dict,
    as_batch,
    as_image_batch,
    bits_per_pixel,
    check_batch_image,
    check_layers,
    check_padding,
    device_of,
    evaluating,
    make_codec_id,
    padding_multiple,
    unpack_for,
)
from taskcodecs.models.losses import depth_loss, detection_loss, rmse255
from taskcodecs.models.tasks import build_task_model
from taskcodecs.models.transforms import AnalysisTransform, SynthesisTransform

__all__ = ["LEGACY_NAMES", "BaseCodec", "BaseCodecConfig", "Encoded"]

# state-dict prefixes of older checkpoints -> today's (the reconstruction decoder was "g_a")
LEGACY_NAMES = {"g_a.": "g_s."}


@dataclass
class BaseCodecConfig:
    """Architecture of a base codec (hashed into the codec id) and its loss weights.

    Fields marked training-only (``rate_weight``, ``reward_weight``, ``depth_loss_scale``,
    ``pretrained``) change training, not the bitstream, and are left out of the hash.
    """

    task: Literal["depth", "detection"] = "depth"
    preset: Literal["tiny", "paper"] = "tiny"  # task head preset (tasks.build_task_model)
    latent_ch: int = 32  # N
    widths: tuple[int, int, int] = (8, 16, 32)  # analysis widths; synthesis mirrors them
    analysis_blocks: int = 1  # residual blocks per stage of f_b
    reconstruction_blocks: int = 1  # ... of g_s (paper: 3)
    task_blocks: int = 1  # ... of g_b (paper: 1)
    half_resolution: bool = True  # DownSample before f_b, UpSample after the heads
    hyperprior: bool = False  # Ballé-2018 hyperprior in the base entropy model (ablation)
    # context model of the entropy model: "autoregressive" (type-A 5x5 mask, wavefront
    # decoding) or "checkerboard" (He et al. 2021, two decoding passes); see entropy.py
    context: Literal["autoregressive", "checkerboard"] = "autoregressive"
    detector_min_size: int | None = None  # None: the preset's default (paper 800, tiny 128)
    detector_max_size: int | None = None  # None: the preset's default (paper 1333, tiny 256)
    rate_weight: float = field(default=1e-3, metadata=TRAINING_ONLY)
    reward_weight: float = field(default=0.0, metadata=TRAINING_ONLY)  # 0 = baseline
    depth_loss_scale: float = field(default=1.0, metadata=TRAINING_ONLY)
    pretrained: bool = field(default=False, metadata=TRAINING_ONLY)

    def __post_init__(self) -> None:
        if self.context not in CONTEXTS:
            raise ConfigError(f"context must be one of {list(CONTEXTS)}, got {self.context!r}")
        check_loss_weights(self, ("rate_weight", "reward_weight", "depth_loss_scale"))
        if self.task == "detection" and self.half_resolution:
            raise ConfigError(
                "half_resolution is for the depth base; the detection base codes X as is"
            )
        if self.task != "detection" and (self.detector_min_size or self.detector_max_size):
            raise ConfigError(
                "detector_min_size/detector_max_size apply to the detection base only"
            )


@dataclass
class Encoded:
    """The base layer of a batch: quantized latent, likelihoods, padding, original size."""

    y_hat: torch.Tensor
    likelihoods: dict[str, torch.Tensor]
    padding: Padding
    size: tuple[int, int]  # original (H, W)
    bpp: torch.Tensor  # bits per original pixel, mean over the batch


class BaseCodec(nn.Module):
    """A base codec for ``config.task`` (see the module docstring for the data flow).

    ``forward(batch)`` -- or ``forward(x)`` with ``x`` a [B, 3, H, W] tensor in [0, 1], as in
    CompressAI -- returns::

        y_hat        {"base": ŷ_b (B, N, h, w)}
        likelihoods  {"y": ...[, "z": ...]}  flat, as CompressAI's models: a single layer, so
                     ``compressai.losses.RateDistortionLoss()(out, x)`` works as is
        bpp          {"base": 0-d tensor}, bits per original pixel (estimated)
        x_hat        (B, 3, H, W) g_s's reconstruction, unclamped (baseline: from ŷ_b.detach())
        disparity    (B, 1, H, W) disparity pixels                       (depth)
        task_losses  the detector's loss dict (train mode)               (detection)
        detections   list of {"boxes", "labels", "scores"} (eval mode)   (detection)
        padding      Padding added before coding
    """

    def __init__(self, config: BaseCodecConfig | None = None, name: str = "custom-base",
                 identify: Callable[[bytes], str | None] | None = None) -> None:
        super().__init__()
        self.config = config = config or BaseCodecConfig()
        self.registry_name = name
        self.identify = identify  # codec fingerprint -> id, for error messages (the registry's)
        n, widths = config.latent_ch, tuple(config.widths)
        self.padding_multiple = padding_multiple(config.half_resolution, config.hyperprior)
        self.down = DownSample(3, 3) if config.half_resolution else None
        self.f_b = AnalysisTransform(3, widths, n, config.analysis_blocks)
        self.entropy_model = AutoregressiveGaussianModel(
            n, hyperprior=config.hyperprior, context=config.context
        )
        self.g_b = SynthesisTransform(n, widths[::-1], 3, config.task_blocks)
        self.g_s = SynthesisTransform(n, widths[::-1], 3, config.reconstruction_blocks)
        self.up_task = UpSample(1, 1) if config.half_resolution else None
        self.up_recon = UpSample(3, 3) if config.half_resolution else None
        sizes = {}
        if config.task == "detection":
            sizes = {"min_size": config.detector_min_size, "max_size": config.detector_max_size}
        self.task_model = build_task_model(
            config.task, config.preset, pretrained=config.pretrained, **sizes
        )
        self.codec_id = make_codec_id(name, architecture_dict(config))

    # ------------------------------------------------------------------ building blocks

    @property
    def latent_ch(self) -> int:
        return self.config.latent_ch

    @property
    def g_a(self) -> nn.Module:
        """CompressAI's name of the analysis transform: :attr:`f_b` (not a decoder)."""
        return self.f_b

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any,
                              **kwargs: Any) -> None:
        """Checkpoints from before the CompressAI names hold the reconstruction decoder as
        ``g_a.*``: renamed to ``g_s.*`` here, in place (child modules load from this dict)."""
        for old, new in LEGACY_NAMES.items():
            for key in [k for k in state_dict if k.startswith(prefix + old)]:
                state_dict[prefix + new + key[len(prefix + old):]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def analyze(self, image: torch.Tensor) -> tuple[torch.Tensor, Padding]:
        """X (B, 3, H, W) -> padded -> [DownSample] -> f_b -> y (B, N, Hp/s, Wp/s)."""
        x, padding = pad_to_multiple(image, self.padding_multiple)
        if self.down is not None:
            x = self.down(x)
        return self.f_b(x), padding

    def encode(self, image: torch.Tensor) -> Encoded:
        """The base layer of ``image`` as the entropy model's forward pass sees it."""
        y, padding = self.analyze(image)
        em = self.entropy_model(y)
        height, width = image.shape[-2:]
        bpp = bits_per_pixel(em["likelihoods"], image.shape[0] * height * width)
        return Encoded(em["y_hat"], dict(em["likelihoods"]), padding, (height, width), bpp)

    def _to_image_size(
        self, t: torch.Tensor, up: nn.Module | None, padding: Padding
    ) -> torch.Tensor:
        """[UpSample to the padded size] then crop the padding off."""
        if up is not None:
            t = up(t)
        return crop_padding(t, padding)

    def reconstruct(self, y_hat: torch.Tensor, padding: Padding) -> torch.Tensor:
        """ŷ_b -> g_s -> [UpSample] -> crop: x̂ (B, 3, H, W), unclamped."""
        return self._to_image_size(self.g_s(y_hat), self.up_recon, padding)

    def run_task(
        self, y_hat: torch.Tensor, padding: Padding, targets: list[dict] | None = None
    ) -> dict[str, Any]:
        """ŷ_b -> g_b -> task model -> task outputs (see :class:`BaseCodec`)."""
        t = self.g_b(y_hat)
        if self.config.task == "depth":
            disparity = self.task_model(t)["out"]
            return {"disparity": self._to_image_size(disparity, self.up_task, padding)}
        images = list(crop_padding(t, padding).unbind(0))
        if self.task_model.training:
            if targets is None:
                raise KeyError(
                    "the detection base in train mode needs batch['targets'] (a list of "
                    "torchvision target dicts); call .eval() to get detections instead"
                )
            return {"task_losses": self.task_model(images, targets)}
        return {"detections": self.task_model(images)}

    # ------------------------------------------------------------------ training

    def forward(self, batch: Mapping[str, Any] | torch.Tensor) -> dict[str, Any]:
        batch = as_batch(batch)
        image = check_batch_image(batch)
        enc = self.encode(image)
        proposed = self.config.reward_weight > 0
        out: dict[str, Any] = {
            "y_hat": {"base": enc.y_hat},
            "likelihoods": dict(enc.likelihoods),
            "bpp": {"base": enc.bpp},
            "x_hat": self.reconstruct(enc.y_hat if proposed else enc.y_hat.detach(), enc.padding),
            "padding": enc.padding,
        }
        out.update(self.run_task(enc.y_hat, enc.padding, batch.get("targets")))
        return out

    def distortion(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> torch.Tensor:
        """d_b: scaled masked RMSE of the disparity, or the sum of the detector's losses."""
        if self.config.task == "depth":
            missing = [k for k in ("disparity", "disparity_mask") if k not in batch]
            if missing:
                raise KeyError(f"the depth base loss needs batch entries {missing}")
            return depth_loss(
                out["disparity"],
                batch["disparity"],
                batch["disparity_mask"],
                scale=self.config.depth_loss_scale,
            )
        if "task_losses" not in out:
            raise KeyError(
                "no detector losses in the outputs: run forward in train mode with targets"
            )
        return detection_loss(out["task_losses"])

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters an optimizer should update (all but those frozen, e.g. the layers a
        pretrained torchvision detector keeps fixed)."""
        return [p for p in self.parameters() if p.requires_grad]

    def loss(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """``{"loss": total, "distortion": d_b, "bpp_base", "rate": rate_weight·bpp_base,
        "rmse255", "reward": the reconstruction term as added}`` (see the module docstring)."""
        cfg = self.config
        distortion = self.distortion(batch, out)
        bpp = out["bpp"]["base"]
        rmse = rmse255(out["x_hat"], batch["image"])
        reward = (cfg.reward_weight if cfg.reward_weight > 0 else 1.0) * rmse
        rate = cfg.rate_weight * bpp
        total = distortion + rate + reward
        return {
            "loss": total,
            "distortion": distortion,
            "bpp_base": bpp,
            "rate": rate,
            "rmse255": rmse,
            "reward": reward,
        }

    # ------------------------------------------------------------------ real bitstreams

    def latent_shape(self, size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of ŷ_b for an original H x W image (padded, [halved], / 16)."""
        m = self.padding_multiple
        step = 32 if self.config.half_resolution else 16
        return tuple(-(-side // m) * m // step for side in size)  # type: ignore[return-value]

    @torch.no_grad()
    def compress_latents(self, image: torch.Tensor) -> CodedImage:
        """Entropy-code one image: the payload of each layer, ŷ as the decoder will see it,
        and the decode-time estimate of each layer's bits (see :class:`CodedImage`)."""
        x = as_image_batch(image).to(device_of(self))
        with evaluating(self):
            y, padding = self.analyze(x)
            encoded = self.entropy_model.encode(y)
        return CodedImage(
            codec_id=self.codec_id,
            size=(x.shape[-2], x.shape[-1]),
            padding=padding,
            layers={"base": encoded.data},
            y_hat={"base": encoded.y_hat},
            estimated_bits={"base": sum(encoded.estimated_bits.values())},
        )

    def compress(self, image: torch.Tensor) -> bytes:
        """One image [3, H, W] or [1, 3, H, W] in [0, 1] -> a layered bitstream (bytes)."""
        return self.compress_latents(image).to_bytes()

    @torch.no_grad()
    def decode_base(self, stream: Bitstream) -> dict[str, Any]:
        """Decode the base layer of an unpacked stream: ŷ_b, x̂ (clamped) and task outputs."""
        with evaluating(self):
            padding = Padding(*stream.padding)
            shape = self.latent_shape(stream.image_size)
            y_hat = self.entropy_model.decompress(stream.layers["base"], shape)
            out: dict[str, Any] = {
                "y_hat": {"base": y_hat},
                "x_hat": self.reconstruct(y_hat, padding).clamp(0.0, 1.0),
                "padding": padding,
                "image_size": stream.image_size,
            }
            out.update(self.run_task(y_hat, padding))
        return out

    def decompress(self, data: bytes, layers: str = "all") -> dict[str, Any]:
        """Bytes from :meth:`compress` -> ``y_hat`` {"base": ŷ_b}, ``x_hat`` [1, 3, H, W]
        in [0, 1] (g_s), the task outputs (``disparity`` or ``detections``), ``bpp_actual``
        (all bytes, header included, per original pixel) and ``bpp_actual_decoded`` (a
        stream holding only the decoded layers). ``layers``: "all" or "base" (the same here)."""
        check_layers(layers)
        stream = unpack_for(data, self.codec_id, ["base"], self.identify)
        check_padding(stream, self.padding_multiple)
        out = self.decode_base(stream)
        out.update(actual_rates(data, stream))
        return out
