"""The CPU generator's optional C kernel (``_layers.c``): built on first use, loaded with ctypes.

On CPU, make_batch's per-pixel work (window copies, noise background, compositing, masks,
labels) takes a dozen PyTorch passes over the batch; the kernel does it in one pass per
sequence, about 2.7x faster for a whole batch. PyTorch stays the reference: both paths give the
same values bit for bit (tests/test_data.py), CUDA batches use PyTorch, and a machine without a
C compiler falls back to PyTorch with nothing else changed.

``MOTIONCORE_NATIVE=0`` turns the kernel off. ``$CC`` (else ``cc``, ``gcc``, ``clang``) builds it
into ``$XDG_CACHE_HOME/motioncore`` (default ``~/.cache/motioncore``), named by a hash of the
source, the flags, the compiler and the machine, so each machine and source version builds once
(about 0.2 s) and concurrent processes replace the file atomically.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from motioncore.mnist import user_cache

SOURCE = Path(__file__).with_name("_layers.c")
FLAGS = ("-O3", "-ffp-contract=off", "-fno-trapping-math", "-shared", "-fPIC")
ENV_VAR = "MOTIONCORE_NATIVE"
MODES = {"empty": 0, "noise": 1, "over": 2}

_P, _I = ctypes.c_void_p, ctypes.c_int64
_ARGTYPES = [_P, _I, _I, _I, _P, _P, _P, _I, _I, _I, ctypes.c_int, _P, _P, _I, _P, ctypes.c_float,
             ctypes.c_float, _P, _P, _P, _P, _I, _P, _I]


class NativeUnavailable(RuntimeError):
    """The kernel cannot be built or loaded here; the message says why."""


def compiler() -> str | None:
    return os.environ.get("CC") or next(
        (c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)


def build(cache: Path, cc: str | None) -> Path:
    """The shared library for this source, built into ``cache`` unless it is there already."""
    if not cc:
        raise NativeUnavailable("no C compiler found (set $CC)")
    tag = repr((FLAGS, cc, platform.machine(), platform.system())).encode()
    key = hashlib.sha256(SOURCE.read_bytes() + tag).hexdigest()[:16]
    lib = cache / f"layers-{key}.so"
    if lib.exists():
        return lib
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            out = Path(tmp) / lib.name
            # function multi-versioning needs GCC or clang on an ELF platform; else one build
            for extra in (["-DMOTIONCORE_CLONES"], []):
                done = subprocess.run([*shlex.split(cc), *FLAGS, *extra, "-o", str(out), str(SOURCE)],
                                      capture_output=True, text=True, timeout=120)
                if done.returncode == 0:
                    break
            else:
                last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
                raise NativeUnavailable(f"{cc} could not build {SOURCE.name}: {last}")
            os.replace(out, lib)
    except (OSError, subprocess.SubprocessError) as e:
        raise NativeUnavailable(f"building {SOURCE.name} with {cc} failed: {e}") from e
    return lib


def load(cache: Path | None = None, cc: str | None = None) -> ctypes.CDLL:
    """Build (when needed) and load the kernel; raises NativeUnavailable with the reason."""
    path = build(cache or user_cache(), cc or compiler())
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        raise NativeUnavailable(f"cannot load {path}: {e}") from e
    lib.motioncore_layer.argtypes = _ARGTYPES
    lib.motioncore_layer.restype = ctypes.c_int
    return lib


@functools.cache
def _kernel() -> tuple[ctypes.CDLL | None, str]:
    if os.environ.get(ENV_VAR, "1") == "0":
        return None, f"PyTorch (${ENV_VAR}=0)"
    try:
        lib = load()
    except NativeUnavailable as e:
        return None, f"PyTorch ({e})"
    return lib, "C kernel"


def available() -> bool:
    """Whether the CPU generator uses the C kernel in this process."""
    return _kernel()[0] is not None


def describe() -> str:
    """Which path the CPU generator takes here, and why: for logs and benchmark output."""
    return _kernel()[1]


def layer(*, images, which, wy, wx, size: int, mode: str, out_frames, out_masks, out_labels,
          cls, src, k0: int, scale: float, tables=None, rows=None, noise: float = 0.0) -> None:
    """Run the kernel (see ``_layers.c``) on CPU tensors and int64 NumPy arrays.

    ``images (M, ph, pw)`` uint8 digit planes; sequence i shows plane ``which[i]`` and its frame
    t the ``size``-square window at plane pixel ``(wy, wx)[i, t]``, zero off the plane;
    ``cls (N, D)`` and ``src (D,)`` give the labels; ``tables`` and ``rows (N, 2)`` the noise
    background of ``mode="noise"``. Outputs are written in place.
    """
    lib = _kernel()[0]
    if lib is None:
        raise NativeUnavailable(describe())
    which, wy, wx, cls, src = (np.ascontiguousarray(a, np.int64) for a in (which, wy, wx, cls, src))
    n, frames = wy.shape
    noisy = mode == "noise"
    rows = np.ascontiguousarray(rows, np.int64) if noisy else None  # read only for noise
    # The kernel writes raw memory: every buffer must have the size and layout it assumes (it
    # checks digit, noise-row and source-frame indices itself).
    buffers = [(images, None, torch.uint8), (out_frames, (n, frames, size, size), torch.float32),
               (out_masks, (n, frames, size, size), torch.bool),
               (out_labels, (n, len(src), size, size), torch.int64)]
    buffers += [(t, (len(t), size * size), torch.float32) for t in tables] if noisy else []
    for a, shape, dtype in buffers:
        if a.dtype != dtype or a.device.type != "cpu" or not a.is_contiguous() or \
                shape and a.shape != shape:
            raise ValueError(f"C kernel buffer {tuple(a.shape)} {a.dtype}: expected {shape} {dtype}")
    if wx.shape != (n, frames) or which.shape != (n,) or cls.shape != (n, len(src)) or \
            noisy and rows.shape != (n, 2) or images.dim() != 3:
        raise ValueError("C kernel arguments disagree in shape")
    table_a, table_b = tables if noisy else (None, None)
    status = lib.motioncore_layer(
        images.data_ptr(), *images.shape, which.ctypes.data, wy.ctypes.data, wx.ctypes.data, n,
        frames, size, MODES[mode], table_a.data_ptr() if noisy else None,
        table_b.data_ptr() if noisy else None, min(len(table_a), len(table_b)) if noisy else 0,
        rows.ctypes.data if noisy else None, noise, scale, out_frames.data_ptr(), out_masks.data_ptr(),
        out_labels.data_ptr(), cls.ctypes.data, len(src), src.ctypes.data, k0)
    if status == -2:
        raise IndexError("C kernel: a digit, noise-row or source-frame index is out of range")
    if status != 0:
        raise MemoryError("the generator's C kernel could not allocate its work buffers")
