"""Declared sweeps: each module's ``space()`` returns plain data a test checks against RunConfig.

Two levels: cells (a grid over ablation axes, each a dict of config overrides) and, inside a
cell, an optional Optuna search over hyperparameters; the chosen configuration is replicated
over the same seed list in every cell, so cells compare pairwise. ``space.py`` defines them.

A new sweep is one file: a module here with a ``space()`` function is registered under its
module name (``--space NAME``).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

from search_spaces.space import Cell, Space

__all__ = ["Cell", "Space", "load", "names"]


def _discover() -> dict[str, Callable[[], Space]]:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name == "space" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if callable(getattr(module, "space", None)):
            found[info.name] = module.space
    return dict(sorted(found.items()))


REGISTRY = _discover()


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def load(name: str) -> Space:
    """The space called ``name``; ``KeyError`` when there is none."""
    return REGISTRY[name]()
