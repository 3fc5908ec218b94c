"""The motion UNet and its attention heads, composed from small blocks."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from motioncore.attention import DESIGNS
from motioncore.config import RunConfig
from motioncore.inputs import INPUTS
from motioncore.motion import input_frames, motion_probs, reconstruct, side_frames


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.Identity()


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by normalisation and ReLU."""

    def __init__(self, cin: int, cout: int, norm: str):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=norm == "none"), norm_layer(norm, cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=norm == "none"), norm_layer(norm, cout),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """Fully convolutional encoder-decoder with skips; any H, W >= 8 (no padding to 2^depth)."""

    def __init__(self, cin: int, cout: int, width: int, depth: int, norm: str):
        super().__init__()
        chans = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([ConvBlock(cin, chans[0], norm)] + [
            ConvBlock(chans[i], chans[i + 1], norm) for i in range(depth)])
        self.up = nn.ModuleList([
            ConvBlock(chans[i + 1] + chans[i], chans[i], norm) for i in reversed(range(depth))])
        self.head = nn.Conv2d(chans[0], cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, cin, H, W) -> (N, cout, H, W)
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2, ceil_mode=True)  # odd sizes round up: 7 -> 4
            x = block(x)
            skips.append(x)
        skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")  # back to the skip's size
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)


class AttentionHead(nn.Module):
    """A tiny conv head: per-pixel features -> attention A in [0, 1] (A > 0.5 favours forward)."""

    def __init__(self, cin: int, hidden: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(cin, hidden, 3, padding=1), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, cin, H, W) -> (N, H, W)
        return torch.sigmoid(self.net(x)).squeeze(1)


class Output(NamedTuple):
    logits: torch.Tensor  # (N, D, K', H, W); K' = K (+1 with the disappear class)
    attention: torch.Tensor | None  # (N, H, W) in [0, 1] for T=5, None for T=3


class MotionNet(nn.Module):
    """Frames ``(N, T, H, W)`` -> per-pixel motion logits per direction, and A for T=5."""

    def __init__(self, config: RunConfig):
        super().__init__()
        c = config
        self.frames, self.network, self.attention = c.frames, c.network, c.attention
        self.motion_range, self.num_classes = c.motion_range, c.num_classes
        joint = c.frames == 5 and c.network == "joint"
        self.inputs = INPUTS[c.inputs]
        self.unet = UNet((4 if joint else 2) * self.inputs.channels,
                         c.num_outputs * (2 if joint else 1), c.width, c.depth, c.norm)
        self.design = DESIGNS[c.attention]
        self.head = (AttentionHead(self.design.channels(c.num_classes), self.design.hidden)
                     if self.design.features else None)

    def forward(self, frames: torch.Tensor) -> Output:
        n, _, h, w = frames.shape
        seen = input_frames(self.frames)
        channels = self.inputs.features(frames[:, list(seen)])  # (N, T', C, H, W)

        def given(which) -> torch.Tensor:  # the channels of these frames: (N, len * C, H, W)
            return channels[:, [seen.index(f) for f in which]].flatten(1, 2)

        if self.frames == 3:
            logits = self.unet(given(seen)).unsqueeze(1)  # (N, 1, K', H, W)
            return Output(logits, None)
        if self.network == "joint":
            logits = self.unet(given(seen)).view(n, 2, -1, h, w)
        else:  # one network per side, batched: frames (0, 1) -> forward, (4, 3) -> backward
            pair = torch.cat([given(side) for side in side_frames(5)])  # (2N, 2C, H, W)
            logits = self.unet(pair).view(2, n, -1, h, w).transpose(0, 1)  # (N, 2, K', H, W)
        return Output(logits, self.attend(logits))

    def attend(self, logits: torch.Tensor) -> torch.Tensor:
        """Attention map A ``(N, H, W)`` from the two directions' logits."""
        n, _, _, h, w = logits.shape
        if self.head is None:
            return logits.new_full((n, h, w), 0.5)
        probs = motion_probs(logits, self.num_classes)  # (N, 2, K, H, W)
        features = self.design.features(probs=probs, r=self.motion_range)  # (N, C, H, W)
        return self.head(features)  # (N, H, W)


class Prediction(NamedTuple):
    classes: torch.Tensor  # (N, D, H, W) argmax over the K motion classes
    recon: torch.Tensor  # (N, H, W) the fused reconstruction of the target frame
    attention: torch.Tensor | None  # (N, H, W) for T=5


@torch.no_grad()
def predict_batch(model: MotionNet, frames: torch.Tensor) -> Prediction:
    """What evaluation, prediction and pictures need from one forward pass."""
    out = model(frames)
    k = model.num_classes
    _, recon = reconstruct(frames, motion_probs(out.logits, k), out.attention, model.motion_range)
    return Prediction(out.logits[:, :, :k].argmax(dim=2), recon, out.attention)
