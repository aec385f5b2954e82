"""The standalone-independent reference: our own runs where they exist, else a CompressAI
codec shifted right by the base's actual rate; the gains checked by hand on straight lines
(PCHIP reproduces collinear points exactly, so each curve's mean rate over an interval is
its value at the interval's midpoint)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from analysis import gap_rows, load_runs
from analysis.figures import reconstruction_figure
from analysis.references import COMPRESSAI_PREFERENCE, standalone_reference
from analysis.report import bd_comparisons
from analysis.report_tables import gap_table
from analysis.runs import COMPRESSAI_METHODS

QUALITY = [26.0, 28.0, 30.0, 32.0]  # scalable PSNR (dB)
COMPRESSAI_Q = [27.0, 29.0, 31.0, 33.0]
BASES = {"baseline": (0.10, 0.08, 0.0), "proposed": (0.06, 0.05, 0.1)}  # actual, payload, rw


def scalable_rate(variant: str, q: float) -> float:
    return 0.05 * q - (1.1 if variant == "baseline" else 1.15)  # total, base included


def compressai_rate(q: float) -> float:
    return 0.04 * q - 0.8


def build(root: Path, make_run, own_independent_on: str | None = "proposed") -> list:
    for variant, (actual, payload, reward) in BASES.items():
        base = make_run(root, f"bases/{variant}", f"tiny-depth-base-{variant}",
                        bpp={"base": actual}, metrics={"rmse": 5.0, "psnr": {"base": 20.0}},
                        rate_weight=1.0, reward_weight=reward)
        with xr.open_dataset(base / "eval.nc", engine="h5netcdf") as ds:  # header excluded
            ds = ds.load()
        ds["bpp_payload"] = ds["bpp_actual"] * (payload / actual)
        ds.to_netcdf(base / "eval.nc", engine="h5netcdf")
        for i, q in enumerate(QUALITY):
            total = scalable_rate(variant, q)
            make_run(root, f"recon/{variant}/scalable-{i}",
                     "tiny-cityscapes-reconstruction-scalable",
                     bpp={"base": actual, "enhancement": total - actual},
                     metrics={"psnr": {"base": 20.0, "enhancement": q}}, base=base)
            if variant == own_independent_on:  # our own reference: preferred on this base
                make_run(root, f"recon/{variant}/independent-{i}",
                         "tiny-cityscapes-reconstruction-standalone-independent",
                         bpp={"base": actual, "enhancement": total - actual + 0.07},
                         metrics={"psnr": {"enhancement": q}}, base=base)
    for i, q in enumerate(COMPRESSAI_Q):
        make_run(root, f"compressai/mbt-{i}", "tiny-compressai-reconstruction-mbt2018-mean",
                 bpp={"base": compressai_rate(q)}, metrics={"psnr": {"base": q}})
        make_run(root, f"compressai/bmshj-{i}",  # weaker: not used while mbt2018-mean is there
                 "tiny-compressai-reconstruction-bmshj2018-hyperprior",
                 bpp={"base": compressai_rate(q) + 0.5}, metrics={"psnr": {"base": q}})
    return load_runs(root)


def test_preference_covers_every_compressai_method() -> None:
    assert set(COMPRESSAI_PREFERENCE) == set(COMPRESSAI_METHODS)


def test_gap_uses_the_compressai_curve_shifted_by_the_base_rate(tmp_path, make_run) -> None:
    runs = build(tmp_path, make_run)
    rows, missing = gap_rows(runs)
    recon = {r["base"]: r for r in rows if r["target"] == "Cityscapes reconstruction"}
    baseline = recon["baseline"]
    # R(Ŷ_b) is the payload; the shift is the actual rate (header included), as the totals
    assert baseline["base_bpp"] == pytest.approx(0.08)
    assert baseline["independent_base_shift_bpp"] == pytest.approx(0.10)
    assert baseline["source_standalone-independent"] == "CompressAI mbt2018-mean + base"
    # by hand: overlap of [26, 32] and [27, 33] is [27, 32], midpoint 29.5;
    # (0.04 * 29.5 - 0.8 + 0.10) - (0.05 * 29.5 - 1.1) = 0.48 - 0.375
    assert baseline["gain_standalone-independent_interval"] == (27.0, 32.0)
    assert baseline["gain_standalone-independent_bpp"] == pytest.approx(0.105, abs=1e-9)
    assert baseline["usable_standalone-independent"] == pytest.approx(0.105 / 0.08)
    assert baseline["gain_standalone-independent_exceeds_rate"]
    assert baseline["bd_scalable_vs_standalone-independent"].percent < 0
    # our own standalone-independent runs on the proposed base are preferred there
    proposed = recon["proposed (reward_weight=0.1)"]
    assert proposed["source_standalone-independent"].startswith("standalone-independent runs")
    assert np.isnan(proposed["independent_base_shift_bpp"])
    assert proposed["gain_standalone-independent_bpp"] == pytest.approx(0.07, abs=1e-9)
    assert not any("standalone-independent not computed" in m and "reconstruction" in m
                   for m in missing), missing
    # the refit flavour has no CompressAI fallback
    assert baseline["source_standalone-refit"] == ""
    assert any("no standalone-refit runs" in m for m in missing)

    table = gap_table(rows)
    cells = {row[0]: row for row in table.rows}
    assert cells["baseline"][-1] == ("CompressAI mbt2018-mean + base (base rate added: 0.1 bpp "
                                     "actual)")
    assert table.header[-1] == "standalone-independent source"

    bd, _ = bd_comparisons(runs)
    versus = {row["comparison"]: row for row in bd}
    row = versus["Cityscapes reconstruction on the baseline base: scalable vs "
                 "standalone-independent"]
    assert row["reference"].label == "CompressAI mbt2018-mean + baseline base"
    assert np.allclose(row["reference"].rate, [compressai_rate(q) + 0.10 for q in COMPRESSAI_Q])

    figure = reconstruction_figure(runs, "cityscapes")
    labels = [line.get_label() for line in figure.figure.axes[0].lines]
    assert "CompressAI mbt2018-mean + baseline base (4 runs)" in labels


def test_without_a_compressai_run_the_reference_is_missing_and_says_why(tmp_path,
                                                                         make_run) -> None:
    runs = [r for r in build(tmp_path, make_run, own_independent_on=None)
            if r.role != "standalone"]
    ref = standalone_reference(runs, "reconstruction", "cityscapes", "baseline",
                               "standalone-independent")
    assert ref.curve is None and ref.source == ""
    assert ref.why_not == ("no standalone-independent runs and no CompressAI reconstruction "
                           "runs on cityscapes")
    # segmentation has no CompressAI fallback: a CompressAI codec reconstructs images
    seg = standalone_reference(build(tmp_path / "again", make_run), "segmentation",
                               "cityscapes", "baseline", "standalone-independent")
    assert seg.curve is None and seg.why_not == "no standalone-independent runs"
