"""MLflow: one experiment per sweep name, one parent run per sweep, one child run per trial.

All logging happens in the sweep's driver (a Tune callback), so trials never open the
tracking store themselves: a local sqlite file sees one writer, and on a cluster only the
head needs to reach the server. Child runs are found again by (config hash, seed), so a
resumed sweep reattaches instead of duplicating them.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from motioncore.config import METRIC_NAMES as NAMES
from motioncore.config import UsageError

if TYPE_CHECKING:  # mlflow takes seconds to import: the sweep imports it while Ray starts
    from mlflow.tracking import MlflowClient

PARENT_TAG = "mlflow.parentRunId"


def default_uri(root: Path) -> str:
    return f"sqlite:///{(root / 'mlflow.db').resolve()}"


def is_local(uri: str) -> bool:
    """A store in a file on this host (created on first use)."""
    return uri.startswith("sqlite:")


def client_for(uri: str) -> MlflowClient:
    """A client for ``uri``, after checking the store answers (one clear line when it does not)."""
    if uri.startswith(("http://", "https://")):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    elif not uri.startswith(("http://", "https://", "postgresql", "mysql", "databricks")):
        raise UsageError(f"--tracking-uri {uri!r}: use sqlite:///PATH, http(s)://HOST:PORT or a "
                         "database URI (MLflow 3 has no file store)")
    for name in ("mlflow.store.db.utils", "alembic", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)  # schema set-up chatter on a new store
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as e:  # any failure here means no trial could be logged
        reason = str(e).splitlines()[0][:400] if str(e) else type(e).__name__
        raise UsageError(f"--tracking-uri {uri!r}: the tracking store does not answer ({reason})") \
            from None
    return client


def experiment_id(client: MlflowClient, name: str, artifact_root: Path | None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = artifact_root.resolve().as_uri() if artifact_root else None
    return client.create_experiment(name, artifact_location=location)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def start_parent(client: MlflowClient, exp_id: str, name: str, tags: dict[str, str]) -> str:
    run = client.create_run(exp_id, run_name=name, tags=tags)
    return run.info.run_id


def find_child(client: MlflowClient, exp_id: str, parent: str, tags: dict[str, str]):
    """The child run of ``parent`` for (stage, cell, config hash, seed), or None."""
    keys = ("stage", "cell", "config_hash", "seed")
    where = " and ".join(f"tags.{k} = '{tags[k]}'" for k in keys)
    runs = client.search_runs([exp_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent}' and {where}",
                              max_results=5)
    return runs[0] if runs else None


def start_child(client: MlflowClient, exp_id: str, parent: str, *, name: str, params: dict,
                tags: dict[str, str]) -> str:
    """Create the child run for a trial, or reattach to the one a previous attempt made."""
    from mlflow.entities import Param

    existing = find_child(client, exp_id, parent, tags)
    if existing is not None:
        client.update_run(existing.info.run_id, status="RUNNING")
        return existing.info.run_id
    run = client.create_run(exp_id, run_name=name, tags={PARENT_TAG: parent, **tags})
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    return run.info.run_id


TRAINING = ("train_loss", "lr", "samples_per_s")


def log_metrics(client: MlflowClient, run_id: str, metrics: dict, prefix: str, step: int,
                timestamp_ms: int) -> None:
    """The docs/conventions.md metrics of one evaluation, prefixed; the loop's own numbers unprefixed."""
    from mlflow.entities import Metric

    batch = [Metric(f"{prefix}{k}", float(metrics[k]), timestamp_ms, step)
             for k in NAMES if metrics.get(k) is not None]
    batch += [Metric(k, float(metrics[k]), timestamp_ms, step)
              for k in TRAINING if metrics.get(k) is not None]
    if batch:
        client.log_batch(run_id, metrics=batch)


def finish(client: MlflowClient, run_id: str, status: str, tags: dict[str, str] | None = None) -> None:
    if tags:
        from mlflow.entities import RunTag

        client.log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])
    client.set_terminated(run_id, status=status)


def child_runs(client: MlflowClient, exp_id: str, parent: str) -> list:
    return client.search_runs([exp_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent}'",
                              max_results=10_000)

