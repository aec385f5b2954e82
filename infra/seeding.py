"""Seeding: one call seeds Python, NumPy and torch. Seed 0 is a seed like any other."""

from __future__ import annotations

import random

import numpy as np
import torch


def check_seed(seed: object, name: str = "seed") -> int:
    """Return ``seed`` as an int, rejecting None, bools and non-integers with a clear error.

    There is no "no seed" value: 0 is a real seed, and an unseeded run must be asked for
    explicitly by drawing a seed and recording it.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"{name} must be an integer (0 is a valid seed), got {seed!r}")
    seed = int(seed)
    if not 0 <= seed < 2**63:
        raise ValueError(f"{name} must be in [0, 2**63), got {seed}")
    return seed


def seed_everything(seed: int) -> int:
    """Seed ``random``, NumPy's global generator and torch (CPU and all CUDA devices)."""
    seed = check_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed

