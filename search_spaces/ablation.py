"""One factor at a time around a baseline cell (unsupervised T=5, r=3, noise 0.5, segmentation).

The baseline is the research table's T=5 recipe (``seed_table.LAYERED_T5``: cross-entropy
against the layered teacher's labels, the attention's own term, each input frame's alpha layer
as input, width 32, 1,000 steps), so each cell shows what one of its parts is worth. Axes:
motion range, frames, supervision, noise (0, 0.25, 0.5), attention design, the network's input
(frames alone, or their alpha layers too), the attention's own term (attend_weight 0, 1), the
research note's reconstruction added to the layered labels (recon_weight 0, 1), the
reconstruction penalty (l1, l2), one network per side or one for all four frames, and the model
width (16, 32). Every cell differs from the baseline in exactly one factor (frames=3 also drops
the attention, which needs a second direction; r=5 trains the table's 2,000 steps).

    python -m orchestrator.sweep --space ablation --seeds 3
    python -m orchestrator.sweep --space ablation --dry-run
"""

from __future__ import annotations

from motioncore.attention import DESIGNS
from search_spaces.seed_table import LAYERED_T5, UNSUPERVISED_STEPS
from search_spaces.space import Cell, Space

BASELINE = dict(LAYERED_T5, frames=5, motion_range=3, attention="segmentation", loss="l1",
                network="shared", steps=UNSUPERVISED_STEPS[3])
AXES = {
    "motion_range": (1, 2, 3, 5),
    "frames": (3, 5),
    "supervision": ("supervised", "unsupervised"),
    "noise": (0.0, 0.25, 0.5),
    "attention": tuple(DESIGNS),
    "inputs": ("frames", "layers"),
    "attend_weight": (0.0, 1.0),
    "recon_weight": (0.0, 1.0),
    "loss": ("l1", "l2"),
    "network": ("shared", "joint"),
    "width": (16, 32),
}


def space() -> Space:
    cells = [Cell("baseline", {}, design="baseline")]
    for axis, values in AXES.items():
        for value in values:
            if value == BASELINE[axis]:
                continue
            change = {axis: value}
            if axis == "frames" and value == 3:  # one direction: nothing to fuse, no second side
                change.update(attention="none")
            if axis == "motion_range" and UNSUPERVISED_STEPS[value] != BASELINE["steps"]:
                change["steps"] = UNSUPERVISED_STEPS[value]  # the research table's budget
            design = "baseline" if axis == "motion_range" else f"{axis}={value}"
            cells.append(Cell(f"{axis}={value}", change, design=design))
    return Space(name="ablation", description=__doc__.splitlines()[0], cells=tuple(cells),
                 baseline="baseline", base=dict(BASELINE))
