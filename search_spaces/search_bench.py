"""The search benchmark's problems: short unsupervised T=3 runs (r=2, r=3), four hyperparameters.

For ``benchmarks/search_efficiency.py``: the research table's unsupervised recipe
(``seed_table.LAYERED``) cut to 300 steps of a width-16 network, cheap enough to repeat, and a
space of four hyperparameters including the learning rate: the learning rate, the width, the
batch size (the last two set a trial's cost as well as its result) and the weight of the
research note's reconstruction added to the layered labels. ``unsup_T3_r2_short`` is the
benchmark's cell; ``unsup_T3_r3_short`` (r=3, the published unsupervised row, the same budget and
space) is the other cell a change of the default search is checked on. Its own use:

    python -m orchestrator.sweep --space search_bench --cells unsup_T3_r2_short --seeds 1
    python -m orchestrator.sweep --space search_bench --cells unsup_T3_r3_short --seeds 1 \
        --sampler random --scheduler none
"""

from __future__ import annotations

from search_spaces.seed_table import LAYERED
from search_spaces.space import Cell, Space, choice, loguniform, uniform

CELL = dict(LAYERED, frames=3, motion_range=2, width=16, steps=300, eval_every=50,
            val_size=250, test_size=250)
SEARCH = {
    "lr": loguniform(5e-4, 1e-2),
    "width": choice([8, 16, 32]),
    "batch_size": choice([16, 32, 64]),
    "recon_weight": uniform(0.0, 1.0),
}


def space() -> Space:
    return Space(name="search_bench", description=__doc__.splitlines()[0],
                 cells=(Cell("unsup_T3_r2_short", {}, design="search benchmark"),
                        Cell("unsup_T3_r3_short", {"motion_range": 3},
                             design="search benchmark, the other cell")),
                 baseline="unsup_T3_r2_short", base=dict(CELL), search=dict(SEARCH),
                 num_samples=12)
