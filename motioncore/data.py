"""Seeded, batched generation of moving-digit sequences and their motion labels.

Everything follows docs/conventions.md: frames ``(N, T, H, W)`` in [0, 1], target frame 2,
labels on the source grids as motion classes (the geometry is ``motioncore.motion``'s).

Randomness is a counter-based hash of ``(seed, split, index, stream)``, so a sequence
depends on nothing but its index: batch size, batch composition and device do not change it.
A batch's per-sequence integers are a few NumPy ops on the host and its pixels a few tensor
ops on the device its digits live on: no Python loop over samples or pixels.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass

import numpy as np
import torch

from motioncore import cli, mnist, viz
from motioncore.config import CHOICES, UsageError
from motioncore.motion import TARGET, class_index, displacements, num_classes, sources, zero_class
from motioncore.randomness import NOISE_ROWS, background, draw, sequence_keys


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


# --- generation ----------------------------------------------------------------------------

# Just under 1/255, so that ``below + alpha * (1 - below) * _INV255`` never exceeds 1 whatever
# the rounding (the deviation from exact compositing is below 5e-7).
_INV255 = float(np.float32(1 / 255) * np.float32(1 - 2**-21))


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

    def __getitem__(self, rows: slice) -> Batch:
        """The sequences ``rows`` of this batch (views, no copy)."""
        return Batch(*(getattr(self, f.name)[rows] for f in dataclasses.fields(self)))

    @staticmethod
    def cat(parts: list[Batch]) -> Batch:
        """One batch of ``parts``' sequences, in order."""
        return Batch(*(torch.cat([getattr(p, f.name) for p in parts])
                       for f in dataclasses.fields(Batch)))

    def to_numpy(self) -> dict[str, np.ndarray]:
        return {
            "frames": self.frames.cpu().numpy(),
            "labels": self.labels.cpu().numpy(),
            "velocity": self.velocity.cpu().numpy(),
            "masks": self.masks.cpu().numpy(),
        }


def _windows(images: torch.Tensor, which: np.ndarray, wy: np.ndarray, wx: np.ndarray,
             size: int) -> torch.Tensor:
    """``(N, T, size, size)`` uint8: the window of digit ``which[n]`` whose top-left corner lies at
    digit coordinates ``(wy[n, t], wx[n, t])``, zero outside the digit.

    The batch's own digits are copied once with the zero margin its windows need (cheaper than
    keeping the whole split padded: no start-up copy, and a smaller working set). The flat
    digit planes are viewed as every run of ``size`` bytes and one ``index_select`` copies each
    window row: no per-pixel index arithmetic.
    """
    h, w = images.shape[-2:]
    margin = int(max(0, -wy.min(), -wx.min(), wy.max() + size - h, wx.max() + size - w))
    images = torch.nn.functional.pad(images.index_select(0, torch.from_numpy(which).to(
        images.device)), (margin,) * 4)  # (N, h + 2m, w + 2m)
    which = np.arange(len(which))
    ph, pw = images.shape[-2:]
    origin = which[:, None] * (ph * pw) + (wy + margin) * pw + (wx + margin)  # (N, T) flat
    rows = torch.from_numpy(origin[:, :, None] + np.arange(size) * pw).to(images.device)
    runs = images.view(-1).unfold(0, size, 1)  # (len - size + 1, size) view of the flat planes
    return runs.index_select(0, rows.view(-1)).view(len(which), -1, size, size)


def make_batch(images: torch.Tensor, indices: torch.Tensor, *, motion_range: int, frames: int,
               noise: float = 0.0, digits: int = 1, image_size: int = 28, seed: int = 0,
               split: str = "train") -> Batch:
    """Generate the sequences ``indices`` of (seed, split) from the split's uint8 digit images.

    One function of about 60 lines on purpose: the scene is built in one vectorised pass
    (velocities, windows, compositing, labels) whose intermediates are shared tensors.

    Per-sequence integers (hashes, velocities, window positions) are worked
    out in NumPy on the host, where small arrays are cheapest; per-pixel work runs in torch on the
    images' device.
    """
    check_params(motion_range=motion_range, frames=frames, noise=noise, digits=digits,
                 image_size=image_size, split=split)
    r, T, S, dev = motion_range, frames, image_size, images.device
    keys = sequence_keys(torch.as_tensor(indices).cpu().numpy(), seed=seed, split=split)  # (N,)
    n = len(keys)
    h, w = images.shape[-2:]
    shift = np.arange(T) - TARGET  # (T,) frame offset from the target
    first, last = sources(T)[0], sources(T)[-1]
    src = slice(first, last + 1, 2)  # the source frames (1; 1 and 3), as a view
    step = np.array([TARGET - s for s in sources(T)])  # (D,): +1 forward, -1 backward
    k0 = zero_class(r)
    small = torch.int16 if num_classes(r) < 2**15 else torch.int64  # cheap passes for labels
    canvas = labels = masks = None
    velocity = np.empty((n, digits, 2), np.int64)
    for j in range(digits):  # digits, not samples: later digits are drawn over earlier ones
        # (N, 6): image id, vx, vy, offset x, offset y, and for the first digit the background
        bits = draw(keys, 16 + j, 6 if j == 0 else 5).astype(np.int64)
        v = bits[:, 1:3] % (2 * r + 1) - r  # (N, 2) as (vx, vy)
        velocity[:, j] = v
        top, left = (S - h) // 2, (S - w) // 2  # first digit: centred (unshifted at 28x28)
        if j > 0:
            q = max(S // 4, 1)
            top, left = top + bits[:, 4] % (2 * q + 1) - q, left + bits[:, 3] % (2 * q + 1) - q
        # Content in frame t is the digit shifted by (t - 2) v, so frame t shows the window of
        # the digit plane at (-top - (t-2) vy, -left - (t-2) vx); windows wholly off the digit
        # are clamped to ones that read only zeros.
        wy = np.minimum(np.maximum(-(np.reshape(top, (-1, 1)) + shift * v[:, 1:]), -S), h)  # (N,T)
        wx = np.minimum(np.maximum(-(np.reshape(left, (-1, 1)) + shift * v[:, :1]), -S), w)
        which = bits[:, 0] % images.shape[0]
        d = v[:, None, :] * step[None, :, None]  # (N, D, 2) displacement of each source's pixels
        cls = class_index(d[..., 0], d[..., 1], r)  # (N, D)
        noisy = j == 0 and noise > 0
        pick = bits[:, 5] % NOISE_ROWS**2 if noisy else None  # 20 bits: two noise-table rows
        if noisy:
            canvas = background(torch.from_numpy(pick).to(dev), S * S).view(n, 1, S, S).mul_(noise)
        alpha = _windows(images, which, wy, wx, S)  # (N, T, S, S) uint8
        present = alpha.bool()
        if canvas is None:  # the first digit on an empty canvas: exactly its intensities
            canvas = alpha.to(torch.float32).mul_(1.0 / 255.0)
        else:  # alpha compositing I = a + (1 - a) * below, each product and sum rounded alone
            # (no fused multiply-add, which would differ by device)
            layer = alpha.to(torch.float32)
            canvas = layer.mul_((1.0 - canvas).mul_(_INV255)).add_(canvas)
        masks = present if masks is None else masks.logical_or_(present)
        cls = torch.from_numpy(cls[:, :, None, None]).to(dev)
        on = present[:, src].to(small)  # (N, D, S, S) 0/1
        if labels is None:  # background is k0: labels = k0 + on * (cls - k0)
            labels = on.mul_((cls - k0).to(small)).add_(k0)
        else:
            labels = labels.mul_(1 - on).add_(on.mul_(cls.to(small)))
    return Batch(frames=canvas, labels=labels.long(), masks=masks,
                 velocity=torch.from_numpy(velocity).to(dev))


class MovingDigits:
    """An endless, indexable stream of sequences of one split, generated on one device."""

    CHUNK = 512

    def __init__(self, split: str, *, motion_range: int, frames: int, noise: float = 0.0,
                 digits: int = 1, image_size: int = 28, seed: int = 0, device="cpu",
                 data_dir=None):
        check_params(motion_range=motion_range, frames=frames, noise=noise, digits=digits,
                     image_size=image_size, split=split)
        self.split = split
        self.images = torch.from_numpy(mnist.load_split(split, data_dir).copy()).to(device)
        self.params = dict(motion_range=motion_range, frames=frames, noise=noise, digits=digits,
                           image_size=image_size, seed=seed, split=split)

    def __getitem__(self, indices) -> Batch:
        """Sequences at ``indices`` (a slice, a list or a tensor of ints)."""
        if isinstance(indices, slice):
            indices = torch.arange(indices.start or 0, indices.stop)
        indices = torch.as_tensor(indices)
        if len(indices) <= self.CHUNK or self.images.device.type != "cpu":
            return make_batch(self.images, indices, **self.params)
        # Huge batches are made in cache-sized chunks on CPU: same values, several times faster.
        parts = [make_batch(self.images, c, **self.params) for c in indices.split(self.CHUNK)]
        return Batch.cat(parts)

    def batches(self, batch_size: int, total: int):
        """Consecutive batches covering sequences ``0 .. total-1``."""
        for start in range(0, total, batch_size):
            yield self[start:min(start + batch_size, total)]


# --- CLI -----------------------------------------------------------------------------------

def summary(batch: Batch, motion_range: int) -> str:
    """A one-screen text summary: shapes, foreground share, class histogram, zero baseline."""
    labels, fg = batch.labels, batch.fg
    k0 = zero_class(motion_range)
    counts = torch.bincount(labels.flatten(), minlength=num_classes(motion_range))
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


def check_memory(n: int, *, frames: int, image_size: int, noise: float) -> None:
    """Refuse ``n`` sequences whose arrays cannot fit in memory, before generating any.

    Each sequence holds float32 frames, bool masks and int64 labels (one field per direction),
    twice at the peak (the chunks and their concatenation: 38.5 KiB a 28x28 T=3 sequence
    measured, 39.7 KiB estimated); noise adds two tables of float32 fields (three times over
    while they are made)."""
    pixels = image_size * image_size
    per_sequence = 2.2 * pixels * (5 * frames + 8 * (1 if frames == 3 else 2))
    tables = 3 * 2 * NOISE_ROWS * pixels * 4 if noise > 0 else 0
    free = cli.available_memory()
    if n * per_sequence + tables > free:
        fits = int((free - tables) // per_sequence)
        raise UsageError(f"--n {n}: {n} sequences of {frames} frames at {image_size}x{image_size} "
                         f"need about {cli.gigabytes(n * per_sequence + tables)} of memory and "
                         f"{cli.gigabytes(free)} is available; " + (
                             f"at most {fits} fit at once (make the rest in parts with --start)"
                             if fits > 0 else "not one fits: use a smaller --image-size"))


@cli.command
def main(argv: list[str] | None = None) -> int:
    p = cli.ArgumentParser(prog="python -m motioncore.data",
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
    for flag, value, low in (("--n", args.n, 1), ("--start", args.start, 0), ("--seed", args.seed, 0)):
        if value < low:
            raise UsageError(f"{flag} {value}: must be an integer >= {low}")
    if args.seed >= 2**63:  # as motioncore.train's --seed
        raise UsageError(f"--seed {args.seed}: must be below 2**63")
    if args.start + args.n >= 2**63:  # sequence indices are int64
        raise UsageError(f"--start {args.start}: --start + --n must be below 2**63")
    for flag, path in (("--out", args.out), ("--png", args.png)):
        if path:
            cli.check_output(flag, path)
    if args.out:
        cli.check_npz("--out", args.out)
    check_params(motion_range=args.motion_range, frames=args.frames, noise=args.noise,
                 digits=args.digits, image_size=args.image_size, split=args.split)
    check_memory(args.n, frames=args.frames, image_size=args.image_size, noise=args.noise)
    gen = MovingDigits(args.split, motion_range=args.motion_range, frames=args.frames,
                       noise=args.noise, digits=args.digits, image_size=args.image_size,
                       seed=args.seed, data_dir=args.data_dir)
    batch = gen[args.start:args.start + args.n]
    print(summary(batch, args.motion_range))
    if args.out:
        np.savez_compressed(args.out, **batch.to_numpy())
        print(f"wrote {args.out}")
    if args.png:
        viz.sequences_png(batch, args.motion_range, args.png)
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
