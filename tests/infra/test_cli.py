"""The one CLI error policy (infra.cli), table-driven over every command line.

Each case runs a CLI's ``main`` in this process on one bad input and asserts the exit status,
that the message is one line naming the bad value or file, that there is no traceback, and
that nothing that was there is lost. Signals are real (the fault hook of infra.io).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from analysis import report
from infra.cli import describe_os_error, run
from taskcodecs import codec, evaluate, sweep, train
from taskcodecs.data import synthetic
from taskcodecs.runs.links import checkpoint_path
from taskcompat import demo
from vinfo import cli as vinfo_cli

ROOT = Path(__file__).resolve().parents[2]
NAME = "tiny-depth-base-proposed"
SMALL = ["synthetic.train=4", "synthetic.val=2", "synthetic.height=32", "synthetic.width=64",
         "log_every=1", "num_workers=0", "val_every=2", "max_steps=2"]
CLIS = {"synthetic": synthetic.main, "train": train.main, "evaluate": evaluate.main,
        "sweep": sweep.main, "codec": codec.main, "demo": demo.main, "vinfo": vinfo_cli.main,
        "report": report.main}


def _png16(path: Path, rgb: bool) -> None:
    """A 16-bit PNG written by hand (Pillow reads a 16-bit RGB PNG as 8-bit RGB)."""
    height, width = 8, 8
    channels, color = (3, 2) if rgb else (1, 0)
    rows = np.random.default_rng(0).integers(0, 65535, (height, width * channels)).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + (zlib.crc32(kind + data) & 0xFFFFFFFF).to_bytes(4, "big"))

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([16, color, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


@contextlib.contextmanager
def _read_only(folder: Path):
    """A folder nothing can be written into, root included (chattr +i), else chmod 555."""
    folder.mkdir()
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
    try:
        yield folder
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A trained tiny run, its dataset and bad inputs of every kind."""
    root = tmp_path_factory.mktemp("bad-inputs")
    cache = root / "cache"
    assert train.main(["--config", NAME, f"out={root / 'run'}", f"synthetic_cache={cache}",
                       *SMALL]) == 0
    run_dir = root / "run"
    data = next(cache.iterdir())
    w = {"root": root, "run": run_dir, "data": data, "ckpt": checkpoint_path(run_dir, "best")}
    w["file"] = root / "a-file.txt"
    w["file"].write_text("a file, not a folder")
    image = next((data / "leftImg8bit" / "val").glob("*/*.png"))
    w["png"] = root / "scene.png"
    shutil.copy(image, w["png"])
    w["corrupt_png"] = root / "corrupt.png"
    w["corrupt_png"].write_bytes(image.read_bytes()[:200])
    _png16(root / "gray16.png", rgb=False)
    _png16(root / "rgb16.png", rgb=True)
    stream = root / "good.tcb"
    assert codec.main(["encode", "--checkpoint", str(w["ckpt"]), "--input", str(w["png"]),
                       "--output", str(stream)]) == 0
    (root / "truncated.tcb").write_bytes(stream.read_bytes()[:-3])
    (root / "appended.tcb").write_bytes(stream.read_bytes() * 2)
    # runs whose dataset is gone: a missing synthetic cache, an empty data_root
    for name, line in (("run-missing-data", f"synthetic_cache: {root / 'gone'}"),
                       ("run-empty-data", f"data_root: {root / 'empty'}")):
        shutil.copytree(run_dir, root / name)
        config = (root / name / "config.yaml").read_text()
        key = line.split(":")[0]
        config = "\n".join(line if text.startswith(f"{key}:") else text
                           for text in config.splitlines()) + "\n"
        (root / name / "config.yaml").write_text(config.replace(str(run_dir), str(root / name)))
    (root / "empty").mkdir()
    shutil.copytree(run_dir, root / "run-torn")
    last = checkpoint_path(root / "run-torn", "last").with_suffix(".safetensors")
    last.write_bytes(last.read_bytes()[:-100])
    # vinfo arrays
    rng = np.random.default_rng(0)
    np.save(root / "z.npy", rng.normal(size=(30, 3)).astype(np.float32))
    np.save(root / "y.npy", rng.normal(size=30).astype(np.float32))
    np.save(root / "z-complex.npy", rng.normal(size=(30, 3)) + 1j)
    np.save(root / "z-object.npy", np.array([{"a": 1}] * 30, dtype=object), allow_pickle=True)
    y_nan = rng.normal(size=30)
    y_nan[7] = np.nan
    np.save(root / "y-nan.npy", y_nan)
    # a dataset whose disparity PNG is RGB
    bad = root / "bad-data"
    shutil.copytree(data, bad)
    disparity = sorted((bad / "disparity" / "val").glob("*/*.png"))[0]
    Image.new("RGB", Image.open(disparity).size).save(disparity)
    bad_img = root / "bad-image-data"
    shutil.copytree(data, bad_img)
    sorted((bad_img / "leftImg8bit" / "val").glob("*/*.png"))[0].write_bytes(b"\x89PNG\r\n garbage")
    return w


def _cases(w: dict) -> list[tuple[str, list[str], int, list[str]]]:
    r, f, ro = w["root"], str(w["file"]), str(w["ro"])
    ck = str(w["ckpt"])
    vin = ["--representations", str(r / "z.npy"), "--targets", str(r / "y.npy"),
           "--target-kind", "gaussian", "--families", "linear", "--bootstrap", "10"]
    trn = ["--config", NAME, f"synthetic_cache={r / 'cache'}", *SMALL]
    return [
        ("synthetic", ["--out", f, "--train", "1", "--val", "1", "--height", "32", "--width",
                       "32", "--seed", "0"], 2, [f, "not a directory"]),
        ("synthetic", ["--out", f"{ro}/data", "--train", "1", "--val", "1", "--height", "32",
                       "--width", "32", "--seed", "0", "--workers", "1"], 2, [ro]),
        ("synthetic", ["--out", str(r / "s"), "--train", "1", "--val", "1", "--height", "32",
                       "--width", "32", "--seed", "-1"], 2, ["seed", "-1"]),
        ("train", [*trn, f"out={r / 't1'}", "seed=-1"], 2, ["seed", "-1"]),
        ("train", [*trn, f"out={r / 't2'}", "rate_weight=nan"], 2, ["rate_weight", "nan"]),
        ("train", [*trn, f"out={r / 't3'}", "lr=inf"], 2, ["lr", "inf"]),
        ("train", [*trn, f"out={r / 't3'}", "rate_weight=.nan"], 2, ["rate_weight", "finite"]),
        ("train", [*trn, f"out={r / 't3'}", "clip=-.inf"], 2, ["clip", "finite"]),
        ("train", [*trn, f"out={r / 't4'}", "max_steps=0"], 2, ["max_steps", "0"]),
        ("train", [*trn, f"out={r / 't5'}", "device=cuda:7"], 2, ["device='cuda:7'"]),
        ("train", [*trn, f"out={r / 't6'}", "device=bogus"], 2, ["device='bogus'"]),
        ("train", [*trn, f"out={r / 't7'}", "model_overrides.pretrained=true"], 2,
         ["pretrained"]),
        ("train", [*trn, f"out={f}"], 2, [f, "is a file"]),
        ("train", [*trn, f"out={ro}/run"], 2, [ro, "not writable"]),
        ("train", [f"resume={r / 'nowhere'}"], 2, [str(r / "nowhere")]),
        ("train", ["--config", "no-such-experiment"], 2, ["no-such-experiment"]),
        ("evaluate", [str(r / "nowhere")], 2, [str(r / "nowhere"), "not found"]),
        ("evaluate", [str(r / "run-missing-data")], 2,
         [str(r / "gone"), "does not exist", "taskcodecs.data.synthetic --out"]),
        ("evaluate", [str(r / "run-empty-data")], 2,
         [str(r / "empty"), "holds no leftImg8bit"]),
        ("evaluate", [str(w["run"]), "--device", "bogus"], 2, ["bogus"]),
        ("evaluate", [str(w["run"]), "--device", "cuda:99"], 2, ["cuda:99"]),
        ("evaluate", [str(w["run"]), "--limit", "0"], 2, ["--limit", "0"]),
        ("evaluate", [str(r / "run-torn"), "--checkpoint", "last"], 2,
         ["last.safetensors", "does not match its metadata"]),
        ("sweep", ["--config", NAME, "--rate-weights", "nan", "--out", str(r / "sw")], 2,
         ["--rate-weights", "nan"]),
        ("sweep", ["--config", NAME, "--rate-weights", "1,inf", "--out", str(r / "sw")], 2,
         ["--rate-weights", "inf"]),
        ("sweep", ["--config", NAME, "--rate-weights", "1", "--out", f], 2, [f]),
        ("sweep", ["--config", NAME, "--rate-weights", "1", "--out", str(r / "sw"),
                   "--eval-limit", "0"], 2, ["--eval-limit", "0"]),
        ("codec", ["encode", "--checkpoint", ck, "--input", str(r / "gray16.png"),
                   "--output", str(r / "x.tcb")], 2, ["gray16.png", "8 bits"]),
        ("codec", ["encode", "--checkpoint", ck, "--input", str(r / "rgb16.png"),
                   "--output", str(r / "x.tcb")], 2, ["rgb16.png", "16-bit"]),
        ("codec", ["encode", "--checkpoint", ck, "--input", str(w["corrupt_png"]),
                   "--output", str(r / "x.tcb")], 2, ["corrupt.png"]),
        ("codec", ["encode", "--checkpoint", ck, "--input", str(w["png"]),
                   "--output", f"{f}/x.tcb"], 2, [f]),
        ("codec", ["encode", "--checkpoint", ck, "--input", str(w["png"]),
                   "--output", f"{ro}/x.tcb"], 2, [ro]),
        ("codec", ["encode", "--checkpoint", str(r / "nope"), "--input", str(w["png"]),
                   "--output", str(r / "x.tcb")], 2, [str(r / "nope")]),
        ("codec", ["decode", "--checkpoint", ck, "--input", str(r / "truncated.tcb"),
                   "--output", str(r / "x.png")], 2, ["truncated.tcb", "truncated"]),
        ("codec", ["decode", "--checkpoint", ck, "--input", str(r / "appended.tcb"),
                   "--layers", "base", "--output", str(r / "x.png")], 2,
         ["appended.tcb", "trailing bytes"]),
        ("demo", ["--quick", "--out", f], 2, [f]),
        ("demo", ["--quick", "--out", f"{ro}/demo"], 2, [ro]),
        ("demo", ["--quick", "--threads", "0"], 2, ["--threads", "0"]),
        ("vinfo", [*vin, "--max-steps", "0", "--out", str(r / "v")], 2, ["max_steps", "0"]),
        ("vinfo", [*vin, "--seed", "-1", "--out", str(r / "v")], 2, ["seed", "-1"]),
        ("vinfo", [*vin, "--out", f], 2, [f]),
        ("vinfo", [*vin, "--out", f"{ro}/v"], 2, [ro]),
        ("vinfo", ["--representations", str(r / "z-complex.npy"), "--targets",
                   str(r / "y.npy"), "--target-kind", "gaussian", "--out", str(r / "v")], 2,
         ["z-complex.npy", "complex"]),
        ("vinfo", ["--representations", str(r / "z-object.npy"), "--targets",
                   str(r / "y.npy"), "--target-kind", "gaussian", "--out", str(r / "v")], 2,
         ["z-object.npy"]),
        ("vinfo", ["--representations", str(r / "z.npy"), "--targets", str(r / "y-nan.npy"),
                   "--target-kind", "gaussian", "--out", str(r / "v")], 2,
         ["y-nan.npy", "NaN"]),
        ("vinfo", ["--codec", str(w["run"]), "--dataset", str(r / "bad-data"), "--target",
                   "depth", "--out", str(r / "v")], 2, ["_disparity.png", "16-bit"]),
        ("vinfo", ["--codec", str(w["run"]), "--dataset", str(r / "bad-image-data"),
                   "--target", "reconstruction", "--out", str(r / "v")], 2,
         ["_leftImg8bit.png", "cannot read"]),
        ("vinfo", ["--codec", str(r / "nowhere"), "--dataset", str(w["data"]), "--target",
                   "depth", "--out", str(r / "v")], 2, [str(r / "nowhere")]),
        ("report", [str(r / "nowhere"), "--out", str(r / "rep")], 2, [str(r / "nowhere")]),
        ("report", [str(r), "--out", f], 2, [f]),
        ("report", [str(r), "--out", f"{ro}/rep"], 2, [ro]),
        ("report", [str(r), "--out", str(r / "rep"), "--vinfo", f"base={r / 'nowhere'}"], 2,
         [str(r / "nowhere")]),
    ]


def test_every_cli_answers_bad_input_with_one_line_and_exit_2(world, tmp_path, capsys):
    with _read_only(tmp_path / "read-only") as ro:
        world = {**world, "ro": ro}
        cases = _cases(world)
        before = world["file"].read_bytes()
        data_before = sorted(p.relative_to(world["data"]) for p in world["data"].rglob("*"))
        failures = []
        for cli_name, argv, code, expected in cases:
            capsys.readouterr()
            try:
                got = CLIS[cli_name](argv)
            except SystemExit as err:  # argparse: usage + one error line, exit 2
                got = err.code
            err = capsys.readouterr().err
            lines = [line for line in err.splitlines() if line.strip()]
            last = lines[-1] if lines else ""
            problems = []
            if got != code:
                problems.append(f"exit {got}")
            if "Traceback" in err:
                problems.append("traceback")
            if "error: " not in last:
                problems.append("no error line")
            problems += [f"missing {text!r}" for text in expected if text not in last]
            if problems:
                failures.append((cli_name, argv[-3:], problems, last))
        assert not list(ro.iterdir())  # nothing got into the read-only folder
    assert world["file"].read_bytes() == before  # the file given as a folder is intact
    assert sorted(p.relative_to(world["data"]) for p in world["data"].rglob("*")) == data_before
    assert not (world["root"] / "gone").exists() and not list((world["root"] / "empty").iterdir())
    print(f"bad-input table: {len(cases)} cases over {sorted({c[0] for c in cases})}; "
          f"{len(cases) - len(failures)} passed")
    assert not failures, "\n".join(map(str, failures))
    assert {c[0] for c in cases} == set(CLIS)


def test_interrupts_exit_130_saying_what_was_kept(world, tmp_path, capsys, monkeypatch,
                                                  python_sigint):
    # vinfo: Ctrl-C while its outputs are written keeps the earlier set
    r = world["root"]
    argv = ["--representations", str(r / "z.npy"), "--targets", str(r / "y.npy"),
            "--target-kind", "gaussian", "--families", "linear", "--bootstrap", "10",
            "--max-steps", "5", "--out", str(tmp_path / "v")]
    assert vinfo_cli.main(argv) == 0
    kept = (tmp_path / "v" / "vinfo.csv").read_bytes()
    monkeypatch.setenv("TASKCODECS_FAULT_AT", "written:*/vinfo.csv")
    monkeypatch.setenv("TASKCODECS_FAULT_SIGNAL", "INT")
    capsys.readouterr()
    assert vinfo_cli.main([*argv, "--seed", "3"]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith("interrupted; nothing was written")
    assert (tmp_path / "v" / "vinfo.csv").read_bytes() == kept
    # training: Ctrl-C at the second checkpoint says what it keeps and how to continue
    monkeypatch.setenv("TASKCODECS_FAULT_AT", "written:*/t/checkpoints/last.json")
    monkeypatch.setenv("TASKCODECS_FAULT_COUNT", "2")
    assert train.main(["--config", NAME, f"out={tmp_path / 't'}",
                       f"synthetic_cache={r / 'cache'}", *SMALL[:-1], "max_steps=4"]) == 130
    last = capsys.readouterr().err.splitlines()[-1]
    assert last == (f"interrupted; {tmp_path / 't'} keeps its checkpoints (last at step 2); "
                    f"continue with resume={tmp_path / 't'}"), last
    assert not list((tmp_path / "t").rglob("*.tmp"))


def test_sigterm_in_a_real_process_cleans_up_and_exits_143(tmp_path):
    out = tmp_path / "data"
    env = {**os.environ, "TASKCODECS_FAULT_AT": "written:*/dataset.json",
           "TASKCODECS_FAULT_SIGNAL": "TERM", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "taskcodecs.data.synthetic", "--out", str(out), "--train", "1",
         "--val", "1", "--height", "32", "--width", "32", "--seed", "0", "--workers", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 143, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"terminated; {out} holds a partial")
    assert not list(out.rglob("*.tmp")) and not (out / "dataset.json").exists()


def test_a_second_writer_is_refused_naming_the_first(world, tmp_path, capsys):
    run_dir, r = world["run"], world["root"]
    held = [str(run_dir), str(run_dir / "eval.nc"), str(tmp_path / "v")]
    holder = subprocess.Popen(
        [sys.executable, "-c", "import contextlib, sys\nfrom infra.locks import exclusive_lock\n"
         "with contextlib.ExitStack() as stack:\n"
         f"    for path in {held!r}: stack.enter_context(exclusive_lock(path, 'x'))\n"
         "    print('held', flush=True); sys.stdin.read()"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True)
    vinfo_argv = ["--representations", str(r / "z.npy"), "--targets", str(r / "y.npy"),
                  "--target-kind", "gaussian", "--out", str(tmp_path / "v")]
    try:
        assert holder.stdout.readline().strip() == "held"
        for main, argv, what in (
                (evaluate.main, [str(run_dir)], "eval.nc"),
                (train.main, [f"resume={run_dir}", "max_steps=3"], f"run directory {run_dir}"),
                (vinfo_cli.main, vinfo_argv, f"vinfo output folder {tmp_path / 'v'}")):
            capsys.readouterr()
            assert main(argv) == 2
            last = capsys.readouterr().err.splitlines()[-1]
            assert f"{what} is being written by another process (pid {holder.pid}" in last, last
        assert not (tmp_path / "v").exists()  # refused before any work
    finally:
        holder.communicate("", timeout=30)
    assert evaluate.main([str(run_dir)]) == 0  # released: the next writer goes ahead


def test_the_wrapper_maps_exceptions_and_debug_adds_the_traceback(capsys):
    def boom(kind):
        def main(argv):
            raise kind
        return main

    assert run(boom(PermissionError(13, "Permission denied", "/x/y")), []) == 2
    assert capsys.readouterr().err == "error: /x/y: permission denied\n"
    assert run(boom(RuntimeError("a bug")), []) == 1
    assert "unexpected RuntimeError: a bug (rerun with --debug" in capsys.readouterr().err
    assert run(boom(ValueError("bad\n  value")), ["--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1] == "error: bad value"
    assert run(boom(KeyboardInterrupt()), []) == 130
    assert capsys.readouterr().err == "interrupted; nothing was written\n"
    assert describe_os_error(OSError(30, "Read-only file system", "/ro")) == \
        "/ro: read-only file system"
    assert torch.get_num_threads() >= 1  # the wrapper leaves torch alone
