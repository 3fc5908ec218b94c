"""Reconstruction by splatting, and the training objectives as pure functions -> (loss, metrics)."""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from motioncore.config import RunConfig
from motioncore.data import TARGET, sources


@lru_cache(maxsize=32)
def _pull_index(r: int, h: int, w: int, device: torch.device) -> torch.Tensor:
    """``(K, H*W)`` flat index into an r-padded grid: where target pixel (y, x) reads class k."""
    k = torch.arange((2 * r + 1) ** 2, device=device)
    dx, dy = k % (2 * r + 1) - r, k // (2 * r + 1) - r  # (K,)
    y = torch.arange(h, device=device)[None, :, None] - dy[:, None, None] + r  # (K, H, 1)
    x = torch.arange(w, device=device)[None, None, :] - dx[:, None, None] + r  # (K, 1, W)
    return (y * (w + 2 * r) + x).view(len(k), h * w)


def splat(src: torch.Tensor, probs: torch.Tensor, r: int) -> torch.Tensor:
    """Move every source pixel by every displacement, weighted by its class probability.

    ``src (N, H, W)``, ``probs (N, K, H, W)`` on the source grid -> ``(N, H, W)`` on the target
    grid: ``out[y, x] = sum_k probs[k, y - dy_k, x - dx_k] * src[y - dy_k, x - dx_k]``. Content
    moved outside the canvas is lost; nothing enters from outside. Mass beyond the K motion
    classes (the disappear class) is not passed in and so not splatted.
    """
    n, k, h, w = probs.shape
    moved = F.pad(probs * src[:, None], (r, r, r, r))  # (N, K, H+2r, W+2r), zero outside
    index = _pull_index(r, h, w, probs.device).expand(n, k, h * w)  # (N, K, H*W)
    return torch.gather(moved.flatten(2), 2, index).sum(1).view(n, h, w)  # (N, H, W)


def motion_probs(logits: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Softmax over all K' channels, keeping the K motion classes: ``(N, D, K, H, W)``."""
    return logits.softmax(dim=2)[:, :, :num_classes]


def one_hot_motion(classes: torch.Tensor, k: int, dtype=torch.float32) -> torch.Tensor:
    """Classes ``(N, D, H, W)`` -> probabilities ``(N, D, K, H, W)`` with all mass on each class."""
    return F.one_hot(classes, k).permute(0, 1, 4, 2, 3).to(dtype)


def fuse(per_dir: torch.Tensor, attention: torch.Tensor | None) -> torch.Tensor:
    """``(N, D, H, W)`` per-direction maps -> ``(N, H, W)``: ``A * forward + (1 - A) * backward``."""
    if per_dir.shape[1] == 1:
        return per_dir[:, 0]
    return attention * per_dir[:, 0] + (1 - attention) * per_dir[:, 1]


def reconstruct(frames: torch.Tensor, probs: torch.Tensor, attention: torch.Tensor | None,
                r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Target frame predicted from each source ``(N, D, H, W)`` and fused ``(N, H, W)``."""
    n, d, k, h, w = probs.shape
    src = frames[:, list(sources(frames.shape[1]))]  # (N, D, H, W)
    per_dir = splat(src.flatten(0, 1), probs.flatten(0, 1), r).view(n, d, h, w)
    return per_dir, fuse(per_dir, attention)


def coverage(probs: torch.Tensor, r: int) -> torch.Tensor:
    """``(N, D, H, W)``: the motion mass each target pixel receives (splatting an all-ones image)."""
    n, d, k, h, w = probs.shape
    ones = probs.new_ones(n * d, h, w)
    return splat(ones, probs.flatten(0, 1), r).view(n, d, h, w)


def visible(cover: torch.Tensor) -> torch.Tensor:
    """Float mask of target pixels that one source pixel's worth of content reaches: coverage in
    [0.5, 1.5]. Outside it, the truth itself cannot rebuild the pixel: a hole where content left
    and the background behind it was hidden, or a pile-up where moving content lands on static
    background. Left in, those pixels reward motion that blurs to fill them, not true motion."""
    return ((cover - 1).abs() <= 0.5).to(cover.dtype)


def reverse_reconstruction(frames: torch.Tensor, probs: torch.Tensor, r: int) -> torch.Tensor:
    """Outer input frames (0, and 4 for T=5) rebuilt from each source by the reversed motion.

    A source pixel moving by +d towards the target came from -d in the outer frame on the other
    side; negating (dx, dy) maps class k to K-1-k, so flipping the class axis reverses the field.
    """
    n, d, k, h, w = probs.shape
    src = frames[:, list(sources(frames.shape[1]))]  # (N, D, H, W)
    return splat(src.flatten(0, 1), probs.flip(2).flatten(0, 1), r).view(n, d, h, w)


def moving_classes(per_class: torch.Tensor) -> torch.Tensor:
    """``(K,)`` values per class -> ``(K-1,)``: all but the zero class ``K // 2``."""
    zero = len(per_class) // 2
    return torch.cat([per_class[:zero], per_class[zero + 1:]])


def class_usage(probs: torch.Tensor) -> torch.Tensor:
    """KL divergence from uniform of the batch's mean distribution over the moving classes.

    ``probs (N, D, K, H, W)``: every pixel's motion mass on each class but the zero class
    (``K // 2``) is summed over the batch and normalised. The value is 0 when all moving classes
    get equal mass and ``log(K - 1)`` when one class gets it all. A velocity whose class the
    model stopped predicting gets its sequences' motion from a neighbouring class; the
    reconstruction gradient cannot revive it (it scales with the dead class's near-zero
    probability), but this term's gradient grows as the class's share vanishes.
    """
    moving = moving_classes(probs.sum((0, 1, 3, 4)))  # (K-1,)
    share = moving / moving.sum().clamp_min(1e-12)
    return (share * torch.log(share.clamp_min(1e-12))).sum() + math.log(share.shape[0])


def penalty(pred: torch.Tensor, target: torch.Tensor, kind: str,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean L1 or L2 reconstruction error, over the pixels of ``mask`` (a 0/1 float) if given."""
    diff = pred - target
    err = diff.abs() if kind == "l1" else diff.square()
    return err.mean() if mask is None else (err * mask).mean()


def supervised_loss(*, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Cross-entropy of ``logits (N, D, K', H, W)`` against ``labels (N, D, H, W)``, all directions."""
    loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(0, 1))
    return loss, {"loss_ce": loss.detach()}


def unsupervised_loss(*, frames: torch.Tensor, logits: torch.Tensor,
                      attention: torch.Tensor | None, config: RunConfig, progress: float = 1.0
                      ) -> tuple[torch.Tensor, dict]:
    """Reconstruction of the target frame from moved source pixels (no labels).

    Terms: the fused prediction; each direction's own prediction (T=5, ``direction_weight``, so
    the attention cannot starve one side of gradient); the outer frames by the reversed motion
    (``reverse_weight``); the per-pixel entropy of the motion (``entropy_weight``, ramped in
    over the first half of training, ``progress`` in [0, 1], so early training can explore);
    the total variation of the motion probabilities (``smooth_weight``); the batch's use of
    every moving class (``usage_weight``, see ``class_usage``); and the reconstruction
    by the argmax motion with straight-through gradients (``hard_weight``): soft motion can
    blur its way to a low error, the argmax motion cannot. For T=5 that term rebuilds the fused
    prediction, where the attention gives each side only its share of the gradient;
    ``direction_hard_weight`` adds each direction's own argmax reconstruction. With
    ``occlusion_mask`` every reconstruction term counts only the target pixels its own splat
    covers about once.
    """
    r, kind = config.motion_range, config.loss
    probs = motion_probs(logits, config.num_classes)  # (N, D, K, H, W)
    target = frames[:, TARGET]

    def masks(p: torch.Tensor) -> tuple:
        """Visibility of the splat by ``p`` per direction, and for the fused prediction where
        either direction sees the pixel (choosing that side is the attention's job, so those
        pixels stay in). No gradient flows through the masks."""
        if not config.occlusion_mask:
            return None, None
        with torch.no_grad():
            seen = visible(coverage(p.detach(), r))
            return seen, seen.amax(1)

    per_dir, fused = reconstruct(frames, probs, attention, r)
    target_dir = target[:, None].expand_as(per_dir)  # what each direction rebuilds on its own
    mask_dir, mask_fused = masks(probs)
    recon = penalty(fused, target, kind, mask_fused)
    loss, out = recon, {"loss_recon": recon.detach()}
    if per_dir.shape[1] == 2 and config.direction_weight > 0:
        term = penalty(per_dir, target_dir, kind, mask_dir)
        loss = loss + config.direction_weight * term
        out["loss_direction"] = term.detach()
    if config.reverse_weight > 0:
        outer = frames[:, [0] if frames.shape[1] == 3 else [0, 4]]  # (N, D, H, W)
        term = penalty(reverse_reconstruction(frames, probs, r), outer, kind,
                       masks(probs.flip(2))[0])
        loss = loss + config.reverse_weight * term
        out["loss_reverse"] = term.detach()
    if config.entropy_weight > 0:
        p = logits.softmax(dim=2)
        term = -(p * torch.log(p.clamp_min(1e-8))).sum(2).mean()
        loss = loss + config.entropy_weight * min(1.0, 2.0 * progress) * term
        out["loss_entropy"] = term.detach()
    own_hard = config.direction_hard_weight if per_dir.shape[1] == 2 else 0.0
    if config.hard_weight > 0 or own_hard > 0:
        k = probs.shape[2]
        onehot = one_hot_motion(probs.argmax(2), k, probs.dtype)
        hard = onehot + probs - probs.detach()  # forward: argmax motion; backward: soft gradient
        hard_dir, hard_fused = reconstruct(frames, hard, attention, r)
        seen_dir, seen_fused = masks(onehot)
        if config.hard_weight > 0:
            term = penalty(hard_fused, target, kind, seen_fused)
            loss = loss + config.hard_weight * term
            out["loss_hard"] = term.detach()
        if own_hard > 0:
            term = penalty(hard_dir, target_dir, kind, seen_dir)
            loss = loss + own_hard * term
            out["loss_direction_hard"] = term.detach()
    if config.smooth_weight > 0:
        term = ((probs[..., 1:, :] - probs[..., :-1, :]).abs().sum(2).mean()
                + (probs[..., :, 1:] - probs[..., :, :-1]).abs().sum(2).mean())
        loss = loss + config.smooth_weight * term
        out["loss_smooth"] = term.detach()
    if config.usage_weight > 0:
        term = class_usage(probs)
        loss = loss + config.usage_weight * term
        out["loss_usage"] = term.detach()
    return loss, out


def objective(*, frames: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor,
              attention: torch.Tensor | None, config: RunConfig, progress: float = 1.0
              ) -> tuple[torch.Tensor, dict]:
    """The training loss the config asks for; ``progress`` is the fraction of training done."""
    if config.supervision == "supervised":
        return supervised_loss(logits=logits, labels=labels)
    return unsupervised_loss(frames=frames, logits=logits, attention=attention, config=config,
                             progress=progress)
