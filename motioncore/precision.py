"""The network's arithmetic: fp32, or bf16 autocast where the hardware multiplies bf16 fast.

Only the network's forward (and so its backward) runs in bf16; the weights, the optimiser, the
objective and the metrics stay fp32, so checkpoints are fp32 and load anywhere.
"""

from __future__ import annotations

import contextlib
import sys
from functools import cache

import torch

CPU_PROBES = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # torch.cpu's own


def bf16_matrix_units(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 in hardware: a GPU with bf16 support, or a CPU with
    Intel AMX or AVX-512 BF16 instructions (bf16 made training steps 1.5-2.1x faster on both;
    benchmarks/README.md). Without them bf16 is emulated and slower than fp32. The CPU probes
    are torch's own (private; tests/test_precision.py fails if they go away)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in CPU_PROBES)
    return False


def resolve(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16``: what a run with ``precision`` computes in on ``device``."""
    if precision != "auto":
        return precision
    if bf16_matrix_units(device):
        return "bf16"
    _say_once(f"precision auto: {device.type} without bf16 matrix units; training in fp32")
    return "fp32"


@cache
def _say_once(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def autocast(precision: str, device: torch.device):
    """The context the network's forward runs in: bf16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
