"""Enhancement codecs: a second target coded on top of a frozen base (DESIGN §3).

Data flow (CompressAI paper names; the base is frozen: eval mode, no gradient)::

    X ─▶ base: [DownSample] ─▶ f_b ─▶ y ─Q─▶ ŷ_b ───────────────┐ side information
                                                                ▼
    X ─pad─▶ [DownSample] ─▶ f_e ─▶ y_e ─Q(· | ŷ_b)─▶ ŷ_e ─▶ g_e ─▶ target
                                         conditional entropy model:
                                         masked 5x5 context of ŷ_e (autoregressive or
                                         checkerboard) + side branch on ŷ_b

    reconstruction   g_e (3 ch, 3 blocks/stage) ─▶ [UpSample] ─▶ crop ─▶ x̂ (B, 3, H, W)
    segmentation     g_e (3 ch image-like, 1 block/stage) ─▶ DeepLabV3 (+aux) ─▶ logits,
                     bilinearly upsampled to the label resolution (19 classes, ignore 19)

DownSample/UpSample appear when the base works at half resolution (the depth base), so ŷ_e
and ŷ_b have the same spatial size. Modes (``config.mode``):

* ``scalable``                the conditional codec above.
* ``direct``                  no enhancement layer: the target is decoded from ŷ_b alone.
                              Reconstruction: the base's own g_s (a thin wrapper, nothing to
                              train). Segmentation: g_e + DeepLabV3 trained on the frozen ŷ_b.
* ``standalone-refit``        the conditional architecture with the side input zeroed; trained
                              from a trained ``scalable`` model (:meth:`EnhancementCodec.init_from`)
                              refitting only the entropy model (:meth:`trainable_parameters`).
* ``standalone-independent``  the same architecture, side input zeroed, trained from scratch:
                              the unconditional reference R(X).

Loss: ``rate_weight · (bpp_e + bpp_b) + d_e`` with d_e = rmse255 (reconstruction) or
20·CE(out) + 20·CE(aux) (segmentation). bpp_b carries no gradient (the base is frozen);
reported rates of every mode are base + enhancement, bits per pixel of the original H x W
image. Padding: the base's multiple (16, 32 at half resolution, x4 with a hyperprior).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from infra.config import ConfigError, check_loss_weights, config_to_dict
from taskcodecs.coding.entropy import CONTEXTS, ConditionalAutoregressiveGaussianModel
from taskcodecs.data.labels import IGNORE_INDEX
from taskcodecs.layers import DownSample, Padding, UpSample, crop_padding, pad_to_multiple
from taskcodecs.models.base import BaseCodec, Encoded
from taskcodecs.models.common import (
    TRAINING_ONLY,
    CodedImage,
    actual_rates,
    as_image_batch,
    bits_per_pixel,
    check_batch_image,
    check_layers,
    check_padding,
    device_of,
    enhancement_codec_id,
    evaluating,
    freeze,
    unpack_for,
)
from taskcodecs.models.losses import rmse255, segmentation_loss
from taskcodecs.models.tasks import build_task_model
from taskcodecs.models.transforms import AnalysisTransform, SynthesisTransform

__all__ = ["EnhancementCodec", "EnhancementCodecConfig", "TARGETS"]

TARGETS = ("reconstruction", "segmentation")


@dataclass
class EnhancementCodecConfig:
    """Architecture of an enhancement codec and its loss weights.

    ``base_model`` is the registry name of the base and ``base_overrides`` its config
    overrides (the base is built from them unless an instance is passed to the
    constructor; then they are filled in from the instance so a checkpoint can rebuild it).
    """

    target: Literal["reconstruction", "segmentation"] = "reconstruction"
    mode: Literal["scalable", "direct", "standalone-refit", "standalone-independent"] = "scalable"
    base_model: str = "tiny-depth-base"
    base_overrides: dict[str, Any] = field(default_factory=dict)
    preset: Literal["tiny", "paper"] = "tiny"  # segmentation head preset
    latent_ch: int = 32  # N of ŷ_e (the side branch adapts the base's N)
    widths: tuple[int, int, int] = (8, 16, 32)
    analysis_blocks: int = 1  # residual blocks per stage of f_e
    synthesis_blocks: int = 1  # ... of g_e (paper: 3 reconstruction, 1 segmentation)
    side_blocks: int = 1  # residual blocks in each stack of the side branch on ŷ_b (paper: 3)
    # context model of ŷ_e's entropy model (independent of the base's), see entropy.py
    context: Literal["autoregressive", "checkerboard"] = "autoregressive"
    rate_weight: float = field(default=1e-2, metadata=TRAINING_ONLY)
    segmentation_loss_weight: float = field(default=20.0, metadata=TRAINING_ONLY)
    pretrained: bool = field(default=False, metadata=TRAINING_ONLY)

    def __post_init__(self) -> None:
        if self.context not in CONTEXTS:
            raise ConfigError(f"context must be one of {list(CONTEXTS)}, got {self.context!r}")
        check_loss_weights(self, ("rate_weight",))
        if self.segmentation_loss_weight <= 0:
            raise ConfigError(
                f"segmentation_loss_weight must be positive, got {self.segmentation_loss_weight}"
            )


class EnhancementCodec(nn.Module):
    """An enhancement codec over a frozen :class:`BaseCodec` (module docstring: data flow).

    ``forward(batch)`` (or ``forward(x)``, x a [B, 3, H, W] tensor) returns ``y_hat``,
    ``likelihoods`` and ``bpp`` keyed by layer ("base", and "enhancement" unless the mode is
    ``direct``), ``padding``, and the target: ``x_hat`` (B, 3, H, W) unclamped for
    reconstruction, ``segmentation`` {"out", "aux"} logits (B, 19, H, W) for segmentation.

    Nesting: a layered codec's ``likelihoods`` are ``{"base": {"y"[, "z"]}, "enhancement":
    {"y"}}`` (the base's carry no gradient). CompressAI's tools want one flat dict: use
    :func:`taskcodecs.models.common.flat_likelihoods` (keys ``"base.y"``, ``"enhancement.y"``)
    or :func:`~taskcodecs.models.common.compressai_view` (``{"x_hat", "likelihoods"}``), e.g.
    ``RateDistortionLoss()(compressai_view(out), x)`` (its rate is base + enhancement).
    """

    def __init__(
        self,
        config: EnhancementCodecConfig | None = None,
        name: str = "custom-enhancement",
        base: BaseCodec | None = None,
        identify: Callable[[bytes], str | None] | None = None,
    ) -> None:
        super().__init__()
        config = config or EnhancementCodecConfig()
        if not isinstance(base, BaseCodec):  # the registry's create_model builds it by name
            raise TypeError(f"base must be a BaseCodec, got {type(base).__name__} (an enhancement "
                            "is given its base; create_model builds it from config.base_model)")
        config = replace(
            config, base_model=base.registry_name, base_overrides=config_to_dict(base.config)
        )
        self.config = config
        self.registry_name = name
        self.identify = identify  # codec fingerprint -> id, for error messages (the registry's)
        self.base = freeze(base)
        self.padding_multiple = base.padding_multiple
        self.conditional = config.mode == "scalable"
        half = base.config.half_resolution
        n, widths = config.latent_ch, tuple(config.widths)

        coded = config.mode != "direct"
        self.down = DownSample(3, 3) if coded and half else None
        self.f_e = AnalysisTransform(3, widths, n, config.analysis_blocks) if coded else None
        self.entropy_model = (
            ConditionalAutoregressiveGaussianModel(
                n,
                side_channels=base.latent_ch,
                num_res_blocks=config.side_blocks,
                context=config.context,
            )
            if coded
            else None
        )
        decoder_in = n if coded else base.latent_ch
        self.g_e: nn.Module | None = None
        self.up: nn.Module | None = None
        self.task_model: nn.Module | None = None
        if config.target == "reconstruction":
            if coded:
                self.g_e = SynthesisTransform(decoder_in, widths[::-1], 3, config.synthesis_blocks)
                self.up = UpSample(3, 3) if half else None
        else:
            self.g_e = SynthesisTransform(decoder_in, widths[::-1], 3, config.synthesis_blocks)
            self.task_model = build_task_model(
                "segmentation", config.preset, pretrained=config.pretrained
            )
        self.codec_id = enhancement_codec_id(name, config, base.registry_name, base.codec_id)
        if config.mode == "standalone-refit":  # only the entropy model is refit
            for module in self._fixed_modules():
                freeze(module)

    # ------------------------------------------------------------------ training helpers

    def _fixed_modules(self) -> list[nn.Module]:
        """Modules that never train: the base, and in refit mode all but the entropy model."""
        fixed: list[nn.Module] = [self.base]
        if self.config.mode == "standalone-refit":
            fixed += [
                m
                for m in (self.down, self.f_e, self.g_e, self.up, self.task_model)
                if m is not None
            ]
        return fixed

    def train(self, mode: bool = True) -> EnhancementCodec:
        """Train mode for the trainable parts; the frozen base (and, in refit mode, everything
        but the entropy model) stays in eval mode."""
        super().train(mode)
        for module in self._fixed_modules():
            module.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters an optimizer should update: everything but the base; in
        ``standalone-refit`` mode only the entropy model; none for direct reconstruction."""
        return [p for p in self.parameters() if p.requires_grad]

    def init_from(self, conditional: EnhancementCodec) -> None:
        """Copy every weight of a trained ``scalable`` model of the same architecture (the
        start of ``standalone-refit``); the base must be the same codec."""
        if conditional.config.target != self.config.target:
            raise ValueError(
                f"init_from: target {conditional.config.target!r} differs from {self.config.target!r}"
            )
        if conditional.config.context != self.config.context:
            raise ValueError(
                f"init_from: context {conditional.config.context!r} differs from "
                f"{self.config.context!r}"
            )
        if conditional.base.codec_id != self.base.codec_id:
            raise ValueError(
                f"init_from: base {conditional.base.codec_id} differs from {self.base.codec_id}"
            )
        self.load_state_dict(conditional.state_dict())

    # ------------------------------------------------------------------ forward

    def _side(self, y_hat_b: torch.Tensor) -> torch.Tensor | None:
        """The conditioning input: ŷ_b (scalable) or None (standalone: the entropy model
        feeds zeros of ŷ_b's shape)."""
        return y_hat_b if self.conditional else None

    def analyze(self, image: torch.Tensor) -> torch.Tensor:
        """X -> pad -> [DownSample] -> f_e -> y_e, same spatial size as ŷ_b."""
        x, _ = pad_to_multiple(image, self.padding_multiple)
        if self.down is not None:
            x = self.down(x)
        return self.f_e(x)

    def decode_target(self, features: torch.Tensor, padding: Padding) -> dict[str, Any]:
        """ŷ_e (or ŷ_b in direct mode) -> the target (module docstring)."""
        if self.config.target == "reconstruction":
            if self.g_e is None:  # direct reconstruction: the base's g_s
                return {"x_hat": self.base.reconstruct(features, padding)}
            t = self.g_e(features)
            return {"x_hat": crop_padding(self.up(t) if self.up is not None else t, padding)}
        t = self.g_e(features)
        logits = self.task_model(t)
        height, width = t.shape[-2:]
        full = (
            height * (2 if self.base.config.half_resolution else 1),
            width * (2 if self.base.config.half_resolution else 1),
        )
        seg = {}
        for key, value in logits.items():
            if value.shape[-2:] != full:
                value = F.interpolate(value, size=full, mode="bilinear", align_corners=False)
            seg[key] = crop_padding(value, padding)
        return {"segmentation": seg}

    def forward(self, batch: Mapping[str, Any] | torch.Tensor) -> dict[str, Any]:
        image = check_batch_image(batch)
        with torch.no_grad():
            base: Encoded = self.base.encode(image)
        out: dict[str, Any] = {
            "y_hat": {"base": base.y_hat},
            "likelihoods": {"base": base.likelihoods},
            "bpp": {"base": base.bpp},
            "padding": base.padding,
        }
        if self.entropy_model is None:  # direct: the target from ŷ_b alone, no enhancement bits
            out.update(self.decode_target(base.y_hat, base.padding))
            return out
        em = self.entropy_model(self.analyze(image), side=self._side(base.y_hat))
        height, width = base.size
        out["y_hat"]["enhancement"] = em["y_hat"]
        out["likelihoods"]["enhancement"] = dict(em["likelihoods"])
        out["bpp"]["enhancement"] = bits_per_pixel(
            em["likelihoods"], image.shape[0] * height * width
        )
        out.update(self.decode_target(em["y_hat"], base.padding))
        return out

    def loss(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """``{"loss", "distortion": d_e, "bpp_base", "bpp_enhancement", "bpp_total", "rate"}``
        plus ``rmse255`` (reconstruction); total = rate_weight · (bpp_e + bpp_b) + d_e."""
        image = batch["image"]
        if self.config.target == "reconstruction":
            distortion = rmse255(out["x_hat"], image)
            extra = {"rmse255": distortion}
        else:
            if "labels" not in batch:
                raise KeyError("the segmentation loss needs batch['labels'] (B, H, W) train ids")
            labels = batch["labels"]
            seg = {
                k: v
                if v.shape[-2:] == labels.shape[-2:]
                else F.interpolate(v, size=labels.shape[-2:], mode="bilinear", align_corners=False)
                for k, v in out["segmentation"].items()
            }
            distortion = segmentation_loss(
                seg, labels, ignore_index=IGNORE_INDEX, weight=self.config.segmentation_loss_weight
            )
            extra = {}
        bpp_base = out["bpp"]["base"]
        bpp_enh = out["bpp"].get("enhancement", torch.zeros((), device=image.device))
        rate = self.config.rate_weight * (bpp_enh + bpp_base)
        return {
            "loss": rate + distortion,
            "distortion": distortion,
            "bpp_base": bpp_base,
            "bpp_enhancement": bpp_enh,
            "bpp_total": bpp_base + bpp_enh,
            "rate": rate,
            **extra,
        }

    # ------------------------------------------------------------------ real bitstreams

    @torch.no_grad()
    def compress_latents(self, image: torch.Tensor) -> CodedImage:
        """Entropy-code both layers (see :class:`~taskcodecs.models.base.CodedImage`). The
        enhancement is coded given the base's ŷ_b exactly as the decoder will have it."""
        coded = self.base.compress_latents(image)
        coded.codec_id = self.codec_id
        if self.entropy_model is None:  # direct: no enhancement layer
            return coded
        with evaluating(self):
            x = as_image_batch(image).to(device_of(self))
            y_e = self.analyze(x)
            encoded = self.entropy_model.encode(y_e, side=self._side(coded.y_hat["base"]))
        coded.layers["enhancement"] = encoded.data
        coded.y_hat["enhancement"] = encoded.y_hat
        coded.estimated_bits["enhancement"] = sum(encoded.estimated_bits.values())
        return coded

    def compress(self, image: torch.Tensor) -> bytes:
        """One image [3, H, W] or [1, 3, H, W] in [0, 1] -> layered bytes (base [+ enhancement])."""
        return self.compress_latents(image).to_bytes()

    def decompress(self, data: bytes, layers: str = "all") -> dict[str, Any]:
        """Decode ``layers`` ("all" or "base"). Always: the base's outputs (``y_hat``
        {"base"}, the base's ``x_hat`` from g_s, the base task's outputs), ``bpp_actual`` (all
        bytes per original pixel) and ``bpp_actual_decoded`` (a container of the decoded
        layers alone). With "all" also ``y_hat["enhancement"]`` and the target: ``x_hat``
        from g_e (reconstruction; the base's moves to ``x_hat_base``) or ``segmentation``
        {"out", "aux"} logits (1, 19, H, W) and ``labels`` (1, H, W) train ids."""
        check_layers(layers)
        coded = self.entropy_model is not None and layers == "all"
        names = ["base", "enhancement"] if coded else ["base"]
        stream = unpack_for(data, self.codec_id, names, self.identify)
        check_padding(stream, self.padding_multiple)
        out = self.base.decode_base(stream)
        out.update(actual_rates(data, stream))
        if layers == "base":
            return out
        with torch.no_grad(), evaluating(self):
            features = out["y_hat"]["base"]
            if coded:
                features = self.entropy_model.decompress(
                    stream.layers["enhancement"],
                    tuple(features.shape[-2:]),
                    side=self._side(features),
                )
                out["y_hat"]["enhancement"] = features
            target = self.decode_target(features, Padding(*stream.padding))
        if "x_hat" in target:
            out["x_hat_base"] = out["x_hat"]
            out["x_hat"] = target["x_hat"].clamp(0.0, 1.0)
        else:
            out["segmentation"] = target["segmentation"]
            out["labels"] = target["segmentation"]["out"].argmax(dim=1)
        return out
