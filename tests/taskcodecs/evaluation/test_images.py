"""Image-folder evaluation (``python -m taskcodecs.evaluate RUN --images DIR``), checked
against independent computations of the rate and PSNR."""

import json
import math

import numpy as np
import pytest
import torch
import xarray as xr
from PIL import Image

from taskcodecs.evaluate import main
from taskcodecs.evaluation.images import evaluate_images
from taskcodecs.runs.codecs import load_codec
from taskcodecs.training.run import resolve_config, train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny depth base trained for one step (the codec need not be good, only real)."""
    root = tmp_path_factory.mktemp("images-run")
    return train(resolve_config("tiny-depth-base-proposed", {
        "synthetic.train": 2, "synthetic.val": 1, "log_every": 1, "num_workers": 0,
        "max_steps": 1, "val_every": 1, "synthetic_cache": str(root / "cache"),
        "out": str(root / "run")}))

@pytest.fixture
def folder(tmp_path):
    """Odd sizes (none a multiple of the codec's 32), grayscale and RGBA, one MS-SSIM-sized."""
    rng = np.random.default_rng(0)
    images = tmp_path / "imgs"
    images.mkdir()
    Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)).save(images / "a_rgb.png")
    Image.fromarray(rng.integers(0, 256, (45, 51), dtype=np.uint8)).save(images / "b_gray.png")
    Image.fromarray(rng.integers(0, 256, (161, 167, 4), dtype=np.uint8)).save(images / "c_rgba.png")
    Image.fromarray(rng.integers(0, 256, (33, 35, 3), dtype=np.uint8)).save(images / "d.jpg")
    (images / "notes.txt").write_text("not an image")
    return images

def _independent_psnr(original: np.ndarray, decoded: np.ndarray) -> float:
    mse = np.mean((original.astype(np.float64) - decoded.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)

def test_folder_of_odd_sized_pngs_matches_independent_rate_and_psnr(run, folder, tmp_path, capsys):
    json_path = tmp_path / "kodak.json"
    assert main([str(run), "--images", str(folder), "--json", str(json_path),
                 "--out", str(tmp_path / "out")]) == 0
    assert "4 images of" in capsys.readouterr().out
    obj = json.loads(json_path.read_text())
    # compressai.utils.eval_model layout: name, description, results {metric: [values]}
    assert obj["name"] == "tiny-depth-base-proposed" and obj["description"].startswith("Inference")
    assert set(obj["results"]) == {"bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"}
    assert all(isinstance(v, list) and len(v) == 1 for v in obj["results"].values())
    rows = {row["name"]: row for row in obj["images"]}
    assert list(rows) == ["a_rgb.png", "b_gray.png", "c_rgba.png", "d.jpg"]
    assert rows["b_gray.png"]["converted"] == "L" and rows["c_rgba.png"]["converted"] == "RGBA"
    assert rows["a_rgb.png"]["ms-ssim-rgb"] is None  # too small for 5 scales
    assert 0 < rows["c_rgba.png"]["ms-ssim-rgb"] <= 1
    assert all(row["encoding_time"] > 0 and row["decoding_time"] > 0 for row in rows.values())
    assert math.isclose(obj["results"]["bpp"][0], np.mean([r["bpp"] for r in rows.values()]))

    # one image, recomputed without the evaluator: real bytes and numpy PSNR
    codec = load_codec(run / "checkpoints" / "best")
    original = np.array(Image.open(folder / "a_rgb.png").convert("RGB"))

    tensor = torch.from_numpy(original).permute(2, 0, 1).float() / 255
    data = codec.compress(tensor)
    assert rows["a_rgb.png"]["bpp"] == pytest.approx(len(data) * 8 / (37 * 53), rel=1e-12)
    decoded = codec.decompress(data)["x_hat"][0].permute(1, 2, 0).numpy()
    assert decoded.shape == original.shape  # padded to the multiple, cropped back
    decoded8 = np.round(np.clip(decoded, 0, 1) * 255).astype(np.uint8)
    assert rows["a_rgb.png"]["psnr-rgb"] == pytest.approx(_independent_psnr(original, decoded8), abs=1e-6)

    with xr.open_dataset(tmp_path / "out" / "eval.nc", engine="h5netcdf") as ds:
        ds = ds.load()
    assert list(ds.layer.values) == ["base"] and ds.sizes["image"] == 4
    assert list(ds.height.values) == [37, 45, 161, 33] and list(ds.width.values) == [53, 51, 167, 35]
    assert ds.bpp_actual.attrs["units"] == "bits/pixel" and ds.psnr.attrs["units"] == "dB"
    assert float(ds.bpp_actual.sel(image="a_rgb.png", layer="base")) == rows["a_rgb.png"]["bpp"]
    assert list(ds.converted_from.values) == ["", "L", "RGBA", ""]

def test_deep_images_and_empty_folders_are_refused_naming_the_file(run, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(run), "--images", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert f"{empty}: no PNG or JPEG image" in capsys.readouterr().err
    deep = tmp_path / "deep"
    deep.mkdir()
    Image.fromarray(np.full((20, 20), 40000, dtype=np.uint16)).save(deep / "sixteen.png")
    with pytest.raises(ValueError, match=r"sixteen\.png: image has more than 8 bits"):
        evaluate_images(run, deep, out=tmp_path / "o")
    assert main([str(run), "--json", str(tmp_path / "x.json")]) == 2
    assert "--json FILE goes with --images" in capsys.readouterr().err


def test_split_evaluation_writes_eval_nc_into_out(run, tmp_path, capsys):
    assert main([str(run), "--limit", "1", "--out", str(tmp_path / "elsewhere")]) == 0
    assert capsys.readouterr().out.strip().endswith(f"-> {tmp_path / 'elsewhere' / 'eval.nc'}")
    assert (tmp_path / "elsewhere" / "eval.nc").is_file() and not (run / "eval.nc").exists()
