"""The training objective as a table of named, pure terms.

Each term is a function of keyword-only arguments, each argument one of the named quantities of
``Quantities`` (the motion probabilities, the reconstructions, the target, the teacher's labels),
returning its value. The objective is the weighted sum of the terms the config turns on, and
reports each under ``loss_<name>``. To add an idea: write its function, add one ``Term`` to
``UNSUPERVISED`` (or ``SUPERVISED``), and a ``<name>_weight`` field to ``RunConfig`` (every
``*_weight`` field is validated as a weight there, and a field at its default leaves run ids
unchanged). Then sweep it with ``--set <name>_weight=...``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

from motioncore import motion, teacher
from motioncore.attention import DESIGNS
from motioncore.config import RunConfig

# --- the terms ------------------------------------------------------------------------------


def penalty(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean L1 or L2 reconstruction error."""
    diff = pred - target
    return (diff.abs() if kind == "l1" else diff.square()).mean()


def cross_entropy(*, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``logits (N, D, K', H, W)`` against ``labels (N, D, H, W)``, all directions."""
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(0, 1))


def recon(*, fused: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """The research note's objective: the fused prediction of the held-out target frame against
    it. Its optimum is not the true motion on faint digit pixels (docs/results.md), which is why
    the research table trains on ``layer`` instead."""
    return penalty(fused, target, kind)


def layer(*, logits: torch.Tensor, layer_labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against the layered teacher's labels (``motioncore.teacher``): the
    sequence's velocity on the source pixels of the digit layer, zero motion on the rest."""
    return cross_entropy(logits=logits, labels=layer_labels)


def attend(*, fused_attention: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """T=5: the fused reconstruction with each direction's reconstruction held fixed (detached):
    it trains the attention, which side to trust where, for objectives without ``recon``. Its
    gradient reaches the motion only through the attention head's inputs (a design's features
    are computed from the motion probabilities)."""
    return penalty(fused_attention, target, kind)


# --- the quantities the terms take ---------------------------------------------------------


def _part(pair: str, index: int, doc: str) -> property:
    """One of the two values (per direction, fused) that the cached ``pair`` computes at once."""
    return property(lambda self: getattr(self, pair)[index], doc=doc)


class Quantities:
    """Every named input of a term, each computed once, when a term first asks for it."""

    def __init__(self, *, frames: torch.Tensor, logits: torch.Tensor,
                 attention: torch.Tensor | None, labels: torch.Tensor | None, config: RunConfig):
        self.frames, self.logits, self.attention, self.labels = frames, logits, attention, labels
        self.r, self.kind = config.motion_range, config.loss
        self.k, self.noise, self.digits = config.num_classes, config.noise, config.digits

    @cached_property
    def probs(self) -> torch.Tensor:  # (N, D, K, H, W)
        return motion.motion_probs(self.logits, self.k)

    @cached_property
    def layer_labels(self) -> torch.Tensor:  # (N, D, H, W): the layered teacher's classes
        return teacher.labels(self.frames, self.r, self.noise, self.digits)

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

    def __post_init__(self) -> None:
        """A misspelt argument fails here, when the table is built, not at the first step."""
        for p in inspect.signature(self.fn).parameters.values():
            if p.kind is not p.KEYWORD_ONLY or p.name not in QUANTITY_NAMES:
                raise TypeError(f"term {self.name!r}: argument {p.name!r} of {self.fn.__name__} "
                                "must be keyword-only and one of " + ", ".join(QUANTITY_NAMES))

    def scale(self, config: RunConfig) -> float:
        """The term's weight in this config; 0 turns it off."""
        if self.two_directions and config.directions < 2:
            return 0.0
        if self.trains_attention and DESIGNS[config.attention].features is None:
            return 0.0
        return 1.0 if self.weight is None else getattr(config, self.weight)


SUPERVISED = (Term("ce", cross_entropy),)
UNSUPERVISED = (
    Term("recon", recon, "recon_weight"),
    Term("layer", layer, "layer_weight"),
    Term("attend", attend, "attend_weight", two_directions=True, trains_attention=True),
)


def _arguments(fn: Callable) -> tuple[str, ...]:
    return tuple(inspect.signature(fn).parameters)


def objective(*, frames: torch.Tensor, labels: torch.Tensor | None, logits: torch.Tensor,
              attention: torch.Tensor | None, config: RunConfig
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The training loss the config asks for, and each term's value (detached) by name.

    ``frames (N, T, H, W)``, ``labels (N, D, H, W)`` (supervised only), ``logits (N, D, K', H, W)``,
    ``attention (N, H, W)`` for T=5.
    """
    q = Quantities(frames=frames, logits=logits, attention=attention, labels=labels, config=config)
    table = SUPERVISED if config.supervision == "supervised" else UNSUPERVISED
    loss, parts = None, {}
    for term in table:
        w = term.scale(config)
        if w <= 0:
            continue
        value = term.fn(**{a: getattr(q, a) for a in _arguments(term.fn)})
        loss = w * value if loss is None else loss + w * value
        parts[f"loss_{term.name}"] = value.detach()
    return loss, parts
