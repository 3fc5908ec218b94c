"""What a new user sees in MLflow, checked in a real browser (headless Chromium).

A real sweep (two cells, two seeds, a tiny budget) logs to a sqlite store; the MLflow UI
command the sweep prints is run as printed (on a free port); Chromium loads the link it prints.
Skipped where Debian's ``chromium`` is not installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port, mlflow_process

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium in headless mode")
REPO = Path(__file__).resolve().parents[1]
TINY = ("steps=4", "eval_every=2", "val_size=16", "test_size=32", "width=4", "depth=1")


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """(runs page URL, parent run page URL, printed sweep output) with the printed UI running."""
    root = tmp_path_factory.mktemp("ui")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "RAY_ADDRESS": "local",
           "MOTIONCORE_TRACKING_URI": "", "MOTIONCORE_STORAGE_PATH": ""}
    sets = [a for s in TINY for a in ("--set", s)]
    done = subprocess.run([sys.executable, "-m", "orchestrator.sweep", "--space", "demo", "--cells",
                           "sup_T3_r1,unsup_T3_r1", "--seeds", "2", "--out", "sweeps", *sets],
                          cwd=root, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    command = re.search(r"browse them in MLflow: (.*) --port 5000\n", out).group(1)
    link = re.search(r"then open (http://127\.0\.0\.1:5000/\S+)", out).group(1)
    parent = re.search(r"MLflow parent run (\w+)", out).group(1)
    elsewhere = tmp_path_factory.mktemp("elsewhere")  # the printed command works from anywhere
    with mlflow_process(shlex.split(command), elsewhere, free_port()) as base:
        runs = link.replace("http://127.0.0.1:5000", base)
        exp = re.search(r"experiments/(\d+)/", runs).group(1)
        yield runs, f"{base}/#/experiments/{exp}/runs/{parent}?workflowType=machine_learning", out


def render(url: str, tmp: Path, name: str) -> str:
    """The page's DOM after its scripts ran, and a screenshot beside it."""
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
            "--virtual-time-budget=25000", f"--user-data-dir={tmp / 'profile'}"]
    subprocess.run([*args, f"--screenshot={tmp / name}.png", url], capture_output=True, timeout=180)
    dom = subprocess.run([*args, "--dump-dom", url], capture_output=True, text=True, timeout=180)
    return dom.stdout


def test_the_printed_link_opens_the_sweeps_runs_not_the_traces_overview(ui, tmp_path):
    runs, _, out = ui
    assert "workflowType=machine_learning" in runs
    dom = render(runs, tmp_path, "runs")
    assert "Model training" in dom and "Group by: cell" in dom  # the runs table, by cell
    for cell in ("sup_T3_r1", "unsup_T3_r1"):
        assert f"Group: {cell}" in dom, cell
        for seed in (0, 1):
            assert f"{cell}-s{seed}" in dom  # every trial, listed under its cell
    assert "test_acc_fg" in dom and "test_acc_zero" in dom  # the metric columns
    assert "Additional runs" in dom  # the sweep's parent run
    assert "No traces" not in dom and "Traces overview" not in dom


def test_the_parent_run_shows_the_ablation_table_as_its_description(ui, tmp_path):
    _, parent, _ = ui
    dom = render(parent, tmp_path, "parent")
    assert "DEMO BUDGET" in dom and "acc_fg %" in dom and "sup_T3_r1" in dom
    assert "paired difference" in dom
