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
import warnings
from typing import Any

import optuna
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from orchestrator.trainable import FINAL, flatten
from search_spaces.space import Dist


def to_optuna(dist: Dist) -> optuna.distributions.BaseDistribution:
    """A space's ``Dist`` as the Optuna distribution its study samples from."""
    if dist.choices:
        return optuna.distributions.CategoricalDistribution(dist.choices)
    if dist.integer:
        return optuna.distributions.IntDistribution(dist.low, dist.high, log=dist.log)
    return optuna.distributions.FloatDistribution(dist.low, dist.high, log=dist.log)


def startup_trials(dims: int) -> int:
    """Trials a model-based sampler draws at random before its model guides it: one more than
    the hyperparameters searched, the point at which BOHB (Falkner et al., 2018) starts its model.
    Optuna's default, 10, is most of a search here (12-16 samples per cell): on the search
    benchmark's earlier cell, TPE at that default picked the same trials as random search in
    every repetition (benchmarks/README.md)."""
    return dims + 1


def make_sampler(name: str, seed: int, dims: int) -> optuna.samplers.BaseSampler:
    """``tpe`` (Optuna's TPE), ``random`` (the baseline a search must beat) or ``gp``, for a
    space of ``dims`` hyperparameters."""
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    kinds = {"tpe": optuna.samplers.TPESampler, "gp": optuna.samplers.GPSampler}
    return kinds[name](seed=seed, n_startup_trials=startup_trials(dims))


def sampler_label(name: str, dims: int) -> str:
    """What ``make_sampler(name, _, dims)`` does, in words (the parent run's ``sampler`` param)."""
    return name if name == "random" else f"{name}, its first {startup_trials(dims)} trials random"


def study_name(cell: str) -> str:
    """The name of a cell's Optuna study in a sweep's storage."""
    return f"search-{cell}"


def make_study(storage, cell: str, metric: str) -> optuna.Study:
    """The cell's study, its objective named after the metric (what optuna-dashboard shows)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per study created or loaded
    study = optuna.create_study(study_name=study_name(cell), storage=storage,
                                direction="maximize", load_if_exists=True)
    if study.metric_names != [metric]:
        with warnings.catch_warnings():  # set_metric_names is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([metric])
    study.set_user_attr("cell", cell)
    return study


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
        searcher = self.searchers[cell]
        values = searcher.suggest(trial_id)
        if values is None:
            return None
        # What optuna-dashboard shows beside each trial: its cell and Tune trial (the driver's
        # callback adds the MLflow run, ``link_run``).
        ot_trial = getattr(searcher, "_ot_trials", {}).get(trial_id)
        if ot_trial is not None:
            ot_trial.set_user_attr("cell", cell)
            ot_trial.set_user_attr("tune_trial_id", trial_id)
        return {**self.fixed[cell], **values}

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
            if result is not None and not result.get(FINAL):
                # Stopped early by ASHA: Optuna records it PRUNED (at its last reported value),
                # so an early value never passes for a final one (importances use COMPLETE only).
                result = None
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


def asha_settings(evaluations: int, grace_fraction: float, reduction_factor: int) -> dict:
    """``ASHAScheduler``'s settings for trials of ``evaluations`` reports and the final one with
    the test metrics: ``max_t`` lets every trial it does not stop reach that last report, and the
    first rung comes after ``grace_fraction`` of the evaluations."""
    return dict(max_t=evaluations + 1, grace_period=max(1, int(evaluations * grace_fraction)),
                reduction_factor=reduction_factor)


def cell_searches(space, state, fixed: dict[str, dict[str, Any]], configs: dict, *,
                  storage: str) -> tuple[CellSearches, CellSchedulers]:
    """Every cell's study (``state.sampler``, seeded with ``state.search_seed``) and scheduler
    (``state.scheduler``) behind Tune's two slots. ``fixed``: cell -> its trials' constant
    params; ``configs``: cell -> its RunConfig (for the number of reports ASHA lays rungs on)."""
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    metric = f"val_{space.metric}"
    distributions = {k: to_optuna(d) for k, d in space.search.items()}
    db = optuna.storages.RDBStorage(storage)
    searchers, schedulers, params = {}, {}, {}
    for cell, config in configs.items():
        make_study(db, cell, metric)
        sampler = make_sampler(state.sampler, state.search_seed, len(distributions))
        searchers[cell] = OptunaSearch(space=distributions, metric=metric, mode="max",
                                       study_name=study_name(cell), storage=db, sampler=sampler)
        evaluations = max(1, math.ceil(config.steps / config.eval_every))
        rungs: list[int] = []
        if state.scheduler == "asha":
            asha = asha_settings(evaluations, state.grace_fraction, state.reduction_factor)
            schedulers[cell] = ASHAScheduler(time_attr="training_iteration", metric=metric,
                                             mode="max", **asha)
            rungs = asha_rungs(**asha)
        else:
            schedulers[cell] = FIFOScheduler()
        params[cell] = {**fixed[cell], "checkpoint_at": rungs}  # checkpoints where ASHA judges
    return (CellSearches(params, searchers, state.samples, metric),
            CellSchedulers(schedulers))


def link_run(storage_url: str, cell: str, tune_trial_id: str, run_id: str) -> bool:
    """Record the MLflow run of a running search trial on its Optuna trial (``mlflow_run_id``)."""
    storage = optuna.storages.RDBStorage(storage_url)
    study_id = storage.get_study_id_from_name(study_name(cell))
    for t in storage.get_all_trials(study_id, deepcopy=False,
                                    states=(optuna.trial.TrialState.RUNNING,)):
        if t.user_attrs.get("tune_trial_id") == tune_trial_id:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            storage.set_trial_user_attr(trial_id, "mlflow_run_id", run_id)
            return True
    return False


def fail_unfinished(storage: str, study_names: list[str]) -> int:
    """Mark FAIL the Optuna trials still RUNNING once a search is done: those a killed driver
    had asked for after Tune's last snapshot, which the resumed search sampled anew."""
    closed = 0
    for name in study_names:
        study = optuna.load_study(study_name=name, storage=storage)
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            closed += 1
    return closed
