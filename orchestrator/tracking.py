"""MLflow: one experiment per sweep name, one parent run per sweep, one child run per trial.

All logging happens in the sweep's driver (a Tune callback), so trials never open the
tracking store themselves: a local sqlite file sees one writer, and on a cluster only the
head needs to reach the server. Child runs are found again by (config hash, seed), so a
resumed sweep reattaches instead of duplicating them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from motioncore.config import METRIC_NAMES as NAMES

if TYPE_CHECKING:  # mlflow takes seconds to import: the sweep imports it while Ray starts
    from mlflow.tracking import MlflowClient

PARENT_TAG = "mlflow.parentRunId"
NOTE = "mlflow.note.content"  # what the MLflow UI shows as a run's description
DRY_RUN_NOTE = ("DRY RUN: a plumbing check at a tiny budget; its numbers say the code runs, "
                "not how well anything learns.")


def experiment_id(client: MlflowClient, name: str, artifact_root: Path | None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = artifact_root.resolve().as_uri() if artifact_root else None
    return client.create_experiment(name, artifact_location=location)


def start_parent(client: MlflowClient, exp_id: str, name: str, tags: dict[str, str],
                 params: dict[str, object] | None = None, note: str = "") -> str:
    """The sweep's run: its settings as params, ``note`` as its description until the table."""
    from mlflow.entities import Param

    run = client.create_run(exp_id, run_name=name, tags={**tags, **({NOTE: note} if note else {})})
    if params:
        client.log_batch(run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
    return run.info.run_id


def has_run(client: MlflowClient, run_id: str, exp_id: str) -> bool:
    """Whether this store holds run ``run_id`` in experiment ``exp_id``."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id).info.experiment_id == exp_id
    except MlflowException:
        return False


def child_note(cell: str, seed: int, design: str, stage: str, dry_run: bool) -> str:
    """A child run's description: what it is, in words."""
    what = "Optuna search trial" if stage == "search" else "replicate"
    text = f"{what} of cell `{cell}`, seed {seed}" + (f", design: {design}" if design else "")
    return f"{DRY_RUN_NOTE}\n\n{text}" if dry_run else text


def table_note(table: str, dry_run: bool) -> str:
    """The parent run's description once the sweep is done: its ablation table (markdown), its
    title in bold rather than as a heading (the UI draws a heading too large for the panel)."""
    head, _, rest = table.partition("\n")
    table = f"**{head.removeprefix('# ')}**\n{rest}" if head.startswith("# ") else table
    text = f"{DRY_RUN_NOTE}\n\n{table}" if dry_run else table
    limit = 7900  # MLflow keeps tag values up to 8,000 characters
    if len(text) <= limit:
        return text
    return text[:limit] + "\n\n(cut: the whole table is the ablation.md artifact)"


VIEW_COLUMNS = ["attributes.`Run Name`", *(f"metrics.`test_{m}`" for m in (
    "acc", "acc_fg", "fg_net", "bg_motion", "acc_zero", "epe")), *(f"params.`{p}`" for p in (
    "supervision", "frames", "motion_range", "attention", "steps", "seed"))]


def share_view(client: MlflowClient, exp_id: str, parent: str) -> str:
    """Save the sweep's view of the runs table as an MLflow shared view; return its key.

    The view shows this sweep's trials grouped by cell (each group's row: the mean over its
    seeds), the test metrics and the cell-defining params as columns, and every run (the UI
    hides all but 10 by default). MLflow's UI reads it from the experiment tag
    ``mlflow.sharedViewState.<key>`` when the link carries ``viewStateShareKey=<key>``."""
    import json

    state = {"selectedColumns": VIEW_COLUMNS, "runsHiddenMode": "SHOW_ALL",
             "searchFilter": f"tags.`{PARENT_TAG}` = '{parent}'",
             "groupBy": {"aggregateFunction": "average",
                         "groupByKeys": [{"mode": "tag", "groupByData": "cell"}]}}
    client.set_experiment_tag(exp_id, f"mlflow.sharedViewState.{parent}", json.dumps(state))
    return parent


def ui_hint(uri: str, exp_id: str, view: str = "", port: int = 5000) -> str:
    """How to look at a sweep: the command that serves the store (when it is a local file) and
    the address of the experiment's runs in MLflow's model-training view (``view``: a key of
    ``share_view``)."""
    import sys

    view = (f"#/experiments/{exp_id}/runs?workflowType=machine_learning"
            + (f"&viewStateShareKey={view}" if view else ""))
    if uri.startswith(("http://", "https://")):
        return f"open {uri.rstrip('/')}/{view}"
    mlflow = Path(sys.executable).with_name("mlflow")
    return (f"{mlflow} ui --backend-store-uri {uri} --workers 1 --port {port}\n"
            f"  then open http://127.0.0.1:{port}/{view}")


def find_child(client: MlflowClient, exp_id: str, parent: str, tags: dict[str, str]):
    """The child run of ``parent`` for (stage, cell, config hash, seed), or None; in a search,
    also for the Tune trial (two samples may draw the same configuration)."""
    keys = ("stage", "cell", "config_hash", "seed")
    if tags.get("stage") == "search" and "tune_trial_id" in tags:
        keys += ("tune_trial_id",)
    where = " and ".join(f"tags.{k} = '{tags[k]}'" for k in keys)
    runs = client.search_runs([exp_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent}' and {where}",
                              max_results=5)
    return runs[0] if runs else None


def start_child(client: MlflowClient, exp_id: str, parent: str, *, name: str, params: dict,
                tags: dict[str, str], reattach: bool = True) -> str:
    """Create the child run for a trial, or (``reattach``) reattach to the one a previous
    attempt made."""
    from mlflow.entities import Param

    existing = find_child(client, exp_id, parent, tags) if reattach else None
    if existing is not None:
        client.update_run(existing.info.run_id, status="RUNNING")
        return existing.info.run_id
    run = client.create_run(exp_id, run_name=name, tags={PARENT_TAG: parent, **tags})
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    return run.info.run_id


# trial_s: the trial's running time (Tune's time_total_s), logged with its test metrics
TRAINING = ("train_loss", "lr", "samples_per_s", "trial_s")


def logged_steps(client: MlflowClient, run_id: str) -> dict[str, int]:
    """The last step a run has ``val_`` and ``test_`` metrics for (absent: none logged)."""
    steps = {}
    for prefix in ("val_", "test_"):
        history = client.get_metric_history(run_id, f"{prefix}acc")
        if history:
            steps[prefix] = max(m.step for m in history)
    return steps


def log_metrics(client: MlflowClient, run_id: str, metrics: dict, prefix: str, step: int,
                timestamp_ms: int, tags: dict[str, str] | None = None) -> None:
    """The docs/conventions.md metrics of one evaluation, prefixed; the loop's own numbers
    unprefixed; ``tags`` in the same call."""
    from mlflow.entities import Metric, RunTag

    batch = [Metric(f"{prefix}{k}", float(metrics[k]), timestamp_ms, step)
             for k in NAMES if metrics.get(k) is not None]
    batch += [Metric(k, float(metrics[k]), timestamp_ms, step)
              for k in TRAINING if metrics.get(k) is not None]
    run_tags = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    if batch or run_tags:
        client.log_batch(run_id, metrics=batch, tags=run_tags)


def finish(client: MlflowClient, run_id: str, status: str, tags: dict[str, str] | None = None) -> None:
    if tags:
        from mlflow.entities import RunTag

        client.log_batch(run_id, tags=[RunTag(k, str(v)[:8000]) for k, v in tags.items()])
    client.set_terminated(run_id, status=status)


def child_runs(client: MlflowClient, exp_id: str, parent: str) -> list:
    """A sweep's trial runs, the earliest started first."""
    return client.search_runs([exp_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent}'",
                              order_by=["attributes.start_time ASC"], max_results=10_000)


ORPHANED = ("orphaned: its driver stopped before the trial ended, and the resumed sweep went "
            "on without it (a search samples its trials anew)")


def close_orphans(client: MlflowClient, exp_id: str, parent: str) -> int:
    """Mark KILLED the child runs still RUNNING once every stage is done: trials a killed
    driver had started after Tune's last snapshot (a search samples them anew, so no later run
    reattaches to them). Returns how many."""
    running = [r for r in child_runs(client, exp_id, parent) if r.info.status == "RUNNING"]
    for run in running:
        finish(client, run.info.run_id, "KILLED", {"failure_reason": ORPHANED})
    return len(running)

