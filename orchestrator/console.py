"""What the sweep driver prints: a reader of its output that goes away must not fail the sweep.

A sweep piped into ``head`` (or whose terminal closed) goes on: its trials and parent run are
recorded as they really end, and the command ends with status 141 (``cli.CLOSED_PIPE``), as the
shell reports a tool whose reader left. A failed print inside a Tune callback would otherwise
fail the trial it reports on.
"""

from __future__ import annotations

import os
import sys

_gone = False


def say(*parts: object, err: bool = False) -> None:
    """``print(*parts, flush=True)`` to stdout (stderr with ``err``), silent once its reader left."""
    global _gone
    stream = sys.stderr if err else sys.stdout
    if _gone and not err:
        return
    try:
        print(*parts, file=stream, flush=True)
    except BrokenPipeError:
        if not err:
            _gone = True
            # Point stdout at nothing, so that no later write or the interpreter's last flush
            # fails again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def reader_left() -> bool:
    """True once stdout's reader went away."""
    return _gone
