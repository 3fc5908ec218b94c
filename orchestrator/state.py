"""A sweep's state: everything a driver needs to run or resume it, saved as SWEEP_DIR/sweep.json."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from motioncore.config import UsageError

FILE = "sweep.json"


@dataclass
class SweepState:
    space: str  # the search space's name (search_spaces.names())
    dry_run: bool  # every cell at the plumbing budget of plan.DRY_RUN
    seeds: int  # replicates per cell: seeds 0..seeds-1 in every cell
    sets: dict[str, Any]  # --set overrides of config fields, in every cell
    cells: list[str] | None  # --cells: the cells run (None: all)
    samples: int  # Optuna trials per cell (0: the space has no search)
    max_concurrent: int  # trials at once
    cpus_per_trial: float
    gpus_per_trial: float | str  # a fraction, or "auto" until the probe has chosen
    max_failures: int  # retries of a failing trial
    tracking_uri: str  # the MLflow store every run is logged to
    experiment: str  # the MLflow experiment
    address: str | None  # the Ray cluster joined (None: a local Ray)
    storage_path: str  # Ray Tune's storage (a local path or s3://...)
    data_dir: str | None  # MNIST directory passed to every trial (None: each trial's default)
    sweep_dir: str  # absolute path of this sweep's directory
    parent_run_id: str = ""  # the sweep's MLflow parent run
    best: dict[str, dict[str, Any]] = field(default_factory=dict)  # cell -> its search's best values

    @property
    def path(self) -> Path:
        return Path(self.sweep_dir) / FILE

    def save(self) -> None:
        """Write sweep.json atomically: a killed driver leaves the old state or the new one."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=2))
        tmp.replace(self.path)

    def replace(self, **changes: Any) -> SweepState:
        return dataclasses.replace(self, **changes)

    @classmethod
    def load(cls, sweep_dir: str | Path) -> SweepState:
        """The state a sweep saved; one line naming the problem when it is missing or damaged."""
        path = Path(sweep_dir) / FILE
        if not path.is_file():
            raise UsageError(f"--resume {sweep_dir}: no {FILE} there; pass a directory a sweep "
                             "created")
        try:
            values = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UsageError(f"--resume {sweep_dir}: {FILE} is unreadable ({e}); it was damaged "
                             "after the sweep wrote it") from None
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        if not isinstance(values, dict) or set(values) - names or required - set(values):
            wrong = (sorted(set(values) - names) + sorted(required - set(values))
                     if isinstance(values, dict) else [type(values).__name__])
            raise UsageError(f"--resume {sweep_dir}: {FILE} is not a sweep's state (unexpected or "
                             f"missing: {', '.join(wrong)}); it was edited after the sweep wrote it")
        return cls(**values)
