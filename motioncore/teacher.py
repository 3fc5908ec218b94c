"""The layered teacher: motion labels from the frames alone, for unsupervised training.

The background is static and a digit is composited over it, ``I = a + (1 - a) B``, so ``I >= B``
everywhere: the per-pixel minimum over the frames is the background wherever any frame shows it,
and ``(I - B) / (1 - B)`` is each frame's alpha layer, 0 off the digit. The sequence's velocity is
the shift under which every frame's alpha layer, composited over that background, rebuilds the
next frame best (a search over the K displacements, no learning). Source pixels of the digit
layer get that velocity, every other pixel zero motion. Its optimum is the true motion on faint
pixels too, where the splat of whole pixels preferred zero motion (docs/research-log.md).

With more than one digit (``digits > 1``) there is one velocity per digit: each source pixel's
alpha is followed along every displacement's track through the other frames; the velocity whose
track keeps the pixel's alpha on most pixels is the first digit's, the one that explains most of
the pixels left the second's, and so on; each digit pixel then takes the candidate whose track
fits its 3 x 3 neighbourhood best. Where digits overlap the single alpha layer is only
approximate (docs/research-log.md has how close the labels come).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from motioncore import motion

ALPHA_EPS = 1e-4  # alpha above this is digit: a digit pixel's excess over the background is at
#   least (1/255) * (1 - noise) >= 2e-3 wherever some frame shows the background there
TRACK_FIT = 0.1  # several digits: a pixel moves with a velocity when its alpha differs from the
#   alpha along that velocity's track by less than this, on average over the other frames


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
def labels(frames: torch.Tensor, r: int, noise: float, digits: int = 1) -> torch.Tensor:
    """The teacher's classes ``(N, D, H, W)`` on each direction's source grid: a source pixel is
    digit when its content, moved by the velocity to any frame, lands on alpha there, or when it
    is brighter than any background in every frame (a stroke's interior, covered throughout,
    where every alpha estimate is 0); it gets the velocity's displacement to the target. With
    ``digits > 1``, each digit pixel's velocity is one of the digits' (``_several``)."""
    if digits > 1:
        return _several(frames, r, noise, digits)
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


def track_misfit(alpha: torch.Tensor, s: int, r: int) -> torch.Tensor:
    """``(N, K, H, W)``: for every displacement ``d_k``, the mean over frames ``t != s`` of
    ``|alpha_s(p) - alpha_t(p + (t - s) d_k)|``; a frame whose track point is off the canvas does
    not count (2, the most, where none is on it)."""
    n, frames, h, w = alpha.shape
    d = motion.displacements(r, alpha.device)
    total = alpha.new_zeros(n, len(d), h, w)
    count = alpha.new_zeros(len(d), h, w)
    ones = alpha.new_ones(1, h, w)
    for k, (dx, dy) in enumerate(d.tolist()):
        for t in range(frames):
            if t == s:
                continue
            step = (torch.tensor([(t - s) * dx], device=alpha.device),
                    torch.tensor([(t - s) * dy], device=alpha.device))
            inside = shifted(ones, *step)[0]
            moved = shifted(alpha[:, t], step[0].expand(n), step[1].expand(n))
            total[:, k] += (alpha[:, s] - moved).abs() * inside
            count[k] += inside
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, 2.0))


def _several(frames: torch.Tensor, r: int, noise: float, digits: int) -> torch.Tensor:
    """``labels`` for ``digits > 1``: candidate velocities by greedy support, then each digit
    pixel's best-fitting candidate over its 3 x 3 neighbourhood."""
    background, alpha = layers(frames)
    d = motion.displacements(r, frames.device)
    n, _, h, w = frames.shape
    rows = torch.arange(n, device=frames.device)
    out = []
    for s in motion.sources(frames.shape[1]):
        misfit = track_misfit(alpha, s, r)  # (N, K, H, W)
        seen = alpha[:, s] > ALPHA_EPS  # (N, H, W)
        fits = (misfit < TRACK_FIT) & seen[:, None]
        left, candidates = seen.clone(), []
        for _ in range(digits):  # the velocity that explains most of the pixels left
            support = (fits & left[:, None]).sum((2, 3)).float() - 1e-3 * d.square().sum(1)
            k = support.argmax(1)  # (N,)
            candidates.append(k)
            left &= ~fits[rows, k]
        candidates = torch.stack(candidates, 1)  # (N, digits)
        fit = torch.gather(misfit, 1, candidates[:, :, None, None].expand(-1, -1, h, w))
        weight = seen.float()[:, None]
        fit = F.avg_pool2d(fit * weight, 3, 1, 1) / F.avg_pool2d(weight, 3, 1, 1).clamp_min(1e-6)
        best = torch.gather(candidates, 1, fit.argmin(1).flatten(1)).view(n, h, w)
        v = d[best]  # (N, H, W, 2)
        k = motion.class_index((motion.TARGET - s) * v[..., 0], (motion.TARGET - s) * v[..., 1], r)
        out.append(torch.where(seen | (background > noise), k, motion.zero_class(r)))
    return torch.stack(out, 1)
