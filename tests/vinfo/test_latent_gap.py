"""I_V(Ŷ_b → Ŷ_e) on synthetic latents with known entropies (vinfo.latent_gap).

ŷ_e = round(a·ŷ_b + n), ŷ_b ~ N(0, 1), n ~ N(0, σ²), i.i.d. per element, so
P(ŷ_e = k | ŷ_b) = Φ((k + ½ − a·ŷ_b)/σ) − Φ((k − ½ − a·ŷ_b)/σ) (a discretised Gaussian) and
ŷ_e's marginal is the discretised N(0, a² + σ²): both entropies are computed numerically
below, in bits per element. ``pixels`` is set to the element count of one latent, so the
estimator's "bits per pixel" is bits per element here.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from vinfo.adapter.enhancement import LatentPairs
from vinfo.fit.latent import LatentFitSettings
from vinfo.latent_gap import UNITS, estimate_latent_gap, read_latent_gap, write_latent_gap

C, H, W = 2, 4, 4
A, SIGMA = 2.0, 1.5


def _cells(mean: np.ndarray, sigma: float, ks: np.ndarray) -> np.ndarray:
    return norm.cdf((ks + 0.5 - mean) / sigma) - norm.cdf((ks - 0.5 - mean) / sigma)


def _entropy_bits(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-300, 1.0)
    return -(p * np.log2(p)).sum(axis=-1)


def truth(a: float, sigma: float) -> tuple[float, float]:
    """(H(ŷ_e), H(ŷ_e|ŷ_b)) in bits per element, by quadrature over ŷ_b ~ N(0, 1)."""
    ks = np.arange(-40, 41)
    marginal = _entropy_bits(_cells(np.zeros(1), float(np.hypot(a, sigma)), ks))
    b = np.linspace(-8, 8, 4001)
    weights = norm.pdf(b) * (b[1] - b[0])
    conditional = (_entropy_bits(_cells(a * b[:, None], sigma, ks[None])) * weights).sum()
    return float(marginal), float(conditional)


def pairs(a: float, n_fit: int = 240, n_val: int = 60, seed: int = 0) -> LatentPairs:
    rng = np.random.default_rng(seed)
    n = n_fit + n_val
    zb = rng.standard_normal((n, C, H, W)).astype(np.float32)
    ye = np.round(a * zb + SIGMA * rng.standard_normal(zb.shape)).astype(np.float32)
    return LatentPairs(zb=zb, ye=ye, names=[f"img{i}" for i in range(n)], n_fit=n_fit,
                       pixels=C * H * W, estimated_bits=np.zeros(n), payload_bits=np.zeros(n),
                       family={"N": C, "side_channels": C, "side_blocks": 1,
                               "context": "autoregressive"},
                       run_dir="synthetic", codec_id="synthetic")


SETTINGS = LatentFitSettings(lr=1e-2, batch_size=64, max_steps=200, step_limit=1600,
                             eval_every=20, patience=6)


def test_truths_are_what_the_closed_form_says():
    h, h_cond = truth(A, SIGMA)
    # large-σ limit: a unit-bin discretised Gaussian's entropy ≈ that of N(·, σ² + 1/12)
    assert h == pytest.approx(0.5 * np.log2(2 * np.pi * np.e * (A**2 + SIGMA**2 + 1 / 12)),
                              abs=0.01)
    assert h_cond == pytest.approx(0.5 * np.log2(2 * np.pi * np.e * (SIGMA**2 + 1 / 12)),
                                   abs=0.01)


@pytest.fixture(scope="module")
def dependent():
    return estimate_latent_gap(pairs(A), seeds=(0, 1), larger_rungs=(2,), settings=SETTINGS,
                               init="scratch", n_boot=400)


def test_dependent_latents_recover_the_known_entropies(dependent, tmp_path):
    h, h_cond = truth(A, SIGMA)
    ds = dependent
    assert ds["vinfo"].attrs["units"] == UNITS and ds.sizes["rung"] == 2
    # the null's family contains the true marginal (μ = 0, σ = √(a² + σ²)): within 0.05 bits
    assert float(ds["h_null"][0]) == pytest.approx(h, abs=0.05)
    for k in range(2):
        # H_V ≥ H up to sampling noise; the conditional's family holds the truth up to the
        # grid offset of its cells (a few hundredths of a bit at σ = 1.5): tolerance 0.1 bit
        assert float(ds["h_cond"][k]) == pytest.approx(h_cond, abs=0.1)
        assert float(ds["vinfo"][k]) == pytest.approx(h - h_cond, abs=0.1)
        assert float(ds["vinfo_low"][k]) <= float(ds["vinfo"][k]) <= float(ds["vinfo_high"][k])
        assert float(ds["vinfo_low"][k]) > 0.5  # far from 0: the truth is ~1.0 bit/element
        assert 0 < float(ds["vinfo_mde"][k]) < 0.5
    assert not ds["at_cap"].values.any() and not ds["null_at_cap"].values.any()
    assert np.isnan(float(ds["codec_bpp"]))  # no codec weights in a synthetic pair set
    path = write_latent_gap(ds, tmp_path / "latent_gap.nc")
    back = read_latent_gap(path)
    assert np.allclose(back["vinfo"].values, ds["vinfo"].values)
    assert list(back["image"].values) == list(ds["image"].values)


def test_independent_latents_give_an_interval_covering_zero():
    ds = estimate_latent_gap(pairs(0.0, seed=1), seeds=(0, 1), larger_rungs=(), init="scratch",
                             settings=SETTINGS, n_boot=400)
    assert float(ds["vinfo_low"][0]) <= 0.0 <= float(ds["vinfo_high"][0]) or \
        abs(float(ds["vinfo"][0])) < 0.01
    h, _ = truth(0.0, SIGMA)
    assert float(ds["h_null"][0]) == pytest.approx(h, abs=0.05)


def test_bad_input_is_refused_with_the_value():
    with pytest.raises(ValueError, match="more side blocks than the codec's 1, got 1"):
        estimate_latent_gap(pairs(A), larger_rungs=(1,), init="scratch")
    with pytest.raises(ValueError, match="init must be 'codec' or 'scratch', got 'x'"):
        estimate_latent_gap(pairs(A), init="x")
    with pytest.raises(ValueError, match="pairs.codec_state is empty"):
        estimate_latent_gap(pairs(A), init="codec")
    with pytest.raises(ValueError, match="patience must be a positive integer, got 0"):
        LatentFitSettings(patience=0)
