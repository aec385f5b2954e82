"""Seeding: one call seeds Python, NumPy and torch; seed 0 is a real seed."""

import numpy as np
import pytest
import torch

from infra.seeding import check_seed, seed_everything


def test_seed_zero_is_a_real_seed():
    seed_everything(0)
    a = torch.rand(3), np.random.rand(3)
    seed_everything(0)
    b = torch.rand(3), np.random.rand(3)
    seed_everything(1)
    c = torch.rand(3)
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and not torch.equal(a[0], c)


@pytest.mark.parametrize("bad", [None, True, 1.5, "3"])
def test_bad_seeds_rejected(bad):
    with pytest.raises(TypeError, match="seed must be an integer"):
        check_seed(bad)
    with pytest.raises(ValueError):
        check_seed(-1)
