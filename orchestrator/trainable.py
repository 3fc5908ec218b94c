"""The Ray Tune trainable: a function of one param dict that calls ``motioncore.train.fit``.

It knows Ray (reports and checkpoints) but not MLflow: the driver logs what it reports.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
from ray import tune

from motioncore.config import FIELDS, RunConfig, from_dict

# torch and the training code are imported inside the trial: the sweep driver needs neither.

CHECKPOINT = "checkpoint.pt"
FINAL = "final"  # marks the last report, which carries the test metrics (Tune's "done" also
# marks results of trials a scheduler stopped)


def trial_config(params: dict[str, Any]) -> RunConfig:
    """The run config of a trial: its declared config, with any Optuna-sampled fields on top."""
    return from_dict({**params["config"], **{k: params[k] for k in FIELDS if k in params}})


def flatten(params: dict[str, Any]) -> dict[str, Any]:
    """Grid stages nest each trial's fields under ``trial``; search stages keep them on top."""
    return {**params.get("trial", {}), **{k: v for k, v in params.items() if k != "trial"}}


def prefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {f"{prefix}{k}": v for k, v in metrics.items()}


def machine(gpu_ids: list) -> str:
    """What the trial ran on, for the record: the CPU model and cores, and the GPU if it had one."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"{cpu}, {os.cpu_count()} cores"
    if gpu_ids and torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(0)}"
    return text


def run_trial(params: dict[str, Any]) -> None:
    """Train one configuration; report validation metrics per period and test metrics at the end."""
    import torch

    params = flatten(params)
    torch.set_num_threads(max(1, int(params.get("threads", 1))))
    work = Path(tempfile.mkdtemp(prefix="motioncore-trial-"))
    try:  # Tune ends a stopped trial with SystemExit inside report(): clean up all the same
        _train_and_report(params, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _train_and_report(params: dict[str, Any], work: Path) -> None:
    from motioncore.train import fit, write_results

    config = trial_config(params)
    resumed = tune.get_checkpoint()
    if resumed is not None:  # a retried or resumed trial continues from its last checkpoint
        with resumed.as_directory() as d:
            shutil.copy(Path(d) / CHECKPOINT, work / CHECKPOINT)
    last: dict[str, float] = {}
    every, saved = float(params.get("checkpoint_every_s", 0)), [time.monotonic()]
    rungs = set(params.get("checkpoint_at", ()))
    # Where the trial runs, for the MLflow tags: the Ray node and the GPU ids it was given.
    placement = {"node_id": ray.get_runtime_context().get_node_id(),
                 "gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids()),
                 "machine": machine(ray.get_gpu_ids())}

    def report(metrics: dict[str, float]) -> None:
        """An evaluation; its checkpoint goes to Tune's storage when ``every`` seconds have
        passed since the last one (uploads cost the driver experiment snapshots)."""
        last.clear()
        last.update(metrics)
        checkpoint = None
        # A search trial also checkpoints at ASHA's rungs, the reports it may be stopped at. fit
        # evaluates every eval_every steps and at the last: this is the trial's evaluation count.
        evaluations = -(-int(metrics["step"]) // config.eval_every)  # ceil, resumed ones included
        if time.monotonic() - saved[0] >= every or evaluations in rungs:
            checkpoint, saved[0] = tune.Checkpoint.from_directory(str(work)), time.monotonic()
        tune.report({**prefixed(metrics, "val_"), "step": metrics["step"], **placement},
                    checkpoint=checkpoint)

    trainer, test = fit(config, report=report, data_dir=params.get("data_dir"),
                        checkpoint=work / CHECKPOINT, resume=resumed is not None)
    trainer.save(work / CHECKPOINT)
    write_results(trainer, test, work, params.get("data_dir"))
    final = trainer.history[-1] if trainer.history else last
    tune.report({**prefixed(final, "val_"), **prefixed(test, "test_"), "step": trainer.step,
                 FINAL: True, **placement}, checkpoint=tune.Checkpoint.from_directory(str(work)))
