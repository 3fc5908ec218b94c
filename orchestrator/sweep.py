"""Run a declared sweep on Ray Tune, log it to MLflow, and write the ablation table.

    python -m orchestrator.sweep --space seed_table --dry-run        # every cell, tiny budget
    python -m orchestrator.sweep --space seed_table --seeds 3        # the real thing
    python -m orchestrator.sweep --resume sweeps/seed_table-20260101-120000
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from motioncore import cli, mnist
from motioncore.config import UsageError
from orchestrator import console, plan, preflight, store, tracking
from orchestrator.state import DriverLock, SweepState, check_trusted, code_version, short_code
from search_spaces import Space, load, names
from search_spaces.space import SAMPLERS, SCHEDULERS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = cli.ArgumentParser(prog="python -m orchestrator.sweep", description=__doc__.split("\n")[0])
    p.add_argument("--space", help=f"search space: {', '.join(names())}")
    p.add_argument("--dry-run", action="store_true", help="every cell, one seed, tiny budget")
    p.add_argument("--plan", action="store_true", help="print cells, trials and compute; run nothing")
    p.add_argument("--calibrate", action="store_true",
                   help="with --plan: time a few training steps of each cell on this machine "
                        "(seconds a cell) instead of the rough cost model")
    p.add_argument("--seeds", help="replicate seeds in every cell: a count N (seeds 0..N-1, "
                   "default 3) or the seeds by name, 3,4,5")
    p.add_argument("--search-seed", type=int,
                   help=f"the seed a search trains and samples with, apart from the replicate "
                        f"seeds (default {SweepState.search_seed})")
    p.add_argument("--num-samples", type=int, help="Optuna trials per cell (spaces with a search)")
    p.add_argument("--sampler", help=f"the search's Optuna sampler: {', '.join(SAMPLERS)} "
                                     "(default: the space's, random)")
    p.add_argument("--scheduler", help=f"the search's early stopping: {', '.join(SCHEDULERS)} "
                                       "(default: the space's, asha)")
    p.add_argument("--max-concurrent", type=int, help="trials at once (default 2)")
    p.add_argument("--cpus-per-trial", type=float, help="CPUs per trial (default 1)")
    p.add_argument("--gpus-per-trial",
                   help="GPUs per trial: a fraction (default 0), or auto (probe one trial, pack "
                        "by memory)")
    p.add_argument("--max-failures", type=int, help="retries of a failing trial (default 1)")
    p.add_argument("--trial-timeout-s", type=float, metavar="S",
                   help="end a trial that has not reported for S seconds, and retry it (default: "
                        "5x the plan's estimate of an evaluation period, plus 300 s)")
    p.add_argument("--checkpoint-every-s", type=float, metavar="S",
                   help="seconds of training between a trial's checkpoints, at its evaluations "
                        "(default 30; 0: every evaluation; the last is always kept)")
    p.add_argument("--tracking-uri", default=os.environ.get("MOTIONCORE_TRACKING_URI"),
                   help="MLflow URI (default $MOTIONCORE_TRACKING_URI, else sqlite beside the sweeps)")
    p.add_argument("--experiment", help="MLflow experiment (default: the space name)")
    p.add_argument("--storage-path",
                   help="Ray Tune storage (default $MOTIONCORE_STORAGE_PATH, else SWEEP_DIR/ray)")
    p.add_argument("--address", help="Ray cluster address ('auto' joins a running cluster)")
    p.add_argument("--out", help="parent of the sweep directory (default ./sweeps)")
    p.add_argument("--data-dir", help=f"MNIST directory (default ${mnist.ENV_VAR} or the cache)")
    p.add_argument("--resume", metavar="SWEEP_DIR",
                   help="continue an interrupted sweep, with every choice it started with")
    p.add_argument("--trust-storage", action="store_true",
                   help="with --resume on remote storage (s3://...): only you can write it")
    p.add_argument("--allow-code-change", action="store_true",
                   help="with --resume: continue although the code differs from the sweep's")
    p.add_argument("--cells", type=lambda v: [c for c in v.split(",") if c.strip()],
                   help="run only these cells of the space (comma-separated ids)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config field in every cell (repeatable)")
    return p.parse_args(argv)


# What a new sweep chooses and a resumed one keeps: dest -> its default for a new sweep.
CHOICES = {"space": None, "dry_run": False, "seeds": "3", "search_seed": SweepState.search_seed,
           "num_samples": None, "sampler": None, "scheduler": None, "max_concurrent": 2,
           "cpus_per_trial": 1.0, "gpus_per_trial": "0",
           "max_failures": 1, "trial_timeout_s": 0.0, "checkpoint_every_s": 30.0,
           "experiment": None,
           "storage_path": None, "out": "sweeps", "data_dir": None, "cells": None, "set": None}


def _given(a: argparse.Namespace) -> list[str]:
    """The choices of ``CHOICES`` given on the command line, as flags."""
    return ["--" + k.replace("_", "-") for k in CHOICES
            if getattr(a, k) is not None and getattr(a, k) is not False]


def _defaults(a: argparse.Namespace) -> None:
    for k, default in CHOICES.items():
        if getattr(a, k) is None:
            setattr(a, k, default)
    a.storage_path = a.storage_path or os.environ.get("MOTIONCORE_STORAGE_PATH") or None


def check_args(a: argparse.Namespace) -> Space:
    """Everything that can be checked before Ray starts; one clear line on the first problem."""
    if a.calibrate and not a.plan:
        raise UsageError("--calibrate: only with --plan (it times the plan's cells)")
    if a.allow_code_change or a.trust_storage:
        flag = "--allow-code-change" if a.allow_code_change else "--trust-storage"
        raise UsageError(f"{flag}: only with --resume (it says what a resume may load)")
    if not a.space:
        raise UsageError(f"--space is required; allowed: {', '.join(names())}")
    try:
        space = load(a.space)
    except KeyError:
        raise UsageError(f"--space {a.space!r}: unknown; allowed: {', '.join(names())}") from None
    _defaults(a)
    a.sampler, a.scheduler = a.sampler or space.sampler, a.scheduler or space.scheduler
    for flag, value, allowed in (("--sampler", a.sampler, SAMPLERS),
                                 ("--scheduler", a.scheduler, SCHEDULERS)):
        if value not in allowed:
            raise UsageError(f"{flag} {value!r}: allowed values are {', '.join(allowed)}")
    a.seeds = plan.seed_list(a.seeds)
    if not 0 <= a.search_seed < 2**63:
        raise UsageError(f"--search-seed {a.search_seed}: must be an integer >= 0")
    if space.search and a.search_seed in a.seeds:
        raise UsageError(f"--search-seed {a.search_seed}: is also a replicate seed (--seeds "
                         f"{','.join(map(str, a.seeds))}); a recipe is confirmed on seeds it was "
                         "not chosen on")
    for flag, value, low in (("--max-concurrent", a.max_concurrent, 1),
                             ("--max-failures", a.max_failures, 0)):
        if value < low:
            raise UsageError(f"{flag} {value}: must be >= {low}")
    if a.num_samples is not None and a.num_samples < 1:
        raise UsageError(f"--num-samples {a.num_samples}: must be >= 1")
    if not (math.isfinite(a.trial_timeout_s) and a.trial_timeout_s >= 0):
        raise UsageError(f"--trial-timeout-s {a.trial_timeout_s}: must be a number of seconds "
                         ">= 0 (0: from the plan's estimate)")
    if not (math.isfinite(a.checkpoint_every_s) and a.checkpoint_every_s >= 0):
        raise UsageError(f"--checkpoint-every-s {a.checkpoint_every_s}: must be a number >= 0")
    if not (math.isfinite(a.cpus_per_trial) and a.cpus_per_trial > 0):
        raise UsageError(f"--cpus-per-trial {a.cpus_per_trial}: must be a number > 0")
    if a.gpus_per_trial != "auto":
        try:
            gpus = float(a.gpus_per_trial)
        except ValueError:
            gpus = -1.0
        if not 0 <= gpus <= 64:  # NaN fails too
            raise UsageError(f"--gpus-per-trial {a.gpus_per_trial!r}: allowed: a number from 0 "
                             "to 64 (a fraction packs trials on a GPU), or auto")
        a.gpus_per_trial = gpus
        if gpus > 0 and not a.address and not a.resume:
            import torch

            if torch.cuda.device_count() == 0:
                raise UsageError(f"--gpus-per-trial {a.gpus_per_trial:g}: this "
                                 "machine has no GPUs; use --gpus-per-trial 0 (or --address to "
                                 "join a cluster that has them)")
    return space


def samples_for(space: Space, a: argparse.Namespace) -> int:
    if not space.search:
        return 0
    if a.dry_run:
        return plan.DRY_RUN_SAMPLES
    return a.num_samples or space.num_samples


@cli.command
def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.resume:
        return resume(a)
    space = check_args(a)
    sets = plan.parse_sets(a.set)
    specs = plan.trials(space, seeds=a.seeds, dry_run=a.dry_run, sets=sets, cells=a.cells)
    samples = samples_for(space, a)
    warning = plan.same_configs(specs, sets)
    if warning:
        console.say(warning)
    if a.plan:
        console.say(plan.describe(space, specs, samples=samples, max_concurrent=a.max_concurrent,
                                  calibrate=a.calibrate, data_dir=_check_data(a.data_dir)
                                  if a.calibrate else None))
        return cli.CLOSED_PIPE if console.reader_left() else 0
    return start(a, space, sets)


def start(a: argparse.Namespace, space: Space, sets: dict[str, Any]) -> int:
    """Every check, then a new sweep directory, its parent run and the Tune stages."""
    root, uri, sweep_dir, storage = _locations(a, space)
    data_dir = _check_data(a.data_dir)
    # A tracking server is checked before anything starts. A local store is opened while Ray
    # starts: importing MLflow and creating a new sqlite schema take seconds.
    db_file = store.sqlite_file(uri)
    new_store = db_file if db_file is not None and not db_file.exists() else None
    pending = ThreadPoolExecutor(1).submit(_open_store, uri) if store.is_local(uri) else None
    client = None if pending else store.client_for(uri)
    state = SweepState(
        space=space.name, dry_run=a.dry_run, seeds=a.seeds, sets=sets, cells=a.cells,
        samples=samples_for(space, a), max_concurrent=a.max_concurrent,
        cpus_per_trial=a.cpus_per_trial, gpus_per_trial=a.gpus_per_trial,
        max_failures=a.max_failures, checkpoint_every_s=a.checkpoint_every_s, tracking_uri=uri,
        trial_timeout_s=a.trial_timeout_s, experiment=a.experiment or space.name,
        search_seed=a.search_seed, code=code_version(), sampler=a.sampler,
        scheduler=a.scheduler, grace_fraction=space.grace_fraction,
        reduction_factor=space.reduction_factor, address=a.address, storage_path=storage,
        data_dir=data_dir, sweep_dir=str(sweep_dir.resolve()))
    try:
        owns_ray = preflight.connect_ray(state)
        client = client or pending.result()
        from orchestrator import runner

        preflight.run(uri, storage)
        if state.gpus_per_trial == "auto":
            state.gpus_per_trial = runner.auto_gpus(state, space, plan.trials(
                space, seeds=a.seeds[:1], dry_run=a.dry_run, sets=sets, cells=a.cells))
    except BaseException:
        if pending is not None and new_store:  # refused before the sweep began: leave no store
            with contextlib.suppress(BaseException):
                pending.result()
            for leftover in (new_store, Path(f"{new_store}.lock")):
                leftover.unlink(missing_ok=True)
        raise
    _claim(state, custom_storage=bool(a.storage_path))
    exp_id = _start_parent(client, state, space, root)
    with DriverLock(state.sweep_dir):
        state.save()
        console.say(f"sweep {state.sweep_dir}  (MLflow parent run {state.parent_run_id}, "
                    f"experiment {state.experiment!r})")
        return runner.run(state, client, exp_id, stop_ray=owns_ray)


def _locations(a: argparse.Namespace, space: Space) -> tuple[Path, str, Path, str]:
    """The sweeps' root, tracking URI, this sweep's directory (not made yet) and Tune storage,
    each checked writable (or reachable) before anything starts or is written."""
    root = Path(a.out)
    uri = a.tracking_uri or store.default_uri(root)
    cli.check_output("--out", root, directory=True)
    db = store.sqlite_file(uri)
    if db is not None:
        cli.check_output("--tracking-uri", db.parent, directory=True)
    sweep_dir = root / f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    while sweep_dir.exists():
        sweep_dir = Path(f"{sweep_dir}-1")
    storage = a.storage_path or str((sweep_dir / "ray").resolve())
    if "://" not in storage:
        storage = str(Path(storage).resolve())
        cli.check_output("--storage-path", storage, directory=True)
    else:
        preflight.check_remote_storage(storage)
    return root, uri, sweep_dir, storage


def _claim(state: SweepState, custom_storage: bool) -> None:
    """Make the sweep directory; another sweep of the same space may have taken the name in
    the same second, then take the next free one."""
    sweep_dir = Path(state.sweep_dir)
    while True:
        try:
            sweep_dir.mkdir(parents=True)
            break
        except FileExistsError:
            sweep_dir = Path(f"{sweep_dir}-1")
    if not custom_storage:
        state.storage_path = str((sweep_dir / "ray").resolve())
    state.sweep_dir = str(sweep_dir.resolve())


def _start_parent(client, state: SweepState, space: Space, root: Path) -> str:
    """The sweep's MLflow parent run, its choices as params, and the experiment's shared view;
    returns the experiment id."""
    exp_id = tracking.experiment_id(client, state.experiment, root / "mlartifacts"
                                    if state.tracking_uri.startswith("sqlite") else None)
    note = (f"Sweep of space `{space.name}` ({space.description}); the ablation table appears "
            "here when it finishes.")
    sampler = state.sampler
    if space.search:
        from orchestrator.search import sampler_label  # imports optuna: only when searching
        sampler = sampler_label(state.sampler, len(space.search))
    asha = (f"grace {state.grace_fraction:g} of the reports, reduction factor "
            f"{state.reduction_factor}" if state.scheduler == "asha" else "none")
    state.parent_run_id = tracking.start_parent(
        client, exp_id, Path(state.sweep_dir).name + ("-dry-run" if state.dry_run else ""),
        {"space": space.name, "sweep_dir": state.sweep_dir, "dry_run": str(state.dry_run),
         "git_commit": state.code},
        params={"space": space.name, "seeds": ",".join(map(str, state.seeds)),
                "dry_run": state.dry_run, "search_seed": state.search_seed,
                "sampler": sampler, "scheduler": state.scheduler, "asha": asha,
                "cells": ",".join(state.cells) if state.cells else "all",
                "overrides": ", ".join(f"{k}={v}" for k, v in state.sets.items()) or "none",
                "samples_per_cell": state.samples, "max_concurrent": state.max_concurrent},
        note=f"{tracking.DRY_RUN_NOTE}\n\n{note}" if state.dry_run else note)
    tracking.share_view(client, exp_id, state.parent_run_id)
    return exp_id


def resume(a: argparse.Namespace) -> int:
    """Continue a sweep with every choice it started with. The tracking URI and Ray address may
    be given again (a server or head that moved); both are checked before anything is written."""
    from orchestrator import runner

    given = _given(a)
    if given:
        raise UsageError(f"--resume {a.resume}: a resumed sweep keeps every choice it started "
                         f"with (its sweep.json); drop {', '.join(given)}")
    state = SweepState.load(a.resume)
    state = state.replace(tracking_uri=a.tracking_uri or state.tracking_uri,
                          address=a.address or state.address)
    check_trusted(state, a.trust_storage)
    cli.check_output("--resume", state.sweep_dir, directory=True)  # a read-only sweep directory
    code = code_version()
    if state.code and code != state.code and not a.allow_code_change:
        raise UsageError(f"--resume {a.resume}: the sweep ran code {short_code(state.code)} and this "
                         f"is {short_code(code)}; its trials would mix code (pass --allow-code-change to "
                         "continue anyway, recorded on every new trial)")
    db_file = store.sqlite_file(state.tracking_uri)
    if db_file is not None and not db_file.is_file():  # a mistyped path would make a new, empty store
        raise UsageError(f"--resume {a.resume}: its tracking store {state.tracking_uri} does not "
                         "exist; pass the --tracking-uri the sweep used")
    client = store.client_for(state.tracking_uri)  # checked before anything is written
    exp = client.get_experiment_by_name(state.experiment)
    if exp is None or not tracking.has_run(client, state.parent_run_id, exp.experiment_id):
        raise UsageError(f"--resume {a.resume}: its sweep (parent run {state.parent_run_id} in "
                         f"experiment {state.experiment!r}) is not in {state.tracking_uri}; pass "
                         "the --tracking-uri the sweep used")
    with DriverLock(state.sweep_dir):
        owns_ray = preflight.connect_ray(state)  # a bad --address ends here, nothing written
        state.save()  # trial logging reads the tracking URI from here
        client.update_run(state.parent_run_id, status="RUNNING")  # it was KILLED or FAILED
        console.say(f"resuming sweep {state.sweep_dir}")
        return runner.run(state, client, exp.experiment_id, resuming=True, stop_ray=owns_ray)


def _open_store(uri: str):
    """The tracking client, then Tune's modules: both import for seconds, off Ray's start-up path."""
    client = store.client_for(uri)
    from orchestrator import runner  # noqa: F401

    return client


def _check_data(flag: str | None) -> str | None:
    """Fail before any trial when MNIST is missing or corrupt; pass an explicit directory on."""
    mnist.load_split("test", flag)
    mnist.load_split("train", flag)
    explicit = flag or os.environ.get(mnist.ENV_VAR)
    return str(mnist.data_dir(explicit).resolve()) if explicit else None


if __name__ == "__main__":
    sys.exit(main())
