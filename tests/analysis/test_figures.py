"""The paper's figures: drawn from the runs found, 'no runs found' where a method is absent."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from analysis import all_figures
from analysis.figures import base_task_figure, reconstruction_figure, segmentation_figure

NAMES = ["detection_rd", "depth_rd", "reconstruction_coco", "reconstruction_cityscapes",
         "segmentation_cityscapes"]


def texts(fig: Figure) -> str:
    return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts)


def labels(fig: Figure) -> list[str]:
    return [line.get_label() for ax in fig.axes for line in ax.lines]


def test_every_figure_is_built(sweep_runs: list) -> None:
    results = all_figures(sweep_runs)
    assert [r.name for r in results] == NAMES
    for result in results:
        assert isinstance(result.figure, Figure) and result.caption


def test_depth_figure_draws_what_the_runs_say(sweep_runs: list, known: dict) -> None:
    result = base_task_figure(sweep_runs, "depth")
    ax = result.figure.axes[0]
    assert "bits per pixel of the original full-resolution image" in ax.get_xlabel()
    assert "RMSE" in ax.get_ylabel()
    lines = {line.get_label().split(" (")[0]: line for line in ax.lines}
    np.testing.assert_allclose(lines["baseline"].get_xdata(), known["base_bpp"])
    np.testing.assert_allclose(lines["baseline"].get_ydata(), known["base_rmse"])
    np.testing.assert_allclose(lines["proposed"].get_xdata(),
                               np.array(known["base_bpp"]) * 0.9)
    reference = [line for line in ax.lines if line.get_label().startswith("uncompressed")]
    assert len(reference) == 1 and reference[0].get_ydata()[0] == pytest.approx(3.5)
    assert result.missing == []


def test_detection_map_is_shown_in_percent(sweep_runs: list) -> None:
    ax = base_task_figure(sweep_runs, "detection").figure.axes[0]
    baseline = next(line for line in ax.lines if line.get_label().startswith("baseline"))
    np.testing.assert_allclose(baseline.get_ydata(), [20.0, 25.0, 28.0, 30.0])
    assert "(%)" in ax.get_ylabel()


def test_absent_methods_are_named_not_drawn(sweep_runs: list) -> None:
    recon = reconstruction_figure(sweep_runs, "cityscapes")
    assert "no runs found for standalone-independent reconstruction" in texts(recon.figure)
    assert not any(label.startswith("standalone-independent") for label in labels(recon.figure))
    assert any(label.startswith("scalable on baseline") for label in labels(recon.figure))
    assert any("standalone-independent" in m for m in recon.missing)

    without_proposed = [r for r in sweep_runs if r.base_variant == "baseline"
                        or r.role == "reference"]
    depth = base_task_figure(without_proposed, "depth")
    assert "no runs found for the proposed depth base" in texts(depth.figure)
    seg = segmentation_figure(without_proposed)
    assert "no runs found for direct segmentation" in texts(seg.figure)


def test_no_runs_at_all_gives_figures_that_say_so() -> None:
    results = all_figures([])
    for result in results:
        assert not result.figure.axes[0].lines
        assert "no runs found" in texts(result.figure)
        assert result.missing
