"""Failure drills for the tests: sabotage chosen trials of a real sweep at the torch boundary.

A test puts this directory on a sweep's ``PYTHONPATH`` and sets ``DRILL_FAULTS=FIELD=VALUE:KIND,...``
(e.g. ``loss=l2:raise,noise=0.0:nan``). Python imports ``sitecustomize`` at start-up in every
process of the sweep: the driver, and Ray's raylet-spawned workers, which inherit its environment.
A run whose config has FIELD=VALUE then fails inside torch, and the product's own code meets it:

- ``raise``: the optimiser step raises RuntimeError;
- ``nan``: each optimiser step leaves a NaN weight, so the training loop meets a NaN loss;
- ``nospace``: ``torch.save`` raises ENOSPC, as on a full disk, so checkpoint writes fail;
- ``stall``: the process stops itself (SIGSTOP) after an optimiser step, as a deadlock would.

The product reads no fault switch. This module stays lazy: without ``DRILL_FAULTS`` it does
nothing, and with it, it only imports torch (and patches) once ``motioncore.train`` is imported,
which is how it learns the config each process trains: from the calls to ``fit``.
"""

from __future__ import annotations

import errno
import importlib.abc
import importlib.machinery
import os
import signal
import sys

FAULTS = [item.rpartition(":") for item in filter(None, os.environ.get("DRILL_FAULTS", "").split(","))]
active: set[str] = set()  # the kinds of fault for the run this process trains now


def arm(module) -> None:
    """Patch the freshly imported ``motioncore.train`` and torch (the training code calls
    ``torch.save`` and the optimiser through them, so patching them reaches it)."""
    import functools

    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    fit, save = module.fit, torch.save

    @functools.wraps(fit)
    def drilled_fit(config, *args, **kwargs):
        # Ray reuses a worker for several trials: each fit chooses its own faults.
        values = {k: str(v) for k, v in config.to_dict().items()}
        active.clear()
        active.update(kind for cell, _, kind in FAULTS
                      if values.get(cell.partition("=")[0]) == cell.partition("=")[2])
        return fit(config, *args, **kwargs)

    def before_step(optimizer, args, kwargs):
        if "raise" in active:
            raise RuntimeError("injected fault: the optimiser step failed (tests/drills)")

    def after_step(optimizer, args, kwargs):
        if "stall" in active:
            os.kill(os.getpid(), signal.SIGSTOP)
        if "nan" in active:
            with torch.no_grad():
                optimizer.param_groups[0]["params"][0].fill_(float("nan"))

    @functools.wraps(save)
    def drilled_save(obj, f, *args, **kwargs):
        if "nospace" in active:
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return save(obj, f, *args, **kwargs)

    module.fit, torch.save = drilled_fit, drilled_save
    register_optimizer_step_pre_hook(before_step)
    register_optimizer_step_post_hook(after_step)


class ArmOnImport(importlib.abc.MetaPathFinder):
    """Finds ``motioncore.train`` as usual, and arms the drill once the module has run."""

    def find_spec(self, name, path=None, target=None):
        if name != "motioncore.train":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            load = spec.loader.exec_module  # this spec's own loader: wrapping it touches no other

            def exec_module(module):
                load(module)
                arm(module)

            spec.loader.exec_module = exec_module
        return spec


if FAULTS:
    sys.meta_path.insert(0, ArmOnImport())
