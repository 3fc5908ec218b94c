"""Predict motion, reconstruction and attention for frames from any source with a checkpoint."""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from motioncore import cli
from motioncore.checkpoint import load_checkpoint
from motioncore.config import UsageError, from_dict
from motioncore.model import MotionNet, predict_batch
from motioncore.motion import displacements


def load_model(path) -> tuple[MotionNet, object]:
    """The EMA (else raw) weights of a checkpoint, on the CPU, in eval mode."""
    state = load_checkpoint(path)
    config = from_dict(state["config"])
    model = MotionNet(config)
    model.load_state_dict(state["ema"] if state.get("ema") is not None else state["model"])
    return model.eval(), config


@torch.no_grad()
def predict(model: MotionNet, config, frames: np.ndarray, batch_size: int = 256) -> dict:
    """``frames (N, T, H, W)`` float32 in [0, 1] -> classes, motion (dx, dy), target, attention."""
    if frames.ndim != 4 or frames.shape[1] != config.frames:
        raise UsageError(f"frames of shape {frames.shape}: this checkpoint needs (N, {config.frames}, "
                         "H, W) float32 in [0, 1]")
    if min(frames.shape[2:]) < 8:
        raise UsageError(f"frames of shape {frames.shape}: H and W must be >= 8")
    if frames.size and not (np.isfinite(frames).all() and frames.min() >= 0 and frames.max() <= 1):
        raise UsageError(f"frame values span [{frames.min():g}, {frames.max():g}]: "
                         "expected finite values in [0, 1]")
    out = {"classes": [], "target": [], "attention": []}
    table = displacements(config.motion_range)
    for chunk in torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).split(batch_size):
        p = predict_batch(model, chunk)
        out["classes"].append(p.classes)
        out["target"].append(p.recon)
        if p.attention is not None:
            out["attention"].append(p.attention)
    classes = torch.cat(out["classes"])  # (N, D, H, W)
    result = {"classes": classes.numpy(), "motion": table[classes].numpy(),
              "target": torch.cat(out["target"]).numpy().astype(np.float32)}
    if out["attention"]:
        result["attention"] = torch.cat(out["attention"]).numpy().astype(np.float32)
    return result


def read_frames(path: str) -> np.ndarray:
    """A ``--frames`` file: one numeric array in a .npy (no pickled objects)."""
    try:
        frames = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UsageError(f"--frames {path}: cannot read it as a .npy array ({e})") from None
    if not isinstance(frames, np.ndarray):  # an .npz archive
        frames.close()
        raise UsageError(f"--frames {path}: an .npz archive; expected one .npy array of "
                         "(N, T, H, W) float32 in [0, 1]")
    if not (np.issubdtype(frames.dtype, np.floating) or np.issubdtype(frames.dtype, np.integer)):
        raise UsageError(f"--frames {path}: values of dtype {frames.dtype}; expected float32 in "
                         "[0, 1]")
    return frames


@cli.command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m motioncore.predict",
                                description="Predict per-pixel motion with a trained checkpoint.")
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt written by motioncore.train")
    p.add_argument("--frames", required=True, help=".npy of (N, T, H, W) float32 in [0, 1]")
    p.add_argument("--out", required=True, help=".npz to write classes, motion, target, attention")
    args = p.parse_args(argv)
    cli.check_output("--out", args.out)
    try:
        model, config = load_model(args.checkpoint)
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is the user's input
        raise UsageError(f"cannot load checkpoint {args.checkpoint}: {e}") from None
    frames = read_frames(args.frames)
    result = predict(model, config, frames)
    np.savez_compressed(args.out, **result)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v.shape}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
