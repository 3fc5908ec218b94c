"""Where each cell's learning curve flattens: the study behind per-cell step budgets.

    python -m orchestrator.curves --tracking-uri sqlite:///$PWD/sweeps/mlflow.db \
        --experiment seed_table [--parent RUN_ID] [--metric fg_net] [--within 0.5]

Reads every replicate trial's validation curve from MLflow. A trial's plateau is the first
evaluation from which every later one stays within ``--within`` points of its last; a cell's
is the latest over its seeds (a budget must serve every seed). Prints a line per cell: its
budget, the plateau, and the share of the budget spent after it; ``--json`` writes the same.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from motioncore import cli
from motioncore.config import METRIC_NAMES, UsageError
from orchestrator import report, tracking


def plateau_step(curve: list[tuple[int, float]], within: float) -> int | None:
    """The first step from which every value stays within ``within`` of the last one."""
    if not curve:
        return None
    curve = sorted(curve)
    last = curve[-1][1]
    step = curve[-1][0]
    for s, v in reversed(curve):
        if abs(v - last) > within:
            break
        step = s
    return step


def study(client, exp_id: str, parent: str, metric: str, within: float) -> dict[str, dict]:
    """Per cell: its step budget, every seed's plateau step, and the cell's (the latest)."""
    cells: dict[str, dict] = {}
    for run in tracking.child_runs(client, exp_id, parent):
        tags = run.data.tags
        if tags.get("stage") != "replicate" or run.info.status != "FINISHED":
            continue
        history = client.get_metric_history(run.info.run_id, f"val_{metric}")
        curve = [(m.step, 100 * m.value) for m in history]  # in points
        c = cells.setdefault(tags["cell"], {"steps": int(run.data.params.get("steps", 0)),
                                            "seeds": {}})
        c["seeds"][int(tags.get("seed", 0))] = plateau_step(curve, within)
    for c in cells.values():
        found = [s for s in c["seeds"].values() if s is not None]
        c["plateau"] = max(found) if found else None
        c["after_plateau"] = (1 - c["plateau"] / c["steps"]) if found and c["steps"] else None
    return dict(sorted(cells.items()))


@cli.command
def main(argv: list[str] | None = None) -> int:
    p = cli.ArgumentParser(prog="python -m orchestrator.curves",
                                description=__doc__.split("\n")[0])
    p.add_argument("--tracking-uri", required=True)
    p.add_argument("--experiment", required=True)
    p.add_argument("--parent", help="the sweep's parent run id (default: the latest sweep)")
    p.add_argument("--metric", default="fg_net", help="validation metric (default fg_net)")
    p.add_argument("--within", type=float, default=0.5,
                   help="points from the last value that count as the plateau (default 0.5)")
    p.add_argument("--json", metavar="PATH", help="also write the study as JSON")
    a = p.parse_args(argv)
    if a.metric not in METRIC_NAMES:
        raise UsageError(f"--metric {a.metric!r}: allowed: {', '.join(METRIC_NAMES)}")
    if not a.within > 0:
        raise UsageError(f"--within {a.within}: must be a number of points > 0")
    if a.json:
        cli.check_output("--json", a.json)
    client, exp_id, parent = report.open_sweep(a.tracking_uri, a.experiment, a.parent)
    cells = study(client, exp_id, parent, a.metric, a.within)
    print(f"val {a.metric}: the step after which every evaluation stays within {a.within:g} "
          f"points of the last (the latest over seeds)")
    for cell, c in cells.items():
        seeds = ", ".join(f"{s}: {v}" for s, v in sorted(c["seeds"].items()))
        spare = ("" if c["after_plateau"] is None
                 else f"  ({100 * c['after_plateau']:.0f}% of the budget after it)")
        print(f"  {cell:<28} budget {c['steps']:>5}  plateau {c['plateau']}{spare}  seeds {seeds}")
    if a.json:
        Path(a.json).write_text(json.dumps({"metric": f"val_{a.metric}", "within": a.within,
                                            "parent": parent, "cells": cells}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
