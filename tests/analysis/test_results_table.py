"""The results table (analysis.results_table) from the fake sweep of conftest (known answers)
and the report that leads with it; the quick demo test (tests/taskcodecs/test_demo.py) builds
it from a real tiny sweep."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from analysis.gap import load_vinfo
from analysis.report import write_report
from analysis.results_table import results_table, vinfo_difference, vinfo_quantities


def _vinfo_with_pvi(path, shift: float):
    """A vinfo.nc whose per-sample PVI is known: I_V = 1 + shift for every family."""
    samples = np.arange(20)
    pvi = 1.0 + shift + np.linspace(-0.5, 0.5, 20)
    ds = xr.Dataset(
        {name: ("family", np.array([v, v]), {"units": "bits/pixel"}) for name, v in
         (("h_null", 3.0), ("h_cond", 2.0 - shift), ("vinfo", 1.0 + shift),
          ("vinfo_low", 0.9 + shift), ("vinfo_high", 1.1 + shift))}
        | {"pvi": (("family", "sample"), np.stack([pvi, pvi]), {"units": "bits/pixel"})},
        coords={"family": ["linear", "cnn"], "sample": samples})
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path, engine="h5netcdf")
    return path


def test_the_table_has_every_row_with_intervals(sweep_runs, known, tmp_path):
    vinfo = {"baseline": load_vinfo(_vinfo_with_pvi(tmp_path / "b" / "vinfo.nc", 0.0)),
             "proposed": load_vinfo(_vinfo_with_pvi(tmp_path / "p" / "vinfo.nc", 0.25))}
    table = results_table(sweep_runs, vinfo, n_boot=200)
    rows = {r.quantity: r for r in table.rows}
    bd = rows["CS recon.: scalable BD-rate, proposed vs baseline base"].difference
    # every point of both curves moves together with the resampled images: a pure 20% shift
    assert bd.value == pytest.approx(known["scalable_bd"], abs=1e-6)
    assert bd.low == pytest.approx(-20.0, abs=1e-6) and bd.excludes_zero
    assert "saves rate" in rows["CS recon.: scalable BD-rate, proposed vs baseline base"].verdict
    gain = rows["CS recon.: coding gain (refit − scalable rate)"]
    assert gain.baseline.startswith("0.05 [") and gain.unit == "bits/pixel"
    assert table.gains[("Cityscapes reconstruction", "baseline")].low < known["gain_bpp"]
    base = rows["base rate R(Ŷ_b), actual"]
    assert base.difference.value == pytest.approx(known["base_bpp"][1] * (0.9 - 1.0))
    rmse = rows["base task: disparity RMSE at that rate"]
    assert rmse.difference.value == pytest.approx(0.0) and "covers 0" in rmse.verdict
    delta = rows["I_V(Ŷ_b → vinfo), linear"].difference
    assert delta.value == pytest.approx(0.25) and delta.excludes_zero
    assert "proposed better" in rows["I_V(Ŷ_b → vinfo), linear"].verdict
    pairs = {p.name: p for p in table.pairs}
    versus = pairs["Cityscapes reconstruction, scalable: proposed (reward_weight=0.1) vs baseline"]
    assert versus.points == (4, 4) and versus.monotone == (True, True) and versus.overlap == 1.0
    assert any("the reward helps" in c for c in table.conclusions)
    text = "\n".join(table.text_lines())
    assert "proposed − baseline" in text and "-20 [-20, -20]" in text
    assert "NOT rate-targeted" in " ".join(table.notes)  # the fake bases have no rate target


def test_vinfo_readers(tmp_path):
    a = load_vinfo(_vinfo_with_pvi(tmp_path / "a" / "vinfo.nc", 0.0))["vinfo"]
    b = load_vinfo(_vinfo_with_pvi(tmp_path / "b" / "vinfo.nc", -0.1))["vinfo"]
    rows = vinfo_quantities(a)
    assert [(q, f) for q, f, _, _ in rows][:2] == [("I_V(Ŷ_b → Y)", "linear"),
                                                   ("H_V(Y | Ŷ_b)", "linear")]
    assert rows[0][2].low == pytest.approx(0.9) and rows[0][3] == "bits/pixel"
    diff = vinfo_difference(a, b, "cnn", n_boot=100)
    assert diff.value == pytest.approx(-0.1) and diff.high < 0
    assert vinfo_difference(a, b.drop_vars("pvi"), "cnn") is None


def test_the_report_leads_with_the_results_table(sweep, tmp_path):
    paths = write_report(sweep, tmp_path / "report", n_boot=50)
    page = paths["html"].read_text()
    assert page.index("Results: proposed vs baseline at matched base rate") < page.index(
        "1. Runs")
    assert "proposed − baseline" in page and "<details><summary>Run folders" in page
    assert 'title="depth-baseline-0 (tiny-depth-base-baseline)"' in page  # long name: tooltip
    assert paths["results"].rows
