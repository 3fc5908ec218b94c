"""The layered teacher: motion labels from the frames alone, for unsupervised training.

The background is static and a digit is composited over it, ``I = a + (1 - a) B``, so ``I >= B``
everywhere: the per-pixel minimum over the frames is the background wherever any frame shows it,
and ``(I - B) / (1 - B)`` is each frame's alpha layer, 0 off the digit. The sequence's velocity is
the shift under which every frame's alpha layer, composited over that background, rebuilds the
next frame best (a search over the K displacements, no learning). Source pixels of the digit
layer get that velocity, every other pixel zero motion. Its optimum is the true motion on faint
pixels too, where the splat of whole pixels preferred zero motion (docs/research-log.md).

It assumes one moving digit per sequence (``digits = 1``, the research table's setting): with
more, every digit pixel gets the velocity that explains the most of them.
"""

from __future__ import annotations

import torch

from motioncore import motion

ALPHA_EPS = 1e-4  # alpha above this is digit: a digit pixel's excess over the background is at
#   least (1/255) * (1 - noise) >= 2e-3 wherever some frame shows the background there


def layers(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``frames (N, T, H, W)`` -> the static background ``(N, H, W)`` (per-pixel minimum over
    frames) and every frame's alpha layer ``(N, T, H, W)``: 0 on the background."""
    background = frames.min(1).values
    alpha = ((frames - background[:, None]) / (1 - background[:, None]).clamp_min(1e-3)).clamp(0, 1)
    return background, alpha


def shifted(x: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """``x (N, H, W)`` read at ``(x + dx[n], y + dy[n])`` per sequence, 0 outside the canvas."""
    n, h, w = x.shape
    ys = torch.arange(h, device=x.device)[None, :, None] + dy[:, None, None]  # (N, H, 1)
    xs = torch.arange(w, device=x.device)[None, None, :] + dx[:, None, None]  # (N, 1, W)
    inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    flat = ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)  # (N, H, W)
    return torch.gather(x.flatten(1), 1, flat.flatten(1)).view(n, h, w) * inside


@torch.no_grad()
def velocity(frames: torch.Tensor, r: int) -> torch.Tensor:
    """Each sequence's velocity class ``(N,)``: the shift whose layered reconstruction of every
    next frame has the least L1 error. A static sequence has no alpha layer; every shift ties
    and the smallest wins, zero motion."""
    background, alpha = layers(frames)
    n, t = frames.shape[:2]
    err = frames.new_zeros(n, motion.num_classes(r))
    for i in range(t - 1):
        moved = motion.every_shift(alpha[:, i], r)  # (N, K, H, W)
        pred = background[:, None] + (1 - background[:, None]) * moved.clamp(max=1)
        err += (pred - frames[:, i + 1, None]).abs().sum((2, 3))
    d = motion.displacements(r, frames.device)
    return (err + 1e-3 * d.square().sum(1)).argmin(1)  # (N,)


@torch.no_grad()
def labels(frames: torch.Tensor, r: int, noise: float) -> torch.Tensor:
    """The teacher's classes ``(N, D, H, W)`` on each direction's source grid: a source pixel is
    digit when its content, moved by the velocity to any frame, lands on alpha there, or when it
    is brighter than any background in every frame (a stroke's interior, covered throughout,
    where every alpha estimate is 0); it gets the velocity's displacement to the target."""
    background, alpha = layers(frames)
    v = motion.displacements(r, frames.device)[velocity(frames, r)]  # (N, 2)
    out = []
    for s in motion.sources(frames.shape[1]):
        digit = background > noise
        for t in range(frames.shape[1]):
            digit |= shifted(alpha[:, t], (t - s) * v[:, 0], (t - s) * v[:, 1]) > ALPHA_EPS
        k = motion.class_index((motion.TARGET - s) * v[:, 0], (motion.TARGET - s) * v[:, 1], r)
        out.append(torch.where(digit, k[:, None, None], motion.zero_class(r)))
    return torch.stack(out, 1)

