"""The MLflow store helpers: new sqlite stores start from a cached empty schema."""

from __future__ import annotations

import sqlite3

from orchestrator import tracking


def _alembic(path) -> list:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT version_num FROM alembic_version").fetchall()


def test_new_sqlite_stores_start_from_a_cached_empty_schema(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = tmp_path / "a" / "mlflow.db"
    tracking.client_for(f"sqlite:///{first}")  # MLflow runs its migrations
    template = tracking._schema_template()
    assert template.parent == tmp_path / "cache" / "motioncore" and template.exists()
    with sqlite3.connect(template) as db:
        assert db.execute("SELECT COUNT(*) FROM experiments").fetchone() == (0,)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    second = tmp_path / "b" / "mlflow.db"
    client = tracking.client_for(f"sqlite:///{second}")  # a copy of the template
    assert _alembic(second) == _alembic(first)
    (default,) = client.search_experiments()
    assert default.name == "Default" and default.artifact_location == str(elsewhere / "mlruns" / "0")
    exp = tracking.experiment_id(client, "space", tmp_path / "artifacts")
    parent = tracking.start_parent(client, exp, "sweep", {"space": "space"})
    child = tracking.start_child(client, exp, parent, name="c-s0", params={"lr": 0.1},
                                 tags={"stage": "replicate", "cell": "c", "config_hash": "h", "seed": "0"})
    tracking.log_metrics(client, child, {"acc": 0.5}, "test_", 3, 0)
    assert client.get_run(child).data.metrics == {"test_acc": 0.5}
    assert tracking.child_runs(client, exp, parent)[0].info.run_id == child


def test_an_unwritable_cache_only_costs_time(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    client = tracking.client_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert not tracking._schema_template().exists()
