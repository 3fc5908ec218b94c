"""Fault drill: the MLflow server a sweep logs to goes away mid-sweep and comes back.

A real ``mlflow server`` (sqlite store) is stopped for about 20 s once the first trial has
finished, then started again on the same store and port. The sweep waits (and says so) instead
of dying, and MLflow ends with exactly one finished run per trial, each evaluation logged once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from conftest import REPO, free_port, mlflow_process, stop_group
from mlflow.tracking import MlflowClient

CELLS = ("baseline", "loss=l2", "noise=0.0", "disappear=True")
SETS = ("steps=30", "eval_every=10", "val_size=16", "test_size=32", "width=4", "depth=1")


def test_a_sweep_waits_out_its_mlflow_server_and_loses_or_repeats_nothing(tmp_path):
    port = free_port()
    server = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
              f"sqlite:///{tmp_path}/srv.db", "--default-artifact-root", str(tmp_path / "art"),
              "--host", "127.0.0.1", "--workers", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "RAY_ADDRESS": "local",
           "MOTIONCORE_TRACKING_URI": "", "MOTIONCORE_STORAGE_PATH": "", "MOTIONCORE_FAULT": ""}
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
