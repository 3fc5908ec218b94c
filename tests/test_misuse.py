"""Every CLI on bad input: exit 2, one line naming the value, no traceback, nothing recorded lost.

One real run directory and one real (dry-run) sweep are recorded first; each case then runs a
CLI on bad input in-process and checks that every file of both, and every MLflow run, is as
it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from motioncore.data import main as data_main
from motioncore.predict import main as predict_main
from motioncore.train import main as train_main
from orchestrator import tracking
from orchestrator.report import main as report_main
from orchestrator.state import LOCK, DriverLock, SweepState
from orchestrator.sweep import main as sweep_main

REPO = Path(__file__).resolve().parents[1]
TINY = ["--width", "4", "--depth", "1", "--steps", "4", "--eval-every", "2", "--val-size", "16",
        "--test-size", "16", "--batch-size", "8", "--device", "cpu", "--threads", "1"]


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file under ``roots`` -> its SHA-256 (the sqlite store included)."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> dict:
    """A finished training run and a finished dry-run sweep, plus a few bad input files."""
    root = tmp_path_factory.mktemp("recorded")
    run = root / "run"
    assert train_main(["--out", str(run), *TINY]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "RAY_ADDRESS": "local",
           "MOTIONCORE_TRACKING_URI": "", "MOTIONCORE_STORAGE_PATH": ""}
    done = subprocess.run([sys.executable, "-m", "orchestrator.sweep", "--space", "seed_table",
                           "--cells", "sup_T3_r1", "--dry-run", "--out", str(root / "sweeps")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (sweep,) = [d for d in (root / "sweeps").iterdir() if d.is_dir() and d.name != "mlartifacts"]
    state = SweepState.load(sweep)
    client = tracking.client_for(state.tracking_uri)
    child = tracking.child_runs(client, client.get_experiment_by_name("seed_table").experiment_id,
                                state.parent_run_id)[0].info.run_id
    other = client.create_experiment("other")
    stranger = tracking.start_parent(client, other, "x", {"sweep_dir": "elsewhere"})
    bad = root / "bad"
    bad.mkdir()
    (bad / "list.json").write_text("[1, 2]")
    (bad / "truncated.pt").write_bytes((run / "checkpoint.pt").read_bytes()[:300])
    (bad / "a-file").write_text("")
    import numpy as np

    np.savez(bad / "frames.npz", frames=np.zeros((1, 3, 28, 28), np.float32))
    np.save(bad / "strings.npy", np.array([["a"]]))
    np.save(bad / "frames.npy", np.zeros((1, 3, 28, 28), np.float32))
    for d in ("truncated", "edited", "moved"):
        copy = root / d
        copy.mkdir()
        (copy / "sweep.json").write_text(state.path.read_text())
    (root / "truncated" / "sweep.json").write_text(state.path.read_text()[:40])
    (root / "edited" / "sweep.json").write_text(json.dumps({**json.loads(state.path.read_text()),
                                                            "colour": "blue"}))
    resumed_copy = run.parent / "resume-bad"
    resumed_copy.mkdir()
    (resumed_copy / "checkpoint.pt").write_bytes((bad / "truncated.pt").read_bytes())
    return {"root": root, "run": run, "sweep": sweep, "uri": state.tracking_uri, "client": client,
            "parent": state.parent_run_id, "child": child, "stranger": stranger, "bad": bad}


def _runs(client) -> dict:
    """Every run of every experiment: (status, params, metrics, tags), by run id."""
    exps = [e.experiment_id for e in client.search_experiments()]
    return {r.info.run_id: (r.info.status, r.data.params, r.data.metrics, r.data.tags)
            for r in client.search_runs(exps, max_results=10_000)}


def _case(name, main, args, *named):
    return pytest.param(main, args, named, id=name)


CASES = [
    # motioncore.train
    _case("train onto a recorded run", train_main, ["--out", "{run}", *TINY], "already holds a run",
          "--resume", "--overwrite"),
    _case("train --resume with another config", train_main,
          ["--out", "{run}", "--resume", *TINY, "--lr", "0.01"], "different config", "lr"),
    _case("train --threads -1", train_main, ["--out", "{root}/t1", "--threads", "-1"], "--threads -1"),
    _case("train --device cuda:x", train_main, ["--out", "{root}/t2", "--device", "cuda:x"],
          "device='cuda:x'", "cuda:N"),
    _case("train seed beyond 64 bits", train_main, ["--out", "{root}/t3", "--seed", str(2**64)],
          "seed=", "2**63"),
    _case("train --config not an object", train_main, ["--out", "{root}/t4", "--config", "{bad}/list.json"],
          "JSON object"),
    _case("train --config missing", train_main, ["--out", "{root}/t5", "--config", "{bad}/none.json"],
          "none.json"),
    _case("train --out is a file", train_main, ["--out", "{bad}/a-file", *TINY], "a-file", "not a directory"),
    _case("train --resume truncated checkpoint", train_main,
          ["--out", "{root}/resume-bad", "--resume", *TINY], "cannot be loaded", "checkpoint.pt"),
    # motioncore.predict
    _case("predict npz frames", predict_main, ["--checkpoint", "{run}/checkpoint.pt", "--frames",
                                               "{bad}/frames.npz", "--out", "{root}/p.npz"], ".npz"),
    _case("predict string frames", predict_main, ["--checkpoint", "{run}/checkpoint.pt", "--frames",
                                                  "{bad}/strings.npy", "--out", "{root}/p.npz"], "dtype"),
    _case("predict truncated checkpoint", predict_main, ["--checkpoint", "{bad}/truncated.pt", "--frames",
                                                         "{bad}/frames.npy", "--out", "{root}/p.npz"],
          "truncated.pt"),
    _case("predict --out in a missing directory", predict_main,
          ["--checkpoint", "{run}/checkpoint.pt", "--frames", "{bad}/frames.npy", "--out",
           "{root}/no/such/p.npz"], "does not exist"),
    # motioncore.data
    _case("data --out in a missing directory", data_main, ["--n", "4", "--out", "{root}/no/x.npz"],
          "--out", "does not exist"),
    _case("data --png under a file", data_main, ["--n", "4", "--png", "{bad}/a-file/x.png"], "--png"),
    # orchestrator.sweep
    _case("sweep --set seed", sweep_main, ["--space", "demo", "--set", "seed=3"], "--seeds"),
    _case("sweep --checkpoint-every-s -1", sweep_main,
          ["--space", "demo", "--checkpoint-every-s", "-1"], "--checkpoint-every-s -1.0"),
    _case("sweep --cpus-per-trial nan", sweep_main, ["--space", "demo", "--cpus-per-trial", "nan"],
          "--cpus-per-trial nan"),
    _case("sweep --out is a file", sweep_main, ["--space", "demo", "--out", "{bad}/a-file"], "a-file"),
    _case("sweep --storage-path under a file", sweep_main,
          ["--space", "demo", "--out", "{root}/s", "--storage-path", "{bad}/a-file/ray"], "--storage-path"),
    _case("sweep file: tracking uri", sweep_main,
          ["--space", "demo", "--out", "{root}/s", "--tracking-uri", "file:///tmp/mlruns"], "file store"),
    _case("sweep sqlite store under a file", sweep_main,
          ["--space", "demo", "--out", "{root}/s", "--tracking-uri", "sqlite:///{bad}/a-file/m.db"],
          "--tracking-uri"),
    _case("resume with an unusable tracking uri", sweep_main,
          ["--resume", "{sweep}", "--tracking-uri", "http://127.0.0.1:9/"], "does not answer"),
    _case("resume a truncated sweep.json", sweep_main, ["--resume", "{root}/truncated"], "unreadable"),
    _case("resume a hand-edited sweep.json", sweep_main, ["--resume", "{root}/edited"], "colour"),
    _case("resume a directory without sweep.json", sweep_main, ["--resume", "{bad}"], "no sweep.json"),
    _case("resume a copied sweep directory", sweep_main, ["--resume", "{root}/moved"], "belongs to sweep"),
    # orchestrator.report
    _case("report on a child run", report_main,
          ["--tracking-uri", "{uri}", "--experiment", "seed_table", "--parent", "{child}", "--out",
           "{sweep}"], "a trial of sweep"),
    _case("report on another experiment's parent", report_main,
          ["--tracking-uri", "{uri}", "--experiment", "seed_table", "--parent", "{stranger}", "--out",
           "{sweep}"], "another experiment"),
    _case("report on a missing run", report_main, ["--tracking-uri", "{uri}", "--experiment", "seed_table",
                                                   "--parent", "nope", "--out", "{sweep}"], "no such run"),
]


@pytest.mark.parametrize("main, args, named", CASES)
def test_bad_input_is_one_line_exit_2_and_changes_nothing_recorded(recorded, main, args, named, capsys,
                                                                    one_line_error):
    fill = {k: v for k, v in recorded.items() if isinstance(v, (str, Path))}
    argv = [a.format(**fill) for a in args]
    files, runs = snapshot(recorded["run"], recorded["sweep"]), _runs(recorded["client"])
    assert main(argv) == 2
    line = one_line_error(capsys.readouterr().err)
    for word in named:
        assert word in line, line
    assert snapshot(recorded["run"], recorded["sweep"]) == files
    assert _runs(recorded["client"]) == runs


def test_a_second_driver_is_refused_with_the_owners_pid_and_host(recorded, capsys, one_line_error):
    sweep = recorded["sweep"]
    before = snapshot(sweep)
    (sweep / LOCK).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                          "since": 0}))  # this live process holds it
    try:
        assert sweep_main(["--resume", str(sweep)]) == 2
    finally:
        (sweep / LOCK).unlink()
    line = one_line_error(capsys.readouterr().err)
    assert f"pid {os.getpid()}" in line and socket.gethostname() in line
    assert snapshot(sweep) == before


def test_a_lock_left_by_a_killed_driver_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    with DriverLock(tmp_path) as lock:
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid() and lock.held
    assert not (tmp_path / LOCK).exists()
    with DriverLock(tmp_path), pytest.raises(Exception, match="in use by driver"):
        DriverLock(tmp_path).__enter__()


def test_report_never_replaces_a_table_with_an_emptier_one_unasked(recorded, tmp_path, capsys):
    client, root = recorded["client"], recorded["root"]
    exp = client.get_experiment_by_name("seed_table").experiment_id
    empty = tracking.start_parent(client, exp, "empty", {"space": "seed_table", "sweep_dir": "x"})
    out = tmp_path / "copy"
    out.mkdir()
    (out / "results.parquet").write_bytes((recorded["sweep"] / "results.parquet").read_bytes())
    args = ["--tracking-uri", recorded["uri"], "--experiment", "seed_table", "--parent", empty,
            "--out", str(out)]
    assert report_main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "results.parquet").read_bytes() == (recorded["sweep"] / "results.parquet").read_bytes()
    assert report_main([*args, "--overwrite"]) == 0  # asked: the empty sweep's table replaces it
    assert pq.read_metadata(out / "results.parquet").num_rows == 0
    assert snapshot(root / "run")  # the recorded run is still there
