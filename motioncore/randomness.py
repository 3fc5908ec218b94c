"""Counter-based randomness: every value a hash of ``(seed, split, index, stream)``.

A sequence depends on nothing but its index, so batch size, batch composition and device do
not change it, and the same values come out on every machine.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

SPLIT_SALT = {"train": 0x3C6EF372, "val": 0xA54FF53A, "test": 0x510E527F}
_M32 = 0xFFFFFFFF

_MIX = tuple(np.uint64(c) for c in (_M32, 16, 0x7FEB352D, 15, 0x846CA68B))


def _mix(x):
    """lowbias32 integer hash of uint32 values held in Python ints or uint64 arrays.

    Products of two 32-bit values wrap modulo 2**64 only in bits that the mask drops, so the
    values are the same on every machine.
    """
    if isinstance(x, np.ndarray):  # the same steps in place, with uint64 constants (faster)
        m, s16, a, s15, b = _MIX
        x = x & m
        x ^= x >> s16
        x *= a
        x &= m
        x ^= x >> s15
        x *= b
        x &= m
        x ^= x >> s16
        return x
    x = x & _M32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def draw(keys: np.ndarray, stream: int, count: int) -> np.ndarray:
    """``(N, count)`` uint32 values (as uint64) for each sequence key and one named stream.

    Column ``i`` does not depend on ``count``: a longer draw extends a shorter one.
    """
    base = _mix(keys ^ np.uint64(_mix(stream + 0x9E3779B9)))  # (N,)
    return _mix(base[:, None] + np.arange(count, dtype=np.uint64))  # (N, count)


def sequence_keys(indices: np.ndarray, *, seed: int, split: str) -> np.ndarray:
    """One 32-bit key (as uint64) per sequence, a function of (seed, split, index) only."""
    idx = indices.astype(np.uint64)
    head = np.uint64(_mix((seed & _M32) ^ SPLIT_SALT[split]))
    return _mix(_mix(head + (idx >> np.uint64(32))) ^ (idx & np.uint64(_M32)))


NOISE_ROWS = 1024  # rows per background table: 2**20 distinct fields per canvas size


@functools.lru_cache(maxsize=8)
def noise_tables(pixels: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Two ``(NOISE_ROWS, pixels)`` tables of Uniform[0, 1) values with 16 bits of resolution."""
    bits = draw(_mix(np.arange(2 * NOISE_ROWS, dtype=np.uint64) ^ np.uint64(0x2545F491)), 2,
                 (pixels + 1) // 2)
    pairs = np.stack([bits >> np.uint64(16), bits & np.uint64(0xFFFF)], -1).reshape(len(bits), -1)
    table = torch.from_numpy((pairs[:, :pixels] * (1.0 / (1 << 16))).astype(np.float32)).to(device)
    return table[:NOISE_ROWS].contiguous(), table[NOISE_ROWS:].contiguous()


def background(bits: torch.Tensor, pixels: int) -> torch.Tensor:
    """``(N, pixels)`` i.i.d. Uniform[0, 1) fields, one per 20-bit value in ``bits``.

    A field is ``frac(A[i] + B[j])`` for rows i, j picked by the bits. Given any A, the sum
    modulo 1 of a uniform B is uniform and independent of A, so two fields that share a row are
    still independent; 2**20 (i, j) pairs keep whole-field repeats rare. Sums of 16-bit
    fractions are exact in float32, so every device gives the same values. Two row copies and
    one add replace hashing every pixel (8x faster on CPU).
    """
    table_a, table_b = noise_tables(pixels, bits.device)
    field = table_a.index_select(0, bits % NOISE_ROWS)
    return field.add_(table_b.index_select(0, bits // NOISE_ROWS)).frac_()
