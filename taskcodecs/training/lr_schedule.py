"""The learning-rate schedule of a run: a pure function of the step (so resume stays exact).

    lr = learning_rate(step, lr=1e-3, max_steps=1000, schedule="cosine", warmup_steps=50,
                       min_ratio=0.05)

``step`` is the number of optimizer steps already done (0 for the first step).

- ``constant`` (default): ``lr`` at every step after the warm-up.
- ``cosine``: after the warm-up, half a cosine from ``lr`` down to ``min_ratio · lr`` at
  ``max_steps`` (Loshchilov & Hutter, SGDR, without restarts).

Warm-up: the first ``warmup_steps`` steps ramp linearly from ``lr / warmup_steps`` to ``lr``.
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine")


def learning_rate(step: int, *, lr: float, max_steps: int, schedule: str = "constant",
                  warmup_steps: int = 0, min_ratio: float = 0.0) -> float:
    """The learning rate of optimizer step ``step + 1`` (module docstring)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {schedule!r}; expected one of {SCHEDULES}")
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr
    span = max(max_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return lr * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))
