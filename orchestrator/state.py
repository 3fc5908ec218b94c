"""A sweep's state: everything a driver needs to run or resume it, saved as SWEEP_DIR/sweep.json."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from motioncore.config import UsageError

FILE = "sweep.json"


@dataclass
class SweepState:
    space: str  # the search space's name (search_spaces.names())
    dry_run: bool  # every cell at the plumbing budget of plan.DRY_RUN
    seeds: list[int]  # the replicate seeds, the same in every cell (a count N means 0..N-1)
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
    # Seconds of training between a trial's checkpoints (0: every evaluation; the last report is
    # always checkpointed): what a retried or resumed trial may have to train again.
    checkpoint_every_s: float = 30.0
    best: dict[str, dict[str, Any]] = field(default_factory=dict)  # cell -> its search's best values
    # The seed a search trains and samples with, kept apart from the replicate seeds: a recipe
    # is chosen on one seed and confirmed on others.
    search_seed: int = 1000
    sampler: str = "tpe"  # Optuna sampler (space.SAMPLERS); tpe: what states without it ran
    scheduler: str = "asha"  # its early stopping: asha | none
    grace_fraction: float = 0.25  # ASHA: the fraction of its reports a trial runs at least
    reduction_factor: int = 2  # ASHA: a rung keeps 1 / reduction_factor of its trials
    trial_timeout_s: float = 0.0  # a trial not reporting this long is ended (0: from the plan)
    code: str = ""  # the code the sweep runs (code_version()); a resume on other code is refused

    @property
    def path(self) -> Path:
        return Path(self.sweep_dir) / FILE

    @property
    def study_storage(self) -> str:
        return study_storage(self.sweep_dir)

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
        if isinstance(values.get("seeds"), int):  # a sweep of an older version: a count
            values["seeds"] = list(range(values["seeds"]))
        state = cls(**values)
        if Path(state.sweep_dir).resolve() != Path(sweep_dir).resolve():
            raise UsageError(f"--resume {sweep_dir}: its {FILE} belongs to sweep {state.sweep_dir} "
                             "(a copied or moved directory); resume that one")
        return state


def study_storage(sweep_dir: str | Path) -> str:
    """Where a sweep's Optuna studies live (one per searched cell): SWEEP_DIR/optuna.db."""
    return f"sqlite:///{Path(sweep_dir).resolve()}/optuna.db"


def code_version() -> str:
    """The code a sweep runs: the commit, with ``+dirty.<hash of the diff>`` when the work tree
    differs from it, so two dirty trees compare equal only when their changes are the same."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10).stdout

    try:
        head = git("rev-parse", "HEAD").strip()
        if not head:
            return "unknown"
        diff = git("diff", "HEAD")  # the whole work tree, wherever git runs
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+dirty.{hashlib.sha1(diff.encode()).hexdigest()[:8]}" if diff else head


def short_code(code: str) -> str:
    """``code_version`` for a message: the commit's first 12 characters and any dirty suffix,
    which tells two dirty trees of the same commit apart."""
    head, plus, dirty = code.partition("+")
    return head[:12] + plus + dirty


def check_trusted(state: SweepState, remote_trusted: bool) -> None:
    """Refuse to resume from storage someone else could have written: Tune's restore unpickles
    its state (``tuner.pkl``), and a pickle runs code. Local: every directory and file of the
    sweep and its storage must be this user's and writable by no one else. Remote storage
    cannot be checked: ``--trust-storage`` says its access is controlled."""
    if "://" in state.storage_path:
        if not remote_trusted:
            raise UsageError(f"--resume {state.sweep_dir}: its Tune state lies in "
                             f"{state.storage_path}, whose owner cannot be checked from here, and "
                             "resuming unpickles it; pass --trust-storage if only you can write it")
        roots = [Path(state.sweep_dir)]
    else:
        roots = [Path(state.sweep_dir), Path(state.storage_path)]
    me = os.getuid()
    for root in roots:
        for path in [root, *(root.rglob("*") if root.is_dir() else [])]:
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            if st.st_uid != me or st.st_mode & 0o022:
                who = "another user" if st.st_uid != me else "group or others can write it"
                raise UsageError(f"--resume {state.sweep_dir}: {path} is not safe to load ({who}); "
                                 "resuming unpickles Tune's state, so only your own, private "
                                 "files are loaded (chmod go-w, or copy the sweep as yourself)")


LOCK = "driver.lock"


class DriverLock:
    """SWEEP_DIR/driver.lock while a driver works on the sweep: a second driver is refused.

    The lock names its owner's pid and host. A lock whose pid is gone from this host was left
    by a killed driver and is taken over; one held on another host can only be judged there.
    """

    def __init__(self, sweep_dir: str | Path):
        self.path = Path(sweep_dir) / LOCK
        self.held = False

    def __enter__(self) -> DriverLock:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and not self._stale(owner):
                    raise UsageError(
                        f"sweep {self.path.parent} is in use by driver pid {owner.get('pid')} on "
                        f"{owner.get('host')} (since {time.ctime(owner.get('since', 0))}); wait "
                        f"for it, or remove {self.path} if that driver is gone") from None
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()  # stale: its driver was killed
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise UsageError(f"sweep {self.path.parent}: could not take {self.path}")

    def __exit__(self, *exc) -> None:
        if self.held:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.held = False

    def _owner(self) -> dict | None:
        try:
            owner = json.loads(self.path.read_text())
            return owner if isinstance(owner, dict) else {}
        except FileNotFoundError:
            return None  # released meanwhile
        except (OSError, ValueError):
            return {}  # half-written by a driver killed while taking it: stale

    @staticmethod
    def _stale(owner: dict) -> bool:
        if not owner or "pid" not in owner:
            return True
        if owner.get("host") != socket.gethostname():
            return False
        try:
            os.kill(int(owner["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError, OverflowError):
            return False
        return False
