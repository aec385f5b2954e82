"""The codec interface: what the trainer, the evaluator, the runs and the codec CLI call.

Any ``torch.nn.Module`` with these members is a codec of this toolkit, ours
(:class:`~taskcodecs.models.base.BaseCodec`, :class:`~taskcodecs.models.enhancement.EnhancementCodec`)
or a wrapped CompressAI model (:class:`~taskcodecs.models.compressai_codec.CompressAICodec`):

=======================  =====================================================================
member                   contract
=======================  =====================================================================
``codec_id``             ``name@confighash`` (:func:`~taskcodecs.models.common.make_codec_id`):
                         stable, written into every bitstream's fingerprint and checkpoint
``registry_name``        the registry entry it was built from (``create_model(name)``)
``config``               its config dataclass (saved whole; ``create_model(name, **config)``
                         rebuilds it); training-only fields carry ``metadata=TRAINING_ONLY``
``identify``             fingerprint -> codec id or None, for error messages (the registry's)
``forward(batch)``       a dict batch (``batch["image"]`` [B, 3, H, W] in [0, 1], + task
                         targets) or the image tensor itself -> a dict holding at least
                         ``bpp`` {layer: 0-d tensor, bits per original pixel, estimated} and
                         ``likelihoods``; ``x_hat`` where the codec reconstructs
``loss(batch, out)``     {"loss": the training objective (the validation objective too), ...
                         terms, each a 0-d tensor}; ``bpp_base`` (or ``bpp_total``) for rate
                         targeting
``trainable_parameters`` the parameters the optimizer updates
``compress(image)``      one image [3, H, W] in [0, 1], any H and W -> the layered container
                         of :mod:`taskcodecs.coding.bitstream` (bytes, header included)
``decompress(data,       bytes -> {"x_hat" [1, 3, H, W] clamped to [0, 1] (if it
layers="all")``          reconstructs), task outputs, "bpp_actual", "bpp_actual_decoded"}
=======================  =====================================================================

Register your own model with
:func:`taskcodecs.experiments.registry.register_model` (a config dataclass and a builder
``build(config, name=..)`` returning such a module); :func:`check_codec` says what is missing.
The ``compress_latents(image) -> CodedImage`` of our codecs is optional (the codec CLI's
``encode`` prints its per-layer estimate when present).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

__all__ = ["CODEC_MEMBERS", "Codec", "check_codec"]

CODEC_MEMBERS = ("codec_id", "registry_name", "config", "identify", "forward", "loss",
                 "trainable_parameters", "compress", "decompress")


@runtime_checkable
class Codec(Protocol):
    """The members every codec has (module docstring). ``isinstance(m, Codec)`` checks that
    they exist, not their signatures."""

    codec_id: str
    registry_name: str
    config: Any
    identify: Callable[[bytes], str | None] | None

    def forward(self, batch: Mapping[str, Any] | torch.Tensor) -> dict[str, Any]: ...

    def loss(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> dict[str, torch.Tensor]: ...

    def trainable_parameters(self) -> list[nn.Parameter]: ...

    def compress(self, image: torch.Tensor) -> bytes: ...

    def decompress(self, data: bytes, layers: str = "all") -> dict[str, Any]: ...


def check_codec(model: Any, what: str = "model") -> None:
    """A TypeError naming the missing :class:`Codec` members of ``model`` (none: it is one)."""
    missing = [name for name in CODEC_MEMBERS if not hasattr(model, name)]
    if missing:
        raise TypeError(f"{what} {type(model).__name__} is not a codec (taskcodecs.models."
                        f"protocol.Codec): it lacks {', '.join(missing)}")
