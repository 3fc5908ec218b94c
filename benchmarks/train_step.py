"""Training samples per second of the research table's recipes, and where a step's time goes.

    python benchmarks/train_step.py [--cells sup_T3_r3,unsup_T5_segmentation_r5] [--batches 16,64]
        [--steps 20] [--threads 2] [--no-compile] [--variants eager,bf16] [--profile 5]

Each cell is a ``seed_table`` cell (its recipe, ``--batches`` overriding its batch size); each
variant is eager, ``torch.compile`` of the network and, where the hardware multiplies bf16,
bf16 autocast and channels_last. ``--profile N``: also N steps under ``torch.profiler``, and the
operators taking the most of them (self time, share of the step). Prints one JSON line per run
and one JSON object last.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import time

import torch

from motioncore import precision
from motioncore.config import RunConfig, from_dict
from motioncore.losses import objective
from motioncore.train import Trainer
from search_spaces import load

DEFAULT_CELLS = "sup_T3_r3,unsup_T3_r3,unsup_T5_segmentation_r3,unsup_T5_segmentation_r5"


def measure(config: RunConfig, device: torch.device, steps: int, *, compile_: bool = False,
            bf16: bool = False, channels_last: bool = False, data_dir=None) -> dict:
    trainer = Trainer(config, device, data_dir)
    model = trainer.model
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    fwd = torch.compile(model) if compile_ else model
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if bf16
                else contextlib.nullcontext())
    data_s = step_s = 0.0
    for i in range(steps + 3):  # the first three are warm-up (and compilation)
        sync()
        t0 = time.perf_counter()
        batch = trainer.batch_at(i)  # as training gets it (several steps' batches at once on a GPU)
        sync()
        t1 = time.perf_counter()
        with autocast:
            out = fwd(batch.frames)
            loss, _ = objective(frames=batch.frames, labels=batch.labels, logits=out.logits.float(),
                                attention=None if out.attention is None else out.attention.float(),
                                config=config)
        trainer.opt.zero_grad(set_to_none=True)
        loss.backward()
        trainer.opt.step()
        sync()
        t2 = time.perf_counter()
        if i >= 3:
            data_s += t1 - t0
            step_s += t2 - t0
    return {"samples_per_s": steps * config.batch_size / step_s, "step_ms": 1000 * step_s / steps,
            "data_share": data_s / step_s}


def profile(config: RunConfig, device: torch.device, steps: int, data_dir=None,
            top: int = 12) -> list[dict]:
    """The operators taking the most self time (on a GPU, device time) over ``steps`` training
    steps as a trial runs them (``Trainer.train_step``: its precision, the weight average),
    after one warm-up step, each with its share of the steps' wall time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    trainer = Trainer(config, device, data_dir)
    trainer.train_step()
    sync()
    start = time.perf_counter()
    with torch_profile(activities=[ProfilerActivity.CPU]
                       + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        for _ in range(steps):
            trainer.train_step()
        sync()
    wall_us = (time.perf_counter() - start) * 1e6
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    ops = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)[:top]
    return [{"op": e.key, "calls": e.count, "share": round(getattr(e, key) / wall_us, 3)}
            for e in ops]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--variants", help="comma-separated subset of eager, compile, bf16, "
                   "bf16+channels_last (the last two where bf16 is multiplied in hardware)")
    p.add_argument("--cells", default=DEFAULT_CELLS, help=f"seed_table cells (default {DEFAULT_CELLS})")
    p.add_argument("--batches", help="batch sizes (default 16,64 on a CPU, 64,256 on a GPU)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also profile N training steps of each cell and batch: the costliest operators")
    p.add_argument("--data-dir")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
           "threads": a.threads, "torch": torch.__version__, "runs": [], "profiles": []}
    variants = [("eager", {})] + ([] if a.no_compile else [("compile", {"compile_": True})])
    if precision.bf16_matrix_units(device):  # a GPU, or a CPU with AMX or AVX-512 BF16
        variants += [("bf16", {"bf16": True}), ("bf16+channels_last",
                                                {"bf16": True, "channels_last": True})]
    if a.variants:
        wanted = a.variants.split(",")
        known = {name for name, _ in variants}
        if not set(wanted) <= known:
            p.error(f"--variants {a.variants}: allowed on this device: {', '.join(sorted(known))}")
        variants = [v for v in variants if v[0] in wanted]
    table = {c.id: c for c in load("seed_table").cells}
    cells = a.cells.split(",")
    if unknown := [c for c in cells if c not in table]:
        p.error(f"--cells {','.join(unknown)}: not seed_table cells; cells: {', '.join(table)}")
    batches = (a.batches or ("64,256" if device.type == "cuda" else "16,64")).split(",")
    if bad := [b for b in batches if not b.isdigit() or int(b) < 1]:
        p.error(f"--batches {','.join(bad)}: batch sizes are whole numbers >= 1")
    batches = [int(b) for b in batches]
    for cell in cells:
        recipe = from_dict({**table[cell].overrides, "device": device.type})
        for batch in batches:
            cfg = dataclasses.replace(recipe, batch_size=batch)
            for name, kw in variants:
                r = measure(cfg, device, a.steps, data_dir=a.data_dir, **kw)
                out["runs"].append({"cell": cell, "batch": batch, "variant": name, **r})
                print(json.dumps(out["runs"][-1]), flush=True)
            if a.profile:
                out["profiles"].append({"cell": cell, "batch": batch, "top_ops": profile(
                    cfg, device, a.profile, a.data_dir)})
                print(json.dumps(out["profiles"][-1]), flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
