"""The network's arithmetic: fp32, or bf16 autocast where the hardware multiplies bf16 fast.

Only the network's forward (and so its backward) runs in bf16; the weights, the optimiser, the
objective and the metrics stay fp32, so checkpoints are fp32 and load anywhere.
"""

from __future__ import annotations

import contextlib
import sys
from functools import cache

import torch


def bf16_matrix_units(device: torch.device) -> bool:
    """Whether ``device`` has bf16 matrix units: Intel AMX on a CPU, bf16 support on a GPU.

    A CPU with only AVX-512 bf16 instructions (no AMX) runs bf16 convolutions no faster than
    fp32, so ``auto`` keeps fp32 there. ``torch.cpu._is_amx_tile_supported`` is torch's own
    probe (private; tests/test_precision.py fails if it goes away)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
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
