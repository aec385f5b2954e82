"""Scanning run directories: the tidy table, base links, curves and clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from analysis import RunsError, curve, load_runs, runs_table


def test_table_has_one_row_per_run(sweep_runs: list, known: dict) -> None:
    runs = sweep_runs
    table = runs_table(runs)
    assert len(runs) == len(table) == known["n_runs"]
    assert set(table["method"]) == {"baseline", "proposed", "scalable", "standalone-refit",
                                    "uncompressed"}
    depth = table[(table.task == "depth") & (table.method == "baseline")].sort_values("bpp_total")
    assert depth["bpp_total"].tolist() == pytest.approx(known["base_bpp"])
    assert depth["rmse"].tolist() == pytest.approx(known["base_rmse"])  # mean over images
    assert set(depth["dataset"]) == {"cityscapes"}


def test_enhancement_rate_is_base_plus_enhancement_and_linked_to_its_base(
        sweep_runs: list, known: dict) -> None:
    runs = {r.name: r for r in sweep_runs}
    run = runs["recon/baseline/scalable-2"]
    assert run.bpp["base"] == pytest.approx(known["base_bpp"][1])
    assert run.bpp_total == pytest.approx(known["base_bpp"][1] + known["enh_bpp"][2])
    assert run.metrics["psnr"] == pytest.approx(known["enh_psnr"][2])  # enhancement layer
    assert run.base is runs["depth-baseline-1"] and run.base_variant == "baseline"
    proposed = runs["recon/proposed/scalable-0"]
    assert proposed.base_variant == "proposed (reward_weight=0.1)"
    reference = runs["ref/depth"]
    assert reference.role == "reference" and np.isnan(reference.bpp_total)


def test_curves(sweep_runs: list, known: dict) -> None:
    runs = sweep_runs
    base = curve(runs, task="depth", method="proposed",
                 base_variant="proposed (reward_weight=0.1)")
    assert base.rate.tolist() == pytest.approx([b * 0.9 for b in known["base_bpp"]])
    direct = curve(runs, task="reconstruction", method="direct", dataset="cityscapes",
                   base_variant="baseline")
    assert len(direct) == 4 and direct.metric == "psnr"
    assert curve(runs, task="segmentation", method="direct") is None


def test_deleting_a_run_removes_its_point(sweep: Path, tmp_path: Path) -> None:
    copy = tmp_path / "runs"
    for name in ("depth-baseline-0", "depth-proposed-0", "depth-proposed-1", "depth-proposed-3"):
        shutil.copytree(sweep / name, copy / name)
    assert len(load_runs(copy)) == 4
    shutil.rmtree(copy / "depth-proposed-3")
    runs = load_runs(copy)
    assert "depth-proposed-3" not in {r.name for r in runs}
    proposed = curve(runs, task="depth", method="proposed",
                     base_variant="proposed (reward_weight=0.1)")
    assert len(proposed) == 2


def test_missing_directory() -> None:
    with pytest.raises(RunsError, match="no/such/runs: runs directory not found"):
        load_runs("no/such/runs")
