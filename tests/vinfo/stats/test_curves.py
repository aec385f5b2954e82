"""Loss-data curves and the prequential codelength from shared prefix fits."""

from __future__ import annotations

import numpy as np
import pytest

import vinfo
from vinfo.stats.curves import train_sizes


def test_train_sizes_are_log_spaced_and_end_at_the_pool():
    sizes = train_sizes(1000, 4, 10)
    assert sizes.tolist() == [10, 46, 215, 1000]
    assert train_sizes(1000, 1, 10).tolist() == [1000]
    assert train_sizes(5, 4, 10).tolist() == [5]
    crowded = train_sizes(12, 8, 8)
    assert crowded[-1] == 12 and len(set(crowded)) == len(crowded)


def test_curves_fall_with_data_and_mdl_beats_the_uniform_code():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(600, 2))
    y = (z[:, 0] > 0).astype(int) + (z[:, 1] > 0.5)
    ds = vinfo.estimate(z, y, "categorical", families=["linear"], seeds=[0], bootstrap=50,
                        curve_points=4, curve_min_size=10, max_steps=150, lr=5e-2)
    sizes = ds["train_size"].values
    assert sizes[0] == 10
    assert sizes[-1] == ds.attrs["n_fit"] + ds.attrs["n_val"] + ds.attrs["n_guard"]
    curve = ds["curve_h_cond"].sel(family="linear").values
    assert curve[-1] < curve[0] - 0.3
    # the last point is the main fit of the first seed (one split, one seed: h_cond)
    assert curve[-1] == pytest.approx(float(ds["h_cond"].sel(family="linear")), abs=1e-9)
    assert np.allclose(ds["curve_vinfo"], ds["curve_h_null"] - ds["curve_h_cond"])
    mdl = float(ds["mdl_bits"].sel(family="linear"))
    assert mdl < 0.7 * float(ds["mdl_uniform_bits"])
    assert float(ds["mdl_uniform_bits"]) == pytest.approx(600 * np.log2(3))
    assert float(ds["mdl_bits_per_unit"].sel(family="linear")) == pytest.approx(mdl / 600)
