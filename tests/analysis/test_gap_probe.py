"""The consistency check of the gap's two instruments (analysis.gap_probe), on hand-made
numbers: the verdict logic, the paired operational gain from eval.nc, and the rows read
from a folder of runs and a latent_gap.nc."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from analysis.gap_probe import (
    judge,
    operational_gain,
    paired_difference,
    probe_gap_rows,
    probe_gap_table,
)


def test_overlapping_intervals_agree():
    assert judge((0.05, 0.04, 0.06), (0.045, 0.035, 0.055), None, None) == (
        "agree", "the intervals overlap")
    # touching intervals overlap too
    assert judge((0.05, 0.04, 0.06), (0.03, 0.02, 0.04), None, None)[0] == "agree"


def test_a_gain_above_the_probe_blames_an_under_trained_refit():
    verdict, reason = judge((0.05, 0.045, 0.055), (0.035, 0.03, 0.04),
                            (-0.012, -0.015, -0.009), (0.0005, -0.001, 0.002))
    assert verdict == "gain larger"
    assert reason == ("the refit is under-trained: the probe's converged null codes ŷ_e in "
                      "0.0120 bpp fewer than the refit")


def test_a_gain_above_the_probe_with_a_weak_probe_conditional_blames_the_probe():
    verdict, reason = judge((0.05, 0.045, 0.055), (0.035, 0.03, 0.04),
                            (0.001, -0.001, 0.003), (0.01, 0.008, 0.012))
    assert verdict == "gain larger"
    assert reason == ("the probe under-fits: its conditional codes ŷ_e in 0.0100 bpp more than "
                      "the scalable's own entropy model")


def test_a_probe_above_the_gain_names_both_sides_it_sees():
    verdict, reason = judge((0.01, 0.005, 0.015), (0.03, 0.025, 0.035),
                            (0.004, 0.002, 0.006), (-0.01, -0.012, -0.008))
    assert verdict == "probe I_V larger"
    assert reason == ("the probe's null is weaker than the refit by 0.0040 bpp; the scalable's "
                      "conditional entropy model is under-trained: the probe's conditional "
                      "codes ŷ_e in 0.0100 bpp fewer")
    assert judge((0.01, 0.005, 0.015), (0.03, 0.025, 0.035), None, None)[1] == \
        "neither side is measurably off against its codec counterpart"


def test_the_targets_grid_is_named_when_it_moves_the_refits_own_model():
    verdict, reason = judge((0.05, 0.045, 0.055), (0.035, 0.03, 0.04), (0.0, 0.0, 0.0),
                            (0.0, 0.0, 0.0), refit_grid=(-0.01, -0.014, -0.006))
    assert verdict == "gain larger"
    assert reason == ("the target's grid: the refit's own model codes the scalable's decoded "
                      "ŷ_e in -0.0100 bpp vs its own coded ŷ_e")


def test_a_difference_within_the_float_tolerance_blames_nobody():
    # the probe's conditional on the codec's own weights: 1e-9 bpp below the coder's float64
    tiny = (-1e-9, -1.2e-9, -0.8e-9)
    assert judge((0.01, 0.005, 0.015), (0.03, 0.025, 0.035), tiny, tiny)[1] == \
        "neither side is measurably off against its codec counterpart"


def test_bad_triples_are_refused_with_the_value():
    with pytest.raises(ValueError, match=r"gain must be .* got \(0.05, 0.06, 0.04\)"):
        judge((0.05, 0.06, 0.04), (0.0, 0.0, 0.0), None, None)
    with pytest.raises(ValueError, match="vinfo must be"):
        judge((0.05, 0.04, 0.06), (np.nan, 0.0, 0.0), None, None)
    with pytest.raises(ValueError, match=r"got \(3,\) and \(2,\)"):
        paired_difference(np.zeros(3), np.zeros(2))


def _eval(images, base, enh, psnr, coded) -> xr.Dataset:
    """A minimal eval.nc: cumulative rates (base, base + enhancement) per image."""
    base, enh, coded = (np.asarray(v, float) for v in (base, enh, coded))
    cum = np.stack([base, base + enh], 1)
    return xr.Dataset({
        "bpp_payload": (("image", "layer"), cum),
        "bpp_coded_estimate": (("image", "layer"), np.stack([base, base + coded], 1)),
        "psnr": (("image", "layer"), np.stack([np.full(len(images), 15.0), psnr], 1))},
        coords={"image": images, "layer": ["base", "enhancement"]})


def test_operational_gain_is_the_paired_enhancement_difference():
    images = [f"im{i}" for i in range(6)]
    scalable = _eval(images, [0.03] * 6, [0.10, 0.11, 0.12, 0.10, 0.11, 0.12], [20.0] * 6,
                     [0.09] * 6)
    refit = _eval(images[1:] + ["other"], [0.03] * 6, [0.16, 0.17, 0.15, 0.16, 0.17, 0.2],
                  [20.1] * 6, [0.14] * 6)
    op = operational_gain(scalable, refit, n_boot=500)
    assert op["images"] == images[1:]  # the common images only
    expected = np.array([0.16, 0.17, 0.15, 0.16, 0.17]) - np.array([0.11, 0.12, 0.10, 0.11, 0.12])
    assert op["gain"] == pytest.approx(expected.mean())
    assert op["gain_low"] <= op["gain"] <= op["gain_high"]
    assert op["psnr_diff"] == pytest.approx(0.1)
    assert np.allclose(op["refit_coded"], 0.14) and np.allclose(op["scalable_coded"], 0.09)


def test_rows_from_runs_and_a_latent_gap_file(tmp_path):
    runs = tmp_path / "runs"
    images = [f"im{i}" for i in range(8)]
    rng = np.random.default_rng(0)
    scal_enh = 0.08 + 0.01 * rng.standard_normal(8)
    for name, experiment, init, enh, coded in (
            ("scal", "x-scalable", None, scal_enh, scal_enh - 0.01),
            ("refit", "x-standalone-refit", "some/where/scal", scal_enh + 0.05,
             scal_enh + 0.04)):
        run = runs / name
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"experiment": experiment,
                                                     "init_from": init}))
        _eval(images, [0.03] * 8, enh, [20.0] * 8, coded).to_netcdf(run / "eval.nc",
                                                                    engine="h5netcdf")
    pixels = 100.0
    probe_images = images[2:]  # the probe evaluates 6 of them
    null = (scal_enh[2:] + 0.04) * pixels  # = the refit's coded rate
    cond = (scal_enh[2:] - 0.01) * pixels  # = the scalable's coded rate
    ds = xr.Dataset({
        "vinfo": ("rung", [0.02]), "vinfo_low": ("rung", [0.015]), "vinfo_high": ("rung", [0.025]),
        "vinfo_mde": ("rung", [0.004]), "h_null": ("rung", [null.mean() / pixels]),
        "h_cond": ("rung", [cond.mean() / pixels]),
        "bits_null": (("seed", "image"), null[None]),
        "bits_cond": (("rung", "seed", "image"), cond[None, None]),
        "at_cap": (("rung", "seed"), [[False]])},
        coords={"rung": ["codec-family"], "seed": [0], "image": probe_images},
        attrs={"run_dir": str(runs / "scal"), "pixels": pixels})
    out = tmp_path / "probe" / "scal"
    out.mkdir(parents=True)
    ds.to_netcdf(out / "latent_gap.nc", engine="h5netcdf")
    rows, missing = probe_gap_rows({"proposed": tmp_path / "probe"}, n_boot=300)
    assert missing == [] and len(rows) == 1
    row = rows[0]
    assert row["gain"][0] == pytest.approx(0.05) and row["n_common"] == 6
    # the probe's null equals the refit and its conditional the scalable: neither is off,
    # yet the gain (0.05) lies above the probe's I_V (0.02): no side is blamed
    assert row["verdict"] == "gain larger"
    assert row["null_vs_refit"][0] == pytest.approx(0.0, abs=1e-12)
    assert "neither side" in row["reason"]
    table = probe_gap_table(rows)
    assert table.rows[0][0] == "proposed" and "gain larger" in table.rows[0][-1]
    (runs / "refit" / "eval.nc").unlink()
    rows, missing = probe_gap_rows({"proposed": tmp_path / "probe"}, n_boot=300)
    assert rows == [] and "no standalone-refit eval.nc for scal" in missing[0]
