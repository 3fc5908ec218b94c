"""One exit-status policy for every command-line entry point of the project.

    @cli.command
    def main(argv: list[str] | None = None) -> int: ...

A problem the user can fix (a flag, a value, a path, missing or corrupt MNIST) is raised as
``UsageError`` or ``MnistError`` and ends in one line on stderr and exit status 2; a training
run that diverges ends in one line and status 1; anything else is an internal failure: its
traceback, and status 1. Ctrl-C ends with status 130 and no traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

from motioncore.config import UsageError
from motioncore.mnist import MnistError

USER_ERROR, INTERNAL_ERROR, INTERRUPTED = 2, 1, 130


class Diverged(FloatingPointError):
    """Training met a non-finite loss: the run's settings, not the code, are at fault."""


def error_line(e: BaseException) -> str:
    """``error: <first line of the message>``."""
    text = str(e).strip().splitlines()
    return f"error: {text[0] if text else type(e).__name__}"


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

    return wrapped
