"""Seeded, batched generation of moving-digit sequences and their motion labels.

Everything follows CONVENTIONS.md: frames ``(N, T, H, W)`` in [0, 1], target frame 2,
sources frame 1 (forward, d=0) and frame 3 (backward, d=1, T=5 only), labels on the
source grids as class ``k = (dy + r) * (2r + 1) + (dx + r)``.

Randomness is a counter-based hash of ``(seed, split, index, stream, element)``, so a
sequence depends on nothing but its index: batch size, batch composition and device
do not change it, and a whole batch is made with a handful of tensor ops on the device
its digits live on (no Python loop over samples or pixels).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np
import torch

from motioncore import mnist
from motioncore.config import CHOICES, UsageError

TARGET = 2
SPLIT_SALT = {"train": 0x3C6EF372, "val": 0xA54FF53A, "test": 0x510E527F}
_M32 = 0xFFFFFFFF


def sources(frames: int) -> tuple[int, ...]:
    """Source frame index of each direction: (1,) for T=3, (1, 3) for T=5."""
    return (1,) if frames == 3 else (1, 3)


def input_frames(frames: int) -> tuple[int, ...]:
    """The frames a model sees: (0, 1) for T=3, (0, 1, 3, 4) for T=5."""
    return (0, 1) if frames == 3 else (0, 1, 3, 4)


def class_index(dx, dy, r: int):
    """Class of displacement (dx, dy): ``(dy + r) * (2r + 1) + (dx + r)``."""
    return (dy + r) * (2 * r + 1) + (dx + r)


def displacements(r: int, device=None) -> torch.Tensor:
    """``(K, 2)`` int64 table of (dx, dy) per class, the inverse of ``class_index``."""
    k = torch.arange((2 * r + 1) ** 2, device=device)
    return torch.stack([k % (2 * r + 1) - r, k // (2 * r + 1) - r], dim=1)


def check_params(*, motion_range: int, frames: int, noise: float, digits: int, image_size: int,
                 split: str | None = None) -> None:
    """Raise ``UsageError`` naming the first bad generator parameter and what is allowed."""
    if not isinstance(motion_range, int) or motion_range < 1:
        raise UsageError(f"motion range {motion_range!r}: must be an integer >= 1")
    if frames not in CHOICES["frames"]:
        raise UsageError(f"frames {frames!r}: allowed values are 3 and 5")
    if not 0.0 <= noise <= 1.0:
        raise UsageError(f"noise {noise!r}: allowed range is [0, 1]")
    if not isinstance(digits, int) or digits < 1:
        raise UsageError(f"digits {digits!r}: must be an integer >= 1")
    if not isinstance(image_size, int) or image_size < 8:
        raise UsageError(f"image size {image_size!r}: must be an integer >= 8")
    if split is not None and split not in mnist.SPLITS:
        raise UsageError(f"split {split!r}: allowed values are {', '.join(mnist.SPLITS)}")


# --- counter-based randomness -------------------------------------------------------------

def _mix(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 integer hash on int64 tensors holding uint32 values.

    The products of two 32-bit values exceed int64's range only in bits that the mask drops;
    int64 multiplication wraps identically on every CPU and GPU, so values match everywhere.
    """
    x = x & _M32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def _draw(keys: torch.Tensor, stream: int, count: int) -> torch.Tensor:
    """``(N, count)`` uint32 values (in int64) for each sequence key and one named stream."""
    base = _mix(keys ^ _mix(torch.tensor(stream + 0x9E3779B9, device=keys.device)))  # (N,)
    return _mix(base[:, None] + torch.arange(count, device=keys.device))  # (N, count)


def _uniform16(bits: torch.Tensor) -> torch.Tensor:
    """uint32 values -> two float32 each in [0, 1) with 16 bits of resolution: ``(..., 2*count)``."""
    pair = torch.stack([bits >> 16, bits & 0xFFFF], dim=-1).flatten(-2)
    return pair.to(torch.float32) * (1.0 / (1 << 16))


def sequence_keys(indices: torch.Tensor, *, seed: int, split: str) -> torch.Tensor:
    """One 32-bit key per sequence, a function of (seed, split, index) only."""
    head = _mix(torch.tensor((seed & _M32) ^ SPLIT_SALT[split], device=indices.device))
    return _mix(_mix(head + (indices >> 32)) ^ (indices & _M32))


# --- generation ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Batch:
    """A batch of sequences. ``labels`` lie on the source grids, one per direction."""

    frames: torch.Tensor  # (N, T, H, W) float32 in [0, 1]
    labels: torch.Tensor  # (N, D, H, W) int64 class indices
    masks: torch.Tensor  # (N, T, H, W) bool: a digit is present
    velocity: torch.Tensor  # (N, digits, 2) int64 as (vx, vy)

    @property
    def fg(self) -> torch.Tensor:
        """``(N, D, H, W)`` bool: digit pixels of each direction's source frame."""
        t = self.frames.shape[1]
        return self.masks[:, list(sources(t))]

    def to_numpy(self) -> dict[str, np.ndarray]:
        return {
            "frames": self.frames.cpu().numpy(),
            "labels": self.labels.cpu().numpy(),
            "velocity": self.velocity.cpu().numpy(),
            "masks": self.masks.cpu().numpy(),
        }


def make_batch(images: torch.Tensor, indices: torch.Tensor, *, motion_range: int, frames: int,
               noise: float = 0.0, digits: int = 1, image_size: int = 28, seed: int = 0,
               split: str = "train") -> Batch:
    """Generate the sequences ``indices`` of (seed, split) from the split's uint8 digit images."""
    check_params(motion_range=motion_range, frames=frames, noise=noise, digits=digits,
                 image_size=image_size, split=split)
    r, T, S, dev = motion_range, frames, image_size, images.device
    indices = indices.to(dev, torch.int64)
    n = indices.shape[0]
    keys = sequence_keys(indices, seed=seed, split=split)  # (N,)
    h, w = images.shape[-2:]
    shift = torch.arange(T, device=dev) - TARGET  # (T,) frame offset from the target

    # Background: one static field per sequence, identical in every frame.
    if noise > 0:
        half = (S * S + 1) // 2
        canvas = _uniform16(_draw(keys, 1, half))[:, : S * S].view(n, 1, S, S) * noise  # (N,1,S,S)
    else:
        canvas = torch.zeros(n, 1, S, S, device=dev)
    src = list(sources(T))
    step = torch.tensor([TARGET - s for s in src], device=dev)  # (D,): +1 forward, -1 backward
    labels = torch.full((n, len(src), S, S), class_index(0, 0, r), device=dev)  # background
    masks = torch.zeros(n, T, S, S, dtype=torch.bool, device=dev)
    velocity = torch.empty(n, digits, 2, dtype=torch.int64, device=dev)
    for j in range(digits):  # digits, not samples: later digits are drawn over earlier ones
        bits = _draw(keys, 16 + j, 5)  # (N, 5): image id, vx, vy, offset x, offset y
        which = bits[:, 0] % images.shape[0]
        v = bits[:, 1:3] % (2 * r + 1) - r  # (N, 2) as (vx, vy)
        velocity[:, j] = v
        top, left = (S - h) // 2, (S - w) // 2  # first digit: centred (unshifted at 28x28)
        if j > 0:
            q = max(S // 4, 1)
            left = left + bits[:, 3] % (2 * q + 1) - q  # (N,)
            top = top + bits[:, 4] % (2 * q + 1) - q
        left = torch.as_tensor(left, device=dev).reshape(-1, 1)
        top = torch.as_tensor(top, device=dev).reshape(-1, 1)
        # Content in frame t is the digit shifted by (t - 2) * v, so frame t's canvas is the S x S
        # window of the digit's plane whose top-left is at (-top - (t-2) vy, -left - (t-2) vx).
        # Padding the digit by S on every side lets every window be a view; windows wholly off
        # the digit are clamped to one that reads only padding. One copy gathers all windows.
        oy = (-(top + shift * v[:, 1:])).clamp(-S, h) + S  # (N, T) window origin, padded coords
        ox = (-(left + shift * v[:, :1])).clamp(-S, w) + S  # (N, T)
        plane = torch.nn.functional.pad(images[which], (S, S, S, S))  # (N, h+2S, w+2S) uint8
        windows = plane.unfold(1, S, 1).unfold(2, S, 1)  # (N, h+S+1, w+S+1, S, S) view
        alpha = windows[torch.arange(n, device=dev)[:, None], oy, ox]  # (N, T, S, S) uint8
        present = alpha > 0
        a = alpha.to(torch.float32) * (1.0 / 255.0)
        canvas = a + (1.0 - a) * canvas  # (N, T, S, S): alpha compositing over what lies below
        masks |= present
        d = v[:, None, :] * step[None, :, None]  # (N, D, 2) displacement of each source's pixels
        cls = class_index(d[..., 0], d[..., 1], r)[:, :, None, None]  # (N, D, 1, 1)
        labels = torch.where(present[:, src], cls, labels)
    return Batch(frames=canvas.contiguous(), labels=labels, masks=masks, velocity=velocity)


class MovingDigits:
    """An endless, indexable stream of sequences of one split, generated on one device."""

    CHUNK = 512

    def __init__(self, split: str, *, motion_range: int, frames: int, noise: float = 0.0,
                 digits: int = 1, image_size: int = 28, seed: int = 0, device="cpu",
                 data_dir=None):
        check_params(motion_range=motion_range, frames=frames, noise=noise, digits=digits,
                     image_size=image_size, split=split)
        self.split = split
        self.params = dict(motion_range=motion_range, frames=frames, noise=noise, digits=digits,
                           image_size=image_size, seed=seed, split=split)
        self.images = torch.from_numpy(mnist.load_split(split, data_dir).copy()).to(device)

    def __getitem__(self, indices) -> Batch:
        """Sequences at ``indices`` (a slice, a list or a tensor of ints)."""
        if isinstance(indices, slice):
            indices = torch.arange(indices.start or 0, indices.stop)
        indices = torch.as_tensor(indices)
        if len(indices) <= self.CHUNK:
            return make_batch(self.images, indices, **self.params)
        # Huge batches are made in cache-sized chunks: same values, several times faster on CPU.
        parts = [make_batch(self.images, c, **self.params) for c in indices.split(self.CHUNK)]
        return Batch(*(torch.cat([getattr(p, f) for p in parts]) for f in Batch.__dataclass_fields__))

    def batches(self, batch_size: int, total: int):
        """Consecutive batches covering sequences ``0 .. total-1``."""
        for start in range(0, total, batch_size):
            yield self[start:min(start + batch_size, total)]


# --- CLI -----------------------------------------------------------------------------------

def summary(batch: Batch, motion_range: int) -> str:
    """A one-screen text summary: shapes, foreground share, class histogram, zero baseline."""
    labels, fg = batch.labels, batch.fg
    k0 = class_index(0, 0, motion_range)
    counts = torch.bincount(labels.flatten(), minlength=(2 * motion_range + 1) ** 2)
    table = displacements(motion_range)
    top = torch.argsort(counts, descending=True)[:8]
    lines = [
        f"frames {tuple(batch.frames.shape)}  labels {tuple(labels.shape)}  "
        f"velocity {tuple(batch.velocity.shape)}",
        f"foreground fraction (source frames): {fg.float().mean():.3f}",
        f"zero-motion baseline: acc {(labels == k0).float().mean():.4f}  acc_fg "
        f"{(labels == k0)[fg].float().mean() if fg.any() else float('nan'):.4f}",
        f"classes used: {(counts > 0).sum()} of {counts.numel()}; most frequent "
        "(class (dx,dy): share):",
    ]
    total = counts.sum().item()
    lines += [f"  {int(k):4d} ({int(table[k, 0]):+d},{int(table[k, 1]):+d}): "
              f"{counts[k].item() / total:.4f}" for k in top if counts[k] > 0]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m motioncore.data",
                                description="Generate moving-MNIST sequences with motion labels.")
    p.add_argument("--split", default="test", help="train | val | test (default test)")
    p.add_argument("--n", type=int, default=1000, help="number of sequences")
    p.add_argument("--motion-range", type=int, default=1)
    p.add_argument("--frames", type=int, default=3)
    p.add_argument("--noise", type=float, default=0.0)
    p.add_argument("--digits", type=int, default=1)
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", type=int, default=0, help="index of the first sequence")
    p.add_argument("--out", help="write frames, labels, velocity, masks to this .npz")
    p.add_argument("--png", help="draw a few sequences with their motion labels")
    p.add_argument("--data-dir", help=f"MNIST directory (default ${mnist.ENV_VAR} or the cache)")
    args = p.parse_args(argv)
    try:
        if args.n <= 0:
            raise UsageError(f"--n {args.n}: must be an integer >= 1")
        check_params(motion_range=args.motion_range, frames=args.frames, noise=args.noise,
                     digits=args.digits, image_size=args.image_size, split=args.split)
        gen = MovingDigits(args.split, motion_range=args.motion_range, frames=args.frames,
                           noise=args.noise, digits=args.digits, image_size=args.image_size,
                           seed=args.seed, data_dir=args.data_dir)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except mnist.MnistError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    batch = gen[args.start:args.start + args.n]
    print(summary(batch, args.motion_range))
    if args.out:
        np.savez_compressed(args.out, **batch.to_numpy())
        print(f"wrote {args.out}")
    if args.png:
        from motioncore import viz

        viz.sequences_png(batch, args.motion_range, args.png)
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
