"""The training objective as a table of named, pure terms.

Each term is a function of keyword-only arguments, each argument one of the named quantities of
``Quantities`` (the motion probabilities, the reconstructions, the target, their masks, ...),
returning its value. The objective is the weighted sum of the terms the config turns on, and
reports each under ``loss_<name>``. To add an idea: write its function, add one ``Term`` to
``UNSUPERVISED`` (or ``SUPERVISED``), and a ``<name>_weight`` field to ``RunConfig`` (every
``*_weight`` field is validated as a weight there, and a field at its default leaves run ids
unchanged). Then sweep it with ``--set <name>_weight=...``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

from motioncore import motion, teacher
from motioncore.attention import DESIGNS
from motioncore.config import ENTROPY_RAMP, RunConfig

# --- the terms ------------------------------------------------------------------------------


def penalty(pred: torch.Tensor, target: torch.Tensor, kind: str,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean L1 or L2 reconstruction error, over the pixels of ``mask`` (a 0/1 float) if given."""
    diff = pred - target
    err = diff.abs() if kind == "l1" else diff.square()
    return err.mean() if mask is None else (err * mask).mean()


def cross_entropy(*, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``logits (N, D, K', H, W)`` against ``labels (N, D, H, W)``, all directions."""
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(0, 1))


def recon(*, fused: torch.Tensor, target: torch.Tensor, mask_fused, kind: str) -> torch.Tensor:
    """The fused prediction of the target frame against the target."""
    return penalty(fused, target, kind, mask_fused)


def direction(*, per_dir: torch.Tensor, target_dir: torch.Tensor, mask_dir, kind: str
              ) -> torch.Tensor:
    """T=5: each direction's own prediction, so the attention cannot starve one side of gradient."""
    return penalty(per_dir, target_dir, kind, mask_dir)


def reverse(*, reversed_pred: torch.Tensor, outer: torch.Tensor, mask_reversed, kind: str
            ) -> torch.Tensor:
    """The outer frames (0, and 4 for T=5) rebuilt from each source by the reversed motion."""
    return penalty(reversed_pred, outer, kind, mask_reversed)


def entropy(*, logits: torch.Tensor) -> torch.Tensor:
    """Mean per-pixel entropy of the motion distribution (all K' channels)."""
    p = logits.softmax(dim=2)
    return -(p * torch.log(p.clamp_min(1e-8))).sum(2).mean()


def hard(*, hard_fused: torch.Tensor, target: torch.Tensor, mask_hard_fused, kind: str
         ) -> torch.Tensor:
    """The reconstruction by the argmax motion (straight-through gradients): soft motion can blur
    its way to a low error, the argmax motion cannot. For T=5 it rebuilds the fused prediction,
    where the attention gives each side only its share of the gradient."""
    return penalty(hard_fused, target, kind, mask_hard_fused)


def direction_hard(*, hard_dir: torch.Tensor, target_dir: torch.Tensor, mask_hard_dir, kind: str
                   ) -> torch.Tensor:
    """T=5: each direction's own argmax reconstruction."""
    return penalty(hard_dir, target_dir, kind, mask_hard_dir)


def smooth(*, probs: torch.Tensor) -> torch.Tensor:
    """Total variation of the motion probabilities ``(N, D, K, H, W)`` over rows and columns."""
    return ((probs[..., 1:, :] - probs[..., :-1, :]).abs().sum(2).mean()
            + (probs[..., :, 1:] - probs[..., :, :-1]).abs().sum(2).mean())


def usage(*, probs: torch.Tensor) -> torch.Tensor:
    """KL divergence from uniform of the batch's mean distribution over the moving classes.

    Every pixel's motion mass on each class but the zero class is summed over the batch and
    normalised: 0 when all moving classes get equal mass, ``log(K - 1)`` when one gets it all. A
    velocity whose class the model stopped predicting gets its sequences' motion from a
    neighbouring class; the reconstruction gradient cannot revive it (it scales with the dead
    class's near-zero probability), but this term's gradient grows as the class's share vanishes.
    """
    moving = motion.moving_classes(probs.sum((0, 1, 3, 4)))  # (K-1,)
    share = moving / moving.sum().clamp_min(1e-12)
    return (share * torch.log(share.clamp_min(1e-12))).sum() + math.log(share.shape[0])


def layer(*, logits: torch.Tensor, layer_labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against the layered teacher's labels (``motioncore.teacher``): the
    sequence's velocity on the source pixels of the digit layer, zero motion on the rest."""
    return cross_entropy(logits=logits, labels=layer_labels)


def attend(*, fused_attention: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """T=5: the fused reconstruction with each direction's motion held fixed (detached): it
    trains the attention alone, which side to trust where, for objectives without ``recon``."""
    return penalty(fused_attention, target, kind)


# --- the quantities the terms take ---------------------------------------------------------


def _part(pair: str, index: int, doc: str) -> property:
    """One of the two values (per direction, fused) that the cached ``pair`` computes at once."""
    return property(lambda self: getattr(self, pair)[index], doc=doc)


class Quantities:
    """Every named input of a term, each computed once, when a term first asks for it.

    With ``occlusion_mask``, each reconstruction counts only the target pixels its own splat
    covers about once (``motion.visible``); the fused prediction keeps the pixels either side
    sees, since choosing that side is the attention's job. No gradient flows through a mask.
    """

    def __init__(self, *, frames: torch.Tensor, logits: torch.Tensor,
                 attention: torch.Tensor | None, labels: torch.Tensor | None, config: RunConfig):
        self.frames, self.logits, self.attention, self.labels = frames, logits, attention, labels
        self.r, self.kind, self.masked = config.motion_range, config.loss, config.occlusion_mask
        self.k, self.noise = config.num_classes, config.noise

    def _masks(self, p: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Per direction, and fused (where either direction sees the pixel), for field ``p``."""
        if not self.masked:
            return None, None
        with torch.no_grad():
            seen = motion.visible(motion.coverage(p.detach(), self.r))
            return seen, seen.amax(1)

    @cached_property
    def probs(self) -> torch.Tensor:  # (N, D, K, H, W)
        return motion.motion_probs(self.logits, self.k)

    @cached_property
    def layer_labels(self) -> torch.Tensor:  # (N, D, H, W): the layered teacher's classes
        return teacher.labels(self.frames, self.r, self.noise)

    @cached_property
    def target(self) -> torch.Tensor:  # (N, H, W)
        return self.frames[:, motion.TARGET]

    @cached_property
    def _soft(self) -> tuple[torch.Tensor, torch.Tensor]:
        return motion.reconstruct(self.frames, self.probs, self.attention, self.r)

    per_dir = _part("_soft", 0, "(N, D, H, W): each direction's soft reconstruction")
    fused = _part("_soft", 1, "(N, H, W): the fused soft reconstruction")

    @cached_property
    def fused_attention(self) -> torch.Tensor:  # (N, H, W): the fusion, motion held fixed
        return motion.fuse(self.per_dir.detach(), self.attention)

    @cached_property
    def target_dir(self) -> torch.Tensor:  # (N, D, H, W): what each direction rebuilds alone
        return self.target[:, None].expand_as(self.per_dir)

    @cached_property
    def _soft_masks(self):
        return self._masks(self.probs)

    mask_dir = _part("_soft_masks", 0, "per direction: the pixels the soft splat covers once")
    mask_fused = _part("_soft_masks", 1, "the pixels either direction covers once")

    @cached_property
    def reversed_pred(self) -> torch.Tensor:  # (N, D, H, W)
        return motion.splat_sources(self.frames, motion.reversed_motion(self.probs), self.r)

    @cached_property
    def outer(self) -> torch.Tensor:  # (N, D, H, W)
        return self.frames[:, list(motion.outer_frames(self.frames.shape[1]))]

    @cached_property
    def mask_reversed(self):
        return self._masks(motion.reversed_motion(self.probs))[0]

    @cached_property
    def _onehot(self) -> torch.Tensor:  # (N, D, K, H, W), the argmax motion
        return motion.one_hot_motion(self.probs.argmax(2), self.k, self.probs.dtype)

    @cached_property
    def _hard(self) -> tuple[torch.Tensor, torch.Tensor]:
        # forward: the argmax motion; backward: the soft motion's gradient (straight through)
        hard_probs = self._onehot + self.probs - self.probs.detach()
        return motion.reconstruct(self.frames, hard_probs, self.attention, self.r)

    hard_dir = _part("_hard", 0, "(N, D, H, W): each direction's argmax reconstruction")
    hard_fused = _part("_hard", 1, "(N, H, W): the fused argmax reconstruction")

    @cached_property
    def _hard_masks(self):
        return self._masks(self._onehot)

    mask_hard_dir = _part("_hard_masks", 0, "per direction: the pixels the argmax covers once")
    mask_hard_fused = _part("_hard_masks", 1, "the pixels either argmax direction covers once")


# Every name a term may take: the inputs and the quantities computed from them.
QUANTITY_NAMES = ("frames", "logits", "attention", "labels", "kind", *sorted(
    n for n, v in vars(Quantities).items() if not n.startswith("_")
    and isinstance(v, (property, cached_property))))


@dataclass(frozen=True)
class Term:
    """One entry of the objective: ``weight * fn(**quantities)``, reported as ``loss_<name>``."""

    name: str
    fn: Callable[..., torch.Tensor]
    weight: str | None = None  # the RunConfig field of its weight; None: always on, weight 1
    two_directions: bool = False  # T=5 only
    trains_attention: bool = False  # only where the attention design has a head to train
    ramp: Callable[[float], float] | None = None  # a factor of training progress in [0, 1]

    def __post_init__(self) -> None:
        """A misspelt argument fails here, when the table is built, not at the first step."""
        for p in inspect.signature(self.fn).parameters.values():
            if p.kind is not p.KEYWORD_ONLY or p.name not in QUANTITY_NAMES:
                raise TypeError(f"term {self.name!r}: argument {p.name!r} of {self.fn.__name__} "
                                "must be keyword-only and one of " + ", ".join(QUANTITY_NAMES))

    def scale(self, config: RunConfig, progress: float) -> float:
        """The term's weight at this point of training; 0 turns it off."""
        if self.two_directions and config.directions < 2:
            return 0.0
        if self.trains_attention and DESIGNS[config.attention].features is None:
            return 0.0
        w = 1.0 if self.weight is None else getattr(config, self.weight)
        return w * self.ramp(progress) if w > 0 and self.ramp else w



SUPERVISED = (Term("ce", cross_entropy),)
UNSUPERVISED = (
    Term("recon", recon, "recon_weight"),
    Term("layer", layer, "layer_weight"),
    Term("attend", attend, "attend_weight", two_directions=True, trains_attention=True),
    Term("direction", direction, "direction_weight", two_directions=True),
    Term("reverse", reverse, "reverse_weight"),
    Term("entropy", entropy, "entropy_weight", ramp=lambda p: min(1.0, p / ENTROPY_RAMP)),
    Term("hard", hard, "hard_weight"),
    Term("direction_hard", direction_hard, "direction_hard_weight", two_directions=True),
    Term("smooth", smooth, "smooth_weight"),
    Term("usage", usage, "usage_weight"),
)


def _arguments(fn: Callable) -> tuple[str, ...]:
    return tuple(inspect.signature(fn).parameters)


def objective(*, frames: torch.Tensor, labels: torch.Tensor | None, logits: torch.Tensor,
              attention: torch.Tensor | None, config: RunConfig, progress: float = 1.0
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The training loss the config asks for, and each term's value (detached) by name.

    ``frames (N, T, H, W)``, ``labels (N, D, H, W)`` (supervised only), ``logits (N, D, K', H, W)``,
    ``attention (N, H, W)`` for T=5; ``progress`` is the fraction of training done.
    """
    q = Quantities(frames=frames, logits=logits, attention=attention, labels=labels, config=config)
    table = SUPERVISED if config.supervision == "supervised" else UNSUPERVISED
    loss, parts = None, {}
    for term in table:
        w = term.scale(config, progress)
        if w <= 0:
            continue
        value = term.fn(**{a: getattr(q, a) for a in _arguments(term.fn)})
        loss = w * value if loss is None else loss + w * value
        parts[f"loss_{term.name}"] = value.detach()
    return loss, parts
