"""The codec adapter: a trained tiny depth base + synthetic Cityscapes -> (ŷ_b, Y) pairs and
the CLI's ``--codec`` path to vinfo.nc and the report."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import xarray as xr

from taskcodecs.data.cityscapes import CityscapesDataset
from taskcodecs.data.synthetic import generate_dataset
from taskcodecs.runs.codecs import load_codec
from taskcodecs.training.run import resolve_config, train
from vinfo import extract_codec_pairs
from vinfo.cli import main
from vinfo.errors import VinfoInputError


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapter")
    base = train(resolve_config("tiny-depth-base-proposed", {
        "synthetic.train": 4, "synthetic.val": 3, "max_steps": 2, "val_every": 2,
        "num_workers": 0, "out": str(root / "base"), "synthetic_cache": str(root / "cache")}))
    # 12 scenes of 70x100: the codec's coding unit is 32 pixels, so the adapter crops to 64x96
    data = root / "scenes"
    generate_dataset(data, train=4, val=12, height=70, width=100, seed=3, workers=1)
    return {"root": root, "base": base, "data": data}


def test_z_is_the_decoded_latent_and_rate_is_the_actual_bytes(setup):
    pairs = extract_codec_pairs(setup["base"], setup["data"], "reconstruction", limit=3)
    codec = load_codec(setup["base"] / "checkpoints" / "best")
    assert pairs.codec_id == codec.codec_id
    assert pairs.Z.dtype == np.float32 and pairs.Z.shape == (3, codec.latent_ch, 4, 6)
    assert pairs.Y.dtype == np.uint8 and pairs.Y.shape == (3, 3, 64, 96)
    assert pairs.target_kind == "discretized" and pairs.ignore_value is None
    assert pairs.image_pixels == pairs.target_pixels == 64 * 96
    dataset = CityscapesDataset(setup["data"], "val", targets=())
    bits = []
    for i in range(3):
        image = dataset[i]["image"][:, :64, :96]
        assert np.array_equal(pairs.Y[i], (image * 255).round().to(torch.uint8).numpy())
        data = codec.compress(image)
        z = codec.decompress(data, layers="base")["y_hat"]["base"][0].numpy()
        assert np.array_equal(pairs.Z[i], z), "Z must be the decoder's ŷ_b, bit for bit"
        assert pairs.bytes_per_image[i] == len(data)
        bits.append(len(data) * 8 / (64 * 96))
    assert pairs.representation_bpp == pytest.approx(np.mean(bits), rel=1e-12)
    assert "cropped bottom/right from 70x100" in pairs.source and str(setup["base"]) in pairs.source


def test_depth_and_segmentation_targets_carry_their_masks(setup):
    depth = extract_codec_pairs(setup["base"], setup["data"], "depth", limit=2,
                                target_kind="laplace")
    assert depth.Y.shape == (2, 1, 64, 96) and depth.Y.dtype == np.float32
    assert depth.target_kind == "laplace" and depth.ignore_value == -1.0
    raw = CityscapesDataset(setup["data"], "val", targets=("disparity",))[0]
    mask = raw["disparity_mask"][:, :64, :96].numpy()
    assert np.array_equal(depth.Y[0] == -1.0, ~mask)
    assert np.array_equal(depth.Y[0][mask], raw["disparity"][:, :64, :96].numpy()[mask])
    seg = extract_codec_pairs(setup["base"], setup["data"], "segmentation", limit=2)
    assert seg.Y.shape == (2, 64, 96) and seg.Y.dtype == np.int64
    assert (seg.target_kind, seg.num_classes, seg.ignore_value) == ("categorical", 19, 19.0)
    assert seg.Y.min() >= 0 and seg.Y.max() <= 19
    with pytest.raises(VinfoInputError, match="gaussian or laplace"):
        extract_codec_pairs(setup["base"], setup["data"], "depth", target_kind="categorical")


def test_cli_codec_writes_rate_attrs_and_usable_bits_line(setup, capsys):
    out = setup["root"] / "vinfo-out"
    code = main(["--codec", str(setup["base"]), "--dataset", str(setup["data"]), "--target",
                 "reconstruction", "--families", "linear", "--seeds", "0", "--max-steps", "5",
                 "--bootstrap", "20", "--out", str(out), "curves=false"])
    assert code == 0, capsys.readouterr().err
    with xr.open_dataset(out / "vinfo.nc", engine="h5netcdf") as ds:
        ds = ds.load()
    pairs = extract_codec_pairs(setup["base"], setup["data"], "reconstruction",
                                fit_split="train")  # the CLI's default protocol
    assert ds.attrs["representation_bpp"] == pytest.approx(pairs.representation_bpp)
    # the bound is the payload (header excluded), per target pixel of the evaluated images
    evaluated = ds["sample"].values
    rate = pairs.representation_bits[evaluated].sum() / (len(evaluated) * 64 * 96)
    assert float(ds["rate_per_unit"]) == pytest.approx(rate)
    assert rate < pairs.bytes_per_image[evaluated].mean() * 8 / (64 * 96)  # header excluded
    assert ds.attrs["image_pixels"] == ds.attrs["target_pixels"] == 64 * 96
    assert ds.attrs["codec_id"] == pairs.codec_id and ds.attrs["target_kind"] == "discretized"
    # the probing protocol: the 4 train images (coded first) fit, the 12 val images select
    # and evaluate
    assert ds.attrs["n_samples"] == 16 and list(ds.attrs["representation_shape"]) == [16, 32, 4, 6]
    assert ds.attrs["n_fit"] == 4 and "probes fit on split 'train' (4 images" in ds.attrs["source"]
    assert ds.attrs["source"].startswith("codec run") and list(ds.family.values) == ["linear"]
    report = (out / "report.md").read_text()
    assert "Usable bits per transmitted bit" in report
    assert "Usable bits per transmitted bit" in (out / "report.html").read_text()


def test_wrong_run_kind_missing_dataset_and_target_are_refused(setup, capsys):
    reference = train(resolve_config("tiny-depth-uncompressed", {
        "synthetic.train": 4, "synthetic.val": 3, "max_steps": 1, "val_every": 1,
        "num_workers": 0, "out": str(setup["root"] / "reference"),
        "synthetic_cache": str(setup["root"] / "cache")}))
    with pytest.raises(VinfoInputError, match=f"run {reference}: is reference run"):
        extract_codec_pairs(reference, setup["data"], "reconstruction")
    missing = setup["root"] / "no-such-dataset"
    with pytest.raises(VinfoInputError, match=f"dataset {missing}: folder not found"):
        extract_codec_pairs(setup["base"], missing, "reconstruction")
    no_depth = setup["root"] / "no-disparity"
    shutil.copytree(setup["data"], no_depth, ignore=shutil.ignore_patterns("disparity"))
    with pytest.raises(VinfoInputError, match=f"{no_depth / 'disparity'}: folder not found"):
        extract_codec_pairs(setup["base"], no_depth, "depth")
    args = ["--dataset", str(setup["data"]), "--target", "depth", "--out",
            str(setup["root"] / "unused")]
    assert main(["--codec", str(reference), *args]) == 2
    assert f"run {reference}: is reference run" in capsys.readouterr().err
    assert main(["--codec", str(setup["root"] / "nowhere"), *args]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["--codec", str(setup["base"]), "--target", "depth"]) == 2
    assert "missing --dataset" in capsys.readouterr().err
    assert main(["--codec", str(setup["base"]), *args, "--representations", "z.npy"]) == 2
    assert "give one or the other" in capsys.readouterr().err
    assert not (setup["root"] / "unused").exists()
