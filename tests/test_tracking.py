"""The MLflow store helpers on a real sqlite store: parent and child runs, metrics, refusals."""

from __future__ import annotations

import pytest

from motioncore.config import UsageError
from orchestrator import store, tracking


def test_a_new_sqlite_store_holds_a_sweeps_parent_child_and_metrics(tmp_path):
    client = store.client_for(f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}")  # parent made too
    exp = tracking.experiment_id(client, "space", tmp_path / "artifacts")
    assert tracking.experiment_id(client, "space", tmp_path / "artifacts") == exp  # found again
    parent = tracking.start_parent(client, exp, "sweep", {"space": "space"})
    tags = {"stage": "replicate", "cell": "c", "config_hash": "h", "seed": "0"}
    child = tracking.start_child(client, exp, parent, name="c-s0", params={"lr": 0.1}, tags=tags)
    tracking.log_metrics(client, child, {"acc": 0.5, "bogus": 1.0}, "test_", 3, 0,
                         tags={"ray_node_id": "n1"})
    assert client.get_run(child).data.metrics == {"test_acc": 0.5}  # only the named metrics
    assert client.get_run(child).data.tags["ray_node_id"] == "n1"  # tags in the same call
    assert client.get_run(child).data.params == {"lr": "0.1"}
    assert [r.info.run_id for r in tracking.child_runs(client, exp, parent)] == [child]
    # a retried trial reattaches to its run instead of making a second one
    assert tracking.start_child(client, exp, parent, name="c-s0", params={}, tags=tags) == child
    # a fresh stage, which no earlier driver can have started, makes its runs without looking
    fresh = tracking.start_child(client, exp, parent, name="c-s0", params={}, tags=tags,
                                 reattach=False)
    assert fresh != child


@pytest.mark.parametrize("uri, named", [
    ("file:///tmp/mlruns", "no file store"),
    ("ftp://host/x", "use sqlite"),
    ("http://127.0.0.1:9/", "does not answer"),
])
def test_a_tracking_uri_mlflow_cannot_use_is_refused_in_one_line(uri, named):
    with pytest.raises(UsageError, match=named) as e:
        store.client_for(uri)
    assert uri in str(e.value) and "\n" not in str(e.value)


def test_runs_left_running_by_a_killed_driver_are_closed_and_say_why(tmp_path):
    client = store.client_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = tracking.experiment_id(client, "space", tmp_path / "artifacts")
    parent = tracking.start_parent(client, exp, "sweep", {"space": "space"})
    tags = {"stage": "search", "cell": "c", "config_hash": "h", "seed": "0"}
    done = tracking.start_child(client, exp, parent, name="a", params={}, tags=tags)
    tracking.log_metrics(client, done, {"acc": 0.5}, "val_", 10, 0)
    tracking.finish(client, done, "FINISHED")
    orphan = tracking.start_child(client, exp, parent, name="b", params={},
                                  tags={**tags, "config_hash": "other"}, reattach=False)
    assert tracking.logged_steps(client, done) == {"val_": 10}
    assert tracking.logged_steps(client, orphan) == {}
    assert tracking.close_orphans(client, exp, parent) == 1
    assert client.get_run(done).info.status == "FINISHED"  # untouched
    run = client.get_run(orphan)
    assert run.info.status == "KILLED" and run.data.tags["failure_reason"] == tracking.ORPHANED
    assert tracking.close_orphans(client, exp, parent) == 0
