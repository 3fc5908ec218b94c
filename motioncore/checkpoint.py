"""Checkpoints of a run: what one must hold, loading one safely, and guarding a run directory."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from motioncore import cli
from motioncore.config import RunConfig, UsageError

CHECKPOINT_KEYS = ("config", "step", "history", "model", "opt", "ema", "rng")


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint's contents, loaded with ``weights_only=True`` (no code runs on load).

    A file that is not a whole motioncore checkpoint is a ``UsageError`` naming it and why."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated, foreign or unsafe: the file is the problem
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UsageError(f"checkpoint {path} cannot be loaded (truncated, or not a checkpoint "
                         f"written by motioncore.train: {reason})") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise UsageError(f"checkpoint {path} is not a motioncore checkpoint (no "
                         f"{', '.join(missing)})")
    return state


RESULTS = ("checkpoint.pt", "metrics.json")  # a directory holding either holds a run


def check_out(out: Path, config: RunConfig, *, resume: bool, overwrite: bool) -> None:
    """Refuse an ``--out`` that cannot be written or holds a run the user did not ask to touch.

    Makes the directory (empty) when it is missing; writes nothing else."""
    cli.check_output("--out", out, directory=True)
    held = [n for n in RESULTS if (out / n).exists()]
    if held and not (resume or overwrite):
        raise UsageError(f"--out {out}: already holds a run ({', '.join(held)}); pass --resume to "
                         "continue it, --overwrite to replace it, or another --out")
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.exists():
        changed = config.differs(load_checkpoint(ckpt)["config"])
        if changed:
            raise UsageError(f"--resume: {ckpt} was written by a different config (differs in "
                             f"{', '.join(changed)}); drop those flags or use another --out")
    out.mkdir(parents=True, exist_ok=True)
