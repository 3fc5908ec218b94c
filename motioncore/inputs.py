"""What the network sees of each input frame: the frame alone, or the frame and its layers.

An input is one function and one entry in ``INPUTS``. The function turns the model's input
frames ``(N, T', H, W)`` (never the target frame) into per-frame channels ``(N, T', C, H, W)``;
the model hands each network the channels of its frames. Like ``attention``, this module imports
no torch at load time, so the sweep driver can validate a config without it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def frames_alone(seen):
    """The intensities, one channel a frame."""
    return seen[:, :, None]


def frame_layers(seen):
    """The intensities, each frame's alpha layer over the static background estimated from the
    input frames (their per-pixel minimum, ``teacher.layers``), and where that alpha is digit.
    The background is exact wherever an input frame shows it, so a background pixel beside the
    digit has alpha exactly 0 there, a difference of a few 1e-3 that convolutions resolve badly."""
    import torch

    from motioncore.teacher import ALPHA_EPS, layers

    _, alpha = layers(seen)
    return torch.stack([seen, alpha, (alpha > ALPHA_EPS).to(seen.dtype)], 2)


@dataclass(frozen=True)
class Input:
    features: Callable  # (N, T', H, W) -> (N, T', C, H, W)
    channels: int  # C


INPUTS = {
    "frames": Input(frames_alone, 1),
    "layers": Input(frame_layers, 3),
}
