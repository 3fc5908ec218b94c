"""Optuna over learning rate, width, depth, batch size and weight decay, in two cells at once.

The cells are the research table's two hardest supervised motion ranges, r=3 and r=5: does r=5's
deficit survive tuning each range on its own? Each cell has its own Optuna study (in the sweep
directory's optuna.db, which survives a restart) and its own ASHA bracket, and both searches run
at the same time, sharing --max-concurrent. Each cell's best configuration is then replicated
over the seeds. One cell, or the unsupervised recipe:

    python -m orchestrator.sweep --space hpo --num-samples 24 --seeds 3 --cells r3
    python -m orchestrator.sweep --space hpo --num-samples 24 --set supervision=unsupervised
    python -m orchestrator.sweep --space hpo --dry-run
    python -m orchestrator.sweep --space hpo --scheduler none   # plain random search, the baseline
    python -m orchestrator.sweep --space hpo --sampler tpe      # TPE instead of random sampling
"""

from __future__ import annotations

from search_spaces.space import Cell, Space, choice, integer, loguniform

CELL = dict(supervision="supervised", frames=3, noise=0.0, steps=2000)
SEARCH = {
    "lr": loguniform(3e-4, 1e-2),
    "width": choice([8, 16, 32]),
    "depth": integer(1, 3),
    "batch_size": choice([32, 64, 128]),
    "weight_decay": choice([0.0, 1e-5, 1e-4, 1e-3]),
}


def space() -> Space:
    cells = (Cell("r3", {"motion_range": 3}, design="tuned"),
             Cell("r5", {"motion_range": 5}, design="tuned"))
    return Space(name="hpo", description=__doc__.splitlines()[0], cells=cells, baseline="r3",
                 base=dict(CELL), search=dict(SEARCH), num_samples=16)
