"""Input reading and validation: every bad input names the file/array and the problem."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from vinfo.errors import VinfoInputError
from vinfo.inputs import check_inputs, load_array, patch_representation


def _ok_pair(n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3)).astype(np.float32), rng.integers(0, 3, n)


def test_vector_and_dense_inputs_are_normalised():
    z, y = _ok_pair()
    inputs = check_inputs(z, y, "categorical")
    assert inputs.y.shape == (20, 1) and inputs.stride is None and inputs.num_classes == 3
    grid = np.zeros((4, 2, 2, 3), np.float32)
    dense = np.tile(np.arange(2), (4, 1, 8, 6))  # [4, 1, 8, 12]: stride 4
    inputs = check_inputs(grid, dense, "categorical")
    assert inputs.stride == 4 and inputs.y.shape == (4, 1, 8, 12)
    labels = np.zeros((4, 8, 12), np.int64)  # [N, H, W] is one channel
    labels[:, 0] = 1
    assert check_inputs(grid, labels, "categorical").y.shape == (4, 1, 8, 12)
    # a latent grid with a per-sample target is flattened to the vector ladder
    flat = check_inputs(grid, np.arange(4) % 2, "categorical")
    assert flat.z.shape == (4, 12) and flat.stride is None


def test_ignore_value_masks_and_is_exempt_from_checks():
    z, y = _ok_pair()
    y[:5] = 19
    inputs = check_inputs(z, y, "categorical", ignore_value=19)
    assert inputs.mask[:5].sum() == 0 and inputs.mask[5:].all() and inputs.num_classes == 3
    pixels = np.full((20, 1), 7.0)
    pixels[::2] = 300.0  # out of 0..255 but ignored
    pixels[1] = 9.0
    assert check_inputs(z, pixels, "discretized", ignore_value=300).mask.sum() == 10


@pytest.mark.parametrize(
    ("z", "y", "kind", "message"),
    [
        (np.zeros((20, 3)), np.arange(19) % 2, "categorical", r"20 samples but targets Y has 19"),
        (np.zeros((4, 2, 2, 3)), np.zeros((4, 1, 7, 12)), "gaussian", r"not one integer multiple"),
        (np.zeros((4, 2, 2, 3)), np.zeros((4, 1, 4, 12)), "gaussian", r"not one integer multiple"),
        (np.zeros((20, 3)), np.zeros((20, 1, 4, 4)), "gaussian", r"need a latent grid"),
        (np.zeros((20,)), np.arange(20) % 2, "categorical", r"expected \[N, D\] or \[N, C, h, w\]"),
        (np.full((20, 3), np.nan), np.arange(20) % 2, "categorical",
         r"representations Z: 60 NaN/inf"),
        (np.zeros((20, 3)), np.r_[np.inf, np.arange(19.0)], "gaussian", r"targets Y: 1 NaN/inf"),
        (np.zeros((0, 3)), np.zeros(0), "gaussian", r"empty array"),
        (np.zeros((20, 3)), np.arange(20) % 2, "poisson", r"unknown target kind 'poisson'"),
        (np.zeros((20, 3)), np.arange(20) * 0.5, "categorical", r"must be integers, found 0.5"),
        (np.zeros((20, 3)), np.arange(20) * 20, "discretized", r"0..255 .* range 0..380"),
        (np.zeros((20, 3)), np.full(20, 4), "categorical", r"all valid targets are one class"),
        (np.zeros((20, 3)), np.full(20, 2.5), "gaussian", r"all valid targets are one value"),
        (np.zeros((20, 3)), -(np.arange(20) % 2), "categorical", r"labels must be >= 0"),
    ],
)
def test_bad_arrays_raise_clear_errors(z, y, kind, message):
    with pytest.raises(VinfoInputError, match=message):
        check_inputs(z, y, kind)


def test_num_classes_too_small_is_an_error():
    z, y = _ok_pair()
    with pytest.raises(VinfoInputError, match="label 2 >= num_classes 2"):
        check_inputs(z, y, "categorical", num_classes=2)


def test_files_npy_npz_nc_are_read(tmp_path):
    array = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "a.npy", array)
    np.savez(tmp_path / "one.npz", z=array)
    np.savez(tmp_path / "two.npz", z=array, y=array[:, 0])
    xr.Dataset({"z": (("n", "d"), array)}).to_netcdf(tmp_path / "a.nc", engine="h5netcdf")
    assert np.array_equal(load_array(tmp_path / "a.npy"), array)
    assert np.array_equal(load_array(tmp_path / "one.npz"), array)
    assert np.array_equal(load_array(tmp_path / "two.npz", key="y"), array[:, 0])
    assert np.array_equal(load_array(tmp_path / "a.nc"), array)


def test_bad_files_raise_clear_errors(tmp_path):
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "junk.npy").write_bytes(b"not a numpy file at all")
    (tmp_path / "z.csv").write_text("1,2\n")
    np.savez(tmp_path / "two.npz", z=np.zeros(3), y=np.zeros(3))
    cases = [
        (tmp_path / "missing.npy", "", r"representations file .*missing.npy: not found"),
        (tmp_path / "empty.npy", "", r"empty.npy: the file is empty"),
        (tmp_path / "junk.npy", "", r"junk.npy: cannot be read"),
        (tmp_path / "z.csv", "", r"unsupported extension '.csv'"),
        (tmp_path / "two.npz", "", r"holds 2 arrays \['z', 'y'\]; name the one"),
        (tmp_path / "two.npz", "w", r"no array 'w'"),
    ]
    for path, key, message in cases:
        with pytest.raises(VinfoInputError, match=message):
            load_array(path, key, role="representations")


def test_patch_representation_averages_then_space_to_depth():
    images = np.zeros((1, 3, 32, 48), np.uint8)
    images[0, 1, :4, 4:8] = 255  # one 4x4 patch of channel 1, second patch column
    z = patch_representation(images)
    assert z.shape == (1, 48, 2, 3)
    # channel 1, position (0, 1) inside the first 4x4 block of patches -> depth index 16 + 1
    assert z[0, 17, 0, 0] == 1.0 and z.sum() == 1.0
