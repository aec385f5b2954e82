"""The one error policy of every command line of the toolkit.

    def main(argv=None) -> int:
        return cli.run(_main, argv)          # _main(argv) parses and does the work

Every CLI (taskcodecs.data.synthetic, .train, .evaluate, .sweep, .codec, .demo,
vinfo.estimate, analysis.report) runs through :func:`run`, which turns what a user can cause
into one line on stderr and an exit status, never a traceback:

=====================================================  ====  ==================================
what                                                   exit  message
=====================================================  ====  ==================================
a bad value, file or dataset (ValueError: ConfigError,  2    ``error: <the message, which
DatasetError, BitstreamError, VinfoInputError, ...),         names the value or file>``
CheckpointError, BusyError, a non-finite loss
an OSError (unwritable, a file where a folder is          2    ``error: PATH: permission denied``
needed, read-only or full disk, ...)                          (the path and the reason)
Ctrl-C (KeyboardInterrupt)                              130   ``interrupted; <what was kept>``
SIGTERM (a scheduler's kill)                            143   ``terminated; <what was kept>``
anything else (a bug)                                     1   ``error: unexpected <Type>: ...``
=====================================================  ====  ==================================

Every entry point has the same shape::

    def build_parser() -> argparse.ArgumentParser: ...   # every option documented
    def main(argv: list[str] | None = None) -> int:
        return cli.run(_main, argv)
    def _main(argv: list[str]) -> int: ...               # parse, set up logging, do the work
    if __name__ == "__main__":
        sys.exit(main())

Argument errors of argparse keep argparse's usage message and exit status 2. ``--debug``
anywhere on the command line (or ``TASKCODECS_DEBUG=1``) adds the traceback. "What was
kept" defaults to "nothing was written"; a CLI states more with :func:`on_interrupt` as it
goes (a training run: its checkpoints and how to resume). Writes are atomic
(:mod:`infra.io`), so an interrupted command never leaves a half-written file.
"""

from __future__ import annotations

import argparse
import errno
import logging
import math
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence

from infra.locks import BusyError  # this module stays light: no torch at import

EXIT_ERROR, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 1, 130, 143
# user errors besides ValueError (ConfigError, DatasetError, BitstreamError, ... all are),
# looked up only if their module was imported (a synthetic-data run never imports torch)
_MORE_USER_ERRORS = (("taskcodecs.runs.checkpoint", "CheckpointError"),
                     ("taskcompat.demo_steps", "DemoError"))
_REASONS = {
    errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system", errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded", errno.EISDIR: "is a folder, expected a file",
    errno.ENOTDIR: "a component of the path is a file, not a folder",
    errno.EEXIST: "already exists", errno.ENOENT: "no such file or folder",
    errno.ENAMETOOLONG: "name too long",
}
_interrupt_message: list[Callable[[], str]] = []
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
# third-party warnings every entry point hides (message regex, category name): CompressAI's
# import pulls in torch_geometric, which calls the deprecated torch.jit.script at import
KNOWN_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    (r"`torch\.jit\.script(_method)?` is deprecated", FutureWarning),
)


def filter_known_warnings() -> None:
    """Hide :data:`KNOWN_WARNINGS` (the one place they are filtered). Called when
    :mod:`infra` is imported, so before any entry point imports CompressAI; idempotent."""
    import warnings

    for message, category in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


class TqdmLoggingHandler(logging.Handler):
    """Writes log records through ``tqdm.write`` (to stderr), so a line never lands on, or
    breaks, a progress bar that is being drawn."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm  # light, but only needed once something logs

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def setup_logging(level: int = logging.INFO, fmt: str = LOG_FORMAT) -> None:
    """``logging.basicConfig`` for a command line, through :class:`TqdmLoggingHandler`: the
    root logger gets that one handler at ``level``. Like basicConfig it does nothing when the
    root logger already has handlers (an embedding application, pytest's log capture)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = TqdmLoggingHandler()
    handler.setFormatter(logging.Formatter(fmt))
    root.addHandler(handler)
    root.setLevel(level)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that cleanup (``finally``) runs."""


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean a bad input (exit 2), not a bug."""
    found = [getattr(sys.modules[module], name) for module, name in _MORE_USER_ERRORS
             if module in sys.modules]
    return (ValueError, FloatingPointError, BusyError, *found)


def on_interrupt(message: str | Callable[[], str]) -> None:
    """What an interrupt at this point keeps (the text after "interrupted; ")."""
    _interrupt_message[:] = [message if callable(message) else (lambda: message)]


def describe_os_error(err: OSError) -> str:
    """``PATH: reason`` for an OSError (the path it names, the reason in words)."""
    custom = err.strerror and err.errno and err.strerror != os.strerror(err.errno)
    reason = err.strerror if custom else _REASONS.get(err.errno) or (err.strerror or str(err)).lower()
    if err.errno == errno.EEXIST and err.filename and os.path.isfile(err.filename):
        reason = "is a file, expected a folder"
    if err.filename is None:
        return reason if err.strerror else str(err)
    second = f" -> {err.filename2}" if err.filename2 else ""
    return f"{err.filename}{second}: {reason}"


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def run(main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None) -> int:
    """Call ``main(argv)`` under the error policy of the module docstring; its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("TASKCODECS_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    on_interrupt("nothing was written")
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None

    def fail(prefix: str, message: str, status: int) -> int:
        if debug:
            traceback.print_exc()
        print(f"{prefix}{one_line(message)}", file=sys.stderr, flush=True)
        return status

    try:
        return int(main(args) or 0)
    except KeyboardInterrupt:
        return fail("interrupted; ", _interrupt_message[0](), EXIT_INTERRUPTED)
    except Terminated:
        return fail("terminated; ", _interrupt_message[0](), EXIT_TERMINATED)
    except Exception as err:  # noqa: BLE001 - the policy: one line, the traceback on --debug
        if isinstance(err, user_errors()):
            return fail("error: ", str(err) or type(err).__name__, EXIT_ERROR)
        if isinstance(err, OSError):
            return fail("error: ", describe_os_error(err), EXIT_ERROR)
        return fail("error: ", f"unexpected {type(err).__name__}: {err} (rerun with --debug "
                    "for the traceback)", EXIT_INTERNAL)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------- shared arguments


def add_overrides(parser: argparse.ArgumentParser, help: str) -> None:
    """The positional ``key=value`` config overrides of a command line (train, sweep);
    parsed by :func:`infra.config.parse_overrides`."""
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=help)


# ---------------------------------------------------------------------------- argument types


def _int_at_least(text: str, low: int, expected: str) -> int:
    """``text`` as an integer >= ``low``, or an ArgumentTypeError "expected {expected}, got …"."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0, "an integer >= 0")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1, "a positive integer")


def seed(text: str) -> int:
    """argparse type: a seed, an integer in [0, 2**63) (0 is a seed)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"a seed must be in [0, 2**63) (0 is a seed), got {value}")
    return value


def finite_floats(text: str, what: str) -> list[float]:
    """Comma-separated finite, non-negative numbers (ValueError naming ``what`` otherwise)."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what}: expected comma-separated numbers, got {text!r}") from None
    bad = [v for v in values if not math.isfinite(v) or v < 0]
    if not values or bad:
        raise ValueError(f"{what}: expected finite non-negative numbers, got {text!r}")
    return values
