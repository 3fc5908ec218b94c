"""The motion geometry every part shares (docs/conventions.md): frames, classes, splatting.

Which frames a model sees and which it moves onto the target; the class index of a
displacement and its inverse; splatting a source frame by per-pixel class probabilities;
coverage; the reconstruction of the target from one or two sources. Nothing here knows of
data generation, models, losses or pictures: they all import it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TARGET = 2  # the held-out frame, for T=3 (extrapolation) and T=5 (interpolation) alike


def sources(frames: int) -> tuple[int, ...]:
    """Source frame of each direction: (1,) for T=3; (1, 3) for T=5 (forward d=0, backward d=1)."""
    return (1,) if frames == 3 else (1, 3)


def input_frames(frames: int) -> tuple[int, ...]:
    """The frames a model sees: (0, 1) for T=3, (0, 1, 3, 4) for T=5."""
    return (0, 1) if frames == 3 else (0, 1, 3, 4)


def side_frames(frames: int) -> tuple[tuple[int, int], ...]:
    """Each direction's own pair of input frames, the outer one first: ((0, 1),) for T=3;
    ((0, 1), (4, 3)) for T=5, so one network per side sees the same layout on both sides."""
    return tuple(zip(outer_frames(frames), sources(frames), strict=True))


def outer_frames(frames: int) -> tuple[int, ...]:
    """The frame beyond each source, away from the target: (0,) for T=3, (0, 4) for T=5."""
    return (0,) if frames == 3 else (0, 4)


def num_classes(r: int) -> int:
    """K = (2r+1)^2 displacements (dx, dy) with dx, dy in -r..r."""
    return (2 * r + 1) ** 2


def class_index(dx, dy, r: int):
    """Class of displacement (dx, dy) (ints, arrays or tensors): ``(dy + r) * (2r + 1) + (dx + r)``."""
    return (dy + r) * (2 * r + 1) + (dx + r)


def zero_class(r: int) -> int:
    """k0: the class of no motion, ``r * (2r + 1) + r``, the middle one (``K // 2``)."""
    return class_index(0, 0, r)


def displacements(r: int, device=None) -> torch.Tensor:
    """``(K, 2)`` int64 (dx, dy) of every class, the inverse of ``class_index``."""
    k = torch.arange(num_classes(r), device=device)
    return torch.stack([k % (2 * r + 1) - r, k // (2 * r + 1) - r], dim=1)


def moving_classes(per_class: torch.Tensor) -> torch.Tensor:
    """``(K,)`` values per class -> ``(K-1,)``: all but the zero class."""
    zero = len(per_class) // 2
    return torch.cat([per_class[:zero], per_class[zero + 1:]])


# --- splatting -----------------------------------------------------------------------------

def splat(src: torch.Tensor, probs: torch.Tensor, r: int) -> torch.Tensor:
    """Move every source pixel by every displacement, weighted by its class probability.

    ``src (N, H, W)``, ``probs (N, K, H, W)`` on the source grid -> ``(N, H, W)`` on the target
    grid: ``out[y, x] = sum_k probs[k, y - dy_k, x - dx_k] * src[y - dy_k, x - dx_k]``. Content
    moved outside the canvas is lost; nothing enters from outside. Mass beyond the K motion
    classes (the disappear class) is not passed in and so not splatted.

    This is ``fold`` (col2im) with a (2r+1)^2 kernel: kernel offset ``(dy + r, dx + r)`` is class
    ``k``'s index, and fold adds the value at source ``(x, y)`` into ``(x + dx, y + dy)``,
    dropping what lands in the padding. One kernel each way (its gradient is ``unfold``).
    """
    n, k, h, w = probs.shape
    moved = (probs * src[:, None]).flatten(2)  # (N, K, H*W)
    return F.fold(moved, (h, w), kernel_size=2 * r + 1, padding=r).view(n, h, w)


def every_shift(src: torch.Tensor, r: int) -> torch.Tensor:
    """``src (N, H, W)`` moved by each of the K displacements: ``(N, K, H, W)``, class k's
    slice the splat of a one-hot field of class k (content moved outside the canvas is lost).

    ``unfold`` reads ``src[y + dy, x + dx]`` at kernel offset ``(dy + r, dx + r)``: the move by
    ``-(dx, dy)``, class ``K - 1 - k``; flipping the class axis gives the move by ``+(dx, dy)``."""
    n, h, w = src.shape
    cols = F.unfold(src[:, None], kernel_size=2 * r + 1, padding=r)  # (N, K, H*W)
    return cols.flip(1).view(n, -1, h, w)


def motion_probs(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Softmax over all K' channels, keeping the K motion classes: ``(N, D, K, H, W)``."""
    return logits.softmax(dim=2)[:, :, :k]


def one_hot_motion(classes: torch.Tensor, k: int, dtype=torch.float32) -> torch.Tensor:
    """Classes ``(N, D, H, W)`` -> probabilities ``(N, D, K, H, W)`` with all mass on each class."""
    return F.one_hot(classes, k).permute(0, 1, 4, 2, 3).to(dtype)


def fuse(per_dir: torch.Tensor, attention: torch.Tensor | None) -> torch.Tensor:
    """``(N, D, H, W)`` per-direction maps -> ``(N, H, W)``: ``A * forward + (1 - A) * backward``."""
    if per_dir.shape[1] == 1:
        return per_dir[:, 0]
    return attention * per_dir[:, 0] + (1 - attention) * per_dir[:, 1]


def splat_sources(frames: torch.Tensor, probs: torch.Tensor, r: int) -> torch.Tensor:
    """Each direction's source frame moved by its field: ``(N, D, H, W)`` on the target grid."""
    n, d, k, h, w = probs.shape
    src = frames[:, list(sources(frames.shape[1]))]  # (N, D, H, W)
    return splat(src.flatten(0, 1), probs.flatten(0, 1), r).view(n, d, h, w)


def reconstruct(frames: torch.Tensor, probs: torch.Tensor, attention: torch.Tensor | None,
                r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Target frame predicted from each source ``(N, D, H, W)`` and fused ``(N, H, W)``."""
    per_dir = splat_sources(frames, probs, r)
    return per_dir, fuse(per_dir, attention)


def coverage(probs: torch.Tensor, r: int) -> torch.Tensor:
    """``(N, D, H, W)``: the motion mass each target pixel receives (splatting an all-ones image)."""
    n, d, k, h, w = probs.shape
    ones = probs.new_ones(n * d, h, w)
    return splat(ones, probs.flatten(0, 1), r).view(n, d, h, w)


def true_coverage(labels: torch.Tensor, r: int) -> torch.Tensor:
    """Coverage under the true motion: how much content lands on each target pixel ``(N, D, H, W)``."""
    return coverage(one_hot_motion(labels, num_classes(r)), r)
