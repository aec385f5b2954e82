"""Whole-or-nothing file output: atomic writes, output sets published together.

Every file the toolkit writes goes through :func:`atomic_write`: the bytes land in a
temporary file ``.NAME.XXXXXXXX.tmp`` in the destination folder, are flushed to disk and then
renamed over the target, so a crash never leaves a half-written file behind and never
destroys what was there before. The temporary file is removed on every exit path Python
sees (errors, Ctrl-C, SIGTERM through :mod:`infra.cli`); only a SIGKILL or a power cut
can leave one, and :func:`remove_stale_temps` clears those under the writer's lock.

A *set* of files that belong together (the vinfo outputs: vinfo.nc, vinfo.csv, config.yaml,
report) is published by :func:`publish_set` with one rename: readers see the old set or the
new one, never a mix. The writer lock it holds meanwhile, which refuses a second concurrent
writer to the same run or output folder, is :func:`infra.locks.exclusive_lock`.

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
import fnmatch
import json
import os
import secrets
import shutil
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from infra.locks import exclusive_lock  # publish_set holds it (vinfo.cli imports it from here)

FAULT_ENV = ("TASKCODECS_FAULT_AT", "TASKCODECS_FAULT_COUNT", "TASKCODECS_FAULT_SIGNAL",
             "TASKCODECS_FAULT_TRACE")
_fault_counts: dict[tuple[str, ...], int] = {}


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
