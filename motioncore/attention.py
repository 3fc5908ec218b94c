"""The attention designs of T=5: how the two reconstructions of the target are fused.

A design is one function and one entry in ``DESIGNS``. The function turns the two directions'
motion into per-pixel features ``(N, C, H, W)``; a tiny conv head (``model.AttentionHead``)
turns those into the attention map A in [0, 1] (A > 0.5 favours the forward source). A design
without a function is A = 0.5 everywhere. The config's choices, the model's heads and the
sweeps' design lists all come from ``DESIGNS``. This module imports no torch at load time, so
the sweep driver can validate a config without it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def motion_features(*, probs, r: int):
    """Both directions' class probabilities, stacked: ``(N, 2, K, H, W) -> (N, 2K, H, W)``."""
    return probs.flatten(1, 2)


def coverage_features(*, probs, r: int):
    """Each direction's coverage (an all-ones image splatted by its motion): ~0 where a target
    pixel receives nothing, ~1 normally, > 1 where content piles up: ``(N, 2, H, W)``."""
    from motioncore.motion import coverage

    return coverage(probs, r)


@dataclass(frozen=True)
class Design:
    features: Callable | None  # (probs=(N, 2, K, H, W), r=...) -> (N, C, H, W); None: A = 0.5
    channels: Callable[[int], int] = lambda k: 0  # C for K motion classes
    hidden: int = 16  # the head's hidden channels


DESIGNS = {
    "none": Design(None),
    "motion": Design(motion_features, lambda k: 2 * k),
    "segmentation": Design(coverage_features, lambda k: 2, hidden=8),
}
