"""The framing of an entropy payload: its flag byte and its 16-bit end-check value.

    payload = flag byte ‖ rANS stream (taskcodecs.coding.rans) ending with the end check

Flag byte (what the decoder checks before decoding anything)::

    bits 7-4  version, naming the context model: 2 = autoregressive, 3 = checkerboard (both
              code σ with the nearest of the 64 table scales; version 1, which rounded up
              to the next scale, is retired)
    bit 3     side input zeroed (conditional models coded with side=None)
    bit 2     conditional (a side branch on Ŷ_b)
    bit 1     hyperprior
    bit 0     raster order (autoregressive payloads only; always 0 in checkerboard ones)

A payload coded by a model of another kind (context, hyperprior, side branch, side input
given or not) raises :class:`~taskcodecs.coding.bitstream.BitstreamError` naming both. Everything
else the decoder must share with the encoder (latent shape, parameters, side input) goes
into the end check (:func:`check_value`).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from taskcodecs.coding.bitstream import BitstreamError
from taskcodecs.layers import MaskedConv2d

__all__ = [
    "CONDITIONAL", "HYPERPRIOR", "check_value", "make_flags", "read_flags", "state_crc",
]

VERSIONS = {"autoregressive": 2, "checkerboard": 3}
RASTER, HYPERPRIOR, CONDITIONAL, SIDE_ZEROED = 1, 2, 4, 8


def make_flags(context: str, model_bits: int, order: str, side_zeroed: bool) -> int:
    """The flag byte of a payload coded by a ``context`` model with ``model_bits``
    (HYPERPRIOR | CONDITIONAL) in ``order`` (recorded for autoregressive models only)."""
    flags = model_bits
    if context == "autoregressive" and order == "raster":
        flags |= RASTER
    if model_bits & CONDITIONAL and side_zeroed:
        flags |= SIDE_ZEROED
    return (VERSIONS[context] << 4) | flags


def read_flags(flags: int, context: str, model_bits: int, side_zeroed: bool) -> str:
    """The payload's order ("wavefront" or "raster"); BitstreamError if the payload was
    coded by another kind of model than (``context``, ``model_bits``, ``side_zeroed``)."""
    contexts = {version: name for name, version in VERSIONS.items()}
    coded_context = contexts.get(flags >> 4)
    if coded_context is None:
        known = ", ".join(f"{v} ({name} context)" for name, v in VERSIONS.items())
        raise BitstreamError(
            f"entropy payload version {flags >> 4} is not supported (known: {known})"
        )
    if coded_context != context:
        raise BitstreamError(
            f"entropy payload was coded by a model with context={coded_context!r}, "
            f"this model has context={context!r}"
        )
    if context == "checkerboard" and flags & RASTER:
        raise BitstreamError("checkerboard entropy payload has its raster bit set: corrupt")
    coded_bits = flags & (HYPERPRIOR | CONDITIONAL)
    if coded_bits != model_bits:
        raise BitstreamError(
            f"entropy payload was coded by a model with {_describe(coded_bits)}, "
            f"this model has {_describe(model_bits)}"
        )
    if model_bits & CONDITIONAL and bool(flags & SIDE_ZEROED) != side_zeroed:
        coded = "zeroed side information (side=None)" if flags & SIDE_ZEROED else "a side input"
        given = "side=None" if side_zeroed else "a side input"
        raise BitstreamError(f"entropy payload was coded with {coded}, but {given} was given")
    return "raster" if flags & RASTER else "wavefront"


def state_crc(model: nn.Module) -> int:
    """CRC32 of every tensor of ``model``'s state dict (floats as float32), in order.
    Masked-conv weights are hashed with the masked-out taps set to +0.0: those taps are
    never used, so two models that differ only there code identically."""
    state = model.state_dict()
    for name, module in model.named_modules():
        if isinstance(module, MaskedConv2d):
            prefix = f"{name}." if name else ""
            weight = module.weight.detach()
            state[f"{prefix}weight"] = torch.where(module.mask != 0, weight, 0.0)
    crc = 0
    for tensor in state.values():
        crc = _crc_tensor(tensor, crc)
    return crc


def check_value(
    model_crc: int, flags: int, num_channels: int, shape: Sequence[int], side: Tensor | None
) -> int:
    """16 bits of a CRC32 over what encoder and decoder must share: the flag byte, the
    latent's channels and (h, w), the model (``model_crc`` = :func:`state_crc`) and the side
    input (as float32)."""
    crc = zlib.crc32(struct.pack(">BHHHI", flags, num_channels, *shape, model_crc))
    if side is not None:
        crc = _crc_tensor(side, crc)
    return crc & 0xFFFF


def _crc_tensor(tensor: Tensor, crc: int) -> int:
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point():
        tensor = tensor.float()
    return zlib.crc32(tensor.contiguous().numpy().tobytes(), crc)


def _describe(model_bits: int) -> str:
    kind = "side information" if model_bits & CONDITIONAL else "no side information"
    return f"{kind}, hyperprior={bool(model_bits & HYPERPRIOR)}"
