"""Declared sweeps: each module's ``space()`` returns plain data a test checks against RunConfig.

Two levels: cells (a grid over ablation axes, each a dict of config overrides) and, inside a
cell, an optional Optuna search over hyperparameters; the chosen configuration is replicated
over the same seed list in every cell, so cells compare pairwise. ``space.py`` defines them.
"""

from __future__ import annotations

from search_spaces import ablation, demo, hpo, seed_table
from search_spaces.space import Cell, Space

__all__ = ["Cell", "Space", "load", "names"]

REGISTRY = {"seed_table": seed_table.space, "ablation": ablation.space, "hpo": hpo.space,
            "demo": demo.space}


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def load(name: str) -> Space:
    """The space called ``name``; ``KeyError`` when there is none."""
    return REGISTRY[name]()
