"""Mixed precision and compilation of a training run: ``amp=none|bf16|fp16``, ``compile=true``.

What each setting does (:class:`Precision`, used by :class:`taskcodecs.training.trainer.Trainer`):

- ``amp=bf16``: the forward pass and the loss run under ``torch.autocast(device, bfloat16)``.
  bf16 keeps float32's exponent range, so no loss scaling is needed.
- ``amp=fp16``: autocast to float16 plus a gradient scaler (``torch.amp.GradScaler``): the
  loss is multiplied by the scale before ``backward``, the gradients are unscaled before
  clipping, a step whose gradients hold inf/NaN is skipped and the scale halved, and the
  scale doubles after 2,000 clean steps. The scaler's state is saved in every checkpoint
  (metadata ``trainer.grad_scaler``), so a resumed fp16 run continues exactly.
- Both work on CUDA and on the CPU (CPU autocast supports bf16 and fp16; on a CPU it is
  mostly a way to test, rarely faster).

What stays float32 under AMP: the weights and Adam's state (autocast casts per operation,
the parameters are never converted) and the *entropy model's* forward pass (context model,
parameter network, Gaussian likelihoods; :mod:`taskcodecs.coding.entropy` runs it with
autocast disabled), so the rate term is not computed with an 8- or 11-bit mantissa.
Entropy *coding* (``compress``/``decompress``) always runs on a float64 CPU copy of the
entropy model, whatever device or precision the codec was trained with: bitstreams do not
depend on the training device.

``compile=true``: every transform (analysis/synthesis transforms of
:mod:`taskcodecs.models.transforms`, DownSample and UpSample of :mod:`taskcodecs.layers`) is compiled in place with
``nn.Module.compile`` (``compile_backend``, default ``inductor``), so parameter names and
checkpoints are unchanged. The entropy model and the task networks stay eager. The first
steps (and the first validation, at another batch size) are slow while the graphs compile;
``inductor`` on a CPU needs a C++ compiler.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from taskcodecs.layers import DownSample, UpSample
from taskcodecs.models.transforms import AnalysisTransform, SynthesisTransform

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
COMPILED_TYPES = (AnalysisTransform, SynthesisTransform, DownSample, UpSample)


class Precision:
    """Autocast, loss scaling and the optimizer step of one run (module docstring)."""

    def __init__(self, amp: str, device: torch.device) -> None:
        if amp not in ("none", *AMP_DTYPES):
            raise ValueError(f"amp must be none, bf16 or fp16, got {amp!r}")
        self.amp, self.device = amp, torch.device(device)
        self.dtype = AMP_DTYPES.get(amp)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp == "fp16")

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context of the forward pass and loss (a no-op for ``amp=none``)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
             params: Iterable[nn.Parameter], clip: float) -> bool:
        """backward, [unscale], clip to ``clip`` (0: none), step; False if fp16 skipped it."""
        optimizer.zero_grad(set_to_none=True)
        if not self.scaler.is_enabled():
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(params, clip)
            optimizer.step()
            return True
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip)
        scale = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        return self.scaler.get_scale() >= scale  # the scale drops only on a skipped step

    def state_dict(self) -> dict[str, Any] | None:
        """The gradient scaler's state (JSON-able), None unless ``amp=fp16``."""
        return dict(self.scaler.state_dict()) if self.scaler.is_enabled() else None

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        if state is not None and self.scaler.is_enabled():
            self.scaler.load_state_dict(dict(state))


def compile_transforms(model: nn.Module, backend: str = "inductor") -> list[str]:
    """``nn.Module.compile`` every transform of ``model`` in place (outermost ones only);
    returns their names. State-dict keys do not change; everything else stays eager."""
    names: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, COMPILED_TYPES) and not any(name.startswith(n + ".") for n in names):
            module.compile(backend=backend)
            names.append(name)
    return names
