"""vinfo.report.schema: the result schema (validated) and the rate unit rule (rate_per_unit).

Checked on a real small estimate and on hand-built Datasets with one violation each; the
report built on top of them is in tests/vinfo/report/test_document.py."""

from __future__ import annotations

import re

import numpy as np
import pytest
import xarray as xr

import vinfo
from vinfo.report.schema import (
    EXPECTED_DIMS,
    REQUIRED_VARIABLES,
    positive_attr,
    rate_per_unit,
    validated,
)

UNIT = "bits/pixel"
FAMILIES = ["linear", "mlp-8"]


@pytest.fixture(scope="module")
def estimate() -> xr.Dataset:
    """A real result: dense gaussian target (stride 2), two families, curves and MDL."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(60, 2, 2, 2)).astype(np.float32)
    y = np.repeat(np.repeat(z[:, :1], 2, 2), 2, 3) + 0.5 * rng.normal(size=(60, 1, 4, 4))
    return vinfo.estimate(z, y, "gaussian", families=["linear", "cnn-1x2"], seeds=[0, 1],
                          bootstrap=20, max_steps=10, eval_every=5, curve_points=3)


def _minimal(**variables) -> xr.Dataset:
    """The required variables of two families in bits/pixel, plus ``variables``."""
    values = {"h_null": [2.0, 2.0], "h_cond": [1.5, 1.0]}
    values["vinfo"] = [2.0 - 1.5, 2.0 - 1.0]
    values["vinfo_low"], values["vinfo_high"] = [0.4, 0.9], [0.6, 1.1]
    data = {name: (("family",), np.array(v), {"units": UNIT}) for name, v in values.items()}
    data.update(variables)
    return xr.Dataset(data, coords={"family": FAMILIES}, attrs={"unit": "pixel"})


def test_a_real_estimate_passes_with_every_known_variable_in_its_documented_order(estimate):
    present = [name for name in EXPECTED_DIMS if name in estimate.data_vars]
    assert {"pvi", "pvi_map", "curve_vinfo", "mdl_bits", "vinfo_seed"} <= set(present)
    out = validated(estimate)
    xr.testing.assert_identical(out, estimate)  # already in order: nothing changes
    # the same result with every variable's dims reversed comes back in the documented order
    flipped = estimate.transpose(*reversed(list(estimate.dims)))
    assert flipped["pvi_map"].dims == ("col", "row", "example", "family")
    fixed = validated(flipped)
    for name in present:
        assert fixed[name].dims == EXPECTED_DIMS[name]
        xr.testing.assert_identical(fixed[name], estimate[name])
    assert fixed.attrs == estimate.attrs


def test_the_required_variables_alone_pass_unchanged():
    ds = _minimal()
    xr.testing.assert_identical(validated(ds), ds)


def test_not_a_dataset_is_a_type_error_naming_what_it_got():
    with pytest.raises(TypeError, match="expects an xarray.Dataset, got dict"):
        validated({"vinfo": [1.0]})
    with pytest.raises(TypeError, match="got DataArray"):
        validated(_minimal()["vinfo"])


def test_a_dataset_without_families_is_refused():
    with pytest.raises(ValueError, match="no 'family' dimension"):
        validated(xr.Dataset({"vinfo": ((), 1.0, {"units": UNIT})}))
    with pytest.raises(ValueError, match="no 'family' dimension .*or it is empty"):
        validated(_minimal().isel(family=slice(0, 0)))


@pytest.mark.parametrize("name", REQUIRED_VARIABLES)
def test_each_required_variable_is_required(name):
    with pytest.raises(ValueError, match=f"required variable '{name}' is missing"):
        validated(_minimal().drop_vars(name))


@pytest.mark.parametrize("name", ["vinfo", "n_parameters", "extra_not_in_the_schema"])
def test_every_variable_needs_a_units_attr(name):
    ds = _minimal(n_parameters=(("family",), np.array([3, 40]), {"units": "parameters"}),
                  extra_not_in_the_schema=(("family",), np.zeros(2), {"units": "1"}))
    validated(ds)
    del ds[name].attrs["units"]
    with pytest.raises(ValueError, match=f"variable '{name}' has no 'units' attr"):
        validated(ds)


def test_vinfo_units_must_match_the_unit_attr():
    ds = _minimal()
    ds.attrs["unit"] = "sample"
    with pytest.raises(ValueError, match="'vinfo' has units 'bits/pixel', but attrs unit = "
                                         "'sample'; expected 'bits/sample'"):
        validated(ds)
    del ds.attrs["unit"]  # without the attr any bits unit is accepted, shared by all
    for name in REQUIRED_VARIABLES:
        ds[name].attrs["units"] = "bits/image"
    validated(ds)


@pytest.mark.parametrize(("name", "variable", "expected"), [
    ("pvi", (("family", "seed"), np.zeros((2, 3))), ("family", "sample")),
    ("h_marginal", (("family",), np.zeros(2)), ()),
    ("vinfo_seed", (("family",), np.zeros(2)), ("family", "seed")),
    ("pvi_map", (("family", "row", "col"), np.zeros((2, 4, 4))),
     ("family", "example", "row", "col")),
    ("curve_vinfo", (("family", "sample"), np.zeros((2, 3))), ("family", "train_size")),
])
def test_a_variable_with_the_wrong_dims_names_its_dims_and_the_expected_ones(name, variable,
                                                                            expected):
    ds = _minimal(**{name: (*variable, {"units": UNIT})})
    message = f"variable '{name}' has dims {ds[name].dims}, expected {expected}"
    with pytest.raises(ValueError, match=re.escape(message)):
        validated(ds)


def test_information_must_be_in_bits():
    ds = _minimal()
    ds["h_cond"].attrs["units"] = "nats/pixel"
    with pytest.raises(ValueError, match="variable 'h_cond' has units 'nats/pixel'; the report "
                                         "expects bits"):
        validated(ds)
    with pytest.raises(ValueError, match="'mdl_bits' has units 'nats'; the report expects bits"):
        validated(_minimal(mdl_bits=(("family",), np.ones(2), {"units": "nats"})))
    # totals are bits but not per unit; the case of "bits" does not matter
    validated(_minimal(mdl_bits=(("family",), np.ones(2), {"units": "Bits"}),
                       mdl_uniform_bits=((), 3.0, {"units": "bits"})))
    # pvi_map is in bits, but need not share vinfo's unit
    validated(_minimal(pvi_map=(("family", "example", "row", "col"), np.zeros((2, 1, 2, 2)),
                                {"units": "bits/value"})))
    # variables that are not information keep their own units
    validated(_minimal(n_parameters=(("family",), np.array([3, 40]), {"units": "parameters"}),
                       collapsed=(("family",), np.array([False, True]), {"units": "1"})))


@pytest.mark.parametrize("name", ["h_marginal", "vinfo_seed_std", "mdl_bits_per_unit", "pvi"])
def test_per_unit_quantities_share_vinfos_unit(name):
    dims = {"h_marginal": ((), 1.0), "pvi": (("family", "sample"), np.zeros((2, 3)))}.get(
        name, (("family",), np.zeros(2)))
    validated(_minimal(**{name: (*dims, {"units": UNIT})}))
    with pytest.raises(ValueError, match=f"variable '{name}' has units 'bits/sample', but "
                                         f"'vinfo' has '{UNIT}'; per-unit quantities must "
                                         "share one unit"):
        validated(_minimal(**{name: (*dims, {"units": "bits/sample"})}))


def test_curves_need_positive_training_set_sizes():
    curve = (("family", "train_size"), np.ones((2, 3)), {"units": UNIT})
    with pytest.raises(ValueError, match="need a 'train_size' coordinate of positive"):
        validated(_minimal(curve_h_cond=curve))  # a dimension without a coordinate
    for sizes in ([0, 10, 20], [-5, 10, 20], [np.nan, 10, 20]):
        ds = _minimal(curve_h_null=curve).assign_coords(train_size=sizes)
        with pytest.raises(ValueError, match="positive training-set sizes, got"):
            validated(ds)
    validated(_minimal(curve_vinfo=curve).assign_coords(train_size=[8, 16, 32]))


# --- rate_per_unit ----------------------------------------------------------------------


def test_rate_variable_of_the_estimate_comes_first():
    ds = _minimal(rate_per_unit=((), 0.75, {"units": UNIT}))
    ds.attrs.update(representation_bpp=10.0, image_pixels=100, target_pixels=1)
    rate, rule = rate_per_unit(ds)
    assert rate == 0.75 and isinstance(rate, float)
    assert rule.startswith("the bits given for the evaluation samples' representation")


def test_rate_per_sample_is_bpp_times_image_pixels():
    ds = _minimal()
    ds.attrs.update(unit="sample", representation_bpp=0.25, image_pixels=32 * 32)
    assert rate_per_unit(ds) == (256.0, "0.25 bits/original pixel × 1024 pixels per sample")


def test_rate_per_pixel_divides_by_the_target_pixels():
    ds = _minimal()
    ds.attrs.update(representation_bpp=0.5, image_pixels=np.int64(2048), target_pixels=128)
    assert rate_per_unit(ds) == (
        8.0, "0.5 bits/original pixel × 2048 image pixels / 128 target pixels")
    ds.attrs["representation_bpp"] = 0.0  # a zero rate is a rate
    assert rate_per_unit(ds)[0] == 0.0


@pytest.mark.parametrize("attrs", [
    {},  # no rate recorded
    {"representation_bpp": 0.5},  # no image pixel count
    {"representation_bpp": 0.5, "image_pixels": 2048},  # pixel unit without target pixels
    {"representation_bpp": 0.5, "image_pixels": 2048, "target_pixels": 16, "unit": "value"},
    {"representation_bpp": 0.5, "image_pixels": 2048, "target_pixels": 16, "unit": None},
])
def test_no_conversion_without_the_counts_it_needs(attrs):
    ds = _minimal()
    ds.attrs.update(attrs)
    assert rate_per_unit(ds) is None


@pytest.mark.parametrize(("attrs", "message"), [
    ({"representation_bpp": -0.1, "image_pixels": 4},
     "attr 'representation_bpp' must be a finite non-negative number, got -0.1"),
    ({"representation_bpp": 0.5, "image_pixels": 0},
     "attr 'image_pixels' must be a finite positive number, got 0.0"),
    ({"representation_bpp": 0.5, "image_pixels": 4, "target_pixels": float("inf")},
     "attr 'target_pixels' must be a finite positive number, got inf"),
    ({"representation_bpp": "lots", "image_pixels": 4},
     "attr 'representation_bpp' must be a single number, got 'lots'"),
    ({"representation_bpp": 0.5, "image_pixels": [4, 8]},
     r"attr 'image_pixels' must be a single number, got \[4, 8\]"),
])
def test_bad_rate_attrs_raise_naming_the_attr(attrs, message):
    ds = _minimal()
    ds.attrs.update(attrs)
    with pytest.raises(ValueError, match=message):
        rate_per_unit(ds)


def test_positive_attr_reads_one_finite_number():
    attrs = {"a": np.array([3]), "b": np.float32(2.5), "zero": 0, "nan": np.nan}
    assert positive_attr(attrs, "a") == 3.0 and isinstance(positive_attr(attrs, "a"), float)
    assert positive_attr(attrs, "b") == 2.5
    assert positive_attr(attrs, "zero", allow_zero=True) == 0.0
    with pytest.raises(ValueError, match="'zero' must be a finite positive number, got 0.0"):
        positive_attr(attrs, "zero")
    with pytest.raises(ValueError, match="'nan' must be a finite non-negative number, got nan"):
        positive_attr(attrs, "nan", allow_zero=True)
