"""Writer locks: one writer at a time per run or output folder, whatever the path it came by.

:func:`exclusive_lock` refuses a second concurrent writer to the same run or output folder
with :class:`BusyError` naming the holder. The lock file sits beside the target's canonical
path (:func:`lock_path`, :func:`canonical_path`: symlinks, ``..`` and bind mounts resolved),
so every alias of one folder meets the same lock. The whole-or-nothing writes that run under
it are in :mod:`infra.io`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path


class BusyError(RuntimeError):
    """Another process is writing the same run or output folder."""


_held: dict[str, int] = {}  # lock files this process holds -> nesting depth
os.register_at_fork(after_in_child=_held.clear)  # POSIX locks are not inherited: nor is this


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of ``target`` (a file or folder): ``.NAME.lock`` beside its canonical
    path (:func:`canonical_path`: symlinks, ``..`` and bind mounts resolved, also where
    ``target`` does not exist yet), so every alias of one folder or file meets the same lock.
    Where that place is not writable (another mount of the filesystem, read-only), beside the
    real path."""
    lock = None
    for real in dict.fromkeys((canonical_path(target), Path(os.path.realpath(target)))):
        lock = real.parent / f".{real.name}.lock"
        if _can_create_in(lock.parent):
            break
    return lock


def _can_create_in(folder: Path) -> bool:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return os.access(folder, os.W_OK | os.X_OK)


def canonical_path(target: str | os.PathLike) -> Path:
    """One name for every alias of ``target``: its real path (symlinks and ``..`` resolved),
    then, on Linux, seen through bind mounts: the place it has in the mount of its filesystem
    whose root is closest to the filesystem's own root (``/proc/self/mountinfo``). Elsewhere,
    or if the mount table cannot be read, the real path."""
    real = os.path.realpath(target)
    mounts = _mounts()
    under = [m for m in mounts if _is_under(real, m[2])]
    if not under:
        return Path(real)
    dev, root, point = max(under, key=lambda m: len(m[2]))  # the mount holding it (last wins)
    inside = os.path.normpath(os.path.join(root, os.path.relpath(real, point)))
    views = [(len(r), p, r) for d, r, p in mounts if d == dev and _is_under(inside, r)]
    _, point, root = min(views)
    return Path(os.path.normpath(os.path.join(point, os.path.relpath(inside, root))))


def _is_under(path: str, folder: str) -> bool:
    return folder == "/" or path == folder or path.startswith(folder.rstrip("/") + "/")


def _mounts() -> list[tuple[str, str, str]]:
    """(device, root inside its filesystem, mount point) of each mount, in mount order."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    return [(f[2], _unescape(f[3]), _unescape(f[4]))
            for f in (line.split(" ") for line in lines) if len(f) > 4]


def _unescape(field: str) -> str:
    """A path field of mountinfo: ``\\040`` for a space, and so on."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


@contextlib.contextmanager
def exclusive_lock(target: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold the writer lock of ``target`` (a run folder, an output folder or file), the file
    :func:`lock_path` beside it; ``what`` names it in the error.

    A second process asking for it gets :class:`BusyError` naming the holder (pid, host,
    start time, command). The lock is a POSIX record lock (``lockf``): it dies with its
    process, so a killed writer never leaves a stale lock (its file, if left, is simply taken
    over), and forked children (DataLoader workers) do not inherit it. The lock is keyed on
    the canonical path (:func:`lock_path`): a symlink to the folder, a path through ``..`` or
    a bind mount of it is refused like the folder itself. Re-entrant within a
    process; the file is removed on release. (As with every POSIX lock, the holding process
    must not open and close the lock file itself: that would release it.)
    """
    lockfile = lock_path(target)
    key = os.path.realpath(lockfile)
    if _held.get(key):
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    lockfile.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lockfile, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EAGAIN):
                os.close(fd)
                raise
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            real = lockfile.parent / lockfile.name[1:-len(".lock")]
            if os.path.abspath(target) != str(real):
                what = f"{what} (= {real})"
            raise BusyError(f"{what} is being written by another process ({holder}); wait "
                            f"for it to finish or write elsewhere (lock file {lockfile})") from None
        try:  # the file may have been removed by its previous holder after we opened it
            same = os.fstat(fd).st_ino == os.stat(lockfile).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    command = " ".join([os.path.basename(sys.executable), *sys.argv])[:300]
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {started}: "
                  f"{command}\n".encode(), 0)
    _held[key] = 1
    try:
        yield
    finally:
        del _held[key]
        with contextlib.suppress(OSError):
            lockfile.unlink()
        os.close(fd)
