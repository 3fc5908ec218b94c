"""What a declared sweep is: cells (rows of the ablation table) and an optional search inside each."""

from __future__ import annotations

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
class Space:
    name: str
    description: str
    cells: tuple[Cell, ...]
    baseline: str  # cell id the table's differences are taken against
    base: dict[str, Any] = field(default_factory=dict)  # config fields shared by every cell
    # Optuna search inside each cell: field -> ("loguniform", lo, hi) | ("uniform", lo, hi)
    # | ("int", lo, hi) | ("choice", [values]); empty: no search, cells run as declared.
    search: dict[str, tuple] = field(default_factory=dict)
    num_samples: int = 0  # Optuna trials per cell when ``search`` is set
    # validation metric Optuna and ASHA maximise: fg_net, which a motion halo cannot raise
    #   (acc_fg can: background given the digit's motion costs it nothing)
    metric: str = "fg_net"

    def cell(self, cell_id: str) -> Cell:
        for c in self.cells:
            if c.id == cell_id:
                return c
        raise KeyError(cell_id)
