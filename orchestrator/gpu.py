"""``--gpus-per-trial auto``: measure one short trial's GPU memory, then pack trials per GPU.

Ray's fractional GPUs share a device without isolating its memory, so the fraction must
leave every packed trial room for its peak plus its own CUDA context, with a safety margin.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import ray

from orchestrator import console

CONTEXT_BYTES = 600 * 2**20  # a CUDA context and cuDNN/cuBLAS workspaces, per process
MARGIN = 0.2  # keep a fifth of the device free
MAX_PER_GPU = 8  # beyond this, trials of tiny models contend for SMs, not memory


def trials_per_gpu(peak_bytes: int, total_bytes: int, *, context_bytes: int = CONTEXT_BYTES,
                   margin: float = MARGIN, cap: int = MAX_PER_GPU) -> int:
    """How many trials of measured ``peak_bytes`` fit on a device of ``total_bytes``."""
    if peak_bytes < 0 or total_bytes <= 0:
        raise ValueError("memory sizes must be positive")
    usable = total_bytes * (1 - margin)
    return max(1, min(cap, math.floor(usable / (peak_bytes + context_bytes))))


def fraction(per_gpu: int) -> float:
    """The Ray GPU fraction for ``per_gpu`` trials per device, rounded down so they all fit."""
    return math.floor(100 / per_gpu) / 100


def mps_running(environ=os.environ) -> bool:
    """Whether an NVIDIA MPS control daemon listens on this node (its pipe directory's socket).

    Without MPS the GPU time-slices between processes; with it, packed trials' kernels run side
    by side, which made packing pay 2.5x instead of 1.6x on an H100 (benchmarks/README.md).
    """
    pipes = Path(environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps"))
    return (pipes / "control").exists()


@ray.remote(num_gpus=1)
def _probe(config_dict: dict, data_dir: str | None, steps: int) -> tuple[int, int, bool]:
    import torch

    from motioncore.config import from_dict
    from motioncore.train import Trainer

    if not torch.cuda.is_available():
        return 0, 0, False
    config = from_dict({**config_dict, "device": "cuda"})
    trainer = Trainer(config, torch.device("cuda"), data_dir)
    torch.cuda.reset_peak_memory_stats()
    for _ in range(steps):
        trainer.train_step()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_reserved(), torch.cuda.get_device_properties(0).total_memory,
            mps_running())


def choose(config_dict: dict, data_dir: str | None, steps: int = 20) -> float:
    """Run the probe on one GPU and return the fraction to request per trial."""
    peak, total, mps = ray.get(_probe.remote(config_dict, data_dir, steps))
    if total == 0:  # logical GPUs without CUDA (tests, misconfigured nodes): one trial per GPU
        console.say("gpus-per-trial auto: the probe found no CUDA device; using 1 GPU per trial")
        return 1.0
    per = trials_per_gpu(peak, total)
    frac = fraction(per)
    console.say(f"gpus-per-trial auto: probe peak {peak / 2**20:.0f} MiB of {total / 2**30:.1f} GiB; "
                f"packing {per} trials per GPU (fraction {frac})")
    if per > 1 and not mps:
        console.say("gpus-per-trial auto: no NVIDIA MPS daemon on the probed node, so packed trials "
                    "time-slice the GPU; `nvidia-cuda-mps-control -d` on each GPU node lets their "
                    "kernels run side by side (cluster.yaml starts it)")
    return frac
