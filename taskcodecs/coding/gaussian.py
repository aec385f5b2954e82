"""The Gaussian context model both entropy models share (:mod:`taskcodecs.coding.entropy`
draws the data flow): quantization, the Gaussian conditional over a context model and its
likelihoods, the training forward pass. Real coding of a latent (``encode``/``compress``/
``decompress`` through the rANS coder) is the mixed-in half, :mod:`taskcodecs.coding.gaussian_coding`.

    GaussianContextModel     forward (training); encode/compress/decompress (bytes, mixed in)
      subclasses say what conditions the Gaussian besides the context:
      _condition / _encode_condition / _decode_condition / _num_condition_symbols
    quantize, bits           ⌊·⌉ with straight-through or noise; likelihoods -> bits
    EncodedLatent            what ``encode`` returns (payload bytes, y_hat, estimated bits)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from compressai.entropy_models import GaussianConditional
from torch import Tensor, nn

from taskcodecs.coding.context import anchor_mask, check_context
from taskcodecs.coding.gaussian_coding import EncodedLatent, GaussianCoding
from taskcodecs.coding.rans import (
    CodingTables,
    SymbolReader,
    SymbolWriter,
    make_tables_transient,
)
from taskcodecs.layers import MaskedConv2d

__all__ = [
    "LIKELIHOOD_BOUND",
    "SCALE_BOUND",
    "SCALE_TABLE",
    "EncodedLatent",
    "GaussianContextModel",
    "bits",
    "float32_if_half",
    "quantize",
]

SCALE_BOUND = 0.11


LIKELIHOOD_BOUND = 1e-9


# CompressAI's default: 64 log-spaced scales from 0.11 to 256.
SCALE_TABLE: tuple[float, ...] = tuple(
    torch.exp(torch.linspace(math.log(SCALE_BOUND), math.log(256.0), 64)).tolist()
)


def quantize(x: Tensor, mode: str = "ste") -> Tensor:
    """``ste``: ⌊x⌉ forward, identity gradient; ``noise``: x + U(−½, ½); ``round``: ⌊x⌉."""
    if mode == "ste":
        return x + (torch.round(x) - x).detach()
    if mode == "noise":
        return x + torch.empty_like(x).uniform_(-0.5, 0.5)
    if mode == "round":
        return torch.round(x)
    raise ValueError(f"quantize mode must be 'ste', 'noise' or 'round', got {mode!r}")


def bits(likelihoods: Tensor | Mapping[str, Tensor], per_sample: bool = False) -> Tensor:
    """Rate in bits: −log2 of the likelihoods, summed (over a dict's entries too).

    ``per_sample=True`` keeps the batch dimension: a (B,) tensor of bits per item.
    """
    tensors = list(likelihoods.values()) if isinstance(likelihoods, Mapping) else [likelihoods]
    if not tensors:
        raise ValueError("bits() needs at least one likelihood tensor")
    if per_sample:
        return sum(-torch.log2(t).flatten(1).sum(dim=1) for t in tensors)  # type: ignore[return-value]
    return sum(-torch.log2(t).sum() for t in tensors)  # type: ignore[return-value]


class GaussianContextModel(GaussianCoding, nn.Module):
    """Shared forward/encode/decompress; subclasses add what is concatenated after the context."""

    _flag_bits = 0  # taskcodecs.coding.payload: HYPERPRIOR | CONDITIONAL

    def __init__(
        self,
        N: int,
        conditioning_channels: int,
        activation: type[nn.Module],
        noise_quantization: bool,
        context: str,
    ) -> None:
        super().__init__()
        if isinstance(N, bool) or int(N) != N or N < 1:
            raise ValueError(f"N (latent channels) must be a positive integer, got {N!r}")
        self.N = N = int(N)
        self.noise_quantization = bool(noise_quantization)
        self.context = check_context(context)
        mask_type = "checkerboard" if context == "checkerboard" else "A"
        self.context_prediction = MaskedConv2d(
            N, 2 * N, kernel_size=5, padding=2, mask_type=mask_type
        )
        self.entropy_parameters = nn.Sequential(
            nn.Conv2d(2 * N + conditioning_channels, 10 * N // 3, 1),
            activation(),
            nn.Conv2d(10 * N // 3, 8 * N // 3, 1),
            activation(),
            nn.Conv2d(8 * N // 3, 2 * N, 1),
        )
        self.gaussian_conditional = GaussianConditional(
            list(SCALE_TABLE), scale_bound=SCALE_BOUND, likelihood_bound=LIKELIHOOD_BOUND
        )
        make_tables_transient(self.gaussian_conditional)
        self._gaussian_tables_cache: tuple[tuple, CodingTables] | None = None

    # -- hooks for subclasses ------------------------------------------------------------
    def _condition(self, y: Tensor, side: Tensor | None, mode: str) -> tuple[Tensor | None, dict]:
        """Parallel (training) conditioning features and extra likelihoods."""
        raise NotImplementedError

    def _encode_condition(self, y: Tensor, side: Tensor | None, writer: SymbolWriter):
        """CPU coding copy: conditioning features (1, K, h, w) or None, and extra bits."""
        raise NotImplementedError

    def _decode_condition(self, reader: SymbolReader, shape, side: Tensor | None):
        """CPU coding copy, mirror of ``_encode_condition``: conditioning features or None."""
        raise NotImplementedError

    def _num_condition_symbols(self, shape: Sequence[int]) -> int:
        """How many symbols ``_encode_condition`` writes before the latent's (hyper-latent)."""
        return 0

    # -- training / evaluation -----------------------------------------------------------
    def forward(self, y: Tensor, side: Tensor | None = None) -> dict:
        """{"y_hat": (B, N, h, w), "likelihoods": {"y": (B, N, h, w)[, "z": ...]}}.

        Always computed in float32 with autocast disabled (mixed-precision training casts
        only the transforms; likelihoods need float32, taskcodecs.training.precision)."""
        self._check_latent(y, batch_one=False)
        with torch.autocast(y.device.type, enabled=False):
            return self._forward(float32_if_half(y), float32_if_half(side))

    def _forward(self, y: Tensor, side: Tensor | None) -> dict:
        mode = "noise" if self.training and self.noise_quantization else "ste"
        conditioning, extra = self._condition(y, side, mode)
        if self.context == "checkerboard":
            y_hat, scales, means = self._checkerboard_forward(y, conditioning, mode)
        else:
            y_hat, scales, means = self._autoregressive_forward(y, conditioning, mode)
        likelihoods = {"y": self._gaussian_likelihood(y_hat, scales, means), **extra}
        return {"y_hat": y_hat, "likelihoods": likelihoods}

    def _gaussian_parameters(self, context_input: Tensor, conditioning: Tensor | None):
        """(scales, means) from the masked conv of ``context_input`` [+ conditioning]."""
        features = self.context_prediction(context_input)
        if conditioning is not None:
            features = torch.cat([features, conditioning], dim=1)
        return self.entropy_parameters(features).chunk(2, dim=1)

    def _autoregressive_forward(self, y: Tensor, conditioning: Tensor | None, mode: str):
        """The context sees ⌊y⌉ (or y + noise) at every causal position, in parallel."""
        if mode == "noise":
            y_hat = quantize(y, "noise")
            return (y_hat, *self._gaussian_parameters(y_hat, conditioning))
        scales, means = self._gaussian_parameters(quantize(y, "ste"), conditioning)
        return quantize(y - means, "ste") + means, scales, means

    def _checkerboard_forward(self, y: Tensor, conditioning: Tensor | None, mode: str):
        """Both passes in parallel; in "ste" mode exactly what the decoder computes.

        Pass 1 (no gradient): the anchors' μ from the context bias alone (a conv of zeros)
        [+ conditioning], so their ŷ = ⌊y − μ⌉ + μ is the decoder's. Pass 2: the checkerboard
        conv of ŷ ⊙ anchor_mask; at anchors it reads only zeroed non-anchors (the same μ, σ
        as pass 1, now with gradient), at non-anchors the anchors' ŷ. "noise" mode: one pass
        on (y + u) ⊙ anchor_mask.
        """
        anchors = anchor_mask(*y.shape[-2:]).to(y.device)
        if mode == "noise":
            y_hat = quantize(y, "noise")
            return (y_hat, *self._gaussian_parameters(y_hat * anchors, conditioning))
        with torch.no_grad():
            _, anchor_means = self._gaussian_parameters(torch.zeros_like(y), conditioning)
        anchor_hat = y + (torch.round(y - anchor_means) + anchor_means - y).detach()
        scales, means = self._gaussian_parameters(anchor_hat * anchors, conditioning)
        y_hat = torch.where(anchors, anchor_hat, quantize(y - means, "ste") + means)
        return y_hat, scales, means

    def _gaussian_likelihood(self, y_hat: Tensor, scales: Tensor, means: Tensor) -> Tensor:
        gc = self.gaussian_conditional
        return gc.likelihood_lower_bound(gc._likelihood(y_hat, scales, means))

    # -- helpers -------------------------------------------------------------------------
    def _check_latent(self, y: Tensor, batch_one: bool) -> None:
        if not isinstance(y, Tensor) or y.dim() != 4 or y.shape[1] != self.N:
            got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise ValueError(f"latent y must be a (B, {self.N}, h, w) tensor, got {got}")
        if batch_one and y.shape[0] != 1:
            raise ValueError(
                f"entropy coding takes one latent at a time (B = 1), got B = {y.shape[0]}"
            )
        if min(y.shape[-2:]) < 1 or max(y.shape[-2:]) > 0xFFFF:
            raise ValueError(
                f"latent height and width must be in [1, 65535], got {tuple(y.shape[-2:])}"
            )
        if batch_one and not bool(torch.isfinite(y).all()):
            raise ValueError("latent y contains NaN or infinite values: cannot entropy-code")

    def _check_side(self, side: Tensor | None, y_shape: Sequence[int]) -> Tensor | None:
        """Base models take no side input; conditional ones override this."""
        if side is not None:
            raise ValueError(
                f"{type(self).__name__} takes no side information; got side={type(side).__name__}"
            )
        return None


def float32_if_half(x: Tensor | None) -> Tensor | None:
    """``x`` in float32 if it is a half-precision tensor (autocast output), else as is."""
    if isinstance(x, Tensor) and x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    return x
