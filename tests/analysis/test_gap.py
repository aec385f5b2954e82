"""The gap: base rate, conditional coding gain at matched quality, the vinfo ladder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analysis import (
    Curve,
    VinfoInputError,
    gap_figure,
    gap_rows,
    ladder_rows,
    load_vinfo,
    rate_gain_at_matched_quality,
)


def make_curve(rate, quality, label="c") -> Curve:
    return Curve(label, "scalable", "baseline", "psnr", np.asarray(rate, float),
                 np.asarray(quality, float), ())


def test_gain_of_a_constant_rate_offset_is_that_offset() -> None:
    scalable = make_curve([0.2, 0.3, 0.5, 0.9], [28, 30, 32, 34])
    standalone = make_curve([0.27, 0.37, 0.57, 0.97], [28, 30, 32, 34])
    gain, interval = rate_gain_at_matched_quality(standalone, scalable)
    assert gain == pytest.approx(0.07, abs=1e-12)
    assert interval == (28, 34)


def test_gain_on_partially_overlapping_curves_uses_the_common_interval() -> None:
    scalable = make_curve([0.2, 0.4], [28, 32])  # rate = 0.05 * q - 1.2 (linear, 2 points)
    standalone = make_curve([0.5, 0.7], [30, 34])  # rate = 0.05 * q - 1.0
    gain, interval = rate_gain_at_matched_quality(standalone, scalable)
    assert interval == (30, 32)
    assert gain == pytest.approx(0.2, abs=1e-12)


@pytest.mark.parametrize(
    ("standalone", "message"),
    [(make_curve([0.5], [30]), ">= 2 points"), (make_curve([0.5, 0.6], [40, 41]), "overlap")],
)
def test_gain_errors(standalone: Curve, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rate_gain_at_matched_quality(standalone, make_curve([0.2, 0.4], [28, 32]))


def test_gap_rows_from_runs(sweep_runs: list, known: dict) -> None:
    rows, missing = gap_rows(sweep_runs)
    recon = {r["base"]: r for r in rows if r["target"] == "Cityscapes reconstruction"}
    assert set(recon) == {"baseline", "proposed (reward_weight=0.1)"}
    assert recon["baseline"]["base_bpp"] == pytest.approx(known["base_bpp"][1])
    assert recon["proposed (reward_weight=0.1)"]["base_bpp"] == pytest.approx(
        known["base_bpp"][1] * 0.9)
    for row in recon.values():
        assert row["gain_standalone-refit_bpp"] == pytest.approx(known["gain_bpp"], abs=1e-9)
        assert row["bd_scalable_vs_standalone-refit"].percent < 0  # scalable saves rate
        assert np.isnan(row["gain_standalone-independent_bpp"])
        # the usable fraction and its flag: a gain above R(Ŷ_b) is the reference's deficit
        fraction = row["gain_standalone-refit_bpp"] / row["base_bpp"]
        assert row["usable_standalone-refit"] == pytest.approx(fraction)
        assert row["gain_standalone-refit_exceeds_rate"] == (fraction > 1)
        assert row["base_rate_kind"] == "actual, header included"  # no bpp_payload written
    assert any("no COCO reconstruction runs" in m for m in missing)
    assert any("no standalone-independent runs" in m for m in missing)


def test_vinfo_folder_and_ladder(vinfo_file, tmp_path: Path) -> None:
    vinfo_file(tmp_path / "b" / "vinfo.nc", [0.1, 0.3])
    vinfo_file(tmp_path / "p" / "vinfo.nc", [0.2, 0.5], rate=0.25)
    vinfo_file(tmp_path / "p" / "seg" / "vinfo.nc", [0.05, 0.07])
    vinfo = {"baseline": load_vinfo(tmp_path / "b"), "proposed": load_vinfo(tmp_path / "p")}
    assert set(vinfo["proposed"]) == {"vinfo", "seg"}
    rows = {(r["vinfo"], r["family"]): r for r in ladder_rows(vinfo)}
    cnn = rows[("vinfo", "cnn")]
    assert cnn["baseline: I_V"] == "0.3000 [0.2500, 0.3500]" and cnn["units"] == "bits/pixel"
    assert cnn["proposed: I_V"].startswith("0.5000")
    assert cnn["baseline: H_V(Y|Ŷ_b)"] == "1.7000"  # 2 - 0.3, no interval in this file
    assert cnn["proposed: capped I_V"] == "0.2500 [0.2000, 0.3000]"  # R = 0.25 binds
    assert cnn["proposed: R(Ŷ_b)"] == "0.2500" and cnn["proposed: flags"] == "cap binds"
    assert "baseline: I_V" not in rows[("seg", "linear")]

    result = gap_figure([], vinfo)
    assert len(result.figure.axes) == 3  # available + one ladder panel per vinfo key
    assert any("no vinfo.nc 'seg' for the baseline base" in m for m in result.missing)


def test_vinfo_errors_name_the_file(vinfo_file, tmp_path: Path) -> None:
    with pytest.raises(VinfoInputError, match="no such vinfo.nc"):
        load_vinfo(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VinfoInputError, match="no vinfo.nc file found"):
        load_vinfo(tmp_path / "empty")
    path = vinfo_file(tmp_path / "bad" / "vinfo.nc", [0.1, 0.2], units=False)
    with pytest.raises(VinfoInputError, match=rf"{path}: variable 'h_null' has no 'units'"):
        load_vinfo(path)
