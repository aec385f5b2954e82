"""vinfo.report.figures: what each figure draws, its PNG, and the shared formatting helpers.

The figure functions return PNG bytes; to look at the drawn figure the tests wrap
``figure_png`` (infra.reportdoc) with a spy that keeps the Figure and still returns the real
PNG. (Whether the report embeds the figures is in tests/vinfo/report/test_document.py.)"""

from __future__ import annotations

import io

import matplotlib
import matplotlib.style
import numpy as np
import pytest
import xarray as xr
from matplotlib.collections import PathCollection
from matplotlib.container import ErrorbarContainer
from PIL import Image

import vinfo
import vinfo.report.figures as report_figures
from infra.reportdoc import figure_png
from vinfo.report.figures import (
    curves_figure,
    family_names,
    format_bits,
    information_figure,
    interval_name,
    mdl_figure,
    pvi_histogram_figure,
    pvi_maps_figure,
)
from vinfo.report.schema import rate_per_unit, validated

matplotlib.use("Agg")  # the figures draw on Agg canvases; no GUI backend in the tests

UNIT = "bits/pixel"
FAMILIES = ["linear", "mlp-8", "cnn-2x16"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TRAIN_SIZES = np.array([10, 100, 1000])


def _result(n_seeds: int = 2) -> xr.Dataset:
    """A hand-built result of 3 families with known values, in documented dim order."""
    rng = np.random.default_rng(0)
    h_null = np.array([2.0, 2.0, 2.0])
    h_cond = np.array([1.8, 1.4, 1.1])
    vinfo_ = h_null - h_cond
    pvi = vinfo_[:, None] + rng.normal(0, 0.3, (3, 6))
    pvi[0, 0] = np.nan  # an evaluation sample without a finite PVI
    pvi_map = rng.normal(0.0, 0.5, (3, 2, 3, 4))
    pvi_map[0, 0, 0, 0] = 50.0  # not the richest family: must not set the colour scale
    pvi_map[-1, 1, 2, 3] = np.nan  # a masked pixel

    def per_unit(values, dims):
        return dims, np.asarray(values), {"units": UNIT}

    curve_h_null = h_null[:, None] + 0.1 / np.sqrt(TRAIN_SIZES)
    curve_h_cond = h_cond[:, None] + 2.0 / np.sqrt(TRAIN_SIZES)
    return xr.Dataset(
        {
            "h_null": per_unit(h_null, ("family",)),
            "h_cond": per_unit(h_cond, ("family",)),
            "h_cond_low": per_unit(h_cond - 0.05, ("family",)),
            "h_cond_high": per_unit(h_cond + 0.1, ("family",)),
            "vinfo": per_unit(vinfo_, ("family",)),
            "vinfo_low": per_unit(vinfo_ - 0.1, ("family",)),
            "vinfo_high": per_unit(vinfo_ + 0.2, ("family",)),
            "vinfo_capped": per_unit(np.minimum(vinfo_, 0.5), ("family",)),
            "vinfo_seed": per_unit(vinfo_[:, None] + 0.01 * np.arange(n_seeds),
                                   ("family", "seed")),
            "n_parameters": (("family",), np.array([999, 45_000, 2_500_000]),
                             {"units": "parameters"}),
            "pvi": per_unit(pvi, ("family", "sample")),
            "pvi_map": per_unit(pvi_map, ("family", "example", "row", "col")),
            "curve_h_cond": per_unit(curve_h_cond, ("family", "train_size")),
            "curve_h_null": per_unit(curve_h_null, ("family", "train_size")),
            "curve_vinfo": per_unit(curve_h_null - curve_h_cond, ("family", "train_size")),
            "mdl_bits": (("family",), np.array([900.0, 700.0, 650.0]), {"units": "bits"}),
            "mdl_uniform_bits": ((), 1000.0, {"units": "bits"}),
        },
        coords={"family": FAMILIES, "seed": np.arange(n_seeds), "sample": np.arange(6) + 40,
                "train_size": TRAIN_SIZES, "example": [103, 107]},
        attrs={"unit": "pixel", "confidence": 0.95},
    )


@pytest.fixture
def draw(monkeypatch):
    """draw(function, *args) -> (png bytes, the Figure it drew)."""
    drawn = []

    def spy(fig):
        drawn.append(fig)
        return figure_png(fig)

    monkeypatch.setattr(report_figures, "figure_png", spy)

    def run(function, *args):
        with matplotlib.style.context("default"):
            png = function(*args)
        assert len(drawn) == 1  # one figure, drawn once
        assert png[:8] == PNG_SIGNATURE
        return png, drawn.pop()

    return run


def _pixels(png: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(png)) as image:
        return image.size


def _legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def _bars(container: ErrorbarContainer) -> np.ndarray:
    """The (low, high) ends of an errorbar's vertical bars, one row per point."""
    segments = container.lines[2][0].get_segments()
    return np.array([[s[0][1], s[1][1]] for s in segments])


# --- helpers ----------------------------------------------------------------------------


def test_format_bits():
    assert format_bits(1 / 3) == "0.3333"
    assert format_bits(np.float64(2 / 3), 2) == "0.67"
    assert format_bits(-0.5) == "-0.5000"
    assert format_bits(-0.00004) == "0.0000"  # no negative zero
    assert format_bits(-0.00004, 5) == "-0.00004"
    assert [format_bits(v) for v in (np.nan, np.inf, -np.inf)] == ["n/a"] * 3


def test_family_names_and_interval_name():
    ds = _result()
    assert family_names(ds) == FAMILIES and all(type(f) is str for f in family_names(ds))
    assert interval_name(ds) == "95% interval"
    ds.attrs["confidence"] = 0.999
    assert interval_name(ds) == "99.9% interval"
    del ds.attrs["confidence"]
    assert interval_name(ds) == "interval (level not recorded)"


# --- information_figure -----------------------------------------------------------------


def test_information_figure_draws_intervals_seeds_and_the_rate(draw):
    ds = _result()
    png, fig = draw(information_figure, ds, (0.4, "rule"))
    assert _pixels(png) == (1060, 420)  # figsize (2.2 x 3 families + 4, 4.2) at 100 dpi
    left, right = fig.axes
    x = np.arange(3)
    vinfo_bar, capped_bar = left.containers
    np.testing.assert_allclose(vinfo_bar.lines[0].get_xdata(), x - 0.08)
    np.testing.assert_allclose(vinfo_bar.lines[0].get_ydata(), ds["vinfo"].values)
    np.testing.assert_allclose(_bars(vinfo_bar), np.stack([ds["vinfo_low"], ds["vinfo_high"]], 1))
    np.testing.assert_allclose(capped_bar.lines[0].get_xdata(), x + 0.08)
    np.testing.assert_allclose(capped_bar.lines[0].get_ydata(), [0.2, 0.5, 0.5])
    # no capped interval in the Dataset: bars of zero length at the value
    np.testing.assert_allclose(_bars(capped_bar), [[0.2, 0.2], [0.5, 0.5], [0.5, 0.5]])
    seeds = [c for c in left.collections if isinstance(c, PathCollection)]
    assert len(seeds) == 2  # one scatter per refit seed, left of the I_V point
    for j, (scatter, offset) in enumerate(zip(seeds, (-0.2, -0.12))):
        np.testing.assert_allclose(scatter.get_offsets(),
                                   np.stack([x + offset, ds["vinfo_seed"].values[:, j]], 1))
    horizontal = sorted(float(line.get_ydata()[0]) for line in left.lines
                        if line.get_linestyle() != "None" and len(set(line.get_ydata())) == 1)
    assert horizontal == [0.0, 0.4]  # zero and the rate R
    assert set(_legend(left)) == {
        "I_V, 95% interval", "capped I_V = min(H_V(Y|∅), R + H_V(Y|Z)) − H_V(Y|Z)",
        "I_V of each refit seed", "R, rate of Z: 0.4000 bits/pixel"}
    assert [t.get_text() for t in left.get_xticklabels()] == [
        "linear\n(999 params)", "mlp-8\n(45k params)", "cnn-2x16\n(2.5M params)"]
    assert left.get_ylabel() == "information [bits/pixel]"
    assert left.get_xlabel() == "probe family (ladder order)"

    (h_cond_bar,) = right.containers
    np.testing.assert_allclose(h_cond_bar.lines[0].get_ydata(), ds["h_cond"].values)
    np.testing.assert_allclose(_bars(h_cond_bar),
                               np.stack([ds["h_cond_low"], ds["h_cond_high"]], 1))
    lines = {line.get_label(): line for line in right.lines}
    np.testing.assert_allclose(lines["H_V(Y|∅)"].get_ydata(), ds["h_null"].values)
    np.testing.assert_allclose(lines["R + H_V(Y|Z) (two-part code)"].get_ydata(),
                               ds["h_cond"].values + 0.4)
    assert [t.get_text() for t in right.get_xticklabels()] == FAMILIES
    assert right.get_ylabel() == "held-out codelength / loss [bits/pixel]"
    # deterministic bytes
    assert draw(information_figure, ds, (0.4, "rule"))[0] == png


def test_information_figure_without_the_optional_parts(draw):
    ds = _result().drop_vars(["vinfo_capped", "vinfo_seed", "n_parameters", "h_cond_low",
                              "h_cond_high"])
    ds = ds.isel(family=[1])
    del ds.attrs["confidence"]
    png, fig = draw(information_figure, ds, None)
    assert _pixels(png) == (900, 420)  # the minimum width
    left, right = fig.axes
    assert len(left.containers) == 1
    assert not [c for c in left.collections if isinstance(c, PathCollection)]
    assert _legend(left) == ["I_V, interval (level not recorded)"]
    assert [t.get_text() for t in left.get_xticklabels()] == ["mlp-8"]
    assert set(_legend(right)) == {"H_V(Y|Z)", "H_V(Y|∅)"}  # no two-part code without R
    np.testing.assert_allclose(_bars(right.containers[0]), [[1.4, 1.4]])


def test_information_figure_clips_inverted_intervals_and_centres_a_single_seed(draw):
    ds = _result(n_seeds=1)
    ds["vinfo_low"].values[0] = ds["vinfo"].values[0] + 0.05  # low above the value
    ds["vinfo_high"].values[1] = ds["vinfo"].values[1] - 0.05  # high below it
    _, fig = draw(information_figure, ds, None)
    left = fig.axes[0]
    bars = _bars(left.containers[0])
    values = ds["vinfo"].values
    np.testing.assert_allclose(bars[0], [values[0], ds["vinfo_high"].values[0]])
    np.testing.assert_allclose(bars[1], [ds["vinfo_low"].values[1], values[1]])
    (scatter,) = [c for c in left.collections if isinstance(c, PathCollection)]
    np.testing.assert_allclose(scatter.get_offsets()[:, 0], np.arange(3) - 0.16)


# --- curves_figure ----------------------------------------------------------------------


def test_curves_figure_has_a_loss_panel_and_an_information_panel(draw):
    ds = _result()
    png, fig = draw(curves_figure, ds)
    assert _pixels(png) == (1100, 400)
    loss, information = fig.axes
    assert loss.get_xscale() == information.get_xscale() == "log"
    assert len(loss.lines) == 6 and len(information.lines) == 3
    for i, family in enumerate(FAMILIES):
        solid, dashed = loss.lines[2 * i], loss.lines[2 * i + 1]
        np.testing.assert_allclose(solid.get_xdata(), TRAIN_SIZES)
        np.testing.assert_allclose(solid.get_ydata(), ds["curve_h_cond"].values[i])
        np.testing.assert_allclose(dashed.get_ydata(), ds["curve_h_null"].values[i])
        assert (solid.get_linestyle(), dashed.get_linestyle()) == ("-", "--")
        assert solid.get_color() == dashed.get_color() == f"C{i}"
        assert solid.get_label() == family and dashed.get_label().startswith("_")
        np.testing.assert_allclose(information.lines[i].get_ydata(), ds["curve_vinfo"].values[i])
    assert _legend(loss) == _legend(information) == FAMILIES  # one entry per family
    assert loss.get_ylabel() == "held-out loss [bits/pixel]"
    assert information.get_ylabel() == "held-out I_V [bits/pixel]"
    assert loss.get_xlabel() == "training-set size [samples]"
    assert loss.get_title() == "solid: H_V(Y|Z), dashed: H_V(Y|∅)"
    assert information.get_title() == "I_V vs training-set size"


def test_curves_figure_draws_only_the_panels_it_has(draw):
    ds = _result()
    png, fig = draw(curves_figure, ds.drop_vars(["curve_h_cond", "curve_h_null"]))
    assert _pixels(png) == (600, 400) and len(fig.axes) == 1
    assert fig.axes[0].get_title() == "I_V vs training-set size"
    png, fig = draw(curves_figure, ds.drop_vars(["curve_h_cond", "curve_vinfo"]))
    (ax,) = fig.axes
    assert len(ax.lines) == 3 and {line.get_linestyle() for line in ax.lines} == {"--"}
    assert _legend(ax) == FAMILIES  # labels move to the first curve present
    assert ax.get_ylabel() == "held-out loss [bits/pixel]"


# --- mdl_figure -------------------------------------------------------------------------


def test_mdl_figure_bars_against_the_uniform_code(draw):
    ds = _result()
    png, fig = draw(mdl_figure, ds)
    assert _pixels(png) == (530, 380)  # 1.1 x 3 + 2 inches wide
    (ax,) = fig.axes
    assert [p.get_height() for p in ax.patches] == [900.0, 700.0, 650.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == FAMILIES
    (uniform,) = ax.lines
    assert list(uniform.get_ydata()) == [1000.0, 1000.0]
    assert sorted(_legend(ax)) == ["prequential code", "uniform/marginal code"]
    assert ax.get_ylabel() == "codelength [bits]"
    _, fig = draw(mdl_figure, ds.drop_vars("mdl_uniform_bits").isel(family=[0]))
    (ax,) = fig.axes
    assert len(ax.patches) == 1 and not ax.lines and _legend(ax) == ["prequential code"]


# --- pvi_histogram_figure ---------------------------------------------------------------


def test_pvi_histogram_has_one_step_histogram_per_family_on_shared_bins(draw):
    ds = _result()
    png, fig = draw(pvi_histogram_figure, ds)
    assert _pixels(png) == (650, 400)
    (ax,) = fig.axes
    assert len(ax.patches) == 3
    pvi = ds["pvi"].values
    edges = np.histogram_bin_edges(pvi[np.isfinite(pvi)], bins=30)
    for patch in ax.patches:  # every histogram spans the same 30 bins
        xs = patch.get_xy()[:, 0]
        assert xs.min() == pytest.approx(edges[0]) and xs.max() == pytest.approx(edges[-1])
    means = [np.nanmean(pvi[i]) for i in range(3)]
    assert _legend(ax) == [f"{f} (mean {format_bits(m)})" for f, m in zip(FAMILIES, means)]
    assert ax.get_xlabel() == "PVI [bits/pixel]" and ax.get_ylabel() == "evaluation samples"


def test_pvi_histogram_with_no_finite_values(draw):
    ds = _result()
    ds["pvi"].values[1] = np.nan
    _, fig = draw(pvi_histogram_figure, ds)
    assert _legend(fig.axes[0])[1] == "mlp-8 (mean n/a)"
    ds["pvi"].values[:] = np.nan
    _, fig = draw(pvi_histogram_figure, ds)
    assert _legend(fig.axes[0]) == [f"{f} (mean n/a)" for f in FAMILIES]


# --- pvi_maps_figure --------------------------------------------------------------------


def test_pvi_maps_show_the_richest_family_on_a_symmetric_scale(draw):
    ds = _result()
    _, fig = draw(pvi_maps_figure, ds, 2)
    *maps, colorbar = fig.axes
    assert len(maps) == 2
    expected = ds["pvi_map"].values[-1]
    limit = np.nanmax(np.abs(expected))  # the last family's maps, not the 50 of the first
    assert limit < 5
    for ax, image, example in zip(maps, expected, (103, 107)):
        (shown,) = ax.images
        data = shown.get_array()
        np.testing.assert_array_equal(np.ma.getmaskarray(data), np.isnan(image))
        np.testing.assert_allclose(data.filled(0), np.nan_to_num(image))
        assert shown.get_clim() == pytest.approx((-limit, limit))
        assert ax.get_title() == f"example {example}"
        assert not ax.get_xticks().size and not ax.get_yticks().size
    assert colorbar.get_ylabel() == "PVI [bits/pixel]"


def test_pvi_maps_edge_cases(draw):
    ds = _result()
    _, fig = draw(pvi_maps_figure, ds, 1)  # fewer shown than there are
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == "example 103"
    ds["pvi_map"].values[-1] = np.nan  # nothing finite: scale ±1
    _, fig = draw(pvi_maps_figure, ds.drop_vars("example"), 2)  # no example coordinate
    assert [ax.get_title() for ax in fig.axes[:2]] == ["example 0", "example 1"]
    assert fig.axes[0].images[0].get_clim() == (-1.0, 1.0)
    ds["pvi_map"].values[-1] = 0.0
    _, fig = draw(pvi_maps_figure, ds, 2)
    assert fig.axes[0].images[0].get_clim() == (-1.0, 1.0)


def test_pvi_color_scale_is_symmetric_and_never_zero():
    """The one PVI colour scale (report and notebook 03): symmetric around 0 over every map
    given, NaN grey, and a positive limit for all-zero maps (a limit of 0 drew them solid blue)."""
    scale = report_figures.pvi_color_scale(np.array([[0.5, -2.0], [np.nan, 1.0]]),
                                           np.array([[0.25, -0.1]]))
    assert (scale["vmin"], scale["vmax"]) == (-2.0, 2.0)
    assert scale["cmap"].name.startswith("RdBu_r")
    assert scale["cmap"].get_bad() == pytest.approx(matplotlib.colors.to_rgba("0.75"))
    for maps in ([np.zeros((4, 4))], [np.zeros((2, 3)), np.full((2, 3), np.nan)], [], [[]]):
        scale = report_figures.pvi_color_scale(*maps)
        assert scale["vmax"] == 1.0 and scale["vmin"] == -1.0
    # an all-zero map drawn with it is white (the middle of the scale), not the darkest blue
    colours = scale["cmap"]((np.zeros(3) - scale["vmin"]) / (scale["vmax"] - scale["vmin"]))
    assert np.all(colours[:, :3] > 0.9)


# --- a real estimate --------------------------------------------------------------------


def test_every_figure_draws_a_real_small_estimate(draw):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(60, 2, 2, 2)).astype(np.float32)
    y = np.repeat(np.repeat(z[:, :1], 2, 2), 2, 3) + 0.5 * rng.normal(size=(60, 1, 4, 4))
    ds = validated(vinfo.estimate(z, y, "gaussian", families=["linear", "cnn-1x2"],
                                  seeds=[0, 1], bootstrap=20, max_steps=10, eval_every=5,
                                  curve_points=3, representation_bpp=0.5,
                                  attrs={"image_pixels": 64}))
    families = family_names(ds)
    rate = rate_per_unit(ds)
    assert rate is not None
    _, fig = draw(information_figure, ds, rate)
    left, right = fig.axes
    assert len(left.containers) == 1 + ("vinfo_capped" in ds)
    np.testing.assert_allclose(left.containers[0].lines[0].get_ydata(), ds["vinfo"].values)
    assert f"R, rate of Z: {format_bits(rate[0])} bits/pixel" in _legend(left)
    assert [t.get_text() for t in right.get_xticklabels()] == families
    _, fig = draw(curves_figure, ds)
    assert [len(ax.lines) for ax in fig.axes] == [2 * len(families), len(families)]
    np.testing.assert_allclose(fig.axes[0].lines[0].get_xdata(), ds["train_size"].values)
    _, fig = draw(mdl_figure, ds)
    np.testing.assert_allclose([p.get_height() for p in fig.axes[0].patches],
                               ds["mdl_bits"].values)
    _, fig = draw(pvi_histogram_figure, ds)
    assert len(fig.axes[0].patches) == len(families)
    shown = ds.sizes["example"]
    _, fig = draw(pvi_maps_figure, ds, shown)
    assert len(fig.axes) == shown + 1
    assert [ax.get_title() for ax in fig.axes[:shown]] == [
        f"example {e}" for e in ds["example"].values]
