"""infra.io: output sets published by one rename, stale temporaries, fault points."""

from __future__ import annotations

import os
import signal

import pytest

from infra.io import (
    atomic_write_text,
    check_writable,
    fault_point,
    find_files,
    publish_set,
    remove_stale_temps,
)
from infra.locks import lock_path


def _writer(tag: str, names=("a.txt", "b.txt")):
    def write(stage):
        paths = {name: atomic_write_text(stage / name, f"{tag} {name}") for name in names}
        atomic_write_text(stage / "figures" / "f.png", tag)
        return paths
    return write


def test_a_set_replaces_the_previous_one_and_leaves_other_files_alone(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "b.txt").write_text("written before sets existed")
    (out / "figures").mkdir()
    (out / "figures" / "old.png").write_text("old")
    paths = publish_set(out, _writer("one"))
    assert paths == {"a.txt": out / "a.txt", "b.txt": out / "b.txt"}
    assert (out / "b.txt").read_text() == "one b.txt" and (out / "figures" / "f.png").is_file()
    assert not (out / "figures" / "old.png").exists()
    publish_set(out, _writer("two", names=("a.txt",)))  # b.txt is not in the new set
    assert (out / "a.txt").read_text() == "two a.txt" and not os.path.lexists(out / "b.txt")
    assert (out / "notes.txt").read_text() == "mine"
    store = sorted(p.name for p in (out / ".published").iterdir())
    assert len(store) == 2 and "current" in store  # the current set alone
    assert [p.name for p in find_files(out, "*.txt")] == ["a.txt", "notes.txt"]
    assert not lock_path(out).exists()


def test_a_failing_writer_leaves_the_old_set_and_no_trace(tmp_path):
    out = tmp_path / "out"
    publish_set(out, _writer("one"))

    def broken(stage):
        atomic_write_text(stage / "a.txt", "half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        publish_set(out, broken)
    assert (out / "a.txt").read_text() == "one a.txt"
    assert len(list((out / ".published").iterdir())) == 2


def test_stale_temporaries_are_found_and_only_they(tmp_path):
    (tmp_path / ".last.json.0a1b2c3d.tmp").write_text("left by a SIGKILL")
    (tmp_path / ".keep.tmp").write_text("not ours")
    (tmp_path / "data.tmp").write_text("not ours")
    assert [p.name for p in remove_stale_temps(tmp_path)] == [".last.json.0a1b2c3d.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".keep.tmp", "data.tmp"]


def test_check_writable_names_the_path(tmp_path):
    file = tmp_path / "f"
    file.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, expected a folder"):
        check_writable(file)
    with pytest.raises(NotADirectoryError):
        check_writable(file / "sub" / "deeper")
    with pytest.raises(IsADirectoryError):
        check_writable(tmp_path, folder=False)
    check_writable(tmp_path / "new" / "folder")


def test_fault_point_fires_at_the_nth_matching_event(tmp_path, monkeypatch):
    # a process started in the background by a non-interactive shell ignores SIGINT; this
    # test is about the fault point, so it runs with Python's own handler wherever it starts
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _fault_point_fires_at_the_nth_matching_event(tmp_path, monkeypatch)
    finally:
        signal.signal(signal.SIGINT, previous)


def _fault_point_fires_at_the_nth_matching_event(tmp_path, monkeypatch):
    trace = tmp_path / "trace"
    monkeypatch.setenv("TASKCODECS_FAULT_TRACE", str(trace))
    monkeypatch.setenv("TASKCODECS_FAULT_AT", "written:*/x.txt")
    monkeypatch.setenv("TASKCODECS_FAULT_COUNT", "2")
    monkeypatch.setenv("TASKCODECS_FAULT_SIGNAL", "INT")
    atomic_write_text(tmp_path / "x.txt", "1")
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(tmp_path / "x.txt", "2")
    assert (tmp_path / "x.txt").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    events = trace.read_text().splitlines()
    assert [e.split(":")[0] for e in events] == ["open", "written", "replaced", "open", "written"]
    fault_point("written", tmp_path / "x.txt")  # the 3rd: no signal
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
