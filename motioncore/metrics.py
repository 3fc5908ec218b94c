"""The metrics of docs/conventions.md, in one place.

``batch_sums`` turns one batch into numerators and denominators (per direction where the
metric averages over directions); ``finalize`` turns the summed parts into the named metrics,
so a metric over many batches equals the metric over their concatenation.
"""

from __future__ import annotations

import torch

from motioncore.config import METRIC_NAMES
from motioncore.motion import (
    TARGET,
    displacements,
    moving_classes,
    num_classes,
    sources,
    true_coverage,
    zero_class,
)

NAMES = METRIC_NAMES


def batch_sums(*, pred: torch.Tensor, labels: torch.Tensor, fg: torch.Tensor, r: int,
               frames: torch.Tensor, recon: torch.Tensor,
               attention: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Numerators and denominators of every metric for one batch.

    ``pred, labels, fg (N, D, H, W)``: predicted and true classes on the source grids, digit
    pixels; ``frames (N, T, H, W)``; ``recon (N, H, W)`` the fused reconstruction of the target;
    ``attention (N, H, W)`` for T=5.
    """
    table = displacements(r, labels.device).float()  # (K, 2)
    correct = pred == labels
    zero = labels == zero_class(r)
    halo = (pred != zero_class(r)) & ~fg  # background predicted as moving
    epe = (table[pred] - table[labels]).norm(dim=-1)  # (N, D, H, W)
    fgf = fg.float()
    target = frames[:, TARGET]
    copy = frames[:, sources(frames.shape[1])[0]]  # the nearest source frame, unchanged (frame 1)
    s = {
        "acc": correct.float().sum((0, 2, 3)), "_all": torch.full_like(fgf.sum((0, 2, 3)),
                                                                      fg[:, 0].numel()),
        "acc_fg": (correct.float() * fgf).sum((0, 2, 3)), "_fg": fgf.sum((0, 2, 3)),
        "acc_zero": zero.float().sum((0, 2, 3)),
        "bg_motion": halo.float().sum((0, 2, 3)), "_bg": (~fg).float().sum((0, 2, 3)),
        "epe": epe.sum((0, 2, 3)), "epe_fg": (epe * fgf).sum((0, 2, 3)),
        "recon_l1": (recon - target).abs().sum(), "recon_l1_copy": (copy - target).abs().sum(),
        "_pix": torch.tensor(float(target.numel()), device=target.device),
    }
    k = num_classes(r)
    s["_class_right"] = torch.bincount(labels[fg & correct], minlength=k)
    s["_class_fg"] = torch.bincount(labels[fg], minlength=k)
    if attention is not None and labels.shape[1] == 2:
        cov = true_coverage(labels, r)  # (N, 2, H, W)
        fwd_only, bwd_only = (cov[:, 0] > 0) & (cov[:, 1] == 0), (cov[:, 0] == 0) & (cov[:, 1] > 0)
        forward = attention > 0.5  # docs/conventions.md: A > 0.5 means forward (else backward)
        s["attn_acc"] = (forward & fwd_only).float().sum() + (~forward & bwd_only).float().sum()
        s["_attn"] = (fwd_only | bwd_only).float().sum()
    return {k: v.detach().double().cpu() for k, v in s.items()}


def class_recall(s: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(K,)``: per true motion class, the fraction of its digit pixels (all directions) predicted
    right; NaN for a class with no digit pixels. Unsupervised models can lose whole velocities to
    their neighbours while acc barely moves, which this shows at a glance."""
    return s["_class_right"] / s["_class_fg"].where(s["_class_fg"] > 0, float("nan"))


LOST_BELOW = 0.1  # a moving class with a recall under this is "lost"


def lost_classes(recall: torch.Tensor) -> tuple[int, int]:
    """(lost, seen): moving classes (all but the zero class) with digit pixels, and how many of
    them have a recall under ``LOST_BELOW``."""
    moving = moving_classes(recall)
    seen = moving[~moving.isnan()]
    return int((seen < LOST_BELOW).sum()), len(seen)


def recall_summary(recall: torch.Tensor) -> str:
    """One line: how many moving classes are lost and how well the rest do."""
    lost, seen = lost_classes(recall)
    moving = moving_classes(recall)
    kept = moving[moving >= LOST_BELOW]  # NaN compares false: classes without digit pixels drop out
    rest = f", the rest {100 * kept.mean():.0f}% right on average" if len(kept) else ""
    return f"{lost} of {seen} moving classes lost (<{100 * LOST_BELOW:.0f}% right){rest}"


def add(total: dict | None, part: dict) -> dict:
    """Sum two ``batch_sums`` results."""
    return dict(part) if total is None else {k: total[k] + part[k] for k in total}


def finalize(s: dict[str, torch.Tensor]) -> dict[str, float]:
    """Metric values from summed parts; direction-wise fractions are averaged over directions."""
    out = {
        "acc": (s["acc"] / s["_all"]).mean(),
        "acc_fg": (s["acc_fg"] / s["_fg"].clamp_min(1)).mean(),
        "acc_zero": (s["acc_zero"] / s["_all"]).mean(),
        "bg_motion": (s["bg_motion"] / s["_bg"].clamp_min(1)).mean(),
        # acc_fg net of the halo: a background pixel given motion cancels a right digit pixel
        "fg_net": ((s["acc_fg"] - s["bg_motion"]) / s["_fg"].clamp_min(1)).mean(),
        "epe": (s["epe"] / s["_all"]).mean(),
        "epe_fg": (s["epe_fg"] / s["_fg"].clamp_min(1)).mean(),
        "recon_l1": s["recon_l1"] / s["_pix"],
        "recon_l1_copy": s["recon_l1_copy"] / s["_pix"],
    }
    if "attn_acc" in s:
        out["attn_acc"] = s["attn_acc"] / s["_attn"].clamp_min(1)
    return {k: float(v) for k, v in out.items()}
