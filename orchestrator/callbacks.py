"""The driver's Tune callbacks: MLflow child runs per trial (``SweepCallback``), and a progress
line per trial with the stage's ETA (``ProgressLine``)."""

from __future__ import annotations

import time
from pathlib import Path

from ray.tune import Callback

from orchestrator import console, store, tracking
from orchestrator.state import SweepState, study_storage
from orchestrator.trainable import FINAL, flatten, trial_config


class SweepCallback(Callback):
    """Logs every trial to MLflow under the sweep's parent run."""

    def __init__(self, state_file: str, exp_id: str, parent: str, *, space: str, stage: str,
                 commit: str, dry_run: bool = False, watchdog=None):
        # The tracking URI is read from the sweep's state file when first needed, so a resumed
        # sweep (whose Tune state holds a pickled copy of this callback) logs where it is told to.
        self.state_file, self.exp_id, self.parent = state_file, exp_id, parent
        self.space, self.stage, self.commit = space, stage, commit
        self.dry_run = dry_run
        self.watchdog = watchdog  # a Watchdog ending stalled trials: it knows why they failed
        self.runs: dict[str, str] = {}  # Tune trial id -> MLflow run id
        # MLflow run id -> prefix ("val_", "test_") -> the last step logged. A retried or resumed
        # trial trains again from its last checkpoint, which may be older than its last logged
        # evaluation: those evaluations are not logged twice.
        self.logged: dict[str, dict[str, int]] = {}
        self.placed: dict[str, str] = {}  # Tune trial id -> the node/GPUs it reported from
        self._client = None
        # A fresh stage makes every child run; a stage restored from Tune's state (this object
        # unpickled) first looks for the run an earlier driver made for the same trial.
        self.resumed = False

    @property
    def client(self):
        if self._client is None:
            uri = SweepState.load(Path(self.state_file).parent).tracking_uri
            self._client = store.client_for(uri)
        return self._client

    def __getstate__(self):  # Tune pickles its run config into the experiment state
        return {**self.__dict__, "_client": None}

    def __setstate__(self, state):
        # A sweep started by an older version: its callback had no step record and kept the
        # placed trials in a set (they are tagged again on their next report).
        state = {"logged": {}, "watchdog": None, **state, "resumed": True}
        if not isinstance(state.get("placed"), dict):
            state["placed"] = {}
        self.__dict__.update(state)

    def _run_id(self, trial) -> str:
        if trial.trial_id not in self.runs:
            params = flatten(trial.config)
            config = trial_config(params)
            cell = params["cell"]
            search = self.stage == "search"
            name = f"{cell}-{trial.trial_id}" if search else f"{cell}-s{config.seed}"
            tags = {"cell": cell, "space": self.space, "stage": self.stage,
                    "config_hash": config.hash(), "seed": str(config.seed),
                    "git_commit": self.commit, "design": params.get("design", ""),
                    "tune_trial_id": trial.trial_id,
                    tracking.NOTE: tracking.child_note(cell, config.seed, params.get("design", ""),
                                                       self.stage, self.dry_run)}
            if params.get("published") is not None:
                tags["published"] = str(params["published"])
            run_id = self.runs[trial.trial_id] = tracking.start_child(
                self.client, self.exp_id, self.parent, name=name, params=config.to_dict(),
                tags=tags, reattach=self.resumed)
            if self.resumed:  # an earlier driver may have logged some of its evaluations
                self.logged[run_id] = tracking.logged_steps(self.client, run_id)
            if search:  # the Optuna trial names its MLflow run (what optuna-dashboard shows)
                from orchestrator.search import link_run

                link_run(study_storage(Path(self.state_file).parent), cell, trial.trial_id,
                         run_id)
        return self.runs[trial.trial_id]

    def on_trial_start(self, iteration, trials, trial, **info):
        self._run_id(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id = self._run_id(trial)
        # Tagged on the first report and again when a retried trial reports from elsewhere.
        tags = {}
        where = f"{result.get('node_id')}/{result.get('gpu_ids')}"
        if "node_id" in result and self.placed.get(trial.trial_id) != where:
            self.placed[trial.trial_id] = where
            tags = {"ray_node_id": result["node_id"], "gpu_ids": result.get("gpu_ids") or "none",
                    "machine": result.get("machine", "")}
        now_ms, step = int(time.time() * 1000), int(result.get("step", 0))
        # The final report repeats the last evaluation: log only its test metrics.
        prefix = "test_" if result.get(FINAL) else "val_"
        metrics = {k[len(prefix):]: v for k, v in result.items() if k.startswith(prefix)}
        if result.get(FINAL):  # the trial's own running time, across sittings (Tune's count)
            metrics["trial_s"] = result.get("time_total_s")
        logged = self.logged.setdefault(run_id, {})
        if step <= logged.get(prefix, -1):
            metrics = {}  # trained again after a retry: logged already
        logged[prefix] = max(step, logged.get(prefix, -1))
        tracking.log_metrics(self.client, run_id, metrics, prefix, step, now_ms, tags)

    def on_trial_complete(self, iteration, trials, trial, **info):
        run_id = self._run_id(trial)
        result = trial.last_result or {}
        finished = bool(result.get(FINAL))
        if trial.checkpoint is not None:  # the last one: checkpoint.pt, config, metrics, pictures
            with trial.checkpoint.as_directory() as path:  # local storage: no copy
                self.client.log_artifacts(run_id, path)
        tracking.finish(self.client, run_id, "FINISHED" if finished else "KILLED")

    def on_trial_error(self, iteration, trials, trial, **info):
        run_id = self._run_id(trial)
        tracking.finish(self.client, run_id, "FAILED",
                        {"failure_reason": failure_reason(trial, self.watchdog)})


class ProgressLine(Callback):
    """A line per finished trial: its test metrics, its time, the stage's elapsed time and ETA."""

    def __init__(self, *, stage: str, total: int, estimates: dict[str, float] | None = None,
                 planned: float = 0.0, dry_run: bool = False, watchdog=None):
        """``estimates``: the plan's seconds for one trial of each cell; ``planned``: their sum
        over the stage's trials. The time left: ``time_left``."""
        self.stage, self.total, self.dry_run, self.watchdog = stage, total, dry_run, watchdog
        self.started: dict[str, float] = {}
        self.running: set[str] = set()  # started, not yet ended (a retried trial starts again)
        self.done = 0
        self.estimates, self.planned, self.estimated_done = estimates or {}, planned, 0.0
        self.took = 0.0  # the finished trials' seconds, against estimated_done
        self.first_start: float | None = None

    def get_state(self) -> dict:
        """The counts, kept in Tune's experiment snapshots, so that a resumed stage goes on
        counting where the snapshot left it."""
        return {"done": self.done, "estimated_done": self.estimated_done, "took": self.took,
                "elapsed": time.time() - self.first_start if self.first_start else None}

    def set_state(self, state: dict) -> None:
        self.done, self.estimated_done, self.took = (state["done"], state["estimated_done"],
                                                     state["took"])
        if state["elapsed"] is not None:  # elapsed: the sittings' time, not the time between
            self.first_start = time.time() - state["elapsed"]

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started.setdefault(trial.trial_id, time.time())
        self.running.add(trial.trial_id)
        self.first_start = self.first_start or time.time()

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        self._line(trial, "finished" if result.get(FINAL) else "stopped early", result)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._line(trial, f"FAILED: {failure_reason(trial, self.watchdog)}", trial.last_result or {})

    def _line(self, trial, status: str, result: dict) -> None:
        running = len(self.running | {trial.trial_id})  # this one included
        self.running.discard(trial.trial_id)
        self.done += 1
        secs = time.time() - self.started.get(trial.trial_id, time.time())
        params = flatten(trial.config)
        seed = params.get("config", {}).get("seed", "?")
        metrics = "  ".join(f"{k[5:] if k.startswith('test_') else k} {result[k]:.4f}"
                            for k in ("test_acc", "test_acc_fg", "test_fg_net", "test_bg_motion",
                                      "test_acc_zero", "test_epe", "test_attn_acc") if k in result)
        if not metrics and "val_fg_net" in result:
            metrics = f"val fg_net {result['val_fg_net']:.4f}"
        what = f"dry-run {self.stage}" if self.dry_run else self.stage
        console.say(f"[{self.done}/{self.total}] {what} {params.get('cell')} seed {seed}: "
                    f"{status}  {metrics}  ({secs:.0f} s){self._eta(params.get('cell'), secs, running)}")

    def _eta(self, cell: str | None, secs: float, running: int) -> str:
        """``  | 3m10s elapsed, ~5m20s left``: the stage's time so far and the estimate of the rest."""
        if cell in self.estimates:
            self.estimated_done += self.estimates[cell]
            self.took += secs
        if self.first_start is None:
            return ""
        text = f"  | {duration(time.time() - self.first_start)} elapsed"
        left = time_left(self.planned, self.estimated_done, self.took, running)
        return text if self.done >= self.total or left is None else f"{text}, ~{duration(left)} left"


def time_left(planned: float, estimated_done: float, took: float, running: int) -> float | None:
    """Seconds until a stage ends: the plan's remaining seconds, at the speed the finished trials
    ran against their estimates (``took`` seconds for ``estimated_done``), shared among the
    ``running`` trials. None before a trial with an estimate has finished."""
    if estimated_done <= 0 or took <= 0 or planned <= estimated_done:
        return None
    return (planned - estimated_done) * (took / estimated_done) / max(1, running)


def duration(seconds: float) -> str:
    """``45s``, ``12m05s``, ``3h02m``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def failure_reason(trial, watchdog=None) -> str:
    """One line: why the watchdog ended the trial, or the exception it raised."""
    return (watchdog and watchdog.reason(trial.trial_id)) or _error_reason(trial)


def _error_reason(trial) -> str:
    text = ""
    path = getattr(trial, "error_file", None)
    try:
        if path and Path(path).exists():
            text = Path(path).read_text()
    except OSError:
        pass
    text = text or str(getattr(trial, "error_msg", "") or "unknown error")
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    # The last line of a Python traceback names the exception: the most useful one-line reason.
    return (lines[-1] if lines else "unknown error")[:500]
