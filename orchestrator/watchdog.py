"""A trial that stops reporting (stopped, deadlocked, its node wedged) must not hold a sweep.

Tune waits for a trial's next result forever, and Ray sees a live process. ``Watchdog``, a
driver-side Tune callback, notes when each running trial last reported (or started); when the
gap passes the trial's limit, it kills the trial's worker, which Tune then treats as any crash:
the trial is retried from its last checkpoint up to ``--max-failures`` times, then recorded
failed with the reason the watchdog gives. The limit is generous: ``STALL_FACTOR`` times the
plan's estimate of one evaluation period (the plan is 10-35% off), plus ``STALL_GRACE_S`` for a
worker's start-up, unless ``--trial-timeout-s`` fixes it.
"""

from __future__ import annotations

import time

import ray
from ray.tune import Callback

STALL_FACTOR = 5.0
STALL_GRACE_S = 300.0


def limit_s(estimate_s: float, reports: int) -> float:
    """The default limit for a trial the plan puts at ``estimate_s`` seconds in ``reports``."""
    return STALL_GRACE_S + STALL_FACTOR * estimate_s / max(reports, 1)


class Watchdog(Callback):
    """Ends a trial's worker when it has not reported for its limit (``limits``: cell -> s)."""

    def __init__(self, limits: dict[str, float]):
        self.limits = limits
        self.seen: dict[str, float] = {}  # Tune trial id -> when it last reported or started
        self.stalled: dict[str, str] = {}  # Tune trial id -> why the watchdog ended it

    def __getstate__(self):  # restored by a resumed driver: its clock starts anew
        return {**self.__dict__, "seen": {}}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.seen[trial.trial_id] = time.monotonic()
        self.stalled.pop(trial.trial_id, None)

    def on_trial_restore(self, iteration, trials, trial, **info):
        self.on_trial_start(iteration, trials, trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.seen[trial.trial_id] = time.monotonic()

    def on_step_end(self, iteration, trials, **info):
        now = time.monotonic()
        for trial in trials:
            if trial.status != "RUNNING" or trial.trial_id in self.stalled:
                continue
            since = self.seen.setdefault(trial.trial_id, now)
            limit = self.limits.get(_cell(trial), max(self.limits.values(), default=3600.0))
            if now - since > limit:
                actor = getattr(getattr(trial, "temporary_state", None), "ray_actor", None)
                if actor is None:
                    continue
                self.stalled[trial.trial_id] = (f"stalled: no report for {now - since:.0f} s "
                                                f"(limit {limit:.0f} s, --trial-timeout-s); its "
                                                "worker was ended")
                ray.kill(actor, no_restart=True)

    def reason(self, trial_id: str) -> str | None:
        """Why the watchdog ended this trial's worker, if it did."""
        return self.stalled.get(trial_id)


def _cell(trial) -> str:
    config = trial.config
    return config.get("cell") or config.get("trial", {}).get("cell", "")
