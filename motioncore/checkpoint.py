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
        reason = cli.first_line(e)
        raise UsageError(f"checkpoint {path} cannot be loaded (truncated, or not a checkpoint "
                         f"written by motioncore.train: {reason})") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise UsageError(f"checkpoint {path} is not a motioncore checkpoint (no "
                         f"{', '.join(missing)})")
    return state


ARCHITECTURE = ("frames", "motion_range", "disappear", "width", "depth", "norm", "network",
                "attention")  # the config fields that shape the network's weights


def weights_mismatch(model: torch.nn.Module, weights) -> str | None:
    """How ``weights`` (a state dict) do not fit ``model``, in a few words; None when they fit."""
    if not isinstance(weights, dict):
        return f"its weights are a {type(weights).__name__}, not a state dict"
    own = model.state_dict()
    shape = {k: tuple(v.shape) for k, v in weights.items() if isinstance(v, torch.Tensor)}
    odd = ([f"{k} is missing from the checkpoint" for k in own if k not in weights]
           + [f"the checkpoint's {k} is not in the network" for k in weights if k not in own]
           + [f"{k} is {shape.get(k)} in the checkpoint, {tuple(v.shape)} in the network"
              for k, v in own.items() if k in weights and shape.get(k) != tuple(v.shape)])
    if not odd:
        return None
    return odd[0] + (f" (and {len(odd) - 1} more)" if len(odd) > 1 else "")


def load_weights(model: torch.nn.Module, weights, config: RunConfig, path) -> None:
    """``model.load_state_dict(weights)``, or a ``UsageError`` saying that the weights are not
    the network the checkpoint's own config describes (an edited config, or a checkpoint of
    another version of motioncore) and naming the first tensor that differs."""
    odd = weights_mismatch(model, weights)
    if odd:
        raise UsageError(f"checkpoint {path}: its weights are not those of the network its "
                         "config describes (" + ", ".join(f"{k}={getattr(config, k)}" for k in
                                                          ARCHITECTURE) + f"): {odd}")
    model.load_state_dict(weights)


RESULTS = ("checkpoint.pt", "metrics.json")  # a directory holding either holds a run
# Every file motioncore.train writes into a run directory (checkpoint.tmp: a save in progress).
RUN_FILES = ("config.json", "checkpoint.tmp", "panel.png", "classes.png", *RESULTS)


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


def clear_run(out: Path) -> None:
    """Remove the run in ``out`` (``--overwrite``), before the new run writes anything: a new
    run that fails or is stopped then leaves only its own files, never a mixture of two runs.
    Other files in ``out`` are the user's and stay."""
    for name in RUN_FILES:  # the results last: an interrupted clear still reads as a run
        (out / name).unlink(missing_ok=True)
