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
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CELL = "sup_T3_r1"
SETS = {"steps": 2, "eval_every": 1, "width": 4, "depth": 1, "val_size": 16, "test_size": 16}
TICKS = os.sysconf("SC_CLK_TCK")


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


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def run_sweep(n: int, concurrency: int, out: Path) -> dict[str, float]:
    sets = [a for k, v in SETS.items() for a in ("--set", f"{k}={v}")]
    cmd = [sys.executable, "-m", "orchestrator.sweep", "--space", "seed_table", "--cells", CELL,
           "--seeds", str(n), "--max-concurrent", str(concurrency), "--out", str(out), *sets]
    env = {**os.environ, "RAY_ADDRESS": "local", "MOTIONCORE_TRACKING_URI": "",
           "MOTIONCORE_STORAGE_PATH": "", "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    cpu = [0.0]

    def sample() -> None:  # the driver's CPU time, read until it exits
        while proc.poll() is None:
            seconds = _cpu_seconds(proc.pid)
            cpu[0] = seconds if seconds is not None else cpu[0]
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    marks: dict[str, float] = {}
    tail: list[str] = []
    for line in proc.stdout:
        tail = (tail + [line])[-30:]
        now = time.perf_counter() - start
        if line.startswith("sweep "):
            marks.setdefault("started_s", now)
        if re.match(r"\[\d+/\d+\]", line):
            marks.setdefault("first_trial_s", now)
            marks["last_trial_s"] = now
    if proc.wait() != 0:
        raise SystemExit(f"sweep failed: {' '.join(cmd)}\n{''.join(tail)}")
    sampler.join()
    marks["sweep_s"] = time.perf_counter() - start
    marks["driver_cpu_s"] = cpu[0]
    return marks


def table_seconds(sweep_dir: Path) -> float:
    """Building the tables again from the finished sweep's MLflow store, in this process."""
    from orchestrator import report, tracking
    from orchestrator.state import SweepState
    from search_spaces import load

    state = SweepState.load(sweep_dir)
    client = tracking.client_for(state.tracking_uri)
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
            marks = run_sweep(n, a.concurrency, Path(tmp))
            sweep_dir = next(d for d in Path(tmp).iterdir() if (d / "sweep.json").exists())
            store = sum(f.stat().st_size for f in Path(tmp).glob("mlflow.db*"))
            steady = marks["last_trial_s"] - marks["first_trial_s"]
            rows[n] = {
                "sweep_s": marks["sweep_s"], "startup_s": marks["first_trial_s"],
                "steady_s": steady, "per_trial_wall_s": steady / (n - 1),
                "per_trial_overhead_s": steady / (n - 1) - train / a.concurrency,
                "driver_cpu_s": marks["driver_cpu_s"],
                "driver_cpu_per_trial_s": marks["driver_cpu_s"] / n,
                "mlflow_store_bytes": store, "mlflow_bytes_per_trial": store / n,
                "after_last_trial_s": marks["sweep_s"] - marks["last_trial_s"],
                "table_s": table_seconds(sweep_dir)}
        print(json.dumps({"n": n, **rows[n]}), file=sys.stderr, flush=True)
    print(json.dumps({
        "cell": CELL, "sets": SETS, "concurrency": a.concurrency, "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(), "training_s": train,
        "per_trial_overhead_s": {str(n): r["per_trial_overhead_s"] for n, r in rows.items()},
        "runs": {str(n): r for n, r in rows.items()}}))


if __name__ == "__main__":
    main()
