"""The sweep's stages on Ray Tune: an optional Optuna search in every cell at once, then the seed
replicates."""

from __future__ import annotations

import contextlib
import gc
import math
import os
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from motioncore.cli import CLOSED_PIPE
from motioncore.config import FIELDS
from orchestrator import console, plan, tracking
from orchestrator.callbacks import ProgressLine, SweepCallback
from orchestrator.state import SweepState, code_version, short_code
from orchestrator.trainable import FINAL, flatten, run_trial
from orchestrator.watchdog import Watchdog, limit_s
from search_spaces import Space, load


def auto_gpus(state: SweepState, space: Space, specs: list[plan.TrialSpec]) -> float:
    """``--gpus-per-trial auto``: 0 without GPUs, else a probe of the most memory-hungry trial.

    The probe takes the heaviest cell at the largest values its search may sample.
    """
    if ray.cluster_resources().get("GPU", 0) == 0:
        console.say("gpus-per-trial auto: no GPUs in this Ray cluster; trials run on CPUs")
        return 0.0
    from orchestrator import gpu

    heaviest = max(specs, key=lambda s: (s.config.frames, s.config.num_classes,
                                         s.config.batch_size, s.config.width))
    largest = {k: d.largest for k, d in space.search.items() if k in ("width", "depth", "batch_size")}
    return gpu.choose(heaviest.config.replace(**largest).to_dict(), state.data_dir)


def _trial_params(state: SweepState, spec: plan.TrialSpec) -> dict[str, Any]:
    return {"cell": spec.cell.id, "design": spec.cell.design, "published": spec.cell.published,
            "config": spec.config.to_dict(), "data_dir": state.data_dir,
            "threads": max(1, int(state.cpus_per_trial)),
            "checkpoint_every_s": state.checkpoint_every_s}


CONSTANT = ("data_dir", "threads", "checkpoint_every_s")  # the same in every trial of a sweep


def _trainable(state: SweepState):
    resources = {"cpu": state.cpus_per_trial, "gpu": state.gpus_per_trial}
    return tune.with_resources(run_trial, resources)


def _tune_env() -> None:
    """Tune's switches, read when a stage starts (fresh or restored: a restored Tuner never sees
    ``_run_config``)."""
    # Tune's per-trial result.json and progress.csv (which its result grid reads) but not its
    # default TensorBoard logger, which imports torch into the driver: 2-3 s of CPU taken from
    # the trials.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # Our own line per trial says what Tune's configuration box and status tables would.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Ctrl-C stops the driver as a kill would (the sweep resumes from Tune's last snapshot);
    # Tune's own handler would return early as if the stage had finished.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    # A trial's third checkpoint since the last snapshot forces one (num_to_keep below), by
    # design; Tune would warn about it after every few trials of seconds on a GPU.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def _run_config(state: SweepState, name: str, callbacks: list) -> tune.RunConfig:
    loggers = [JsonLoggerCallback(), CSVLoggerCallback()]
    return tune.RunConfig(
        name=name, storage_path=state.storage_path, callbacks=[*callbacks, *loggers],
        verbose=0,
        failure_config=tune.FailureConfig(max_failures=state.max_failures),
        # Three kept checkpoints, at most one per --checkpoint-every-s, and a 2 s experiment
        # snapshot: a driver killed between a new checkpoint and the next snapshot still finds
        # the one the snapshot names.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=3))


def _watchdog(state: SweepState, specs: list[plan.TrialSpec]) -> Watchdog:
    """Per cell, how long a trial may go without reporting: ``--trial-timeout-s``, or a
    generous multiple of the plan's estimate of one evaluation period."""
    def reports(c) -> int:
        return math.ceil(c.steps / c.eval_every) + 1

    return Watchdog({s.cell.id: state.trial_timeout_s or limit_s(
        plan.estimate_seconds(s.config), reports(s.config)) for s in specs})


def _fit(state, name: str, make_tuner, resuming: bool):
    """Run one stage; restore it from storage when a previous driver started it."""
    _tune_env()
    path = f"{state.storage_path.rstrip('/')}/{name}"
    if resuming and tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable=_trainable(state), resume_unfinished=True,
                                   resume_errored=False)
    else:
        tuner = make_tuner()
    return tuner.fit()


def _stage(state: SweepState, space: Space, exp_id: str, commit: str, stage: str,
           specs: list[plan.TrialSpec], count: int) -> list:
    """A stage's driver callbacks for ``count`` trials of ``specs``' cells: the MLflow logging,
    the progress line and the watchdog."""
    estimates = {s.cell.id: plan.estimate_seconds(s.config) for s in specs}
    planned = sum(estimates[s.cell.id] for s in specs) * count / len(specs)
    watchdog = _watchdog(state, specs)
    return [SweepCallback(str(state.path), exp_id, state.parent_run_id, space=space.name,
                          stage=stage, commit=commit, dry_run=state.dry_run, watchdog=watchdog),
            ProgressLine(stage=stage, total=count, estimates=estimates, planned=planned,
                         dry_run=state.dry_run, watchdog=watchdog),
            watchdog]


def _tuner(state: SweepState, stage: str, callbacks: list, param_space: dict,
           **tune_config) -> tune.Tuner:
    """A stage's Tuner: warm workers (no torch import per trial), trials named cell-sSEED-id."""
    return tune.Tuner(_trainable(state), param_space=param_space,
                      run_config=_run_config(state, stage, callbacks),
                      tune_config=tune.TuneConfig(
                          max_concurrent_trials=state.max_concurrent, trial_name_creator=_trial_name,
                          trial_dirname_creator=_trial_name, reuse_actors=True, **tune_config))


def _search(state, space: Space, exp_id: str, firsts: list[plan.TrialSpec], commit: str,
            resuming: bool) -> dict[str, dict[str, Any]]:
    """Each cell's own Optuna study and scheduler, all cells at once (``orchestrator.search``);
    returns each cell's best sampled values, for the cells with a trial that ran its budget."""
    from orchestrator.search import cell_searches, fail_unfinished, study_name

    # The search trains and samples with its own seed, apart from the replicate seeds; every
    # cell's study has it, so the cells start from the same random configurations.
    firsts = [plan.TrialSpec(s.cell, state.search_seed, s.config.replace(seed=state.search_seed))
              for s in firsts]
    fixed = {s.cell.id: {k: v for k, v in _trial_params(state, s).items() if k not in CONSTANT}
             for s in firsts}
    metric = f"val_{space.metric}"
    searches, schedulers = cell_searches(
        space, state, fixed, {s.cell.id: s.config for s in firsts}, storage=state.study_storage)
    callbacks = _stage(state, space, exp_id, commit, "search", firsts, state.samples * len(firsts))
    constant = {k: v for k, v in _trial_params(state, firsts[0]).items() if k in CONSTANT}
    results = _fit(state, "search", lambda: _tuner(
        state, "search", callbacks, constant, search_alg=searches, scheduler=schedulers,
        num_samples=state.samples * len(firsts)), resuming)
    if resuming:
        fail_unfinished(state.study_storage, [study_name(s.cell.id) for s in firsts])
    best: dict[str, Any] = {}
    for r in results:  # a trial ASHA stopped is not a candidate: its value is an early one
        if (r.error is None and r.metrics and r.metrics.get(FINAL)
                and math.isfinite(r.metrics.get(metric, float("nan")))):
            cell = flatten(r.config)["cell"]
            if cell not in best or r.metrics[metric] > best[cell].metrics[metric]:
                best[cell] = r
    return {cell: {k: r.config[k] for k in space.search if k in FIELDS} for cell, r in best.items()}


def _search_outcome(state: SweepState, space: Space, client, cells: list[str]) -> None:
    """Each searched cell's best trial, importances and history: printed, written to the sweep
    directory, attached to the parent run."""
    from orchestrator import outcome

    summary, files = outcome.write(state.study_storage, cells, space.metric,
                                   Path(state.sweep_dir))
    for f in files:
        client.log_artifact(state.parent_run_id, str(f))
    for line in summary:
        console.say(line)


def _trial_name(trial) -> str:
    cfg = flatten(trial.config)
    seed = cfg.get("config", {}).get("seed", 0)
    return f"{cfg.get('cell', 'trial')}-s{seed}-{trial.trial_id}"


def run(state: SweepState, client, exp_id: str, resuming: bool = False,
        stop_ray: bool = False) -> int:
    """All stages, then the tables (see ``_run``); a failure on the way marks the parent run
    FAILED (KILLED on Ctrl-C) with its reason, and the sweep stays resumable."""
    try:
        return _run(state, client, exp_id, resuming, stop_ray)
    except BaseException as e:
        interrupted = isinstance(e, KeyboardInterrupt)
        reason = "interrupted" if interrupted else f"{type(e).__name__}: {e}".splitlines()[0]
        with contextlib.suppress(Exception):  # the store itself may be what failed
            tracking.finish(client, state.parent_run_id, "KILLED" if interrupted else "FAILED",
                            {"failure_reason": f"{reason[:400]}; resume with --resume "
                                               f"{state.sweep_dir}"})
        raise


def _run(state: SweepState, client, exp_id: str, resuming: bool, stop_ray: bool) -> int:
    """The search stage (spaces with one), the replicates, then the tables; the parent run
    ends FINISHED with the tables attached.

    ``stop_ray``: stop Ray last, once everything is recorded, so that an error in Ray's own
    shutdown cannot cost the tables or the parent run's status.
    """
    space = load(state.space)
    specs = plan.trials(space, seeds=state.seeds, dry_run=state.dry_run, sets=state.sets,
                        cells=state.cells)
    commit = code_version()
    if state.code and commit != state.code:  # resumed with --allow-code-change: say so
        console.say(f"note: this sweep started on code {short_code(state.code)}; new trials run "
                    f"{short_code(commit)}")
    if space.search:
        specs = _search_stage(state, space, specs, client, exp_id, commit, resuming)
        if specs is None:
            return 1
    callbacks = _stage(state, space, exp_id, commit, "replicate", specs, len(specs))
    grid = [_trial_params(state, s) for s in specs]
    _fit(state, "replicate", lambda: _tuner(state, "replicate", callbacks,
                                            {"trial": tune.grid_search(grid)}), resuming)
    if resuming:
        tracking.close_orphans(client, exp_id, state.parent_run_id)
    _finish(state, space, client, exp_id)
    if stop_ray:  # last, with everything recorded: see the docstring
        gc.collect()  # unreachable objects that may hold Ray handles go while Ray is up
        ray.shutdown()
    return CLOSED_PIPE if console.reader_left() else 0


def _search_stage(state: SweepState, space: Space, specs: list[plan.TrialSpec], client,
                  exp_id: str, commit: str, resuming: bool) -> list[plan.TrialSpec] | None:
    """Search the cells not searched yet, say what was found; the replicates with each cell's
    best values, or None (the parent FAILED) when a cell's search had no successful trial."""
    best = state.best
    firsts = [next(s for s in specs if s.cell.id == c)
              for c in dict.fromkeys(s.cell.id for s in specs) if c not in best]
    if firsts:
        best.update(_search(state, space, exp_id, firsts, commit, resuming))
        state.save()
        _search_outcome(state, space, client, [s.cell.id for s in firsts])
        for s in firsts:
            if s.cell.id in best:
                console.say(f"best in {s.cell.id}: {best[s.cell.id]}")
        failed = [s.cell.id for s in firsts if s.cell.id not in best]
        if failed:
            reason = (f"the search in cell(s) {', '.join(failed)} produced no successful "
                      f"trial (see the failure_reason tags of their runs in MLflow)")
            tracking.finish(client, state.parent_run_id, "FAILED", {"failure_reason": reason})
            console.say(f"error: {reason}", err=True)
            return None
    return [plan.TrialSpec(s.cell, s.seed, s.config.replace(**best[s.cell.id])) for s in specs]


def _finish(state: SweepState, space: Space, client, exp_id: str) -> None:
    """The tables from MLflow, attached to the parent run, which ends FINISHED with the table
    (and what the search found) as its description; the closing lines."""
    from orchestrator import report

    out = Path(state.sweep_dir)
    files = report.build(client, exp_id, state.parent_run_id, out, space)
    for f in files:
        client.log_artifact(state.parent_run_id, str(f))
    table = (out / "ablation.md").read_text()
    found = out / "search.md"  # what the search found, under the table it chose recipes for
    note = table + ("\n" + found.read_text() if found.exists() else "")
    tracking.finish(client, state.parent_run_id, "FINISHED", {tracking.NOTE: tracking.table_note(
        note, state.dry_run)})
    console.say(table)
    console.say(f"results: {out}\n  {', '.join(f.name for f in files)}\nbrowse them in MLflow: "
                f"{tracking.ui_hint(state.tracking_uri, exp_id, state.parent_run_id)}")
