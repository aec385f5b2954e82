"""Tests for vinfo.report: HTML/Markdown report from a hand-built result Dataset."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from vinfo.report.document import FIGURE_NAMES, write_report
from vinfo.report.figures import format_bits

FAMILIES = ["linear", "mlp-64", "cnn-1x32"]
UNIT = "bits/pixel"


def make_dataset(
    negative: str | None = "linear", collapsed: str | None = "mlp-64", seed: int = 0
) -> xr.Dataset:
    """A plausible result Dataset: 3 families, 2 seeds, 20 samples, 4 train sizes, 2 maps 8×16."""
    rng = np.random.default_rng(seed)
    n_family, seeds, samples = len(FAMILIES), [0, 1], np.arange(20) + 100
    train_sizes = np.array([10, 32, 100, 316])
    h_null = np.array([2.02, 2.01, 2.03])
    h_cond = np.array([1.70, 1.35, 0.95])
    if negative is not None:
        h_cond[FAMILIES.index(negative)] = h_null[FAMILIES.index(negative)] + 0.04
    vinfo = h_null - h_cond
    vinfo_seed = vinfo[:, None] + rng.normal(0, 0.02, (n_family, len(seeds)))
    collapsed_mask = np.array([f == collapsed for f in FAMILIES])
    pvi = vinfo[:, None] + rng.normal(0, 0.3, (n_family, samples.size))
    pvi_map = rng.normal(0.2, 0.5, (n_family, 2, 8, 16))
    pvi_map[:, :, 0, :3] = np.nan  # masked pixels
    curve_h_null = h_null[:, None] + 0.3 / np.sqrt(train_sizes)[None, :]
    curve_h_cond = h_cond[:, None] + 3.0 / np.sqrt(train_sizes)[None, :]
    mdl_bits = np.array([40_000.0, 33_000.0, 26_000.0])

    def per_unit(values: np.ndarray, dims: tuple[str, ...]) -> tuple:
        return dims, values, {"units": UNIT}

    return xr.Dataset(
        {
            "h_null": per_unit(h_null, ("family",)),
            "h_cond": per_unit(h_cond, ("family",)),
            "vinfo": per_unit(vinfo, ("family",)),
            "vinfo_low": per_unit(vinfo - 0.06, ("family",)),
            "vinfo_high": per_unit(vinfo + 0.05, ("family",)),
            "vinfo_guarded": per_unit(np.where(collapsed_mask, 0.0, vinfo), ("family",)),
            "vinfo_seed": per_unit(vinfo_seed, ("family", "seed")),
            "vinfo_seed_std": per_unit(vinfo_seed.std(axis=1, ddof=1), ("family",)),
            "collapsed": (("family",), collapsed_mask, {"units": "1"}),
            "negative": (("family",), vinfo < 0, {"units": "1"}),
            "n_parameters": (
                ("family",), np.array([1_200, 45_000, 310_000]), {"units": "parameters"}
            ),
            "train_steps": (("family",), np.array([2_000, 2_000, 4_000]), {"units": "steps"}),
            "h_marginal": per_unit(np.array(2.0), ()),
            "pvi": per_unit(pvi, ("family", "sample")),
            "pvi_map": per_unit(pvi_map, ("family", "example", "row", "col")),
            "curve_h_cond": per_unit(curve_h_cond, ("family", "train_size")),
            "curve_h_null": per_unit(curve_h_null, ("family", "train_size")),
            "curve_vinfo": per_unit(curve_h_null - curve_h_cond, ("family", "train_size")),
            "mdl_bits": (("family",), mdl_bits, {"units": "bits"}),
            "mdl_bits_per_unit": per_unit(mdl_bits / 20_480, ("family",)),
            "mdl_uniform_bits": ((), np.array(41_000.0), {"units": "bits"}),
        },
        coords={"family": FAMILIES, "seed": seeds, "sample": samples,
                "train_size": train_sizes, "example": [103, 107]},
        attrs={"target_kind": "discretized", "unit": "pixel", "n_samples": 100, "n_fit": 60,
               "n_val": 20, "n_eval": 20, "seed": 0, "confidence": 0.95, "n_bootstrap": 200,
               "representation_shape": [100, 8, 4, 8], "target_shape": [100, 3, 8, 16],
               "vinfo_version": "0.1.0", "created": "2026-01-01T00:00:00+00:00",
               "source": "base latent y_hat -> 8x16 image"},
    )


OPTIONAL_PARTS = ["pvi", "pvi_map", "curve_h_cond", "curve_h_null", "curve_vinfo", "mdl_bits",
                  "mdl_bits_per_unit", "mdl_uniform_bits", "vinfo_seed", "vinfo_seed_std",
                  "vinfo_guarded", "train_steps", "h_marginal"]


def table_row(text: str, family: str, markdown: bool) -> str:
    """The one line of the per-family table (first table naming ``family``) for ``family``."""
    start = f"| {family} |" if markdown else f'<tr><td class="text">{family}</td>'
    rows = [line for line in text.splitlines() if line.startswith(start)]
    assert rows, f"no table row for {family}"
    return rows[0]


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[xr.Dataset, dict[str, Path]]:
    ds = make_dataset()
    return ds, write_report(ds, tmp_path_factory.mktemp("report"))


def test_html_is_self_contained_and_holds_the_table(full_report):
    ds, paths = full_report
    text = paths["html"].read_text(encoding="utf-8")
    figures = sorted((paths["html"].parent / "figures").glob("*.png"))
    assert [f.stem for f in figures] == sorted(FIGURE_NAMES)
    assert text.count('<img src="data:image/png;base64,') == len(figures)
    for forbidden in ("http://", "https://", "<script", "<link", "@import", "url("):
        assert forbidden not in text
    for i, family in enumerate(FAMILIES):
        row = table_row(text, family, markdown=False)
        low, high = ds["vinfo_low"].values[i], ds["vinfo_high"].values[i]
        value = format_bits(ds["vinfo"].values[i])
        assert f"<td>{value} [{format_bits(low)}, {format_bits(high)}]</td>" in row
    assert "<th>I_V [95% interval]</th>" in text
    assert "Information and loss columns in bits/pixel; intervals are 95% intervals" in text


def test_markdown_holds_the_same_table_and_links_existing_figures(full_report):
    ds, paths = full_report
    text = paths["markdown"].read_text(encoding="utf-8")
    for i, family in enumerate(FAMILIES):
        row = table_row(text, family, markdown=True)
        assert f"| {format_bits(ds['vinfo'].values[i])} [" in row
        assert f"| {int(ds['n_parameters'].values[i]):,} |" in row
    links = re.findall(r"!\[(?:\\.|[^\]\\])*\]\((figures/[^)]+\.png)\)", text)
    assert sorted(Path(link).stem for link in links) == sorted(FIGURE_NAMES)
    for link in links:
        assert (paths["markdown"].parent / link).is_file()
        assert paths[Path(link).stem] == paths["markdown"].parent / link
    assert "How to read an interval" in text and "covers 0" in text


def test_flags_mark_negative_and_collapsed_families(full_report):
    _, paths = full_report
    for key in ("html", "markdown"):
        text = paths[key].read_text(encoding="utf-8")
        negative = table_row(text, "linear", key == "markdown")
        collapsed = table_row(text, "mlp-64", key == "markdown")
        clean = table_row(text, "cnn-1x32", key == "markdown")
        assert "⚠ negative" in negative and "⚠ collapsed to null" not in negative
        assert "⚠ collapsed to null" in collapsed and "⚠ negative" not in collapsed
        assert "⚠" not in clean


def test_null_worse_than_marginal_is_flagged(tmp_path):
    ds = make_dataset(negative=None, collapsed=None)
    ds["h_null"].values[2] = 2.0 + 0.2  # 0.2 bits/pixel above h_marginal = 2.0
    text = write_report(ds, tmp_path)["markdown"].read_text(encoding="utf-8")
    assert "⚠ null underfit" in table_row(text, "cnn-1x32", markdown=True)
    assert "⚠ null underfit" not in table_row(text, "linear", markdown=True)


def test_missing_optional_parts_render_with_not_computed(tmp_path):
    ds = make_dataset().drop_vars(OPTIONAL_PARTS)
    paths = write_report(ds, tmp_path)
    html_text = paths["html"].read_text(encoding="utf-8")
    md_text = paths["markdown"].read_text(encoding="utf-8")
    assert set(paths) == {"html", "markdown", "information_by_family"}
    assert html_text.count('<img src="data:image/png;base64,') == 1
    for sentence in ("Loss-data curves were not computed",
                     "prequential (online) codelength was not computed",
                     "Per-sample PVI was not computed", "PVI maps were not computed",
                     "h_marginal was not computed"):
        assert sentence in md_text and sentence in html_text
    assert "Not computed in this estimate" in md_text and "train_steps" in md_text


def test_overwrite_is_atomic_and_drops_stale_figures(tmp_path):
    first = write_report(make_dataset(), tmp_path, title="first")
    assert first["pvi_maps"].is_file()
    second = write_report(make_dataset().drop_vars(["pvi_map", "pvi"]), tmp_path, title="second")
    assert not (tmp_path / "figures" / "pvi_maps.png").exists()
    assert not (tmp_path / "figures" / "pvi_histogram.png").exists()
    assert second["html"].read_text(encoding="utf-8").count("<title>second</title>") == 1
    assert "# second" in second["markdown"].read_text(encoding="utf-8")
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_output_is_deterministic_apart_from_the_timestamp(tmp_path):
    a = write_report(make_dataset(), tmp_path / "a")
    b = write_report(make_dataset(), tmp_path / "b")
    for name in FIGURE_NAMES:
        assert a[name].read_bytes() == b[name].read_bytes()

    def without_timestamp(path: Path) -> str:
        return re.sub(r"report written.*", "", path.read_text(encoding="utf-8"))

    assert without_timestamp(a["html"]) == without_timestamp(b["html"])
    assert without_timestamp(a["markdown"]) == without_timestamp(b["markdown"])


def test_rate_is_converted_only_with_pixel_counts(tmp_path):
    ds = make_dataset()
    ds.attrs["representation_bpp"] = 0.5
    text = write_report(ds, tmp_path / "no_counts")["markdown"].read_text(encoding="utf-8")
    assert "0.5000 bits per original-image pixel" in text
    assert "Usable bits per transmitted bit" not in text and "no cap formed" in text

    ds.attrs.update(image_pixels=32 * 64, target_pixels=8 * 16)
    ds["h_cond"].values[-1] = 1.995  # I_V of the richest family 0.035 bits/pixel
    text = write_report(ds, tmp_path / "counts")["markdown"].read_text(encoding="utf-8")
    rate = 0.5 * 32 * 64 / (8 * 16) / 1000  # bits per target pixel; made small below
    ds.attrs["representation_bpp"] = 0.5 / 1000
    text = write_report(ds, tmp_path / "counts")["markdown"].read_text(encoding="utf-8")
    h_null, h_cond = float(ds["h_null"].values[-1]), float(ds["h_cond"].values[-1])
    capped = min(h_null, rate + h_cond) - h_cond  # the two-part cap: R binds
    assert capped == pytest.approx(rate) and h_null - h_cond > rate
    assert f"R = {format_bits(rate)} bits/pixel" in text
    assert f"= {format_bits(capped / rate, 3)} ≤ 1" in text and "The cap binds for" in text


@pytest.mark.parametrize("name", ["h_cond", "pvi_map", "mdl_uniform_bits", "collapsed"])
def test_variable_without_units_raises_naming_it(tmp_path, name):
    ds = make_dataset()
    del ds[name].attrs["units"]
    with pytest.raises(ValueError, match=repr(name)):
        write_report(ds, tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(TypeError, match="xarray.Dataset"):
        write_report({"vinfo": 1}, tmp_path)
    with pytest.raises(ValueError, match="'vinfo_high'"):
        write_report(make_dataset().drop_vars("vinfo_high"), tmp_path)
    ds = make_dataset()
    ds["h_null"].attrs["units"] = "nats/pixel"
    with pytest.raises(ValueError, match="'h_null'.*bits"):
        write_report(ds, tmp_path)
    ds = make_dataset()
    ds["pvi"].attrs["units"] = "bits/sample"
    with pytest.raises(ValueError, match="'pvi'.*share one unit"):
        write_report(ds, tmp_path)
    ds = make_dataset()
    ds.attrs["unit"] = "sample"
    with pytest.raises(ValueError, match="'vinfo'.*bits/sample"):
        write_report(ds, tmp_path)
    ds = make_dataset()
    ds.attrs.update(representation_bpp=-1.0)
    with pytest.raises(ValueError, match="representation_bpp"):
        write_report(ds, tmp_path)


def test_report_from_a_netcdf_round_trip(tmp_path):
    make_dataset().to_netcdf(tmp_path / "result.nc", engine="h5netcdf")
    with xr.open_dataset(tmp_path / "result.nc", engine="h5netcdf") as ds:
        text = write_report(ds.load(), tmp_path / "out")["markdown"].read_text(encoding="utf-8")
    assert "⚠ collapsed to null" in table_row(text, "mlp-64", markdown=True)
    assert "100 × 8 × 4 × 8" in text


def test_title_is_short_and_the_provenance_sits_in_a_details_block(tmp_path):
    ds = make_dataset()
    ds.attrs["source"] = "; ".join(["codec run /very/long/path (exp, best checkpoint): Z = ŷ_b"] * 5)
    paths = write_report(ds, tmp_path)
    page = paths["html"].read_text(encoding="utf-8")
    title = f"V-information: {ds.attrs['target_kind']} target, 3 families"
    assert f"<h1>{title}</h1>" in page and f"<title>{title}</title>" in page
    details = re.search(r"<details><summary>Provenance[^<]*</summary><p>(.*?)</p></details>",
                        page)
    assert details and "codec run /very/long/path" in details.group(1)
    assert page.index("<h1>") < details.start() < page.index("<h2>")
    markdown = paths["markdown"].read_text(encoding="utf-8").splitlines()
    assert markdown[0] == f"# {title}" and ds.attrs["source"] in markdown
    one = write_report(make_dataset().isel(family=[0]), tmp_path / "one")
    assert "target, 1 family</h1>" in one["html"].read_text(encoding="utf-8")


@pytest.mark.parametrize("h_cond_shift", [0.0, 0.04])  # the richest family: I_V = 0 and < 0
def test_no_usable_bits_ratio_for_a_non_positive_estimate(tmp_path, h_cond_shift):
    ds = make_dataset(negative=None)
    ds.attrs.update(representation_bpp=0.5, image_pixels=32 * 64, target_pixels=8 * 16)
    ds["h_cond"].values[-1] = ds["h_null"].values[-1] + h_cond_shift
    paths = write_report(ds, tmp_path)
    for text in (paths["markdown"].read_text(encoding="utf-8"),
                 paths["html"].read_text(encoding="utf-8")):
        assert "per transmitted bit (capped" not in text and "≤ 1. " not in text
        assert "no usable information detected" in text
    # a positive estimate keeps its ratio
    ds["h_cond"].values[-1] = ds["h_null"].values[-1] - 0.01
    text = write_report(ds, tmp_path / "positive")["markdown"].read_text(encoding="utf-8")
    assert "Usable bits per transmitted bit (capped, cnn-1x32) = 0.0100 / " in text
