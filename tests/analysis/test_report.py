"""The report: one self-contained HTML + Markdown from a runs directory, and its CLI."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from analysis import RunsError, write_report
from analysis.report import main

DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
FIGURES = ["detection_rd", "depth_rd", "reconstruction_coco", "reconstruction_cityscapes",
           "segmentation_cityscapes", "gap"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report(sweep: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The full report of the fake sweep, with a vinfo.nc per base (written once)."""
    import numpy as np
    import xarray as xr

    folder = tmp_path_factory.mktemp("report")
    for label, values in (("baseline", [0.1, 0.3]), ("proposed", [0.2, 0.5])):
        value = np.array(values)
        attrs = {"units": "bits/pixel"}
        xr.Dataset({name: ("family", data, attrs) for name, data in (
            ("h_null", np.full(2, 2.0)), ("h_cond", 2.0 - value), ("vinfo", value),
            ("vinfo_low", value - 0.05), ("vinfo_high", value + 0.05))},
            coords={"family": ["linear", "cnn"]}).to_netcdf(
            folder / f"vinfo-{label}.nc", engine="h5netcdf")
    paths = write_report(sweep, folder / "out", vinfo={
        "baseline": folder / "vinfo-baseline.nc", "proposed": folder / "vinfo-proposed.nc"})
    return {**paths, "text": paths["html"].read_text(encoding="utf-8")}


def test_html_holds_every_figure_as_base64(report: dict) -> None:
    text = report["text"]
    images = DATA_URI.findall(text)
    assert len(images) == len(FIGURES)
    for name in FIGURES:
        assert f'<figure id="{name}">' in text
    for encoded in images:
        assert encoded.startswith("iVBORw0KGgo")  # PNG signature, base64
    assert sorted(p.stem for p in report["figures"]) == sorted(FIGURES)


def test_html_is_self_contained(report: dict) -> None:
    outside_images = DATA_URI.sub('src=""', report["text"])
    assert "http" not in outside_images
    assert "<script" not in outside_images and "<link" not in outside_images
    assert "<style>" in outside_images


def test_bd_rates_with_method_and_overlap(report: dict, known: dict) -> None:
    by_name = {row["comparison"]: row["result"] for row in report["bd_rates"]}
    depth = by_name["depth base: proposed (reward_weight=0.1) vs baseline"]
    assert depth.percent == pytest.approx(known["depth_bd"], abs=1e-6)
    assert depth.overlap == pytest.approx((min(known["base_rmse"]), max(known["base_rmse"])))
    scalable = by_name["Cityscapes reconstruction, scalable: proposed (reward_weight=0.1) vs "
                       "baseline"]
    assert scalable.percent == pytest.approx(known["scalable_bd"], abs=1e-6)
    text = report["text"]
    assert "<td>-10.00</td><td>akima</td>" in text and "<td>-20.00</td><td>akima</td>" in text
    assert "<td>-5.00</td>" in text  # detection
    assert "disparity RMSE (pixels), lower is better: 3.8 to 6" in text


def test_gap_and_missing_sections(report: dict) -> None:
    text = report["text"]
    assert "<td>0.3000 [0.2500, 0.3500]</td>" in text  # the baseline ladder, cnn rung, I_V
    assert "I_V [interval] [bits/pixel]" in text
    assert "<td>0.05</td>" in text  # conditional coding gain (bpp)
    missing = text.split("5. Missing")[1]
    assert "no runs found for standalone-independent reconstruction" in missing
    assert "no COCO reconstruction runs" in missing


def test_markdown_links_the_written_figures(report: dict) -> None:
    markdown = report["markdown"].read_text(encoding="utf-8")
    linked = re.findall(r"!\[[^]]*\]\((figures/[\w.]+\.png)\)", markdown)
    assert len(linked) == len(FIGURES)
    for link in linked:
        assert (report["markdown"].parent / link).is_file()
    assert "| depth base: proposed (reward_weight=0.1) vs baseline |" in markdown


def test_deleting_a_method_says_so_instead_of_drawing(sweep: Path, tmp_path: Path,
                                                      capsys) -> None:
    runs = tmp_path / "runs"
    for name in ("depth-baseline-0", "depth-baseline-1", "depth-proposed-0",
                 "depth-proposed-1", "ref"):
        shutil.copytree(sweep / name, runs / name)
    assert main([str(runs), "--out", str(tmp_path / "before")]) == 0
    before = (tmp_path / "before" / "report.html").read_text(encoding="utf-8")
    assert "proposed (reward_weight=0.1) (2 runs)" not in before  # legend text is in the PNG
    assert "depth base: proposed (reward_weight=0.1) vs baseline" in before
    assert "report.html" in capsys.readouterr().out

    shutil.rmtree(runs / "depth-proposed-0")
    shutil.rmtree(runs / "depth-proposed-1")
    assert main([str(runs), "--out", str(tmp_path / "after")]) == 0
    after = (tmp_path / "after" / "report.html").read_text(encoding="utf-8")
    assert "no runs found for the proposed depth base" in after
    assert "depth base: proposed (reward_weight=0.1) vs baseline" not in after
    assert len(DATA_URI.findall(after)) == len(FIGURES)  # every figure still there, saying so


def test_bad_input_is_a_clear_error_naming_the_file(make_run, tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert f"{tmp_path / 'missing'}: runs directory not found" in capsys.readouterr().err

    run = make_run(tmp_path / "runs", "bad", "tiny-depth-base-baseline", bpp={"base": 0.1},
                   metrics={"rmse": 5.0}, units=False)
    with pytest.raises(RunsError, match=str(run / "eval.nc")):
        write_report(tmp_path / "runs", tmp_path / "o")
    (run / "eval.nc").write_bytes(b"not a netCDF file")
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "o")]) == 2
    assert f"{run / 'eval.nc'}: cannot read as a netCDF" in capsys.readouterr().err
    assert not (tmp_path / "o" / "report.html").exists()

    with pytest.raises(SystemExit):
        main([str(tmp_path / "runs"), "--out", str(tmp_path / "o"), "--vinfo", "no-equals"])


def test_module_entry_point(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "analysis.report", str(tmp_path / "nope"), "--out",
         str(tmp_path / "o")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert "runs directory not found" in result.stderr
    assert "RuntimeWarning" not in result.stderr  # the package does not import it twice
