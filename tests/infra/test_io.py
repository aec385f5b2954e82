"""infra.io: output sets published by one rename, writer locks, stale temporaries."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

from infra.io import (
    BusyError,
    atomic_write_text,
    check_writable,
    exclusive_lock,
    fault_point,
    find_files,
    lock_path,
    publish_set,
    remove_stale_temps,
)


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


def test_locks_are_reentrant_exclusive_and_removed(tmp_path):
    target = tmp_path / "run"
    with exclusive_lock(target, "run"):
        with exclusive_lock(target, "run"):  # the same process may nest
            assert lock_path(target).is_file()
        pid = os.fork()  # (the holder itself must not open the file: closing it would unlock)
        if pid == 0:  # pragma: no cover - the child: POSIX locks are per process
            try:
                with exclusive_lock(target, "run"):
                    os._exit(1)
            except BusyError as err:
                os._exit(0 if f"pid {os.getppid()}" in str(err) else 2)
            os._exit(3)
        assert os.waitpid(pid, 0)[1] == 0
    assert not lock_path(target).exists()


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


@pytest.mark.parametrize("alias", ["symlink", "dotdot", "bind"])
def test_an_alias_of_a_locked_folder_is_refused(tmp_path, alias):
    target = tmp_path / "run"
    target.mkdir()
    (tmp_path / "sub").mkdir()
    if alias == "symlink":
        other = tmp_path / "link"
        other.symlink_to(target, target_is_directory=True)
    elif alias == "bind":
        other = tmp_path / "sub" / "mounted"
        other.mkdir()
        if shutil.which("mount") is None or subprocess.run(
                ["mount", "--bind", str(target), str(other)], capture_output=True).returncode:
            pytest.skip("bind mounts need root (mount --bind)")
    else:
        other = tmp_path / "sub" / ".." / "run"
    try:
        assert lock_path(other) == lock_path(target)
        with exclusive_lock(target, "run"):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                try:
                    with exclusive_lock(other, f"run {other}"):
                        os._exit(1)
                except BusyError as err:
                    ok = f"pid {os.getppid()}" in str(err) and (
                        alias == "dotdot" or f"(= {os.path.realpath(target)})" in str(err))
                    os._exit(0 if ok else 2)
                os._exit(3)
            assert os.waitpid(pid, 0)[1] == 0
    finally:
        if alias == "bind":
            subprocess.run(["umount", str(other)], check=True)
