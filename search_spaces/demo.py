"""seed_table cells at a DEMO BUDGET, not the research table's: it learns in minutes on a CPU.

Three cells of ``seed_table`` (their recipes, fewer steps and smaller evaluation sets), two
seeds each, through the same orchestrator as the real table: supervised r=1 and unsupervised
r=1 and r=2. What ``make demo`` runs:

    python -m orchestrator.sweep --space demo --seeds 2
"""

from __future__ import annotations

from search_spaces.seed_table import space as research_table
from search_spaces.space import Cell, Space

# cell of seed_table -> its demo budget (steps); every cell also evaluates on fewer sequences
# (supervised training sits on a plateau for a few hundred steps before it drops: r=1 leaves it
# by step 400 on every seed tried, r >= 2 not reliably before 600)
STEPS = {"sup_T3_r1": 400, "unsup_T3_r1": 400, "unsup_T3_r2": 400}
EVAL = dict(eval_every=100, val_size=250, test_size=500)


def space() -> Space:
    table = research_table()
    cells = tuple(Cell(c.id, {**c.overrides, "steps": STEPS[c.id], **EVAL}, design=c.design,
                       published=c.published) for c in table.cells if c.id in STEPS)
    budget = ", ".join(f"{cell} {steps}" for cell, steps in STEPS.items())
    return Space(name="demo", cells=cells, baseline="sup_T3_r1",
                 description=f"{__doc__.splitlines()[0].rstrip('.')} (steps: {budget}; "
                             f"{EVAL['test_size']} test sequences)")
