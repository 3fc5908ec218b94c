"""The search benchmark's problem: a short unsupervised T=3 r=2 run, five hyperparameters.

Fixed before any run, for ``benchmarks/search_efficiency.py``: cheap enough to repeat (about a
minute a trial on one CPU thread), not saturated (its best configurations differ measurably on
fg_net), and a space of five hyperparameters including the learning rate. Its own use:

    python -m orchestrator.sweep --space search_bench --seeds 1 --num-samples 12
    python -m orchestrator.sweep --space search_bench --seeds 1 --sampler random --scheduler none
"""

from __future__ import annotations

from search_spaces.seed_table import UNSUPERVISED
from search_spaces.space import Cell, Space, choice, loguniform, uniform

CELL = dict(UNSUPERVISED, frames=3, motion_range=2, width=16, steps=300, eval_every=50,
            val_size=250, test_size=250)
SEARCH = {
    "lr": loguniform(5e-4, 1e-2),
    "hard_weight": uniform(0.0, 3.0),
    "entropy_weight": loguniform(1e-3, 1e-1),
    "smooth_weight": uniform(0.0, 0.2),
    "width": choice([8, 16, 32]),
}


def space() -> Space:
    return Space(name="search_bench", description=__doc__.splitlines()[0],
                 cells=(Cell("unsup_T3_r2_short", {}, design="search benchmark"),),
                 baseline="unsup_T3_r2_short", base=dict(CELL), search=dict(SEARCH),
                 num_samples=12)
