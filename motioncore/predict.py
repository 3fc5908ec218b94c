"""Predict motion, reconstruction and attention for frames from any source with a checkpoint."""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

from motioncore import cli
from motioncore.checkpoint import load_checkpoint, load_weights
from motioncore.config import UsageError, from_saved
from motioncore.model import MotionNet, predict_batch
from motioncore.motion import displacements


def load_model(path) -> tuple[MotionNet, object]:
    """The EMA (else raw) weights of a checkpoint, on the CPU, in eval mode."""
    state = load_checkpoint(path)
    try:
        config = from_saved(state["config"])
    except UsageError as e:  # every refusal of load_model names the checkpoint
        raise UsageError(f"checkpoint {path}: its config is not one this motioncore runs "
                         f"({e})") from None
    model = MotionNet(config)
    load_weights(model, state["ema"] if state.get("ema") is not None else state["model"], config,
                 path)
    return model.eval(), config


@torch.no_grad()
def network_bytes_per_pixel(model: MotionNet, config) -> float:
    """Memory one frame's forward pass and reconstruction take per pixel, at most.

    The sum of every layer's output on a small probe (none freed, in-place ones not counted
    twice) and the splatting's working set (int64 index, moved and gathered copies of the K
    classes): 1.1-2x the peak measured on 1024x1024 frames over widths, depths, ranges and
    networks."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(output, torch.Tensor) and not getattr(module, "inplace", False):
            total += output.numel() * output.element_size()

    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    training = model.training
    try:
        model.eval()(torch.zeros(1, config.frames, 16, 16))  # eval: BatchNorm's stats stay
    finally:
        model.train(training)
        for h in hooks:
            h.remove()
    return total / 256 + 20 * config.directions * config.num_classes


def check_memory(model: MotionNet, config, shape: tuple, batch_size: int) -> int:
    """The frames per forward pass that fit in memory (at most ``batch_size``); refuse frames
    of which not even one fits, or too many to hold with their outputs."""
    n, t, h, w = shape
    # per frame, held throughout: the float32 input and a validity mask, the outputs (int64
    # classes and motion, float32 target and attention) twice while they are concatenated
    held = h * w * (5 * t + 2 * (24 * config.directions + 8))
    forward = network_bytes_per_pixel(model, config) * h * w
    free = cli.available_memory()
    if n * held + forward > free:
        need = cli.gigabytes(n * held + forward)
        if held + forward > free:
            side = int((free / (held + forward) * h * w) ** 0.5)
            fits = f"frames up to about {side}x{side} pixels fit"
        else:
            fits = f"at most {int((free - forward) // held)} frames of {h}x{w} fit at once"
        raise UsageError(f"frames of shape {tuple(shape)}: predicting needs about {need} of "
                         f"memory and {cli.gigabytes(free)} is available; {fits}")
    return int(max(1, min(batch_size, (free - n * held) // forward)))


@torch.no_grad()
def predict(model: MotionNet, config, frames: np.ndarray, batch_size: int = 256) -> dict:
    """``frames (N, T, H, W)`` float32 in [0, 1] -> classes, motion (dx, dy), target, attention."""
    if frames.ndim != 4 or frames.shape[1] != config.frames:
        raise UsageError(f"frames of shape {frames.shape}: this checkpoint needs (N, {config.frames}, "
                         "H, W) float32 in [0, 1]")
    if min(frames.shape[2:]) < 8:
        raise UsageError(f"frames of shape {frames.shape}: H and W must be >= 8")
    batch_size = check_memory(model, config, frames.shape, batch_size)
    if frames.size and not (np.isfinite(frames).all() and frames.min() >= 0 and frames.max() <= 1):
        raise UsageError(f"frame values span [{frames.min():g}, {frames.max():g}]: "
                         "expected finite values in [0, 1]")
    out = {"classes": [], "target": [], "attention": []}
    table = displacements(config.motion_range)
    for start in range(0, len(frames), batch_size):  # a float32 copy of one chunk at a time
        chunk = torch.from_numpy(np.array(frames[start:start + batch_size], dtype=np.float32))
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
        frames = np.load(path, allow_pickle=False, mmap_mode="r")  # read once it fits
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
    p = cli.ArgumentParser(prog="python -m motioncore.predict",
                           description="Predict per-pixel motion with a trained checkpoint.")
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt written by motioncore.train")
    p.add_argument("--frames", required=True, help=".npy of (N, T, H, W) float32 in [0, 1]")
    p.add_argument("--out", required=True, help=".npz to write classes, motion, target, attention")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    args = p.parse_args(argv)
    out = cli.check_output("--out", args.out)
    cli.check_npz("--out", out)
    if out.exists() and not args.overwrite:
        raise UsageError(f"--out {out}: already exists; pass --overwrite to replace it, or "
                         "another --out")
    try:
        model, config = load_model(args.checkpoint)
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is the user's input
        raise UsageError(f"cannot load checkpoint {args.checkpoint}: {e}") from None
    frames = read_frames(args.frames)
    result = predict(model, config, frames)
    # Into a temporary file first: a failed write leaves an existing OUT as it was.
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:  # a file object: NumPy adds no suffix to it
            np.savez_compressed(f, **result)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"wrote {out}: " + ", ".join(f"{k} {v.shape}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
