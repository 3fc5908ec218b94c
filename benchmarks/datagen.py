"""Sequences per second of the project's generator against a per-sample NumPy implementation.

    python benchmarks/datagen.py [--n 10000] [--batch 256] [--threads 1]

Both make the same sequences (T=5, r=5, noise 0.5): the baseline loops over samples and
slices each frame, as research code usually does. Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch

from motioncore.data import MovingDigits
from motioncore.motion import class_index


def baseline_sequence(img: np.ndarray, v: tuple[int, int], frames: int, r: int, noise: float,
                      rng: np.random.Generator):
    """One sequence, one frame at a time, with array slicing."""
    size = img.shape[0]
    background = rng.uniform(0, noise, (size, size)).astype(np.float32)
    out = np.empty((frames, size, size), np.float32)
    masks = np.zeros((frames, size, size), bool)
    for t in range(frames):
        dx, dy = (t - 2) * v[0], (t - 2) * v[1]
        layer = np.zeros((size, size), np.float32)
        ys, yd = slice(max(0, -dy), size - max(0, dy)), slice(max(0, dy), size - max(0, -dy))
        xs, xd = slice(max(0, -dx), size - max(0, dx)), slice(max(0, dx), size - max(0, -dx))
        layer[yd, xd] = img[ys, xs] / 255.0
        out[t] = layer + (1 - layer) * background
        masks[t] = layer > 0
    sources = (1,) if frames == 3 else (1, 3)
    labels = np.full((len(sources), size, size), class_index(0, 0, r), np.int64)
    for d, s in enumerate(sources):
        labels[d][masks[s]] = class_index((2 - s) * v[0], (2 - s) * v[1], r)
    return out, labels


def median_rate(run, n: int, repeats: int) -> float:
    """Median over ``repeats`` runs of ``n / seconds`` (one untimed warm-up run first)."""
    run()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def time_baseline(images: np.ndarray, n: int, r: int, frames: int, noise: float, repeats: int) -> float:
    def run():
        rng = np.random.default_rng(0)
        for _ in range(n):
            img = images[rng.integers(len(images))]
            v = tuple(int(x) for x in rng.integers(-r, r + 1, 2))
            baseline_sequence(img, v, frames, r, noise, rng)
    return median_rate(run, n, repeats)


def time_project(gen: MovingDigits, n: int, batch: int, sync, repeats: int) -> float:
    def run():
        for s in range(0, n, batch):
            gen[s:s + batch]
        sync()
    return median_rate(run, n, repeats)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5, help="timed runs; the median is reported")
    p.add_argument("--data-dir")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    r, frames, noise = 5, 5, 0.5
    params = dict(motion_range=r, frames=frames, noise=noise, data_dir=a.data_dir)
    cpu = MovingDigits("train", **params)
    result = {"n": a.n, "batch": a.batch, "threads": a.threads, "repeats": a.repeats, "T": frames, "r": r,
              "noise": noise, "machine": platform.processor() or platform.machine(),
              "torch": torch.__version__}
    result["project_seq_per_s"] = time_project(cpu, a.n, a.batch, lambda: None, a.repeats)
    result["project_10k_seconds"] = 10_000 / result["project_seq_per_s"]
    digits = np.ascontiguousarray(cpu.images.numpy())  # the baseline slices a plain array
    result["baseline_seq_per_s"] = time_baseline(digits, min(a.n, 5000), r, frames, noise, a.repeats)
    result["speedup"] = result["project_seq_per_s"] / result["baseline_seq_per_s"]
    if torch.cuda.is_available():
        gpu = MovingDigits("train", **params, device="cuda")
        result["cuda_device"] = torch.cuda.get_device_name()
        result["cuda_project_seq_per_s"] = time_project(gpu, a.n * 10, a.batch, torch.cuda.synchronize,
                                                         a.repeats)
        result["cuda_speedup"] = result["cuda_project_seq_per_s"] / result["baseline_seq_per_s"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
