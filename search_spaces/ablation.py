"""One factor at a time around a baseline cell (unsupervised T=5, r=3, noise 0.5, segmentation).

Axes: motion range, frames, supervision, noise (0, 0.25, 0.5), attention design, loss (l1, l2),
the disappear class, the occlusion mask, the class-usage term (usage_weight 0, 0.01) and the
model width (16, 32). Every cell differs from the baseline in exactly one factor.

    python -m orchestrator.sweep --space ablation --seeds 3
    python -m orchestrator.sweep --space ablation --dry-run
"""

from __future__ import annotations

from search_spaces import Cell, Space

BASELINE = dict(supervision="unsupervised", frames=5, motion_range=3, noise=0.5,
                attention="segmentation", loss="l1", disappear=False, occlusion_mask=False,
                steps=6000, lr=3e-3, reverse_weight=0.5, entropy_weight=0.01, smooth_weight=0.05,
                hard_weight=0.5, usage_weight=0.0, width=16)
AXES = {
    "motion_range": (1, 2, 3, 5),
    "frames": (3, 5),
    "supervision": ("supervised", "unsupervised"),
    "noise": (0.0, 0.25, 0.5),
    "attention": ("none", "motion", "segmentation"),
    "loss": ("l1", "l2"),
    "disappear": (False, True),
    "occlusion_mask": (False, True),
    "usage_weight": (0.0, 0.01),
    "width": (16, 32),
}


def space() -> Space:
    cells = [Cell("baseline", {}, design="baseline")]
    for axis, values in AXES.items():
        for value in values:
            if value == BASELINE[axis]:
                continue
            change = {axis: value}
            if axis == "frames" and value == 3:
                change["attention"] = "none"  # nothing to fuse with one direction
            design = "baseline" if axis == "motion_range" else f"{axis}={value}"
            cells.append(Cell(f"{axis}={value}", change, design=design))
    return Space(name="ablation", description=__doc__.splitlines()[0], cells=tuple(cells),
                 baseline="baseline", base=dict(BASELINE))
