"""A fresh run creates its directory only once config, data and model are validated: each
failure of issue 22 (e) exits 2 and leaves no run directory (no config.yaml, no meta.json)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from taskcodecs import train as train_cli
from taskcodecs.data.synthetic import generate_dataset

DEPTH, DETECTION = "tiny-depth-base-proposed", "tiny-detection-base-proposed"
SMALL = ["synthetic.train=4", "synthetic.val=2", "max_steps=1", "val_every=1", "log_every=1",
         "num_workers=0", "batch_size=2", "val_batch_size=2"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes") / "data"
    generate_dataset(root, train=4, val=2, height=32, width=64, seed=0, workers=1)
    return root


def _first(root, pattern):
    return sorted(root.rglob(pattern))[0]


def _corrupt_png(root):
    _first(root / "leftImg8bit" / "train", "*.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")


def _size_mismatch(root):
    path = _first(root / "disparity" / "train", "*.png")
    Image.fromarray(np.ones((16, 16), np.uint16)).save(path)


def _disparity_8bit(root):
    path = _first(root / "disparity" / "train", "*.png")
    Image.fromarray(np.ones((32, 64), np.uint8), "L").save(path)


def _malformed_coco(root):
    path = root / "annotations" / "instances_train2017.json"
    path.write_text(path.read_text()[:40])


CASES = {  # name: (experiment, damage to the data, extra overrides, words of the error)
    "unknown-nested-key": (DEPTH, None, ["model_overrides.nope=1"], "nope"),
    "corrupt-png": (DEPTH, _corrupt_png, [], "leftImg8bit.png"),
    "size-mismatch": (DEPTH, _size_mismatch, [], "does not match"),
    "8-bit-disparity": (DEPTH, _disparity_8bit, [], "disparity.png"),
    "malformed-coco-json": (DETECTION, _malformed_coco, [], "instances_train2017.json"),
    "bad-context-name": (DEPTH, None, ["model_overrides.context=zigzag"], "zigzag"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_failing_run_leaves_no_run_directory(scenes, tmp_path, capsys, case):
    experiment, damage, extra, words = CASES[case]
    data = tmp_path / "data"
    shutil.copytree(scenes, data)
    if damage is not None:
        damage(data)
    out = tmp_path / "run"
    capsys.readouterr()
    assert train_cli.main(["--config", experiment, f"out={out}", f"data_root={data}",
                           *SMALL, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and words in err[-1] and "Traceback" not in "\n".join(err), err
    assert not out.exists(), sorted(p.name for p in out.iterdir())


def test_a_valid_run_keeps_its_early_log_lines(scenes, tmp_path, caplog):
    caplog.set_level("INFO", logger="taskcodecs.training.run")
    out = tmp_path / "run"
    assert train_cli.main(["--config", DEPTH, f"out={out}", f"data_root={scenes}", *SMALL]) == 0
    text = (out / "train.log").read_text()
    assert f"data: cityscapes {scenes}" in text and "done at step 1" in text
    for name in ("config.yaml", "meta.json", "pip-freeze.txt"):
        assert (out / name).is_file()
