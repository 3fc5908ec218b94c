"""Fault drills with the real parts: the MLflow server goes away mid-sweep, a node goes away.

A real ``mlflow server`` (sqlite store) is stopped for about 20 s once the first trial has
finished, then started again on the same store and port. The sweep waits (and says so) instead
of dying, and MLflow ends with exactly one finished run per trial, each evaluation logged once.
On a real two-node ``ray.cluster_utils.Cluster``, the node running a trial is removed mid-trial.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port, isolated_env, mlflow_process, stop_group
from mlflow.tracking import MlflowClient

from orchestrator import store

CELLS = ("baseline", "loss=l2", "noise=0.0", "inputs=frames")
SETS = ("steps=30", "eval_every=10", "val_size=16", "test_size=32", "width=4", "depth=1")


def test_a_sweep_waits_out_its_mlflow_server_and_loses_or_repeats_nothing(tmp_path):
    port = free_port()
    server = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
              f"sqlite:///{tmp_path}/srv.db", "--default-artifact-root", str(tmp_path / "art"),
              "--host", "127.0.0.1", "--workers", "1"]
    env = isolated_env()
    lines: list[str] = []
    with mlflow_process(server, tmp_path, port) as url:
        sweep = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.sweep", "--space", "ablation", "--cells",
             ",".join(CELLS), "--seeds", "1", "--tracking-uri", url, "--out", str(tmp_path / "out"),
             *[a for s in SETS for a in ("--set", s)]],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            for line in sweep.stdout:  # the server goes away once the first trial has finished
                lines.append(line)
                if line.startswith("[1/") or time.monotonic() > deadline:
                    break
        except BaseException:
            stop_group(sweep)
            raise
    try:
        assert any(line.startswith("[1/") for line in lines), "".join(lines)[-3000:]
        time.sleep(20)  # the server is down; the sweep's trials go on
        with mlflow_process(server, tmp_path, port) as url:
            out, _ = sweep.communicate(timeout=400)
            lines.append(out)
            client = MlflowClient(url)
            exp = client.get_experiment_by_name("ablation").experiment_id
            runs = client.search_runs([exp], max_results=100)
            children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
            histories = {r.data.tags["cell"]: client.get_metric_history(r.info.run_id, "val_acc_fg")
                         for r in children}
    finally:
        stop_group(sweep)
    text = "".join(lines)
    assert sweep.returncode == 0, text[-4000:]
    assert "does not answer; waiting for it" in text and "is back after" in text
    assert sorted(r.data.tags["cell"] for r in children) == sorted(CELLS)  # one run per trial
    assert {r.info.status for r in runs} == {"FINISHED"}
    for cell, history in histories.items():  # every evaluation once: steps 10, 20, 30
        assert sorted(m.step for m in history) == [10, 20, 30], (cell, [m.step for m in history])
    assert all("test_acc_fg" in r.data.metrics for r in children)


@pytest.mark.parametrize("every", [0, 1000], ids=["checkpoint-every-evaluation",
                                                    "no-checkpoint-before-the-end"])
def test_a_trial_whose_node_is_removed_goes_on_on_another(tmp_path, every):
    """A real two-node drill: the node running the only trial is removed (its processes killed)
    while the trial trains (it asks for 2 CPUs, which only that node has). Tune retries the
    trial on a node added meanwhile, from its last checkpoint: with one per evaluation it goes on
    where it stopped; with none yet it trains again from the start. Either way MLflow ends with
    one FINISHED child for the (cell, seed), every evaluation logged once."""
    from ray.cluster_utils import Cluster

    fast_health = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                   "health_check_failure_threshold": 3}
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "_system_config": fast_health})
    doomed = cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    env = isolated_env(RAY_ADDRESS="")  # the cluster is given by --address
    sets = ("steps=240", "eval_every=40", "val_size=16", "test_size=32", "width=8", "depth=1")
    sweep = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.sweep", "--space", "seed_table", "--cells",
         "sup_T3_r1", "--seeds", "1", "--cpus-per-trial", "2", "--address", cluster.address,
         "--checkpoint-every-s", str(every), "--out", str(tmp_path / "out"),
         *[a for s in sets for a in ("--set", s)]],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    uri = f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}"
    try:
        deadline = time.monotonic() + 240
        while len(_val_steps(uri)) < 2:  # two evaluations logged: the trial is mid-way
            assert sweep.poll() is None and time.monotonic() < deadline, sweep.stdout.read()[-3000:]
            time.sleep(0.2)
        survivor = cluster.add_node(num_cpus=2)
        cluster.remove_node(doomed, allow_graceful=False)
        out, _ = sweep.communicate(timeout=400)
    finally:
        stop_group(sweep)
        cluster.shutdown()
    assert sweep.returncode == 0, out[-4000:]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("seed_table").experiment_id
    children = [r for r in client.search_runs([exp]) if "mlflow.parentRunId" in r.data.tags]
    assert [(r.data.tags["cell"], r.data.tags["seed"], r.info.status) for r in children] == [
        ("sup_T3_r1", "0", "FINISHED")]
    (child,) = children
    assert child.data.tags["ray_node_id"] == survivor.node_id  # it finished on the other node
    assert _val_steps(uri) == [40, 80, 120, 160, 200, 240]  # each evaluation logged once
    assert "test_acc_fg" in child.data.metrics
    # What Tune received: from the checkpoint of the last evaluation, the trial went on; without
    # one, it trained the first evaluations again (MLflow above logged them once all the same).
    (results,) = (tmp_path / "out").glob("*/ray/replicate/*/result.json")
    reports = [json.loads(line) for line in results.read_text().splitlines()]
    received = [r["step"] for r in reports if not r.get("final")]  # the evaluations
    repeated = sorted(step for step in set(received) if received.count(step) > 1)
    if every == 0:
        assert repeated == [], received
    else:
        assert 40 in repeated and 80 in repeated, received


def _val_steps(uri: str) -> list[int]:
    """The steps of the only child run's logged ``val_acc_fg`` (empty before it exists)."""
    if not Path(uri[len("sqlite:///"):]).exists():
        return []
    client = store.client_for(uri)  # waits while the sweep creates the store's schema
    try:
        exp = client.get_experiment_by_name("seed_table")
    except Exception:  # the store is still being made
        return []
    runs = [r for r in client.search_runs([exp.experiment_id])
            if "mlflow.parentRunId" in r.data.tags] if exp else []
    if not runs:
        return []
    return sorted(m.step for m in client.get_metric_history(runs[0].info.run_id, "val_acc_fg"))
