"""Fault-injection counts (issue 22): damaged checkpoints, fuzzed bitstreams, bad inputs.

    PYTHONPATH=. python benchmarks/fault_counts.py --checkpoints 140 --streams 300 --out /tmp/fc

Three tallies, printed as JSON (and written to OUT/fault_counts.json):

- checkpoints: a tiny codec checkpoint damaged one way per trial (a flipped byte of the weights
  or of the record, an edited step, the manifest or the record checksum removed, truncated
  weights), then ``load_codec``: refused (CheckpointError) or loaded. A flipped record byte
  that leaves the parsed content unchanged (whitespace to whitespace) is counted apart.
- streams: a real bitstream of a tiny depth base with random bytes flipped, truncated or
  extended, then ``decompress``: BitstreamError, decoded, or another exception.
- bad inputs: each command line of the issue's failures run in this process on its bad input:
  exit status, one-line message, no traceback, and for ``train`` no run directory left.

SIGKILLs during checkpoint writes and vinfo outputs are counted by the fault-injection tests
(``tests/taskcodecs/runs/test_faults.py``), not here.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def checkpoint_trials(root: Path, trials: int, seed: int) -> dict:
    from taskcodecs.experiments.registry import create_model
    from taskcodecs.runs.checkpoint import CheckpointError
    from taskcodecs.runs.codecs import load_codec, save_codec

    rng = random.Random(seed)
    torch.manual_seed(seed)
    good = root / "good"
    save_codec(create_model("tiny-depth-base"), good, {"step": 10})
    kinds = ["flip-weights-byte", "flip-record-byte", "edit-step", "strip-manifest",
             "strip-manifest-and-checksum", "strip-checksum", "truncate-weights"]
    tally: dict[str, Counter] = {kind: Counter() for kind in kinds}
    for t in range(trials):
        kind = kinds[t % len(kinds)]
        stem = root / f"c{t}"
        for suffix in (".safetensors", ".json"):
            shutil.copy(good.with_suffix(suffix), stem.with_suffix(suffix))
        weights, record = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
        unchanged = False
        if kind == "flip-weights-byte":
            data = bytearray(weights.read_bytes())
            data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
            weights.write_bytes(bytes(data))
        elif kind == "flip-record-byte":
            before = json.loads(record.read_text())
            data = bytearray(record.read_bytes())
            data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
            record.write_bytes(bytes(data))
            with contextlib.suppress(ValueError):
                unchanged = json.loads(bytes(data).decode("utf-8")) == before
        elif kind == "edit-step":
            record.write_text(record.read_text().replace('"step": 10', '"step": 12'))
        elif kind == "truncate-weights":
            data = weights.read_bytes()
            weights.write_bytes(data[:rng.randrange(len(data))])
        else:
            meta = json.loads(record.read_text())
            for key in {"strip-manifest": ["weights"], "strip-checksum": ["record_sha256"],
                        "strip-manifest-and-checksum": ["weights", "record_sha256"]}[kind]:
                meta.pop(key, None)  # (a record of an older version has no checksum)
            record.write_text(json.dumps(meta))
        try:
            load_codec(stem)
            outcome = "loaded (content unchanged)" if unchanged else "loaded"
        except CheckpointError:
            outcome = "refused"
        except Exception as err:  # noqa: BLE001 - counted, not hidden
            outcome = f"other {type(err).__name__}"
        tally[kind][outcome] += 1
    return {kind: dict(c) for kind, c in tally.items()}


def stream_trials(trials: int, seed: int) -> dict:
    from taskcodecs.coding.bitstream import BitstreamError
    from taskcodecs.data.scene import render_scene, sample_scene
    from taskcodecs.experiments.registry import create_model

    rng = random.Random(seed)
    torch.manual_seed(seed)
    model = create_model("tiny-depth-base").eval()
    with torch.no_grad():
        model.f_b.layers[-1].weight.mul_(8.0)  # non-trivial latents from untrained weights
    rgb = render_scene(sample_scene(np.random.default_rng(seed), 48, 80)).rgb
    good = model.compress(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0)
    tally: dict[str, Counter] = {}
    kinds = ["flip-1-byte", "flip-4-bytes", "truncate", "append", "zero-tail"]
    for t in range(trials):
        kind = kinds[t % len(kinds)]
        data = bytearray(good)
        if kind.startswith("flip"):
            for _ in range(1 if kind == "flip-1-byte" else 4):
                data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
        elif kind == "truncate":
            data = data[:rng.randrange(len(data))]
        elif kind == "append":
            data += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
        else:
            n = rng.randrange(1, 16)
            data[-n:] = bytes(n)
        try:
            with torch.no_grad():
                model.decompress(bytes(data))
            outcome = "decoded" if bytes(data) != good else "decoded (unchanged)"
        except BitstreamError:
            outcome = "BitstreamError"
        except Exception as err:  # noqa: BLE001 - counted, not hidden
            outcome = f"other {type(err).__name__}"
        tally.setdefault(kind, Counter())[outcome] += 1
    return {kind: dict(c) for kind, c in tally.items()}, len(good)


def _call(main, argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main(argv)
    return status, err.getvalue()


def bad_input_trials(root: Path) -> list[dict]:
    from PIL import Image

    from taskcodecs import sweep, train
    from taskcodecs.data.synthetic import generate_dataset
    from vinfo import cli as vinfo_cli

    small = ["synthetic.train=4", "synthetic.val=2", "max_steps=1", "val_every=1",
             "num_workers=0", "batch_size=2", "val_batch_size=2"]
    scenes = root / "scenes"
    generate_dataset(scenes, train=4, val=2, height=32, width=64, seed=0, workers=1)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(64, 2))
    np.save(root / "z.npy", z)
    np.save(root / "y.npy", (z[:, :1] > 0).astype(np.int64))
    np.save(root / "z_big.npy", z * 1e300)
    held = {name: root / name for name in ("held-v", "held-run", "held-sweep")}
    for name, folder in held.items():
        folder.mkdir()
        (root / f"{name}-link").symlink_to(folder, target_is_directory=True)
    bind = root / "held-run-bind"  # a bind mount of the run being written (needs root)
    bind.mkdir()
    bound = shutil.which("mount") is not None and subprocess.run(
        ["mount", "--bind", str(held["held-run"]), str(bind)], capture_output=True).returncode == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", "import contextlib, sys\nfrom infra.locks import exclusive_lock\n"
         "with contextlib.ExitStack() as stack:\n"
         f"    for p in {[str(p) for p in held.values()]!r}: "
         "stack.enter_context(exclusive_lock(p, 'x'))\n"
         "    print('held', flush=True); sys.stdin.read()"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"

    def damaged(name: str, damage) -> Path:
        data = root / f"data-{name}"
        shutil.copytree(scenes, data)
        damage(data)
        return data

    def first(folder: Path, pattern: str) -> Path:
        return sorted(folder.rglob(pattern))[0]

    def coco_file_name(value: str):
        def damage(data: Path) -> None:
            path = data / "annotations" / "instances_train2017.json"
            ann = json.loads(path.read_text())
            ann["images"][0]["file_name"] = value
            path.write_text(json.dumps(ann))
        return damage

    vinfo_args = ["--representations", str(root / "z.npy"), "--targets", str(root / "y.npy"),
                  "--target-kind", "categorical", "--max-steps", "5"]
    depth, detection = "tiny-depth-base-proposed", "tiny-detection-base-proposed"
    cases = {
        "vinfo --out symlink to a folder being written":
            (vinfo_cli.main, [*vinfo_args, "--out", str(root / "held-v-link")], None),
        "train out= symlink to a run being written":
            (train.main, ["--config", depth, f"out={root / 'held-run-link'}",
                          f"data_root={scenes}", *small], None),
        **({"train out= bind mount of a run being written":
            (train.main, ["--config", depth, f"out={bind}", f"data_root={scenes}", *small],
             None)} if bound else {}),
        "sweep --gather symlink to a sweep being written":
            (sweep.main, ["--gather", str(root / "held-sweep-link")], None),
        "train mistyped data_root": (train.main, ["--config", depth, f"data_root={root / 'typo'}",
                                                  *small], "run"),
        "vinfo Z of 1e300": (vinfo_cli.main, ["--representations", str(root / "z_big.npy"),
                                              *vinfo_args[2:], "--out", str(root / "v1")], None),
        "vinfo --num-classes 0": (vinfo_cli.main, [*vinfo_args, "--num-classes", "0", "--out",
                                                   str(root / "v2")], None),
        "COCO file_name absolute": (train.main, ["--config", detection, f"data_root="
                                                 f"{damaged('abs', coco_file_name('/etc/hosts'))}",
                                                 *small], "run"),
        "COCO file_name with ..": (train.main, ["--config", detection, f"data_root="
                                                f"{damaged('dots', coco_file_name('../x.png'))}",
                                                *small], "run"),
        "sweep --bases ../../x": (sweep.main, ["--config", "tiny-cityscapes-reconstruction-"
                                               "scalable", "--rate-weights", "1", "--bases",
                                               f"../../x={scenes}", "--out",
                                               str(root / "sw"), "--dry-run"], None),
        "train unknown nested key": (train.main, ["--config", depth, f"data_root={scenes}",
                                                  "model_overrides.nope=1", *small], "run"),
        "train corrupt PNG": (train.main, ["--config", depth, "data_root=" + str(damaged(
            "png", lambda d: first(d / "leftImg8bit" / "train", "*.png").write_bytes(b"\x89PNG"))),
            *small], "run"),
        "train size mismatch": (train.main, ["--config", depth, "data_root=" + str(damaged(
            "size", lambda d: Image.fromarray(np.ones((16, 16), np.uint16)).save(
                first(d / "disparity" / "train", "*.png")))), *small], "run"),
        "train 8-bit disparity": (train.main, ["--config", depth, "data_root=" + str(damaged(
            "8bit", lambda d: Image.fromarray(np.ones((32, 64), np.uint8), "L").save(
                first(d / "disparity" / "train", "*.png")))), *small], "run"),
        "train malformed COCO JSON": (train.main, ["--config", detection, "data_root=" + str(
            damaged("json", lambda d: (d / "annotations" / "instances_train2017.json")
                    .write_text("{\"images\": ["))), *small], "run"),
        "train bad context name": (train.main, ["--config", depth, f"data_root={scenes}",
                                                "model_overrides.context=zigzag", *small], "run"),
    }
    results = []
    try:
        for i, (name, (main, argv, run)) in enumerate(cases.items()):
            if run:
                argv = [*argv, f"out={root / f'run{i}'}"]
            status, err = _call(main, argv)
            lines = err.strip().splitlines()
            results.append({
                "case": name, "exit": status, "one_line": len(lines) == 1,
                "traceback": "Traceback" in err,
                "run_dir_left": bool(run) and (root / f"run{i}").exists(),
                "message": lines[-1][:160] if lines else ""})
    finally:
        holder.communicate("", timeout=30)
        if bound:
            subprocess.run(["umount", str(bind)], check=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", type=int, default=140)
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    report = {"checkpoints": checkpoint_trials(out / "ckpt", args.checkpoints, args.seed)
              if (out / "ckpt").mkdir() is None else None}
    report["streams"], report["stream_bytes"] = stream_trials(args.streams, args.seed)
    (out / "bad").mkdir()
    report["bad_inputs"] = bad_input_trials(out / "bad")
    text = json.dumps(report, indent=2)
    (out / "fault_counts.json").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
