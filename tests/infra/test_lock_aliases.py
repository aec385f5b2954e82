"""Writer locks see through aliases: a second writer reaching a folder being written through a
symlink is refused (one line, exit 2) before it writes anything (issue 22, failure (a))."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from taskcodecs import sweep, train
from vinfo import cli as vinfo_cli

ROOT = Path(__file__).resolve().parents[2]


def _hold(paths: list[Path]) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import contextlib, sys\nfrom infra.locks import exclusive_lock\n"
         "with contextlib.ExitStack() as stack:\n"
         f"    for path in {[str(p) for p in paths]!r}: "
         "stack.enter_context(exclusive_lock(path, 'x'))\n"
         "    print('held', flush=True); sys.stdin.read()"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_writers_through_a_symlink_are_refused(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "z.npy", rng.normal(size=(64, 3)).astype(np.float32))
    np.save(tmp_path / "y.npy", rng.normal(size=(64, 1)).astype(np.float32))
    real = {name: tmp_path / name for name in ("v", "run", "sweep")}
    for folder in real.values():
        folder.mkdir()
        (folder / "keep.txt").write_text("mine")
    links = {}
    for name, folder in real.items():
        links[name] = tmp_path / f"{name}-link"
        links[name].symlink_to(folder, target_is_directory=True)
    holder = _hold(list(real.values()))
    try:
        cases = (
            (vinfo_cli.main, ["--representations", str(tmp_path / "z.npy"), "--targets",
                              str(tmp_path / "y.npy"), "--target-kind", "gaussian",
                              "--max-steps", "5", "--out", str(links["v"])], real["v"]),
            (train.main, ["--config", "tiny-depth-base-proposed", f"out={links['run']}",
                          f"synthetic_cache={tmp_path / 'cache'}", "max_steps=1"], real["run"]),
            (sweep.main, ["--gather", str(links["sweep"])], real["sweep"]),
        )
        for main, argv, folder in cases:
            capsys.readouterr()
            assert main(argv) == 2, argv
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1, err
            assert f"(= {os.path.realpath(folder)}) is being written by another process (pid {holder.pid}" \
                in err[0], err[0]
            assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"]
        assert not (tmp_path / "cache").exists()
    finally:
        holder.communicate("", timeout=30)
