"""Wall time of N trials through the full orchestrator against the same N trainings run directly.

    python benchmarks/sweep_overhead.py --trials 8 --trial-seconds 30 [--concurrency 2]

Both sides train the same configurations (cell sup_T3_r1 of seed_table, seeds 0..N-1, steps
calibrated so one training takes about S seconds) at the same concurrency, one thread per
trial. The sweep side is the real CLI: Ray start-up, MLflow logging, checkpoints, tables.
Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

CELL = "sup_T3_r1"


def _config(seed: int, steps: int) -> dict:
    from orchestrator.plan import cell_config
    from search_spaces import load

    space = load("seed_table")
    sets = {"steps": steps, "eval_every": max(1, steps // 3), "val_size": 250, "test_size": 500}
    return cell_config(space, space.cell(CELL), dry_run=False, sets=sets, seed=seed).to_dict()


def _train(config: dict) -> float:
    import torch

    from motioncore.config import from_dict
    from motioncore.train import fit

    torch.set_num_threads(1)
    start = time.perf_counter()
    fit(from_dict(config))
    return time.perf_counter() - start


def calibrate(seconds: float) -> int:
    """Steps for one training of about ``seconds``: fixed cost and per-step cost from two probes."""
    _train(_config(0, 10))  # warm-up: imports, MNIST, first-call costs
    short, long = _train(_config(0, 40)), _train(_config(0, 160))
    per_step = (long - short) / 120
    return max(10, int((seconds - (short - 40 * per_step)) / per_step))


def run_direct(n: int, steps: int, concurrency: int) -> float:
    start = time.perf_counter()
    with ProcessPoolExecutor(concurrency) as pool:
        list(pool.map(_train, [_config(s, steps) for s in range(n)]))
    return time.perf_counter() - start


TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float | None:
    """A live process's own CPU seconds (user + system), from /proc; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


def run_sweep(n: int, steps: int, concurrency: int, out: Path, verbose: bool = False,
              cell: str = CELL, extra: tuple[str, ...] = ()) -> dict[str, float]:
    """The sweep CLI on ``n`` seeds of ``cell`` (``extra`` arguments last, so its ``--set``s
    win), on a local Ray with its own store under ``out``: wall time, when its first and last
    trials ended, and the driver process's CPU seconds."""
    cmd = [sys.executable, "-m", "orchestrator.sweep", "--space", "seed_table", "--cells", cell,
           "--seeds", str(n), "--max-concurrent", str(concurrency), "--out", str(out),
           "--set", f"steps={steps}", "--set", f"eval_every={max(1, steps // 3)}",
           "--set", "val_size=250", "--set", "test_size=500", *extra]
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
    tail: collections.deque[str] = collections.deque(maxlen=30)
    for line in proc.stdout:
        tail.append(line)
        now = time.perf_counter() - start
        if verbose:
            print(f"{now:7.2f}  {line}", end="", file=sys.stderr)
        if line.startswith("sweep "):
            marks.setdefault("sweep_started_s", now)  # imports, Ray and MLflow are up
        if re.match(r"\[\d+/\d+\]", line):
            marks.setdefault("first_trial_done_s", now)
            marks["last_trial_done_s"] = now
    if proc.wait() != 0:
        raise SystemExit(f"sweep failed: {' '.join(cmd)}\n{''.join(tail)}")
    sampler.join()
    marks["sweep_s"] = time.perf_counter() - start
    marks["driver_cpu_s"] = cpu[0]
    return marks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--trial-seconds", type=float, default=30)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--steps", type=int, help="skip the calibration: steps per training")
    p.add_argument("--skip-direct", type=float, metavar="SECONDS",
                   help="skip the direct run and take this as its wall time")
    p.add_argument("--verbose", action="store_true", help="echo the sweep's output with timestamps")
    a = p.parse_args()
    steps = a.steps or calibrate(a.trial_seconds)
    direct = a.skip_direct or run_direct(a.trials, steps, a.concurrency)
    with tempfile.TemporaryDirectory() as tmp:
        marks = run_sweep(a.trials, steps, a.concurrency, Path(tmp), a.verbose)
    # Start-up: what the sweep spends before its trials run, estimated from the first trial's
    # finish against one direct training's duration; tear-down: after the last trial's result.
    per_trial = direct * a.concurrency / a.trials
    print(json.dumps({"trials": a.trials, "trial_seconds": a.trial_seconds, "steps": steps,
                      "concurrency": a.concurrency, "cpus": os.cpu_count(), "direct_s": direct,
                      "sweep_s": marks["sweep_s"], "overhead_ratio": marks["sweep_s"] / direct,
                      "sweep_startup_s": max(0.0, marks.get("first_trial_done_s", 0) - per_trial),
                      "sweep_teardown_s": marks["sweep_s"] - marks.get("last_trial_done_s", 0),
                      **{k: marks[k] for k in ("sweep_started_s", "first_trial_done_s") if k in marks}}))


if __name__ == "__main__":
    main()
