"""seed_table cells at a DEMO BUDGET, not the research table's: it learns in minutes on a CPU.

Three cells of ``seed_table`` (their recipes; fewer steps of smaller batches, a shorter weight
average, smaller evaluation sets, at r=2 a higher learning rate), two seeds each, through the
same orchestrator as the real table: supervised r=1 and unsupervised r=1 and r=2. What ``make
demo`` runs:

    python -m orchestrator.sweep --space demo --seeds 2
"""

from __future__ import annotations

from search_spaces.seed_table import space as research_table
from search_spaces.space import Cell, Space

# cell of seed_table -> its demo budget. Step cost grows with the batch, learning less than
# that; r=2 at 600 steps is still learning at the recipe's lr, which 6e-3 brings to a plateau.
# Test acc_fg on seeds 0 and 1 at this budget: 97.1 (sup r=1), 98.8 / 98.4 (unsup r=1),
# 96.8 / 95.6 (unsup r=2; 96.4 / 91.5 at lr 3e-3); docs/research-log.md.
BUDGET = {"sup_T3_r1": dict(steps=400, batch_size=32),
          "unsup_T3_r1": dict(steps=300, batch_size=16),
          "unsup_T3_r2": dict(steps=600, batch_size=16, lr=6e-3)}
# every cell: an EMA that forgets in ~20 steps (0.99's ~100 lags a few hundred steps' run) and
# fewer evaluation sequences
SHARED = dict(ema=0.95, eval_every=100, val_size=250, test_size=500)


def space() -> Space:
    table = research_table()
    cells = tuple(Cell(c.id, {**c.overrides, **BUDGET[c.id], **SHARED}, design=c.design,
                       published=c.published) for c in table.cells if c.id in BUDGET)
    budget = ", ".join(f"{cell} {b['steps']} x {b['batch_size']}"
                       + (f" at lr {b['lr']:g}" if "lr" in b else "") for cell, b in BUDGET.items())
    return Space(name="demo", cells=cells, baseline="sup_T3_r1",
                 description=f"{__doc__.splitlines()[0].rstrip('.')} (steps x batch: {budget}; "
                             f"{SHARED['test_size']} test sequences)")
