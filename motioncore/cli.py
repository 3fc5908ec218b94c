"""One exit-status policy for every command-line entry point of the project.

    @cli.command
    def main(argv: list[str] | None = None) -> int: ...

A problem the user can fix (a flag, a value, a path, missing or corrupt MNIST) is raised as
``UsageError`` or ``MnistError`` and ends in one line on stderr and exit status 2; a training
run that diverges ends in one line and status 1; anything else is an internal failure: its
traceback, and status 1. Ctrl-C ends with status 130 and no traceback; so does a closed stdout
(`... | head`), with status 141 as the shell gives a tool whose reader went away.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

from motioncore.config import UsageError
from motioncore.mnist import MnistError

USER_ERROR, INTERNAL_ERROR, INTERRUPTED = 2, 1, 130
CLOSED_PIPE = 141  # 128 + SIGPIPE, as the shell reports a tool whose reader went away


class Diverged(FloatingPointError):
    """Training met a non-finite loss: the run's settings, not the code, are at fault."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type's name when the message is empty),
    at most ``limit`` characters: what a one-line error or a failure reason shows of it."""
    lines = str(e).strip().splitlines()
    return (lines[0] if lines else type(e).__name__)[:limit]


def error_line(e: BaseException) -> str:
    """``error: <first line of the message>``."""
    return f"error: {first_line(e, limit=10_000)}"


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose mistakes (an unknown flag, a missing or malformed value) end like every
    other user error, in one line naming the flag and status 2, not argparse's usage block.

    Its ``parse_args`` must run inside a ``@command`` ``main``, which prints the line."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


def available_memory() -> int:
    """Bytes this process can still allocate: the system's available memory, or less under a
    cgroup (container) limit."""
    try:
        with open("/proc/meminfo") as f:
            free = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            free = min(free, int(limit) - used)
    except (OSError, ValueError):
        pass  # no cgroup v2 limit
    return max(free, 0)


def gigabytes(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_output(flag: str, path: str | os.PathLike, *, directory: bool = False) -> Path:
    """Refuse an output location that cannot be created or written, before any work starts.

    ``directory``: ``path`` is a directory (made when missing); else a file, whose directory
    must exist. Nothing is created here."""
    path = Path(path)
    try:
        os.stat(path)
    except FileNotFoundError:
        pass
    except OSError as e:  # a name over 255 characters, a loop of links, ...
        raise UsageError(f"{flag} {str(path)[:80]}...: not a usable path ({e.strerror})") from None
    if path.exists() and path.is_dir() != directory:
        raise UsageError(f"{flag} {path}: is a {'file' if directory else 'directory'}, not a "
                         f"{'directory' if directory else 'file'}")
    probe = path if directory else path.parent
    if not directory and not probe.is_dir():
        raise UsageError(f"{flag} {path}: directory {probe} does not exist")
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent  # a directory to be made: its nearest existing ancestor decides
    if not probe.is_dir():
        raise UsageError(f"{flag} {path}: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: {probe} is not writable")
    return path


def check_npz(flag: str, path: str | os.PathLike) -> None:
    """Refuse an .npz output named otherwise: NumPy would add ".npz" and write another file."""
    if Path(path).suffix != ".npz":
        raise UsageError(f"{flag} {path}: the output is an .npz archive; give a name ending "
                         "in .npz")


def command(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """Wrap a CLI's ``main(argv) -> status`` in the project's exit-status policy."""

    @functools.wraps(main)
    def wrapped(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except (UsageError, MnistError) as e:
            print(error_line(e), file=sys.stderr, flush=True)
            return USER_ERROR
        except Diverged as e:
            print(error_line(e), file=sys.stderr, flush=True)
            return INTERNAL_ERROR
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr, flush=True)
            return INTERRUPTED
        except BrokenPipeError:  # stdout's reader stopped reading (`... --plan | head`)
            # Point stdout at nothing, so that the interpreter's last flush cannot fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return CLOSED_PIPE

    return wrapped
