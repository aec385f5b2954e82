"""A CompressAI zoo architecture through our pipeline: registry, trainer, real bitstreams,
evaluation, checkpoints and the codec CLI; the declared codec interface."""

import numpy as np
import pytest
import torch
from PIL import Image

from taskcodecs import codec as codec_cli
from taskcodecs.coding.bitstream import BitstreamError, unpack
from taskcodecs.evaluation.evaluate import evaluate_run
from taskcodecs.evaluation.images import evaluate_images
from taskcodecs.experiments.registry import create_model, list_models
from taskcodecs.models.protocol import Codec, check_codec
from taskcodecs.runs.codecs import load_codec
from taskcodecs.training.run import resolve_config, train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("compressai-run")
    return train(resolve_config("tiny-compressai-reconstruction-bmshj2018-hyperprior", {
        "synthetic.train": 4, "synthetic.val": 2, "log_every": 1, "num_workers": 0,
        "max_steps": 4, "val_every": 2, "batch_size": 2,
        "synthetic_cache": str(root / "cache"), "out": str(root / "run")}))


def test_registry_has_compressai_zoo_models_that_are_codecs():
    names = list_models("*compressai*")
    assert names == ["paper-compressai-bmshj2018-hyperprior", "paper-compressai-mbt2018-mean",
                     "tiny-compressai-bmshj2018-hyperprior", "tiny-compressai-mbt2018-mean"]
    for name in ("tiny-compressai-bmshj2018-hyperprior", "tiny-compressai-mbt2018-mean",
                 "tiny-depth-base", "tiny-cityscapes-reconstruction-scalable"):
        model = create_model(name)
        assert isinstance(model, Codec)
        check_codec(model)
    with pytest.raises(TypeError, match="lacks codec_id, registry_name"):
        check_codec(torch.nn.Linear(2, 2))


def test_zoo_model_trained_four_steps_and_evaluated_through_real_bitstreams(run, tmp_path):
    log = (run / "log.csv").read_text().splitlines()
    assert sum(",train," in row for row in log) == 4 and "aux_loss" in log[0]
    ds = evaluate_run(run, limit=2)
    assert list(ds.layer.values) == ["base"] and ds.sizes["image"] == 2
    assert ds.attrs["codec_id"].startswith("tiny-compressai-bmshj2018-hyperprior@")
    actual, estimated = ds.bpp_actual.values[:, 0], ds.bpp_estimated.values[:, 0]
    assert np.all(actual > 0) and np.all(np.isfinite(ds.psnr.values))
    # header and the z-length varint on top of CompressAI's own strings
    assert np.all(actual >= 0.9 * estimated)

    model = load_codec(run / "checkpoints" / "best")  # tables rebuilt, not loaded
    image = torch.rand(3, 45, 70)
    data = model.compress(image)
    assert set(unpack(data).layers) == {"base"}
    out = model.decompress(data)
    assert out["x_hat"].shape == (1, 3, 45, 70)
    assert out["bpp_actual"] == pytest.approx(len(data) * 8 / (45 * 70))
    # the same weights in a fresh process-state give the same bytes (update() for the user)
    again = load_codec(run / "checkpoints" / "best")
    assert again.compress(image) == data
    with pytest.raises(BitstreamError):
        model.decompress(data[:-3])

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (33, 47, 3), dtype=np.uint8)).save(
        folder / "a.png")
    _, obj = evaluate_images(run, folder, out=tmp_path / "out")
    assert obj["results"]["bpp"][0] > 0 and obj["results"]["psnr-rgb"][0] > 0


def test_codec_cli_encodes_and_decodes_a_compressai_run(run, tmp_path, capsys):
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(image)
    checkpoint = str(run / "checkpoints" / "best")
    assert codec_cli.main(["encode", "--checkpoint", checkpoint, "--input", str(image),
                           "--out", str(tmp_path / "x.tcb")]) == 0
    assert codec_cli.main(["decode", "--checkpoint", checkpoint, "--input", str(tmp_path / "x.tcb"),
                           "--out", str(tmp_path / "rec.png")]) == 0
    assert Image.open(tmp_path / "rec.png").size == (50, 40)
    assert "tiny-compressai-bmshj2018-hyperprior" in capsys.readouterr().out
