"""What a declared sweep is: cells (rows of the ablation table) and an optional search inside each."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Cell:
    """One row of the ablation table."""

    id: str  # short, unique, used in run names and tables
    overrides: dict[str, Any]  # config fields that differ from the space's base
    design: str = ""  # line label in the motion-range plot (cells that differ only in r share it)
    published: float | None = None  # the research table's test accuracy (%) for this row, if any


@dataclass(frozen=True)
class Dist:
    """One searched hyperparameter: a float or int range (optionally on a log scale), or a
    choice. Build it with ``uniform``, ``loguniform``, ``integer`` or ``choice``."""

    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    integer: bool = False
    choices: tuple = ()

    def __post_init__(self) -> None:
        if self.choices:
            if len(self.choices) < 2 or len(set(self.choices)) < len(self.choices):
                raise ValueError(f"choice {self.choices}: needs two or more distinct values")
            return
        if not (isinstance(self.low, int | float) and isinstance(self.high, int | float)
                and math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"range [{self.low}, {self.high}]: needs finite low < high")
        if self.log and self.low <= 0:
            raise ValueError(f"log range [{self.low}, {self.high}]: needs low > 0")
        if self.integer and not (isinstance(self.low, int) and isinstance(self.high, int)):
            raise ValueError(f"integer range [{self.low}, {self.high}]: needs int bounds")

    @property
    def values(self) -> tuple:
        """The extremes a sample can take (every value of a choice)."""
        return self.choices or (self.low, self.high)

    @property
    def largest(self):
        return max(self.values)


def uniform(low: float, high: float) -> Dist:
    return Dist(low, high)


def loguniform(low: float, high: float) -> Dist:
    return Dist(low, high, log=True)


def integer(low: int, high: int) -> Dist:
    """An integer from ``low`` to ``high``, both included."""
    return Dist(low, high, integer=True)


def choice(values) -> Dist:
    return Dist(choices=tuple(values))


SAMPLERS = ("tpe", "random", "gp")  # Optuna's TPESampler, RandomSampler, GPSampler
SCHEDULERS = ("asha", "none")  # ASHA early stopping, or every trial runs its whole budget


@dataclass(frozen=True)
class Space:
    name: str
    description: str
    cells: tuple[Cell, ...]
    baseline: str  # cell id the table's differences are taken against
    base: dict[str, Any] = field(default_factory=dict)  # config fields shared by every cell
    # Optuna search inside each cell: config field -> its ``Dist``; empty: cells run as declared.
    search: dict[str, Dist] = field(default_factory=dict)
    num_samples: int = 0  # Optuna trials per cell when ``search`` is set
    # validation metric Optuna and ASHA maximise: fg_net, which a motion halo cannot raise
    #   (acc_fg can: background given the digit's motion costs it nothing)
    metric: str = "fg_net"
    # one of SAMPLERS; --sampler overrides it. Random: with ASHA it beat TPE with ASHA on both
    #   cells of the search benchmark (median best, area, time to target; benchmarks/README.md)
    sampler: str = "random"
    scheduler: str = "asha"  # one of SCHEDULERS; --scheduler overrides it
    # ASHA: a trial runs at least this fraction of its reports. Half instead did not help TPE
    #   on the search benchmark (same or lower best in every repetition; benchmarks/README.md)
    grace_fraction: float = 0.25
    reduction_factor: int = 2  # ASHA: a rung keeps 1 / reduction_factor of its trials

    def cell(self, cell_id: str) -> Cell:
        for c in self.cells:
            if c.id == cell_id:
                return c
        raise KeyError(cell_id)
