"""How the sweep's own cost grows with its size: N near-empty trials through the full orchestrator.

    python benchmarks/sweep_scale.py [--ns 10,100,500] [--concurrency 2]

Each sweep is the real CLI (local Ray, a fresh sqlite MLflow store, checkpoints, pictures,
tables) on N seeds of seed_table's sup_T3_r1 at the smallest budget: 2 steps of a width-4,
depth-1 model on 16 validation and 16 test sequences. The trainings' own time is measured
directly (the same configurations, in one warm process). Per-trial overhead is the wall time
per trial in the steady state (from the first trial's line to the last one's, over N - 1
trials) less one training's time divided by the concurrency: what each trial costs beyond its
training. The fixed costs are reported apart: start-up (imports, Ray, MLflow, the trial workers'
first imports, up to the first trial's line) and what follows the last trial (tables, Ray's
shutdown).

Also per N: the driver's CPU seconds (its own process, from /proc), the MLflow store's size and
the time to build the tables from it. Prints one JSON object as its last line; its key
``per_trial_overhead_s`` maps each N (as a string) to seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from sweep_overhead import run_sweep

from orchestrator import store

CELL = "sup_T3_r1"
SETS = {"steps": 2, "eval_every": 1, "width": 4, "depth": 1, "val_size": 16, "test_size": 16}
# run_sweep sets steps and eval_every (steps // 3, at least 1) itself; the rest go last and win
EXTRA = tuple(a for k, v in SETS.items() if k not in ("steps", "eval_every")
              for a in ("--set", f"{k}={v}"))


def _config(seed: int) -> dict:
    from orchestrator.plan import cell_config
    from search_spaces import load

    space = load("seed_table")
    return cell_config(space, space.cell(CELL), dry_run=False, sets=SETS, seed=seed).to_dict()


def training_seconds(n: int = 20) -> float:
    """The mean time of one training (``fit`` and its pictures) in a warm process, one thread."""
    import torch

    from motioncore.config import from_dict
    from motioncore.train import fit, write_results

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(3):  # warm-up: imports, MNIST, first calls
            write_results(*fit(from_dict(_config(seed))), Path(tmp))
        start = time.perf_counter()
        for seed in range(n):
            write_results(*fit(from_dict(_config(seed))), Path(tmp))
    return (time.perf_counter() - start) / n


def table_seconds(sweep_dir: Path) -> float:
    """Building the tables again from the finished sweep's MLflow store, in this process."""
    from orchestrator import report
    from orchestrator.state import SweepState
    from search_spaces import load

    state = SweepState.load(sweep_dir)
    client = store.client_for(state.tracking_uri)
    exp = client.get_experiment_by_name(state.experiment).experiment_id
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        report.build(client, exp, state.parent_run_id, Path(tmp), load(state.space))
        return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ns", default="10,100,500", help="sweep sizes, comma-separated")
    p.add_argument("--concurrency", type=int, default=2)
    a = p.parse_args()
    ns = [int(v) for v in a.ns.split(",")]
    if min(ns) < 2:
        p.error(f"--ns {a.ns}: every size must be at least 2 (the steady state spans N - 1 trials)")
    train = training_seconds()
    rows = {}
    for n in ns:
        with tempfile.TemporaryDirectory() as tmp:
            marks = run_sweep(n, SETS["steps"], a.concurrency, Path(tmp), extra=EXTRA)
            sweep_dir = next(d for d in Path(tmp).iterdir() if (d / "sweep.json").exists())
            store = sum(f.stat().st_size for f in Path(tmp).glob("mlflow.db*"))
            first, last = marks["first_trial_done_s"], marks["last_trial_done_s"]
            steady = last - first
            rows[n] = {
                "sweep_s": marks["sweep_s"], "startup_s": first,
                "steady_s": steady, "per_trial_wall_s": steady / (n - 1),
                "per_trial_overhead_s": steady / (n - 1) - train / a.concurrency,
                "driver_cpu_s": marks["driver_cpu_s"],
                "driver_cpu_per_trial_s": marks["driver_cpu_s"] / n,
                "mlflow_store_bytes": store, "mlflow_bytes_per_trial": store / n,
                "after_last_trial_s": marks["sweep_s"] - last,
                "table_s": table_seconds(sweep_dir)}
        print(json.dumps({"n": n, **rows[n]}), file=sys.stderr, flush=True)
    print(json.dumps({
        "cell": CELL, "sets": SETS, "concurrency": a.concurrency, "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(), "training_s": train,
        "per_trial_overhead_s": {str(n): r["per_trial_overhead_s"] for n, r in rows.items()},
        "runs": {str(n): r for n, r in rows.items()}}))


if __name__ == "__main__":
    main()
