"""Nothing lost: a SIGKILLed sweep resumes, failing trials are recorded, a two-node cluster works.

Real Ray (a local one started by the CLI, or a two-node ``ray.cluster_utils.Cluster``), real
MLflow (sqlite, or a real ``mlflow server`` process), no mocks.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import REPO, isolated_env, stop_group
from mlflow.tracking import MlflowClient

from motioncore.train import fit
from orchestrator import tracking
from orchestrator.plan import cell_config, parse_sets
from search_spaces import load

SETS = ("steps=4", "eval_every=2", "val_size=16", "test_size=32")
PARENT_TAG = "mlflow.parentRunId"
DRILLS = REPO / "tests" / "drills"  # its sitecustomize.py sabotages the runs DRILL_FAULTS names


# A shell's background job (`make test &`) starts with SIGINT ignored, and Python then installs
# no KeyboardInterrupt handler: a sweep that must take Ctrl-C installs it back first.
CTRL_C = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
          "sys.argv[0] = 'sweep'; runpy.run_module('orchestrator.sweep', run_name='__main__')")


def _sweep(cwd: Path, *args: str, env: dict | None = None,
           ctrl_c: bool = False) -> subprocess.Popen:
    cmd = [sys.executable, *(("-c", CTRL_C) if ctrl_c else ("-m", "orchestrator.sweep")), *args]
    return subprocess.Popen(cmd, cwd=cwd, env=isolated_env(**(env or {})), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def drill_env(faults: str) -> dict[str, str]:
    """A sweep's environment for a failure drill: ``faults`` is ``FIELD=VALUE:KIND,...``."""
    return {"PYTHONPATH": os.pathsep.join([str(DRILLS), str(REPO)]), "DRILL_FAULTS": faults}


def _wait(proc: subprocess.Popen, timeout: float = 600) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_group(proc)
        pytest.fail("sweep did not finish in time")
    assert proc.returncode == 0, out[-4000:]
    return out


def _runs(uri: str, experiment: str):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if PARENT_TAG not in r.data.tags]
    children = [r for r in runs if PARENT_TAG in r.data.tags]
    return parents, children


def _sets() -> list[str]:
    return [a for s in SETS for a in ("--set", s)]


def test_killed_sweep_resumes_without_losing_or_duplicating_anything(tmp_path):
    cells = ["baseline", "loss=l2", "noise=0.0", "inputs=frames", "attention=none", "frames=3"]
    proc = _sweep(tmp_path, "--space", "ablation", "--dry-run", "--cells", ",".join(cells),
                  "--max-concurrent", "2", "--out", "out", *_sets())
    finished, lines = 0, []
    deadline = time.monotonic() + 600
    for line in proc.stdout:  # SIGKILL the driver (and its Ray) once two trials have finished
        lines.append(line)
        finished += bool(re.match(r"\[\d+/6\] (dry-run )?replicate", line))
        if finished == 2 or time.monotonic() > deadline:
            break
    assert finished == 2, "".join(lines)[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (sweep_dir,) = [d for d in (tmp_path / "out").iterdir() if d.name.startswith("ablation-")]
    assert not (sweep_dir / "results.parquet").exists()

    out = _wait(_sweep(tmp_path, "--resume", str(sweep_dir)))
    assert "resuming sweep" in out
    uri = f"sqlite:///{(tmp_path / 'out' / 'mlflow.db').resolve()}"
    parents, children = _runs(uri, "ablation")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    keys = [(r.data.tags["cell"], r.data.tags["seed"]) for r in children]
    assert sorted(keys) == sorted((c, "0") for c in cells), keys  # one child per (cell, seed)
    assert {r.info.status for r in children} == {"FINISHED"}

    rows = pq.read_table(sweep_dir / "results.parquet").to_pylist()
    assert sorted(r["cell"] for r in rows) == sorted(cells)
    assert {r["status"] for r in rows} == {"finished"}
    # The resumed tables equal an uninterrupted run: training is deterministic and resumes
    # exactly, so every trial's test metrics match the same configuration trained in one go.
    space = load("ablation")
    for row in rows:
        config = cell_config(space, space.cell(row["cell"]), dry_run=True, sets=parse_sets(list(SETS)))
        _, test = fit(config)
        for name in ("acc", "acc_fg", "epe", "recon_l1"):
            assert row[f"test_{name}"] == pytest.approx(test[name], abs=1e-9), (row["cell"], name)


def test_a_sweep_killed_in_its_searches_resumes_each_cells_search(tmp_path):
    """Both cells' searches are under way when the driver is SIGKILLed; the resumed sweep ends
    every cell's search with its full sample count and replicates each cell's best."""
    import optuna

    from orchestrator.plan import DRY_RUN_SAMPLES

    proc = _sweep(tmp_path, "--space", "hpo", "--dry-run", "--out", "out", *_sets())
    lines = []
    deadline = time.monotonic() + 600
    for line in proc.stdout:  # SIGKILL the driver (and its Ray) once one search trial is done
        lines.append(line)
        if re.match(r"\[1/\d+\] dry-run search", line) or time.monotonic() > deadline:
            break
    assert any(re.match(r"\[1/\d+\] dry-run search", ln) for ln in lines), "".join(lines)[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (sweep_dir,) = [d for d in (tmp_path / "out").iterdir() if d.name.startswith("hpo-")]

    out = _wait(_sweep(tmp_path, "--resume", str(sweep_dir)))
    assert "resuming sweep" in out
    uri = f"sqlite:///{(tmp_path / 'out' / 'mlflow.db').resolve()}"
    (parent,), children = _runs(uri, "hpo")
    assert parent.info.status == "FINISHED"
    cells = [c.id for c in load("hpo").cells]
    replicate = [r for r in children if r.data.tags["stage"] == "replicate"]
    assert sorted(r.data.tags["cell"] for r in replicate) == sorted(cells)
    for cell in cells:
        study = optuna.load_study(study_name=f"search-{cell}",
                                  storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
        states = [t.state for t in study.trials]
        assert optuna.trial.TrialState.RUNNING not in states, (cell, states)
        told = [s for s in states if s in (optuna.trial.TrialState.COMPLETE,
                                           optuna.trial.TrialState.PRUNED)]
        # A trial the killed driver began and finished after Tune's last snapshot is kept (the
        # study learned from it) and the resumed search samples one more: up to two extra.
        assert DRY_RUN_SAMPLES <= len(told) <= DRY_RUN_SAMPLES + 2, (cell, states)
        ended = [r for r in children if r.data.tags["stage"] == "search"
                 and r.data.tags["cell"] == cell
                 and r.data.tags.get("failure_reason") != tracking.ORPHANED]
        assert len(ended) == len(told), cell  # one MLflow run per told sample, no repeats
    # Nothing is left RUNNING: the run of a trial the killed driver had begun after Tune's last
    # snapshot, which the resumed search does not know, is marked as orphaned.
    assert {r.info.status for r in children} <= {"FINISHED", "KILLED"}


def test_ctrl_c_marks_the_parent_killed_and_the_sweep_resumes_to_the_end(tmp_path):
    cells = ["baseline", "loss=l2", "noise=0.0", "inputs=frames"]
    longer = [a for s in ("steps=40", "eval_every=20") for a in ("--set", s)]
    proc = _sweep(tmp_path, "--space", "ablation", "--dry-run", "--cells", ",".join(cells),
                  "--out", "out", *_sets(), *longer, ctrl_c=True)
    out = _ctrl_c_at(proc, r"\[1/4\]")  # once the first trial has finished
    assert proc.returncode == 130, out[-3000:]
    uri = f"sqlite:///{(tmp_path / 'out' / 'mlflow.db').resolve()}"
    (parent,), _ = _runs(uri, "ablation")
    assert parent.info.status == "KILLED"  # not FINISHED with a partial table
    assert "--resume" in parent.data.tags["failure_reason"]
    (sweep_dir,) = [d for d in (tmp_path / "out").iterdir() if d.name.startswith("ablation-")]
    assert not (sweep_dir / "ablation.md").exists()
    # A resumed sweep takes Ctrl-C the same way: killed, no partial table, resumable.
    proc = _sweep(tmp_path, "--resume", str(sweep_dir), ctrl_c=True)
    out = _ctrl_c_at(proc, r"\[\d/4\]")
    assert proc.returncode == 130, out[-3000:]
    assert "Configuration for experiment" not in out  # our lines, not Tune's boxes
    (parent,), _ = _runs(uri, "ablation")
    assert parent.info.status == "KILLED"
    assert not (sweep_dir / "ablation.md").exists()
    out = _wait(_sweep(tmp_path, "--resume", str(sweep_dir)))
    assert "[4/4]" in out  # the count goes on across sittings
    (parent,), children = _runs(uri, "ablation")
    assert parent.info.status == "FINISHED" and len(children) == len(cells)
    assert {r.info.status for r in children} == {"FINISHED"}


def _ctrl_c_at(proc: subprocess.Popen, pattern: str) -> str:
    """Ctrl-C at the sweep's first line matching ``pattern``; everything it printed."""
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if re.match(pattern, line):
            proc.send_signal(signal.SIGINT)
            break
    return "".join(lines) + _finish(proc)


def _finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        stop_group(proc)
        pytest.fail("the interrupted sweep did not stop")


def test_the_product_reads_no_fault_switch():
    """Drills are wired from tests/drills: no variable in a shell can sabotage a real sweep."""
    switch = re.compile(r"(environ|getenv).*(?<![a-z])(fault|drill)|MOTIONCORE_FAULT|DRILL_FAULTS",
                        re.I)  # not "default"
    sources = [*REPO.glob("motioncore/**/*.py"), *REPO.glob("orchestrator/**/*.py")]
    assert sources
    for path in sources:
        assert not switch.search(path.read_text()), path


def test_failing_trials_are_recorded_retried_and_do_not_stop_the_sweep(tmp_path):
    cells = ["baseline", "loss=l2", "noise=0.0", "inputs=frames"]
    # The old switch, MOTIONCORE_FAULT, is set too: the product ignores it, so baseline finishes.
    env = {**drill_env("loss=l2:raise,noise=0.0:nan,inputs=frames:nospace"),
           "MOTIONCORE_FAULT": "baseline:raise"}
    out = _wait(_sweep(tmp_path, "--space", "ablation", "--dry-run", "--cells", ",".join(cells),
                       "--max-failures", "1", "--out", "out", *_sets(), env=env))
    assert re.search(r"\] (dry-run )?replicate loss=l2 seed 0: FAILED: .*injected fault", out), out[-3000:]
    assert re.search(r"\] (dry-run )?replicate noise=0.0 seed 0: FAILED: .*nan", out, re.I), out[-3000:]
    uri = f"sqlite:///{(tmp_path / 'out' / 'mlflow.db').resolve()}"
    parents, children = _runs(uri, "ablation")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    by_cell = {r.data.tags["cell"]: r for r in children}
    assert len(children) == 4, "a retried trial must reattach to its run, not add one"
    assert by_cell["baseline"].info.status == "FINISHED"
    for cell, reason in (("loss=l2", "injected fault"), ("noise=0.0", "nan"),
                         ("inputs=frames", "no space left on device")):
        run = by_cell[cell]
        assert run.info.status == "FAILED"
        assert "status" not in run.data.tags  # the run's own status says it
        assert reason in run.data.tags["failure_reason"].lower()
    (sweep_dir,) = [d for d in (tmp_path / "out").iterdir() if d.name.startswith("ablation-")]
    rows = {r["cell"]: r for r in pq.read_table(sweep_dir / "results.parquet").to_pylist()}
    assert rows["baseline"]["status"] == "finished"
    assert rows["loss=l2"]["status"] == rows["noise=0.0"]["status"] == "failed"
    assert rows["inputs=frames"]["status"] == "failed"  # its checkpoint could not be written
    assert "injected fault" in rows["loss=l2"]["failure_reason"]
    table = (sweep_dir / "ablation.md").read_text()
    assert "0 (1 failed)" in table


@pytest.fixture(scope="module")
def two_nodes():
    """A real two-node Ray cluster on this machine; the worker declares logical GPUs."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 1, "num_gpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=2, num_gpus=1)
    cluster.wait_for_nodes()
    try:
        yield cluster
    finally:
        cluster.shutdown()


def test_dry_run_on_a_two_node_cluster_packs_gpus_and_logs_to_a_server(two_nodes, mlflow_server,
                                                                      tmp_path):
    cells = ["baseline", "loss=l2", "noise=0.0", "inputs=frames"]
    out = _wait(_sweep(tmp_path, "--space", "ablation", "--dry-run", "--cells", ",".join(cells),
                       "--address", two_nodes.address, "--gpus-per-trial", "0.5",
                       "--max-concurrent", "3", "--tracking-uri", mlflow_server, "--experiment",
                       "two-nodes", "--out", "out", *_sets(), env={"RAY_ADDRESS": ""}))
    assert f"browse them in MLflow: open {mlflow_server}/#/experiments/" in out
    parents, children = _runs(mlflow_server, "two-nodes")
    assert len(parents) == 1 and len(children) == len(cells)
    assert {r.info.status for r in children} == {"FINISHED"}
    nodes = {r.data.tags["ray_node_id"] for r in children}
    assert len(nodes) == 2, "trials must run on both nodes"
    # Fractional GPUs: every trial got a (logical) GPU id, shared by up to two trials per node.
    assert all(r.data.tags["gpu_ids"] in ("0",) for r in children), [
        r.data.tags["gpu_ids"] for r in children]


def test_a_stalled_trial_is_ended_retried_and_recorded_and_the_sweep_goes_on(tmp_path):
    """A trial whose process stops (SIGSTOP: as a deadlock, it is alive but never reports) is
    ended by the driver's watchdog after --trial-timeout-s, retried, and recorded failed with
    the reason; the other cell finishes and the sweep ends normally."""
    started = time.monotonic()
    out = _wait(_sweep(tmp_path, "--space", "ablation", "--dry-run", "--cells", "baseline,loss=l2",
                       "--max-failures", "1", "--trial-timeout-s", "20", "--out", "out", *_sets(),
                       env=drill_env("loss=l2:stall")), timeout=400)
    assert time.monotonic() - started < 300, out[-3000:]
    assert re.search(r"replicate loss=l2 seed 0: FAILED: stalled: no report for \d+ s", out), out[-3000:]
    uri = f"sqlite:///{(tmp_path / 'out' / 'mlflow.db').resolve()}"
    parents, children = _runs(uri, "ablation")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    by_cell = {r.data.tags["cell"]: r for r in children}
    assert by_cell["baseline"].info.status == "FINISHED"
    assert by_cell["loss=l2"].info.status == "FAILED"
    assert by_cell["loss=l2"].data.tags["failure_reason"].startswith("stalled: no report for")


def test_a_sweep_whose_reader_leaves_records_its_trials_as_they_really_ended(tmp_path):
    """``sweep | head -1``: the sweep goes on with nobody reading, ends with status 141, and its
    trial and parent are FINISHED, not FAILED for the reader's departure."""
    with open(tmp_path / "stderr.log", "w") as err:  # as in a shell: only stdout is piped
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.sweep", "--space", "ablation",
                                 "--dry-run", "--cells", "baseline", "--out", "out", *_sets()],
                                cwd=tmp_path, env=isolated_env(), stdout=subprocess.PIPE,
                                stderr=err, text=True, start_new_session=True)
    try:
        first = proc.stdout.readline()
        proc.stdout.close()  # the reader leaves after one line
        assert proc.wait(timeout=300) == 141, (first, (tmp_path / "stderr.log").read_text()[-2000:])
    finally:
        stop_group(proc)
    parents, children = _runs(f"sqlite:///{(tmp_path / 'out' / 'mlflow.db').resolve()}", "ablation")
    assert [r.info.status for r in parents] == ["FINISHED"]
    assert [r.info.status for r in children] == ["FINISHED"]
    assert not any("failure_reason" in r.data.tags for r in children)
