"""Training samples per second of the default model, and the share of step time spent on data.

    python benchmarks/train_step.py [--steps 20] [--threads 2] [--no-compile] [--variants eager,bf16]

Supervised and unsupervised T=5 (r=3, segmentation attention), batch 64 and 256, eager and
torch.compile; where the hardware multiplies bf16, also bf16 autocast and channels_last.
Prints one JSON object last.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

import torch

from motioncore import precision
from motioncore.config import RunConfig
from motioncore.losses import objective
from motioncore.train import Trainer


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
    return {"samples_per_s": steps * config.batch_size / step_s, "data_share": data_s / step_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--variants", help="comma-separated subset of eager, compile, bf16, "
                   "bf16+channels_last (the last two where bf16 is multiplied in hardware)")
    p.add_argument("--data-dir")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
           "threads": a.threads, "torch": torch.__version__, "runs": []}
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
    for supervision in ("supervised", "unsupervised"):
        for batch in (64, 256):
            cfg = RunConfig(frames=5, motion_range=3, noise=0.5, supervision=supervision,
                            attention="segmentation", batch_size=batch, device=device.type)
            for name, kw in variants:
                r = measure(cfg, device, a.steps, data_dir=a.data_dir, **kw)
                out["runs"].append({"supervision": supervision, "batch": batch, "variant": name, **r})
                print(json.dumps(out["runs"][-1]), flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
