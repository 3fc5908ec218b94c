"""Every cell's search at once: one Optuna study and one ASHA bracket per cell behind one Tune run.

Tune runs one search algorithm and one scheduler per experiment, and one experiment at a time
per driver. ``CellSearches`` and ``CellSchedulers`` put each cell's own ``OptunaSearch`` and
``ASHAScheduler`` behind those two slots and route every trial to its cell's pair, so the cells'
searches share the cluster up to ``--max-concurrent`` trials in all, a cell's stragglers do not
hold up the next cell, and cells never compare metrics across each other.
"""

from __future__ import annotations

import math
import pickle
from typing import Any

import optuna
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from orchestrator.trainable import flatten


class CellSearches(Searcher):
    """Round-robin over the cells that still have samples left; each cell asks its own study.

    ``fixed``: cell id -> the constant params of its trials (cell, config, ...); ``searchers``:
    cell id -> an ``OptunaSearch`` with its space, metric and mode set; ``samples``: per cell.
    """

    def __init__(self, fixed: dict[str, dict[str, Any]], searchers: dict[str, Searcher],
                 samples: int, metric: str, mode: str = "max"):
        super().__init__(metric=metric, mode=mode)
        self.fixed, self.searchers, self.samples = fixed, searchers, samples
        self.asked = dict.fromkeys(fixed, 0)
        self.cell_of: dict[str, str] = {}  # Tune trial id -> cell id

    def suggest(self, trial_id: str) -> dict | str | None:
        if trial_id not in self.cell_of:
            open_cells = [c for c in self.fixed if self.asked[c] < self.samples]
            if not open_cells:
                return Searcher.FINISHED
            cell = min(open_cells, key=lambda c: self.asked[c])  # first in order among the least asked
            self.asked[cell] += 1
            self.cell_of[trial_id] = cell
        cell = self.cell_of[trial_id]
        values = self.searchers[cell].suggest(trial_id)
        return None if values is None else {**self.fixed[cell], **values}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.cell_of:
            try:
                self.searchers[self.cell_of[trial_id]].on_trial_result(trial_id, result)
            except optuna.exceptions.UpdateFinishedTrialError:
                # Told after Tune's last snapshot and trained again after a resume: the study
                # already holds its outcome.
                pass

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if trial_id in self.cell_of:
            self.searchers[self.cell_of[trial_id]].on_trial_complete(trial_id, result, error)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


class CellSchedulers(FIFOScheduler):
    """Each trial goes to its cell's own scheduler (ASHA); trials start in FIFO order."""

    def __init__(self, schedulers: dict[str, TrialScheduler]):
        super().__init__()
        self.schedulers = schedulers
        self._supports_buffered_results = all(s.supports_buffered_results
                                              for s in schedulers.values())

    def _of(self, trial) -> TrialScheduler:
        return self.schedulers[flatten(trial.config)["cell"]]

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return all(s.set_search_properties(metric, mode, **spec) for s in self.schedulers.values())

    def on_trial_add(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "\n".join(f"{cell}: {s.debug_string()}" for cell, s in self.schedulers.items())



def asha_rungs(max_t: int, grace_period: int, reduction_factor: int) -> list[int]:
    """The reports (``training_iteration``) at which an ``ASHAScheduler`` with these settings
    may stop a trial, as it lays out its rungs. A search trial checkpoints there, so that a
    stopped trial's last checkpoint is the report it was judged on."""
    count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    return [grace_period * reduction_factor ** k for k in range(count)]


def fail_unfinished(storage, study_names: list[str]) -> int:
    """Mark FAIL the Optuna trials still RUNNING once a search is done: those a killed driver
    had asked for after Tune's last snapshot, which the resumed search sampled anew."""
    closed = 0
    for name in study_names:
        study = optuna.load_study(study_name=name, storage=storage)
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            closed += 1
    return closed
