"""infra.locks: writer locks, re-entrant and exclusive, seen through every alias of a folder."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from infra.locks import BusyError, exclusive_lock, lock_path


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
