"""Trials per hour with several trials packed on each GPU against one trial per GPU.

    python benchmarks/gpu_packing.py [--trials 16] [--steps 400] [--cell unsup_T5_segmentation_r3] [--mps]

Both sides run the same trials through the sweep CLI on this machine's GPUs: once with
``--gpus-per-trial 1`` (one trial per device), once with ``--gpus-per-trial auto`` (a probe
measures the trial's GPU memory and packs as many as fit, up to 8). Prints one JSON object as its
last line; on a machine without CUDA it says so in that object and runs nothing.

Without MPS, the GPU time-slices between processes: one process's kernels run at a time, so
packed trials of a small model share one stream of tiny kernels. ``--mps`` adds a third run
with the packed trials under NVIDIA's Multi-Process Service (started here, stopped after), which
runs kernels of different processes side by side; it needs ``nvidia-cuda-mps-control``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sweep_overhead import run_sweep


@contextlib.contextmanager
def mps_daemon():
    """NVIDIA's Multi-Process Service for the duration of the block."""
    control = shutil.which("nvidia-cuda-mps-control")
    if control is None:
        raise SystemExit("--mps: nvidia-cuda-mps-control is not on PATH")
    subprocess.run([control, "-d"], check=True)
    try:
        yield
    finally:
        subprocess.run([control], input="quit\n", text=True, check=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--cell", default="unsup_T5_segmentation_r3", help="a seed_table cell")
    p.add_argument("--verbose", action="store_true", help="echo the sweeps' output with timestamps")
    p.add_argument("--mps", action="store_true", help="also run the packed trials under MPS")
    a = p.parse_args()
    import torch

    gpus = torch.cuda.device_count()
    result = {"trials": a.trials, "steps": a.steps, "cell": a.cell, "gpus": gpus,
              "cpus": os.cpu_count(), "torch": torch.__version__}
    if gpus == 0:
        print(json.dumps({**result, "skipped": "no CUDA device on this machine"}))
        return
    result["device"] = torch.cuda.get_device_name()
    one, packed = ("--gpus-per-trial", "1"), ("--gpus-per-trial", "auto")
    runs = {"one_per_gpu": one, **({"packed_mps": packed} if a.mps else {}), "packed": packed}
    # Concurrency is capped by GPUs (and CPUs) through Ray's resources, not by this flag.
    cap = max(1, (os.cpu_count() or 1) - 1)
    for name, extra in runs.items():
        with tempfile.TemporaryDirectory() as tmp, (mps_daemon() if name.endswith("_mps")
                                                    else contextlib.nullcontext()):
            marks = run_sweep(a.trials, a.steps, cap, Path(tmp), a.verbose, a.cell, extra)
        result[f"{name}_s"] = marks["sweep_s"]
        result[f"{name}_trials_per_hour"] = a.trials * 3600 / marks["sweep_s"]
        print(json.dumps({"run": name, **marks}), file=sys.stderr, flush=True)
    for name in runs:
        if name != "one_per_gpu":
            gain = result[f"{name}_trials_per_hour"] / result["one_per_gpu_trials_per_hour"]
            result["packing_gain" + name.removeprefix("packed")] = gain
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
