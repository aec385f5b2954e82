"""Fault injection: a real SIGKILL at every write boundary of a checkpoint, corrupt
checkpoints, a real SIGINT while the vinfo output set is written.

Kills are placed deterministically by the hook in :func:`infra.io.fault_point` (the
environment names the event; no timing). Each killed run is a forked child of this process
(no interpreter start-up per trial); the resume runs here.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from infra.io import find_files
from taskcodecs.runs.checkpoint import read_metadata
from taskcodecs.runs.links import checkpoint_path
from taskcodecs.training.run import resolve_config, train

NAME = "tiny-depth-base-proposed"
SMALL = {"synthetic.train": 4, "synthetic.val": 2, "synthetic.height": 32,
         "synthetic.width": 64, "log_every": 1, "num_workers": 0, "val_every": 2, "max_steps": 4}


def _run(out: Path, cache: Path, **overrides) -> Path:
    return train(resolve_config(NAME, {**SMALL, "synthetic_cache": str(cache), "out": str(out),
                                       **overrides}))


def _resume(out: Path) -> Path:
    return train(resolve_config(None, {"resume": str(out)}))


def _tensors(run_dir: Path, which: str) -> dict[str, torch.Tensor]:
    return load_file(str(checkpoint_path(run_dir, which).with_suffix(".safetensors")))


def _rows(run_dir: Path) -> list[dict]:
    with (run_dir / "log.csv").open(newline="") as handle:
        return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in csv.DictReader(handle)]


def _assert_same_run(ref: Path, run: Path) -> None:
    for which in ("last", "best"):
        a, b = _tensors(ref, which), _tensors(run, which)
        assert sorted(a) == sorted(b)
        differ = [k for k in a if not torch.equal(a[k], b[k])]
        assert not differ, f"{which}: {len(differ)} tensors differ, e.g. {differ[:3]}"
        assert read_metadata(checkpoint_path(run, which))["step"] == \
            read_metadata(checkpoint_path(ref, which))["step"]
    assert _rows(ref) == _rows(run)
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]  # no temp file left


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run, and every write event of its checkpoints (traced)."""
    root = tmp_path_factory.mktemp("faults")
    trace = root / "trace.txt"
    os.environ["TASKCODECS_FAULT_TRACE"] = str(trace)
    try:
        ref = _run(root / "ref", root / "cache")
    finally:
        del os.environ["TASKCODECS_FAULT_TRACE"]
    events = [line.split(":", 1) for line in trace.read_text().splitlines()]
    events = [(phase, Path(path).name) for phase, path in events
              if Path(path).parent == ref / "checkpoints"]
    return root, ref, events


def _killed_run(out: Path, cache: Path, phase: str, name: str, count: int) -> int:
    """Run in a forked child that SIGKILLs itself at the ``count``-th ``phase`` of ``name``."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.environ.update({"TASKCODECS_FAULT_AT": f"{phase}:{out}/checkpoints/{name}",
                               "TASKCODECS_FAULT_COUNT": str(count)})
            logging.disable(logging.CRITICAL)
            _run(out, cache)
        finally:
            os._exit(3)  # not killed: the parent's assertion fails
    _, status = os.waitpid(pid, 0)
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status)


@pytest.mark.slow
def test_sigkill_at_every_checkpoint_write_boundary_then_resume_is_bit_identical(
        reference, caplog):
    root, ref, events = reference
    # 2 validations x (last, best) x (.safetensors, .json) x (open, written, replaced)
    assert len(events) == 24, events
    seen: dict[tuple[str, str], int] = {}
    outcomes = []
    for i, (phase, name) in enumerate(events):
        seen[phase, name] = seen.get((phase, name), 0) + 1
        out = root / f"kill{i:02d}"
        assert _killed_run(out, root / "cache", phase, name, seen[phase, name]) == signal.SIGKILL
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="taskcodecs.training.run"):
            _resume(out)
        _assert_same_run(ref, out)
        outcomes.append((phase, name, seen[phase, name],
                         read_metadata(checkpoint_path(out, "last"))["step"],
                         [r.getMessage() for r in caplog.records if "resume:" in r.getMessage()]))
    fallbacks = sum(any("skipped" in m for m in o[4]) for o in outcomes)
    print(f"SIGKILL trials: {len(outcomes)} tried, {len(outcomes)} resumed bit-identical "
          f"({fallbacks} after skipping a checkpoint that did not verify)")
    # the torn pair of the issue: new weights renamed over last, killed before last.json
    torn = [o for o in outcomes if o[:3] == ("written", "last.json", 2)]
    assert torn and any("does not match its metadata" in m for m in torn[0][4]), torn
    assert any("continuing" in m and "best at step 2" in m for m in torn[0][4]), torn
    # killed inside the first save: nothing verified, the run starts again from step 0
    first = [o for o in outcomes if o[:3] == ("open", "last.safetensors", 1)][0]
    assert any("step 0" in m for m in first[4]), first


@pytest.fixture(scope="module")
def older_best(reference):
    """A run at step 4 whose best is its step-2 checkpoint (a step 4 that did not improve)."""
    root, ref, _ = reference
    run = _run(root / "older-best", root / "cache", max_steps=2)
    keep = {s: checkpoint_path(run, "best").with_suffix(s).read_bytes()
            for s in (".safetensors", ".json")}
    train(resolve_config(None, {"resume": str(run), "max_steps": 4}))
    for suffix, data in keep.items():
        checkpoint_path(run, "best").with_suffix(suffix).write_bytes(data)
    return run


@pytest.mark.slow
@pytest.mark.parametrize("damage, reason", [
    ("truncate-weights", "does not match its metadata"),
    ("empty-weights", "does not match its metadata"),
    ("delete-weights", "weights file not found"),
    ("truncate-metadata", "not valid JSON"),
    ("delete-metadata", "JSON file not found"),
    ("strip-manifest-flip-byte", "no weights manifest"),  # issue 22 (b)
    ("edit-step", "does not match its own checksum"),
])
def test_corrupt_last_falls_back_to_best_with_a_warning(reference, older_best, tmp_path,
                                                         caplog, damage, reason):
    _, ref, _ = reference
    run = tmp_path / "run"
    shutil.copytree(older_best, run)
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace(
        str(older_best), str(run)))
    last = checkpoint_path(run, "last")
    weights, meta = last.with_suffix(".safetensors"), last.with_suffix(".json")
    {"truncate-weights": lambda: weights.write_bytes(weights.read_bytes()[:1000]),
     "empty-weights": lambda: weights.write_bytes(b""),
     "delete-weights": weights.unlink,
     "truncate-metadata": lambda: meta.write_text(meta.read_text()[:200]),
     "delete-metadata": meta.unlink,
     "strip-manifest-flip-byte": lambda: _strip_manifest_flip_byte(meta, weights),
     "edit-step": lambda: meta.write_text(meta.read_text().replace('"step": 4', '"step": 5'))
     }[damage]()
    with caplog.at_level(logging.WARNING, logger="taskcodecs.training.run"):
        _resume(run)
    warnings = " ".join(r.getMessage() for r in caplog.records)
    assert "skipped checkpoint last" in warnings and reason in warnings, warnings
    assert "from best at step 2" in warnings
    _assert_same_run(ref, run)  # redid steps 3-4 from best: bit-identical


def _strip_manifest_flip_byte(meta: Path, weights: Path) -> None:
    record = json.loads(meta.read_text())  # a record as written before the manifest
    del record["weights"], record["record_sha256"]
    meta.write_text(json.dumps(record))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))


def test_a_failed_resume_rewrites_nothing(reference, tmp_path):
    _, ref, _ = reference
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace(str(ref), str(run)))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(Exception, match="weights do not match|missing"):
        # a resume that cannot load (another architecture's width): nothing may change
        train(resolve_config(None, {"resume": str(run), "max_steps": 6,
                                    "model_overrides": {"latent_ch": 16}}))
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    changed = sorted(str(p.relative_to(run)) for p in before if after.get(p) != before[p])
    assert changed in ([], ["train.log"]), changed  # only log lines appended


def test_a_run_whose_checkpoints_cannot_be_verified_is_not_restarted(reference, tmp_path):
    """Records as older versions wrote them (no checksum): the resume is refused, since
    starting again from step 0 would overwrite checkpoints that may be intact."""
    _, ref, _ = reference
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace(str(ref), str(run)))
    for which in ("last", "best"):
        meta = checkpoint_path(run, which).with_suffix(".json")
        record = json.loads(meta.read_text())
        del record["record_sha256"]
        meta.write_text(json.dumps(record))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(Exception, match="no checkpoint verifies, and last and best cannot be "
                                        "verified.*would overwrite them"):
        _resume(run)
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    changed = sorted(str(p.relative_to(run)) for p in before if after.get(p) != before[p])
    assert changed in ([], ["train.log"]), changed


# ------------------------------------------------------------------------------ vinfo set


def _vinfo_set(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in find_files(out, "*") if p.is_file()}


@pytest.mark.slow
def test_sigint_while_writing_vinfo_outputs_leaves_the_old_or_the_new_set(tmp_path, monkeypatch,
                                                                          python_sigint):
    from vinfo.api import estimate, write_outputs
    from vinfo.config import resolve_config as vinfo_config

    rng = np.random.default_rng(0)
    z = rng.normal(size=(60, 3)).astype(np.float32)
    y = (z[:, 0] + 0.5 * rng.normal(size=60)).astype(np.float32)

    def result(seed: int):
        cfg = vinfo_config(target_kind="gaussian", families=["linear"], seeds=[0], seed=seed,
                           bootstrap=20, curves=False, out=str(tmp_path / "out"))
        return estimate(z, y, config=cfg), cfg

    old, new = result(0), result(1)
    out = tmp_path / "out"
    current = out / ".published" / "current"
    trace = tmp_path / "trace.txt"
    write_outputs(*old, out)
    monkeypatch.setenv("TASKCODECS_FAULT_TRACE", str(trace))
    write_outputs(*new, out)
    monkeypatch.delenv("TASKCODECS_FAULT_TRACE")
    new_set = _vinfo_set(out)
    assert {"vinfo.nc", "vinfo.csv", "config.yaml", "report.html", "report.md"} <= set(new_set)
    # every write boundary of the set, the stage's random folder name as a wildcard
    gen = re.compile(re.escape(str(out / ".published")) + r"/[^/]+")
    events = [gen.sub(lambda _: str(out / ".published" / "*"), e)
              for e in trace.read_text().splitlines()]
    assert events[-2:] == [f"publish:{out}", f"published:{out}"] and len(events) > 10
    # inside the private stage every boundary is alike: each file's "written" (the temporary
    # file complete, not yet renamed), the first and the last event, the switch's two sides
    chosen = [i for i, e in enumerate(events)
              if e.startswith("written:") or i in (0, len(events) - 3) or i >= len(events) - 2]
    outcomes = {"old": 0, "new": 0}
    restore = True
    for count, event in [(i + 1, events[i]) for i in chosen]:
        if restore:  # start from a complete old set
            write_outputs(*old, out)
        old_set, old_gen = _vinfo_set(out), os.readlink(current)
        assert old_set["vinfo.csv"] != new_set["vinfo.csv"]  # the seed shows in the intervals
        monkeypatch.setenv("TASKCODECS_FAULT_AT", event)
        monkeypatch.setenv("TASKCODECS_FAULT_COUNT", str(events[:count].count(event)))
        monkeypatch.setenv("TASKCODECS_FAULT_SIGNAL", "INT")
        with pytest.raises(KeyboardInterrupt):
            write_outputs(*new, out)
        for name in ("TASKCODECS_FAULT_AT", "TASKCODECS_FAULT_COUNT", "TASKCODECS_FAULT_SIGNAL"):
            monkeypatch.delenv(name)
        seen = _vinfo_set(out)
        if os.readlink(current) == old_gen:
            assert seen == old_set, f"SIGINT at {event}: the old set changed"
            outcomes["old"] += 1
            restore = False
        else:  # a complete new set: every name, the new bytes where they are deterministic
            assert sorted(seen) == sorted(new_set), f"SIGINT at {event}: {sorted(seen)}"
            assert all(seen[k] == new_set[k] for k in ("vinfo.csv", "config.yaml")), event
            outcomes["new"] += 1
            restore = True
        leftovers = [p for p in out.rglob("*") if p.name.endswith((".tmp", ".lock"))]
        assert not leftovers, leftovers
        assert len(list((out / ".published").iterdir())) == 2  # current and its set alone
    print(f"SIGINT trials while writing vinfo outputs: {len(chosen)} tried, {len(chosen)} left a "
          f"complete set ({outcomes['old']} the old one, {outcomes['new']} the new one)")
    assert outcomes["old"] >= 1 and outcomes["new"] >= 1, outcomes
