"""The codec CLI: encode a PNG, decode it per layer, print rates, fail cleanly on bad input."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from taskcodecs.codec import TRAIN_TO_LABEL, main
from taskcodecs.data.labels import LABEL_TO_TRAIN
from taskcodecs.data.scene import render_scene, sample_scene
from taskcodecs.experiments.registry import create_model
from taskcodecs.runs.codecs import save_codec

ROOT = Path(__file__).resolve().parents[2]
HEIGHT, WIDTH = 77, 131


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A 131x77 PNG, a depth-base checkpoint and a scalable segmentation checkpoint."""
    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    rgb = render_scene(sample_scene(np.random.default_rng(3), HEIGHT, WIDTH)).rgb
    Image.fromarray(rgb).save(root / "scene.png")
    base = create_model("tiny-depth-base")
    segmentation = create_model("tiny-cityscapes-segmentation-scalable", base=base)
    with torch.no_grad():  # non-trivial latents from untrained weights
        base.f_b.layers[-1].weight.mul_(8.0)
        segmentation.f_e.layers[-1].weight.mul_(8.0)
    save_codec(base, root / "depth")
    save_codec(segmentation, root / "segmentation")
    data = base.compress(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0)
    (root / "good.tcb").write_bytes(data)
    (root / "corrupt.tcb").write_bytes(data[:-5] + bytes(5))
    return {"root": root, "image": root / "scene.png", "depth": root / "depth",
            "segmentation": root / "segmentation", "good": root / "good.tcb",
            "corrupt": root / "corrupt.tcb"}


def _bpp(text: str, label: str) -> float:
    match = re.search(rf"{label}\s+([0-9.]+) bits per pixel of the original {WIDTH}x{HEIGHT} image", text)
    assert match, text
    return float(match.group(1))


def test_encode_then_decode_depth_base(files, capsys) -> None:
    root = files["root"]
    stream = root / "scene.tcb"
    assert main(["encode", "--checkpoint", str(files["depth"]), "--input", str(files["image"]),
                 "--output", str(stream)]) == 0
    printed = capsys.readouterr().out
    actual = _bpp(printed, "actual")
    assert actual == pytest.approx(stream.stat().st_size * 8 / (HEIGHT * WIDTH), abs=1e-4)
    assert _bpp(printed, "estimated") >= 0
    assert main(["decode", "--checkpoint", str(files["depth"]), "--input", str(stream),
                 "--layers", "base", "--output", str(root / "rec.png")]) == 0
    printed = capsys.readouterr().out
    assert _bpp(printed, "actual") == pytest.approx(actual, abs=1e-4)
    with Image.open(root / "rec.png") as image:
        assert image.mode == "RGB" and image.size == (WIDTH, HEIGHT)
    with Image.open(root / "rec_disparity.png") as disparity:
        values = np.asarray(disparity)
    assert values.dtype == np.uint16 and values.shape == (HEIGHT, WIDTH) and values.min() >= 1


def test_decode_segmentation_layers(files, capsys) -> None:
    root = files["root"]
    stream = root / "seg.tcb"
    assert main(["encode", "--checkpoint", str(files["segmentation"]), "--input",
                 str(files["image"]), "--output", str(stream)]) == 0
    printed = capsys.readouterr().out
    assert "enhancement" in printed and "base" in printed
    assert main(["decode", "--checkpoint", str(files["segmentation"]), "--input", str(stream),
                 "--layers", "all", "--output", str(root / "seg.png")]) == 0
    printed = capsys.readouterr().out
    assert _bpp(printed, "decoded") == _bpp(printed, "actual")
    with Image.open(root / "seg_labelIds.png") as labels:
        label_ids = np.asarray(labels)
    assert label_ids.shape == (HEIGHT, WIDTH)
    assert set(np.unique(label_ids)) <= set(TRAIN_TO_LABEL[:19].tolist())
    assert (LABEL_TO_TRAIN[label_ids] < 19).all()  # labelIds map back to train ids
    assert main(["decode", "--checkpoint", str(files["segmentation"]), "--input", str(stream),
                 "--layers", "base", "--output", str(root / "seg_base.png")]) == 0
    printed = capsys.readouterr().out
    assert _bpp(printed, "decoded") < _bpp(printed, "actual")  # the base needs fewer bytes
    assert (root / "seg_base_disparity.png").is_file()
    assert not (root / "seg_base_labelIds.png").exists()


@pytest.mark.parametrize("case", ["missing", "not-an-image", "corrupt-stream", "wrong-codec"])
def test_bad_input_exits_2_with_one_line(files, capsys, case: str) -> None:
    root = files["root"]
    text_file = root / "notes.txt"
    text_file.write_text("not an image")
    good, corrupt = files["good"], files["corrupt"]
    args = {
        "missing": ["encode", "--checkpoint", str(files["depth"]), "--input", str(root / "nope.png"),
                    "--output", str(root / "x.tcb")],
        "not-an-image": ["encode", "--checkpoint", str(files["depth"]), "--input", str(text_file),
                         "--output", str(root / "x.tcb")],
        "corrupt-stream": ["decode", "--checkpoint", str(files["depth"]), "--input", str(corrupt),
                           "--output", str(root / "x.png")],
        "wrong-codec": ["decode", "--checkpoint", str(files["segmentation"]), "--input", str(good),
                        "--output", str(root / "x.png")],
    }[case]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    expected = {"missing": "nope.png", "not-an-image": "notes.txt", "corrupt-stream": "corrupt",
                "wrong-codec": "tiny-depth-base"}[case]
    assert expected in err


def test_module_entry_point_reports_errors_without_traceback(files) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "taskcodecs.codec", "decode", "--checkpoint", str(files["depth"]),
         "--input", str(files["root"] / "absent.tcb"), "--output", str(files["root"] / "o.png")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "absent.tcb" in result.stderr and "not found" in result.stderr


def test_a_checkpoint_without_manifest_is_refused_unless_unverified(files, capsys) -> None:
    """Issue 22 (b): "weights" removed from the record and a byte of the weights flipped: an
    old-format record (no checksum either) is unverified, a new one fails its checksum."""
    import json
    import shutil

    root = files["root"]
    stem = root / "stripped"
    for suffix in (".safetensors", ".json"):
        shutil.copy(files["depth"].with_suffix(suffix), stem.with_suffix(suffix))
    data = bytearray(stem.with_suffix(".safetensors").read_bytes())
    data[-1] ^= 0x01
    stem.with_suffix(".safetensors").write_bytes(bytes(data))
    record = json.loads(stem.with_suffix(".json").read_text())
    del record["weights"]
    stem.with_suffix(".json").write_text(json.dumps(record))
    args = ["encode", "--checkpoint", str(stem), "--input", str(files["image"]),
            "--output", str(root / "u.tcb")]
    capsys.readouterr()
    for flags in ([], ["--unverified"]):
        assert main([*args, *flags]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "does not match its own checksum" in err, err
    del record["record_sha256"]  # as written before records checked themselves
    stem.with_suffix(".json").write_text(json.dumps(record))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stripped.json: unverified checkpoint (no weights manifest" in err
    assert "--unverified" in err and not (root / "u.tcb").exists()
    assert main([*args, "--unverified"]) == 0
    assert (root / "u.tcb").is_file()
