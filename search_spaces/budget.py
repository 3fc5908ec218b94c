"""seed_table's costliest cells, and T=5 r=1, at a cheaper budget: what batches of 16 keep.

Each cell is a seed_table cell's recipe at batch 16 (64 in the recipe), named
``<cell>_<lever>``, for 2,000 steps: half the recipe's sequences at r=3 (1,000 steps of 64) and a
quarter at r=5. Its validation curve says where it plateaus (``orchestrator.curves``); its test
figures compare with the recipe's recorded ones (docs/results/objective.csv; no T=5 r=5 recipe
figure exists yet). Choose on seed 0, confirm on seeds 3-5:

    python -m orchestrator.sweep --space budget --seeds 1                # seed 0
    python -m orchestrator.curves --tracking-uri sqlite:///$PWD/sweeps/mlflow.db --experiment budget
    python -m orchestrator.sweep --space budget --seeds 3,4,5

A lever is one entry in ``LEVERS``; a cell, one entry in ``CELLS``.
"""

from __future__ import annotations

from search_spaces.seed_table import space as research_table
from search_spaces.space import Cell, Space

# lever -> the overrides it puts over a cell's recipe
LEVERS = {"b16": dict(batch_size=16)}
# seed_table cell -> (lever, overrides of its own: the steps it runs at that lever)
CELLS = {"unsup_T5_segmentation_r5": ("b16", dict(steps=2000)),
         "unsup_T5_segmentation_r3": ("b16", dict(steps=2000)),
         "unsup_T3_r5": ("b16", dict(steps=2000)),
         "unsup_T5_none_r1": ("b16", dict(steps=2000))}


def space() -> Space:
    table = {c.id: c for c in research_table().cells}
    cells = tuple(Cell(f"{cell}_{lever}", {**table[cell].overrides, **LEVERS[lever], **own},
                       design=f"{table[cell].design}, {lever}", published=table[cell].published)
                  for cell, (lever, own) in CELLS.items())
    return Space(name="budget", description=__doc__.splitlines()[0], cells=cells,
                 baseline=cells[0].id)
