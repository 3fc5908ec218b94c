"""seed_table's costliest cells at cheaper budgets: what each lever on the table's cost keeps.

Each cell is a seed_table cell (its recipe) with one budget change, named ``<cell>_<lever>``,
so its validation curve (``python -m orchestrator.curves``) and its test figures compare with
the recipe's own. Choose on seed 0's validation curve, confirm on seeds 3-5:

    python -m orchestrator.sweep --space budget --seeds 1       # seed 0
    python -m orchestrator.curves --tracking-uri sqlite:///sweeps/mlflow.db --experiment budget

Levers: ``b16``, batches of 16 sequences instead of 64 (a step costs about a third; the demo
learns at this batch size); ``steps`` where a cell's curve plateaus before its budget ends.
"""

from __future__ import annotations

from search_spaces.seed_table import space as research_table
from search_spaces.space import Cell, Space

# lever -> the overrides it puts over a cell's recipe
LEVERS = {"b16": dict(batch_size=16)}
# seed_table cell -> (lever, overrides of its own: the steps it runs at that lever)
CELLS = {"unsup_T5_segmentation_r5": ("b16", dict(steps=2000)),
         "unsup_T5_segmentation_r3": ("b16", dict(steps=2000)),
         "unsup_T3_r5": ("b16", dict(steps=2000))}


def space() -> Space:
    table = {c.id: c for c in research_table().cells}
    cells = tuple(Cell(f"{cell}_{lever}", {**table[cell].overrides, **LEVERS[lever], **own},
                       design=f"{table[cell].design}, {lever}", published=table[cell].published)
                  for cell, (lever, own) in CELLS.items())
    return Space(name="budget", description=__doc__.splitlines()[0], cells=cells,
                 baseline=cells[0].id)
