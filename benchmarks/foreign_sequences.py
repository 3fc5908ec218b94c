"""Does a trained model score the same on sequences the project did not generate?

    python benchmarks/foreign_sequences.py CHECKPOINT [CHECKPOINT ...] [--n 2000] [--seed 7]

Sequences written here from docs/conventions.md alone, one at a time in NumPy, with NumPy's own
random numbers: a test-split digit shifted by ``(t - 2) v`` (pixels shifted off the canvas are
lost), a static ``Uniform(0, noise)`` background, ``I = a + (1 - a) B``, labels on the source
grids. Nothing of ``motioncore.data`` or ``motioncore.randomness`` is used, so a model that fit
the project's generator rather than the scene would score lower here. Each checkpoint is
evaluated on ``--n`` of these and on the first ``--n`` sequences of its own test set (the
project's generator, the evaluation seed the trial was tested with); every metric of
docs/conventions.md for both, and their difference in points. Prints one JSON line per
checkpoint, then a summary line.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from motioncore import mnist
from motioncore.metrics import add, batch_sums, finalize
from motioncore.model import predict_batch
from motioncore.predict import load_model
from motioncore.train import dataset, evaluate

SIZE = 28
SHOWN = ("acc", "acc_fg", "fg_net", "bg_motion", "acc_zero")


def shifted(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``image`` moved by (dx, dy) pixels; what leaves the canvas is lost."""
    h, w = image.shape
    out = np.zeros_like(image)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        image[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def foreign_sequence(digit: np.ndarray, v: tuple[int, int], background: np.ndarray, frames: int,
                     r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One sequence by the conventions: frames (T, H, W), labels (D, H, W), digit masks (D, H, W)."""
    vx, vy = v
    alpha = np.stack([shifted(digit, (t - 2) * vx, (t - 2) * vy) for t in range(frames)])
    alpha = alpha.astype(np.float32) / 255.0
    video = alpha + (1.0 - alpha) * background
    sources = [1] if frames == 3 else [1, 3]
    zero = r * (2 * r + 1) + r
    labels = np.full((len(sources), SIZE, SIZE), zero, np.int64)
    masks = np.zeros((len(sources), SIZE, SIZE), bool)
    for d, s in enumerate(sources):
        dx, dy = (2 - s) * vx, (2 - s) * vy
        masks[d] = alpha[s] > 0
        labels[d][masks[d]] = (dy + r) * (2 * r + 1) + (dx + r)
    return video.astype(np.float32), labels, masks


def foreign_batch(images: np.ndarray, n: int, *, frames: int, r: int, noise: float,
                  seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        digit = images[rng.integers(len(images))]
        v = tuple(int(c) for c in rng.integers(-r, r + 1, size=2))
        background = rng.uniform(0.0, noise, (SIZE, SIZE)).astype(np.float32)
        out.append(foreign_sequence(digit, v, background, frames, r))
    return tuple(torch.from_numpy(np.stack(parts)) for parts in zip(*out, strict=True))


@torch.no_grad()
def evaluate_foreign(model, config, frames, labels, fg, batch: int = 250) -> dict[str, float]:
    total = None
    for i in range(0, len(frames), batch):
        p = predict_batch(model, frames[i:i + batch])
        total = add(total, batch_sums(pred=p.classes, labels=labels[i:i + batch],
                                      fg=fg[i:i + batch], r=config.motion_range,
                                      frames=frames[i:i + batch], recon=p.recon,
                                      attention=p.attention))
    return finalize(total)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--n", type=int, default=2000, help="sequences of each kind (default 2000)")
    p.add_argument("--seed", type=int, default=7, help="NumPy seed of the foreign sequences")
    p.add_argument("--data-dir", default=None)
    a = p.parse_args()
    torch.set_grad_enabled(False)
    images = mnist.load_split("test", a.data_dir)
    diffs = []
    for path in a.checkpoints:
        model, config = load_model(path)
        own = evaluate(model, config, dataset(config, "test", torch.device("cpu"), a.data_dir), a.n)
        frames, labels, fg = foreign_batch(images, a.n, frames=config.frames,
                                           r=config.motion_range, noise=config.noise, seed=a.seed)
        foreign = evaluate_foreign(model, config, frames, labels, fg)
        diff = {m: round(100 * (foreign[m] - own[m]), 2) for m in SHOWN}
        diffs.append(diff)
        print(json.dumps({"checkpoint": path, "frames": config.frames,
                          "motion_range": config.motion_range, "noise": config.noise,
                          "seed": config.seed, "n": a.n,
                          "own": {m: round(100 * own[m], 2) for m in SHOWN},
                          "foreign": {m: round(100 * foreign[m], 2) for m in SHOWN},
                          "foreign_minus_own": diff}), flush=True)
    print(json.dumps({"checkpoints": len(diffs), "largest_gap_points": {
        m: max(abs(d[m]) for d in diffs) for m in SHOWN}}))


if __name__ == "__main__":
    main()
