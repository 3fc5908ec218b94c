"""One frozen dataclass describing a run, from CLI flag to sweep cell to MLflow param."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import re
import typing
from dataclasses import dataclass, fields
from typing import Any

from motioncore.attention import DESIGNS
from motioncore.inputs import INPUTS

CHOICES = {
    "frames": (3, 5),
    "norm": ("batch", "group", "none"),
    "network": ("shared", "joint"),
    "supervision": ("supervised", "unsupervised"),
    "loss": ("l1", "l2"),
    "attention": tuple(DESIGNS),
    "inputs": tuple(INPUTS),
    "schedule": ("constant", "cosine"),
    "precision": ("fp32", "bf16", "auto"),
}


# The metric names of docs/conventions.md (defined in metrics.py; here so that callers without
# torch, like the sweep driver, can name them).
METRIC_NAMES = ("acc", "acc_fg", "fg_net", "bg_motion", "acc_zero", "epe", "epe_fg", "recon_l1",
                "recon_l1_copy", "attn_acc")

# Recipe constants that are not worth a config field, each with why it is what it is.
WARMUP_STEPS = 50  # linear learning-rate warm-up: Adam's first moments are noisy, BatchNorm's too
LR_FLOOR = 0.05  # the cosine schedule ends at this fraction of lr, not 0: late steps still learn


MAX_MOTION_RANGE = 7  # the research table goes to 5; every step's cost grows with (2r+1)^2


class UsageError(ValueError):
    """A value the user chose is not allowed; the message is one line naming it and what is."""


@dataclass(frozen=True)
class RunConfig:
    # --- data ---
    motion_range: int = 1  # r: displacements dx, dy in -r..r, K = (2r+1)^2 classes
    frames: int = 3  # 3: frames 0,1 -> 2 (extrapolate); 5: frames 0,1,3,4 -> 2 (interpolate)
    noise: float = 0.0  # static background ~ U(0, noise), identical in every frame
    digits: int = 1  # moving digits per sequence, each with its own velocity
    image_size: int = 28  # square canvas side in pixels
    # --- model ---
    width: int = 16  # channels of the UNet's first level (doubled per level)
    depth: int = 2  # number of downsamplings (28 -> 14 -> 7 at depth 2)
    norm: str = "batch"  # normalisation in conv blocks: batch | group | none
    network: str = "shared"  # T=5: one network per side (shared) or one for all four frames (joint)
    attention: str = "none"  # T=5 fusion of the two reconstructions: a design of attention.DESIGNS
    #   (none: A=0.5; motion: from both fields' probabilities; segmentation: from their coverage)
    inputs: str = "frames"  # what the network sees of each input frame (motioncore/inputs.py):
    #   frames | layers (also its alpha over the input frames' per-pixel minimum, and where > 0)
    disappear: bool = False  # extra class whose probability mass is not splatted (occluded pixels)
    # --- objective ---
    supervision: str = "supervised"  # supervised (cross-entropy against the true motion) |
    #   unsupervised (from the frames alone: the terms below, motioncore/losses.py)
    loss: str = "l1"  # penalty of the reconstruction terms (recon, attend): l1 | l2
    recon_weight: float = 1.0  # unsupervised: the fused reconstruction of the held-out target
    #   frame, the research note's objective (0 drops it; the research table trains on layer)
    layer_weight: float = 0.0  # unsupervised: cross-entropy against the layered teacher's labels
    #   (motioncore/teacher.py: velocity from the frames' alpha layers over the static background)
    attend_weight: float = 0.0  # T=5 unsupervised: the fused reconstruction with each direction's
    #   reconstruction detached, which trains the attention (for objectives without recon)
    # --- optimisation ---
    lr: float = 2e-3  # Adam(W) peak learning rate
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    batch_size: int = 64  # sequences per step, generated on the training device
    steps: int = 1500  # optimisation steps
    schedule: str = "cosine"  # learning-rate schedule: constant | cosine (decay to 5% of lr)
    ema: float = 0.99  # weight EMA decay used for evaluation; 0 evaluates the raw weights
    eval_every: int = 250  # steps between validation evaluations (and reports)
    val_size: int = 1000  # fixed validation sequences (MNIST val digits)
    test_size: int = 2000  # fixed test sequences (MNIST test digits)
    eval_seed: int = 1234  # seed of the validation and test sets: shared by all runs so they compare
    # --- run ---
    seed: int = 0  # training data order and initialisation
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda | cuda:N
    precision: str = "auto"  # the network's forward in fp32 | bf16 (autocast; objective, metrics
    #   and weights stay fp32) | auto: bf16 where the device multiplies bf16 in hardware, else fp32
    #   (over three seeds bf16 matched fp32's test acc and acc_fg; docs/results.md)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            want = _TYPES[f.name]
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
            elif not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise UsageError(f"{f.name}={value!r}: expected {want.__name__}")
            if want is float and not math.isfinite(getattr(self, f.name)):
                raise UsageError(f"{f.name}={value!r}: must be a finite number")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise UsageError(
                    f"{name}={getattr(self, name)!r}: allowed values are "
                    + ", ".join(map(str, allowed))
                )
        if self.motion_range > MAX_MOTION_RANGE:
            raise UsageError(f"motion_range={self.motion_range}: allowed 1..{MAX_MOTION_RANGE} "
                             f"(K = (2r+1)^2 classes, {(2 * MAX_MOTION_RANGE + 1) ** 2} at "
                             f"{MAX_MOTION_RANGE}; time and memory grow with K)")
        _at_least(self, motion_range=1, digits=1, image_size=8, width=1, depth=0, batch_size=1,
                  steps=0, eval_every=1, val_size=1, test_size=1, seed=0, eval_seed=0)
        _positive_or_zero(self, "lr", "weight_decay", *WEIGHTS)
        if not 0.0 <= self.noise <= 1.0:
            raise UsageError(f"noise={self.noise}: allowed range is [0, 1]")
        if not 0.0 <= self.ema < 1.0:
            raise UsageError(f"ema={self.ema}: allowed range is [0, 1)")
        if self.lr == 0:
            raise UsageError("lr=0: the learning rate must be > 0")
        if self.frames == 3 and self.attention != "none":
            raise UsageError(
                f"attention={self.attention!r} needs frames=5 (with frames=3 there is one direction "
                "and nothing to fuse); use attention=none"
            )
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise UsageError(f"device={self.device!r}: allowed values are auto, cpu, cuda, cuda:N")
        for name in ("seed", "eval_seed"):
            if getattr(self, name) >= 2**63:
                raise UsageError(f"{name}={getattr(self, name)}: must be below 2**63")

    # --- derived values ---
    @property
    def num_classes(self) -> int:
        """K = (2r+1)^2 motion classes."""
        return (2 * self.motion_range + 1) ** 2

    @property
    def directions(self) -> int:
        """D: 1 motion field for T=3 (forward), 2 for T=5 (forward, backward)."""
        return 1 if self.frames == 3 else 2

    @property
    def num_outputs(self) -> int:
        """Logit channels per direction: the K motion classes plus the optional disappear class."""
        return self.num_classes + int(self.disappear)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> RunConfig:
        return from_dict({**self.to_dict(), **changes})

    def differs(self, saved: dict[str, Any]) -> list[str]:
        """Fields in which a saved config (a checkpoint's) is another run than this one. The
        device and precision are how a run computes, not what it is: a CUDA or bf16 run resumes
        on a CPU in fp32."""
        return sorted(k for k in {*saved, *FIELDS} if k not in HOW
                      and saved.get(k, getattr(RunConfig, k, None)) != getattr(self, k, None))

    def changed(self) -> dict[str, Any]:
        """The fields set away from their defaults."""
        return {k: v for k, v in self.to_dict().items() if v != getattr(RunConfig, k)}

    def hash(self) -> str:
        """Short stable id of everything but the seed and device: runs with equal hashes are replicates.

        Only fields away from their default count, so adding a field (at a default that keeps
        the old behaviour) leaves the id of every recorded run, and so its resumption, unchanged."""
        d = {k: v for k, v in self.changed().items() if k not in ("seed", "device")}
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


# Field types from the annotations, not the defaults: ``mine_weight: float = 0`` is a float field.
_TYPES = {name: want for name, want in typing.get_type_hints(RunConfig).items()}
FIELDS = tuple(_TYPES)
HOW = ("device", "precision")  # fields that say how a run computes, not what it computes
# Every weight of an objective term (motioncore/losses.py names the term each one scales).
WEIGHTS = tuple(n for n in FIELDS if n.endswith("_weight"))


def _at_least(cfg: RunConfig, **minimum: int) -> None:
    for name, low in minimum.items():
        if getattr(cfg, name) < low:
            raise UsageError(f"{name}={getattr(cfg, name)}: must be an integer >= {low}")


def _positive_or_zero(cfg: RunConfig, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) < 0:
            raise UsageError(f"{name}={getattr(cfg, name)}: must be >= 0")


def parse_value(name: str, text: str) -> Any:
    """Turn the string form of a field (a CLI flag or ``--set key=value``) into its type."""
    if name not in _TYPES:
        raise UsageError(f"unknown config key {name!r}; valid keys: {', '.join(FIELDS)}")
    want = _TYPES[name]
    if want is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"{name}={text!r}: expected true or false")
    try:
        return want(text)
    except ValueError:
        raise UsageError(f"{name}={text!r}: expected {want.__name__}") from None


def from_dict(d: dict[str, Any]) -> RunConfig:
    """Build a config, rejecting unknown keys, wrong types, bad values and bad combinations."""
    unknown = sorted(set(d) - set(FIELDS))
    if unknown:
        raise UsageError(
            f"unknown config key {unknown[0]!r}; valid keys: {', '.join(FIELDS)}"
        )
    values = {k: parse_value(k, v) if isinstance(v, str) and _TYPES[k] is not str else v
              for k, v in d.items()}
    return RunConfig(**values)


# Objective fields of earlier versions (the reconstruction recipe's regularisers and occlusion
# mask, docs/research-log.md). A checkpoint that names them still predicts (they shaped its
# training, not its network); it does not resume, since this version would train it otherwise.
RETIRED = ("direction_weight", "reverse_weight", "entropy_weight", "hard_weight",
           "direction_hard_weight", "smooth_weight", "usage_weight", "occlusion_mask")


def from_saved(d: dict[str, Any]) -> RunConfig:
    """The config of a saved run (a checkpoint's) for prediction: ``from_dict`` without the
    retired objective fields."""
    return from_dict({k: v for k, v in d.items() if k not in RETIRED})


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per field (``--motion-range`` for ``motion_range``), default: the field's default."""
    group = parser.add_argument_group("run config")
    for name, want in _TYPES.items():
        flag = "--" + name.replace("_", "-")
        kind = "true|false" if want is bool else want.__name__
        choices = CHOICES.get(name)
        extra = f" ({'|'.join(map(str, choices))})" if choices else ""
        group.add_argument(flag, dest=name, default=None, metavar=kind.upper(),
                           help=f"{kind}{extra}, default {getattr(RunConfig, name)}")


def config_from_flags(args: argparse.Namespace, base: RunConfig | None = None) -> RunConfig:
    """The config given by ``add_config_flags`` flags over ``base`` (default: the defaults)."""
    given = {n: parse_value(n, getattr(args, n)) for n in FIELDS if getattr(args, n, None) is not None}
    return from_dict({**(base or RunConfig()).to_dict(), **given})


def resolve_device(name: str):
    """The torch device a config's ``device`` names; ``auto`` picks CUDA when present."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device={name!r}: no CUDA device is available here; use cpu or auto")
    return dev
