"""Optuna (TPE) over learning rate, width, depth, batch size and weight decay in one cell.

ASHA stops weak trials early; the study lives in the sweep directory (sqlite) and survives a
restart. The best configuration is then replicated over the seeds. Pick the cell with --set:

    python -m orchestrator.sweep --space hpo --num-samples 24 --seeds 3 \
        --set supervision=unsupervised --set motion_range=3 --set noise=0.5
    python -m orchestrator.sweep --space hpo --dry-run
"""

from __future__ import annotations

from search_spaces.space import Cell, Space

CELL = dict(supervision="supervised", frames=3, motion_range=5, noise=0.0, steps=2000)
SEARCH = {
    "lr": ("loguniform", 3e-4, 1e-2),
    "width": ("choice", [8, 16, 32]),
    "depth": ("int", 1, 3),
    "batch_size": ("choice", [32, 64, 128]),
    "weight_decay": ("choice", [0.0, 1e-5, 1e-4, 1e-3]),
}


def space() -> Space:
    return Space(name="hpo", description=__doc__.splitlines()[0],
                 cells=(Cell("tuned", {}, design="tuned"),), baseline="tuned", base=dict(CELL),
                 search=dict(SEARCH), num_samples=16)
