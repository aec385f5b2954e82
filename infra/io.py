"""Whole-or-nothing file output: atomic writes, output sets published together, writer locks.

Every file the toolkit writes goes through :func:`atomic_write`: the bytes land in a
temporary file ``.NAME.XXXXXXXX.tmp`` in the destination folder, are flushed to disk and then
renamed over the target, so a crash never leaves a half-written file behind and never
destroys what was there before. The temporary file is removed on every exit path Python
sees (errors, Ctrl-C, SIGTERM through :mod:`infra.cli`); only a SIGKILL or a power cut
can leave one, and :func:`remove_stale_temps` clears those under the writer's lock.

A *set* of files that belong together (the vinfo outputs: vinfo.nc, vinfo.csv, config.yaml,
report) is published by :func:`publish_set` with one rename: readers see the old set or the
new one, never a mix. :func:`exclusive_lock` refuses a second concurrent writer to the
same run or output folder with an error naming the holder.

Fault injection (for the tests; see ``tests/taskcodecs/test_faults.py``). Every write
boundary calls :func:`fault_point` with an event ``PHASE:PATH`` -- ``open`` (the temporary
file exists, empty), ``written`` (it holds the new bytes, before the rename), ``replaced``
(after the rename); ``publish`` and ``published`` around the switch of :func:`publish_set`.
Environment variables::

    TASKCODECS_FAULT_TRACE=FILE      append every event to FILE, one per line
    TASKCODECS_FAULT_AT=PATTERN      fnmatch pattern over events, e.g. "written:*/last.json"
    TASKCODECS_FAULT_COUNT=N         fire at the N-th matching event (default 1)
    TASKCODECS_FAULT_SIGNAL=KILL     the signal sent to this process: KILL, INT or TERM
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import fnmatch
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

FAULT_ENV = ("TASKCODECS_FAULT_AT", "TASKCODECS_FAULT_COUNT", "TASKCODECS_FAULT_SIGNAL",
             "TASKCODECS_FAULT_TRACE")
_fault_counts: dict[tuple[str, ...], int] = {}


class BusyError(RuntimeError):
    """Another process is writing the same run or output folder."""


# ---------------------------------------------------------------------------- fault injection


def fault_point(phase: str, path: str | os.PathLike) -> None:
    """A write boundary (module docstring): traced, and where the environment asks, a signal."""
    event = f"{phase}:{os.path.abspath(path)}"
    trace = os.environ.get("TASKCODECS_FAULT_TRACE")
    if trace:
        with open(trace, "a", encoding="utf-8") as handle:
            handle.write(event + "\n")
    pattern = os.environ.get("TASKCODECS_FAULT_AT")
    if not pattern or not fnmatch.fnmatchcase(event, pattern):
        return
    key = tuple(os.environ.get(name, "") for name in FAULT_ENV)
    _fault_counts[key] = _fault_counts.get(key, 0) + 1
    if _fault_counts[key] == int(os.environ.get("TASKCODECS_FAULT_COUNT") or 1):
        name = os.environ.get("TASKCODECS_FAULT_SIGNAL") or "KILL"
        signal.raise_signal(getattr(signal, f"SIG{name.upper()}"))


# ---------------------------------------------------------------------------- atomic files


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems cannot open or sync a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and rename the result onto ``path`` atomically.

    ``write`` receives a temporary path in the same folder (so the rename stays on one
    filesystem; the file exists, empty) and must write the file there. On any error or
    interrupt the temporary file is removed and the previous content of ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:  # the name is known before the file exists: no exit path can leave it behind
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # umask applies
        except OSError as err:  # name the target, not our temporary file
            raise type(err)(err.errno, err.strerror, str(path)) from None
        fault_point("open", path)
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        fault_point("written", path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    fault_point("replaced", path)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a missing or malformed file raises an error that names it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: JSON file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); "
            "the file may be truncated or corrupt"
        ) from err
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text, expected a JSON file") from err


def check_writable(path: str | os.PathLike, folder: bool = True) -> None:
    """Fail before any work if ``path`` -- a folder to write into (``folder``) or a file --
    cannot be created or written: an OSError naming it (a file where a folder is needed,
    a folder where a file is, or no write permission / a read-only file system)."""
    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "is a file, expected a folder", str(path))
        if not folder and path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder, expected a file", str(path))
        where = path if folder else path.parent
    else:
        where = path.parent
        while not where.exists() and where != where.parent:
            where = where.parent
        if not where.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "is a file, expected a folder", str(where))
    if not os.access(where, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "not writable (permission denied or a read-only "
                              "file system)", str(where))


def find_files(root: str | os.PathLike, pattern: str) -> list[Path]:
    """``root.rglob(pattern)``, sorted, without anything under a dot-folder (``.published``
    of :func:`publish_set`, ``.git``, ...): each published file is found once, at its name."""
    root = Path(root)
    return sorted(p for p in root.rglob(pattern)
                  if not any(part.startswith(".") for part in p.relative_to(root).parts[:-1]))


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files ``.NAME.XXXXXXXX.tmp`` a killed :func:`atomic_write` left in
    ``folder`` (not recursive). Call it only while holding the folder's writer lock."""
    removed = []
    for path in Path(folder).glob(".*.tmp"):
        parts = path.name.split(".")
        if len(parts) >= 4 and len(parts[-2]) == 8 and (path.is_symlink() or path.is_file()):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


# ---------------------------------------------------------------------------- writer locks

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


# ---------------------------------------------------------------------------- output sets

STORE = ".published"  # OUT/.published/{current -> GEN, GEN/...}


def publish_set(
    out_dir: str | os.PathLike, write: Callable[[Path], Mapping[str, Path]], what: str = "outputs"
) -> dict[str, Path]:
    """Publish the files ``write(stage)`` creates in a private folder as one set in ``out_dir``.

    Each top-level entry ``NAME`` the writer makes becomes ``out_dir/NAME``, a symlink to
    ``.published/current/NAME``; ``.published/current`` is itself a symlink to the folder of
    the newest set and is switched by a single rename. So every reader of ``out_dir/NAME``
    sees the previous set or the new one, never a mix, whatever interrupts the writer;
    entries of ``out_dir`` that no set wrote are left alone. Earlier sets, temporary files and
    links to names the new set lacks are removed afterwards (also on error or interrupt).
    Holds the writer lock of ``out_dir`` (:func:`exclusive_lock`) throughout. ``write`` returns
    ``{key: path in the stage}``; the result maps the same keys to the published paths.
    A regular file or folder already at ``out_dir/NAME`` (written before sets were
    published this way) is replaced by the link, folders not in one step.
    """
    out = Path(out_dir)
    store = out / STORE
    with exclusive_lock(out, f"{what} folder {out}"):
        store.mkdir(parents=True, exist_ok=True)
        gen = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{secrets.token_hex(4)}"
        stage = store / gen
        try:
            _collect(store, out)
            stage.mkdir()
            written = write(stage)
            for name in sorted(p.name for p in stage.iterdir()):
                _link_member(out, name)  # points through "current": the old set until the switch
            _fsync_tree(stage)
            fault_point("publish", out)
            link = store / f".current.{secrets.token_hex(4)}.tmp"
            os.symlink(gen, link)
            os.replace(link, store / "current")
            _fsync_dir(store)
            fault_point("published", out)
        finally:
            _collect(store, out)
    return {key: out / Path(path).relative_to(stage) for key, path in written.items()}


def _link_member(out: Path, name: str) -> None:
    target = os.path.join(STORE, "current", name)
    path = out / name
    if path.is_symlink() and os.readlink(path) == target:
        return
    if path.is_dir() and not path.is_symlink():  # a folder of an earlier, unpublished write
        path.rename(out / STORE / f"legacy-{secrets.token_hex(4)}-{name}")
    link = out / f".{name}.{secrets.token_hex(4)}.tmp"
    os.symlink(target, link)
    os.replace(link, path)


def _collect(store: Path, out: Path) -> None:
    """Remove everything in ``store`` but the current set, and links to names it lacks."""
    current = os.readlink(store / "current") if (store / "current").is_symlink() else None
    for entry in store.iterdir():
        if entry.name in ("current", current):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    prefix = os.path.join(STORE, "current", "")
    for entry in out.iterdir():
        if entry.is_symlink() and os.readlink(entry).startswith(prefix) and not entry.exists():
            entry.unlink(missing_ok=True)
    remove_stale_temps(out)


def _fsync_tree(folder: Path) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(root))
