"""Behaviour fingerprint: hashes of everything a few tiny runs write, for before/after proofs.

A refactor that claims "behaviour unchanged" runs this on the old tree and on the new one
and compares the two JSON files (``--compare``). What it runs, all through the public
command lines, on generated data:

1. the quick demo (``--demo-module``, ``--quick``): synthetic scenes, two rate-targeted depth
   bases, the codec-free reference, eight scalable / refit reconstruction runs, two
   V-information ladders, the analysis report; its printed summary;
2. a tiny depth base trained 6 steps, then resumed to 12, beside the same run trained 12
   steps straight;
3. ``codec encode`` of one validation image with the resumed run, and ``codec decode``.

What is hashed: every file written, after removing what is not behaviour — the work
directory's absolute path, wall times (``elapsed_s``, ``created``, "Generated ..."), checkpoint
records' self-checksums (``record_sha256``, computed over those paths and times), the git
commit, the platform, TensorBoard event files, ``train.log``, ``pip-freeze.txt`` and the
random names of staged publication directories. NetCDF files are hashed by their variables'
values and attributes (not their HDF5 bytes, which carry creation times). Recorded Python
class paths (``config_class``) are listed separately: moving a class between modules changes
them by design.

    python benchmarks/fingerprint.py before.json --demo-module taskcodecs.demo
    python benchmarks/fingerprint.py after.json
    python benchmarks/fingerprint.py --compare before.json after.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

SKIP_NAMES = {"train.log", "pip-freeze.txt"}
# record_sha256: a checkpoint record's checksum of its own JSON, which holds paths and
# elapsed_s, so it differs between any two runs; the fields it covers are compared scrubbed.
VOLATILE_KEYS = {"created", "git_commit", "elapsed_s", "platform", "python", "wall_s",
                 "written", "load_average", "hostname", "record_sha256",
                 "seconds", "cpu_seconds"}  # the latent gap's timing attrs
STAMP = re.compile(r"\d{8}-\d{6}-\d+-[0-9a-f]{8}")
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)?")
WALL = re.compile(r"\b\d+(\.\d+)? ?(s|min|ms)\b")


def _scrub_json(value, class_paths: set):
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in VOLATILE_KEYS:
                continue
            if key == "config_class":
                class_paths.add(item)
                continue
            out[key] = _scrub_json(item, class_paths)
        return out
    if isinstance(value, list):
        return [_scrub_json(item, class_paths) for item in value]
    return value


def _scrub_text(text: str, work: str) -> str:
    text = text.replace(work, "<W>")
    text = STAMP.sub("<stamp>", text)
    return ISO_TIME.sub("<time>", text)


def _hash_netcdf(path: Path, work: str) -> str:
    import xarray as xr

    digest = hashlib.sha256()
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        ds = ds.load()
        attrs = {k: v for k, v in ds.attrs.items() if k not in VOLATILE_KEYS}
        digest.update(_scrub_text(repr(sorted((k, str(v)) for k, v in attrs.items())), work).encode())
        for name in sorted(ds.variables):
            var = ds[name]
            digest.update(name.encode())
            digest.update(repr(var.dims).encode())
            if var.dtype.kind in "biufcmM":
                digest.update(var.values.tobytes())
            else:  # strings: paths and times scrubbed like text files
                digest.update(_scrub_text(repr(var.values.tolist()), work).encode())
            vattrs = {k: v for k, v in var.attrs.items() if k not in VOLATILE_KEYS}
            digest.update(_scrub_text(repr(sorted((k, str(v)) for k, v in vattrs.items())), work).encode())
    return digest.hexdigest()


def hash_tree(root: Path, work: str) -> tuple[dict[str, str], set[str]]:
    hashes: dict[str, str] = {}
    class_paths: set[str] = set()
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        rel = STAMP.sub("<stamp>", str(path.relative_to(root)))
        if path.name in SKIP_NAMES or path.name.startswith("events.out.tfevents"):
            continue
        suffix = path.suffix
        if suffix == ".nc":
            hashes[rel] = _hash_netcdf(path, work)
            continue
        data = path.read_bytes()
        if suffix == ".json":
            value = _scrub_json(json.loads(data), class_paths)
            data = _scrub_text(json.dumps(value, sort_keys=True), work).encode()
        elif suffix == ".csv" and path.name == "log.csv":
            rows = [line.split(",") for line in data.decode().splitlines()]
            drop = rows[0].index("elapsed_s") if rows and "elapsed_s" in rows[0] else None
            data = "\n".join(",".join(c for i, c in enumerate(r) if i != drop) for r in rows).encode()
        elif suffix in (".yaml", ".md", ".html", ".csv", ".txt", ".tex"):
            data = _scrub_text(data.decode(), work).encode()
        hashes[rel] = hashlib.sha256(data).hexdigest()
    return hashes, class_paths


def _run(args: list[str], cwd: Path, log: Path) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)
    log.write_text(proc.stdout)
    log.with_suffix(".stderr.txt").write_text(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {proc.returncode}; output in {log}")
    return proc.stdout


def fingerprint(demo_module: str, work: Path) -> dict:
    """Run everything into ``work``, then hash it (:func:`hash_work`)."""
    repo = Path(__file__).resolve().parents[1]
    logs = work / "logs"
    logs.mkdir(parents=True)
    quick = work / "quick"
    _run(["-m", demo_module, "--quick", "--out", str(quick)], repo, logs / "demo.txt")
    data = quick / "data"
    base = ["-m", "taskcodecs.train", "--config", "tiny-depth-base-baseline", f"data_root={data}"]
    _run([*base, f"out={work / 'resumed'}", "max_steps=6"], repo, logs / "train6.txt")
    _run(["-m", "taskcodecs.train", f"resume={work / 'resumed'}", "max_steps=12"], repo,
         logs / "resume12.txt")
    _run([*base, f"out={work / 'straight'}", "max_steps=12"], repo, logs / "straight12.txt")
    image = sorted((data / "leftImg8bit" / "val").rglob("*.png"))[0]
    ckpt = work / "resumed" / "checkpoints" / "last"
    codec = work / "codec"
    codec.mkdir()
    _run(["-m", "taskcodecs.codec", "encode", "--checkpoint", str(ckpt), "--input", str(image),
          "--output", str(codec / "img.tcb")], repo, logs / "encode.txt")
    _run(["-m", "taskcodecs.codec", "decode", "--checkpoint", str(ckpt), "--input",
          str(codec / "img.tcb"), "--layers", "base", "--output", str(codec / "rec.png")], repo,
         logs / "decode.txt")
    return hash_work(work)


def hash_work(work: Path) -> dict:
    """The fingerprint of a work directory that :func:`fingerprint` filled."""
    printed = (work / "logs" / "demo.txt").read_text()
    printed = WALL.sub("<t>", _scrub_text(printed, str(work)))
    printed = re.sub(r"load average [0-9.]+", "load average <l>", printed)
    hashes, class_paths = {}, set()
    for part in ("quick", "resumed", "straight", "codec"):
        h, c = hash_tree(work / part, str(work))
        hashes.update({f"{part}/{k}": v for k, v in h.items()})
        class_paths |= c
    return {"demo_printed": printed, "files": hashes, "class_paths": sorted(class_paths)}


def compare(before: dict, after: dict) -> int:
    bad = 0
    if before["demo_printed"] != after["demo_printed"]:
        bad += 1
        print("demo printed output differs")
    for key in sorted(set(before["files"]) | set(after["files"])):
        if before["files"].get(key) != after["files"].get(key):
            bad += 1
            print(f"differs: {key}")
    same = sum(before["files"].get(k) == v for k, v in after["files"].items())
    print(f"{same} of {len(before['files'])} files identical; printed summary "
          f"{'identical' if before['demo_printed'] == after['demo_printed'] else 'DIFFERENT'}")
    print(f"class paths before: {before['class_paths']}\nclass paths after:  {after['class_paths']}")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", nargs="?", help="JSON file to write")
    parser.add_argument("--demo-module", default="taskcompat.demo")
    parser.add_argument("--work", help="work directory (default: a temporary one)")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    parser.add_argument("--hash-only", action="store_true", help="hash --work without running")
    args = parser.parse_args(argv)
    if args.compare:
        return compare(*(json.loads(Path(p).read_text()) for p in args.compare))
    if not args.out:
        parser.error("give OUT or --compare BEFORE AFTER")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="fingerprint-"))
    result = hash_work(work) if args.hash_only else fingerprint(args.demo_module, work)
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, sort_keys=True))
    tmp.replace(args.out)
    print(f"{len(result['files'])} files fingerprinted into {args.out} (work dir {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
