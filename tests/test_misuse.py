"""Every CLI on bad input: exit 2, one line naming the value, no traceback, nothing recorded lost.

One real run directory and one real (dry-run) sweep are recorded first; each case then runs a
CLI on bad input in-process and checks that every file of both, and every MLflow run, is as
it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import isolated_env

from motioncore import cli
from motioncore.checkpoint import load_checkpoint
from motioncore.data import main as data_main
from motioncore.predict import main as predict_main
from motioncore.train import main as train_main
from orchestrator import store, tracking
from orchestrator.report import main as report_main
from orchestrator.state import LOCK, DriverLock, SweepState, code_version
from orchestrator.sweep import main as sweep_main

REPO = Path(__file__).resolve().parents[1]
TINY = ["--width", "4", "--depth", "1", "--steps", "4", "--eval-every", "2", "--val-size", "16",
        "--test-size", "16", "--batch-size", "8", "--device", "cpu", "--threads", "1"]
# Per-trial resources no node of a local Ray on this machine has.
TOO_MANY_CPUS, TOO_MANY_GPUS = str(os.cpu_count() + 1), str(torch.cuda.device_count() + 1)


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
    env = isolated_env()
    done = subprocess.run([sys.executable, "-m", "orchestrator.sweep", "--space", "seed_table",
                           "--cells", "sup_T3_r1", "--dry-run", "--out", str(root / "sweeps")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (sweep,) = [d for d in (root / "sweeps").iterdir() if d.is_dir() and d.name != "mlartifacts"]
    state = SweepState.load(sweep)
    client = store.client_for(state.tracking_uri)
    child = tracking.child_runs(client, client.get_experiment_by_name("seed_table").experiment_id,
                                state.parent_run_id)[0].info.run_id
    other = client.create_experiment("other")
    stranger = tracking.start_parent(client, other, "x", {"sweep_dir": "elsewhere"})
    bad = root / "bad"
    bad.mkdir()
    (bad / "list.json").write_text("[1, 2]")
    (bad / "truncated.pt").write_bytes((run / "checkpoint.pt").read_bytes()[:300])
    (bad / "a-file").write_text("")
    np.savez(bad / "frames.npz", frames=np.zeros((1, 3, 28, 28), np.float32))
    np.save(bad / "strings.npy", np.array([["a"]]))
    np.save(bad / "frames.npy", np.zeros((1, 3, 28, 28), np.float32))
    state_of_run = load_checkpoint(run / "checkpoint.pt")  # weights for width 4, config says 8
    torch.save({**state_of_run, "config": {**state_of_run["config"], "width": 8}}, bad / "arch.pt")
    for d in ("truncated", "edited", "moved"):
        copy = root / d
        copy.mkdir()
        (copy / "sweep.json").write_text(state.path.read_text())
    (root / "truncated" / "sweep.json").write_text(state.path.read_text()[:40])
    (root / "edited" / "sweep.json").write_text(json.dumps({**json.loads(state.path.read_text()),
                                                            "colour": "blue"}))
    other_store = f"sqlite:///{root / 'other.db'}"  # another store, with the same experiment
    store.client_for(other_store).create_experiment("seed_table")
    remote = root / "remote"  # a sweep whose Tune state lies in storage nobody can check
    remote.mkdir()
    (remote / "sweep.json").write_text(json.dumps({**json.loads(state.path.read_text()),
                                                   "sweep_dir": str(remote),
                                                   "storage_path": "s3://bucket/ray"}))
    (bad / "corrupt").mkdir()
    (bad / "corrupt" / "results.parquet").write_text("not parquet")
    (bad / "dir" / "results.parquet").mkdir(parents=True)
    resumed_copy = run.parent / "resume-bad"
    resumed_copy.mkdir()
    (resumed_copy / "checkpoint.pt").write_bytes((bad / "truncated.pt").read_bytes())
    return {"root": root, "run": run, "sweep": sweep, "uri": state.tracking_uri, "client": client,
            "parent": state.parent_run_id, "child": child, "stranger": stranger, "bad": bad,
            "other_store": other_store}


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
    _case("train unknown flag", train_main, ["--out", "{root}/t6", "--lr-max", "1"],
          "unrecognized arguments: --lr-max", "--help"),
    _case("train without --out", train_main, [], "required: --out"),
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
    _case("predict --out not .npz", predict_main, ["--checkpoint", "{run}/checkpoint.pt", "--frames",
                                                   "{bad}/frames.npy", "--out", "{root}/p.pt"],
          "--out", "p.pt", "ending in .npz"),
    _case("predict onto an existing file", predict_main,
          ["--checkpoint", "{run}/checkpoint.pt", "--frames", "{bad}/frames.npy", "--out",
           "{bad}/frames.npz"], "frames.npz", "already exists", "--overwrite"),
    _case("predict checkpoint of another architecture", predict_main,
          ["--checkpoint", "{bad}/arch.pt", "--frames", "{bad}/frames.npy", "--out", "{root}/p.npz"],
          "arch.pt", "config describes", "width=8", "unet.down.0.0.weight is (4, 2, 3, 3)"),
    _case("predict without --frames", predict_main, ["--checkpoint", "{run}/checkpoint.pt", "--colour",
                                                     "red", "--out", "{root}/p.npz"],
          "required: --frames"),
    # motioncore.data
    _case("data --out in a missing directory", data_main, ["--n", "4", "--out", "{root}/no/x.npz"],
          "--out", "does not exist"),
    _case("data --png under a file", data_main, ["--n", "4", "--png", "{bad}/a-file/x.png"], "--png"),
    _case("data --start negative", data_main, ["--n", "4", "--start", "-5"], "--start -5", ">= 0"),
    _case("data --seed negative", data_main, ["--n", "4", "--seed", "-1"], "--seed -1", ">= 0"),
    _case("data --start not an integer", data_main, ["--n", "4", "--start", "1e23"],
          "--start", "invalid int value: '1e23'"),
    _case("data --start beyond int64", data_main, ["--n", "4", "--start", str(10**23)],
          f"--start {10**23}", "2**63"),
    _case("data --n beyond memory", data_main, ["--n", "100000000"], "--n 100000000",
          "is available; at most", "--start"),
    _case("data --out not .npz", data_main, ["--n", "4", "--out", "{root}/x.pt"], "x.pt", ".npz"),
    _case("data --n without a value", data_main, ["--n"], "--n", "expected one argument"),
    # orchestrator.sweep
    _case("sweep --set seed", sweep_main, ["--space", "demo", "--set", "seed=3"], "--seeds"),
    _case("sweep --checkpoint-every-s -1", sweep_main,
          ["--space", "demo", "--checkpoint-every-s", "-1"], "--checkpoint-every-s -1.0"),
    _case("sweep --gpus-per-trial beyond any machine", sweep_main,
          ["--space", "demo", "--gpus-per-trial", "100"], "--gpus-per-trial '100'", "0 to 64"),
    _case("sweep --out name longer than any filesystem takes", sweep_main,
          ["--space", "demo", "--out", "{root}/" + "x" * 300], "not a usable path"),
    _case("train --out name longer than any filesystem takes", train_main,
          ["--out", "{root}/" + "y" * 300, *TINY], "not a usable path"),
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
    _case("resume with a Ray address where nothing listens", sweep_main,
          ["--resume", "{sweep}", "--address", "127.0.0.1:1"], "no Ray cluster answers"),
    _case("resume with a store that does not exist", sweep_main,
          ["--resume", "{sweep}", "--tracking-uri", "sqlite:///{root}/nope/mlflow.db"], "does not exist"),
    _case("resume with another store", sweep_main,
          ["--resume", "{sweep}", "--tracking-uri", "{other_store}"], "is not in", "parent run"),
    _case("resume with new choices", sweep_main, ["--resume", "{sweep}", "--seeds", "2", "--set",
                                                  "lr=0.1"], "keeps every choice", "--seeds", "--set"),
    _case("resume on remote storage not said to be trusted", sweep_main,
          ["--resume", "{root}/remote"], "s3://bucket/ray", "--trust-storage"),
    _case("resume a truncated sweep.json", sweep_main, ["--resume", "{root}/truncated"], "unreadable"),
    _case("resume a hand-edited sweep.json", sweep_main, ["--resume", "{root}/edited"], "colour"),
    _case("resume a directory without sweep.json", sweep_main, ["--resume", "{bad}"], "no sweep.json"),
    _case("resume a copied sweep directory", sweep_main, ["--resume", "{root}/moved"], "belongs to sweep"),
    # orchestrator.sweep, refused once Ray is up (a local Ray: no autoscaler to add nodes)
    _case("sweep --cpus-per-trial beyond every node", sweep_main,
          ["--space", "demo", "--out", "{root}/s", "--cpus-per-trial", TOO_MANY_CPUS],
          f"--cpus-per-trial {TOO_MANY_CPUS}", "the most CPUs one node"),
    _case("sweep --address local --gpus-per-trial beyond every node", sweep_main,
          ["--space", "demo", "--out", "{root}/s", "--address", "local", "--gpus-per-trial",
           TOO_MANY_GPUS], f"--gpus-per-trial {TOO_MANY_GPUS}", "no autoscaler"),
    _case("sweep --address where nothing listens", sweep_main,
          ["--space", "demo", "--out", "{root}/s", "--address", "127.0.0.1:1"],
          "--address '127.0.0.1:1'", "no Ray cluster answers"),
    # orchestrator.report
    _case("report on a child run", report_main,
          ["--tracking-uri", "{uri}", "--experiment", "seed_table", "--parent", "{child}", "--out",
           "{sweep}"], "a trial of sweep"),
    _case("report on another experiment's parent", report_main,
          ["--tracking-uri", "{uri}", "--experiment", "seed_table", "--parent", "{stranger}", "--out",
           "{sweep}"], "another experiment"),
    _case("report on a store that does not exist", report_main,
          ["--tracking-uri", "sqlite:///{root}/mistyped.db", "--experiment", "seed_table", "--out",
           "{root}/r"], "sqlite:///", "mistyped.db", "does not exist"),
    _case("report onto a corrupt results.parquet", report_main,
          ["--tracking-uri", "{uri}", "--experiment", "seed_table", "--out", "{bad}/corrupt"],
          "results.parquet is not a results table"),
    _case("report onto a results.parquet that is a directory", report_main,
          ["--tracking-uri", "{uri}", "--experiment", "seed_table", "--out", "{bad}/dir"],
          "results.parquet is not a file"),
    _case("report on a missing run", report_main, ["--tracking-uri", "{uri}", "--experiment", "seed_table",
                                                   "--parent", "nope", "--out", "{sweep}"], "no such run"),
]


@pytest.mark.parametrize("main, args, named", CASES)
def test_bad_input_is_one_line_exit_2_and_changes_nothing_recorded(recorded, main, args, named, capsys,
                                                                    one_line_error):
    fill = {k: v for k, v in recorded.items() if isinstance(v, (str, Path))}
    argv = [a.format(**fill) for a in args]
    roots = recorded["run"], recorded["sweep"], recorded["bad"]
    files, runs = snapshot(*roots), _runs(recorded["client"])
    assert main(argv) == 2
    line = one_line_error(capsys.readouterr().err)
    for word in named:
        assert word in line, line
    assert snapshot(*roots) == files
    assert _runs(recorded["client"]) == runs
    assert not (recorded["root"] / "mistyped.db").exists()  # no store made by a typo


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


def test_overwrite_removes_the_old_run_before_the_new_one_writes(recorded, tmp_path, capsys):
    """A new run that diverges leaves its own config.json only, beside none of the old files."""
    run = tmp_path / "run"
    run.mkdir()
    for f in recorded["run"].iterdir():
        (run / f.name).write_bytes(f.read_bytes())
    (run / "notes.txt").write_text("mine")  # not the run's: stays
    assert train_main(["--out", str(run), *TINY, "--overwrite", "--lr", "1e30", "--steps", "30",
                       "--eval-every", "30"]) == 1
    assert "the run diverged" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "notes.txt"]
    assert json.loads((run / "config.json").read_text())["lr"] == 1e30


def test_predict_refuses_frames_that_cannot_fit_in_memory(recorded, tmp_path, monkeypatch, capsys,
                                                          one_line_error):
    monkeypatch.setattr(cli, "available_memory", lambda: 4 * 2**20)
    args = ["--checkpoint", str(recorded["run"] / "checkpoint.pt"), "--out", str(tmp_path / "p.npz")]
    np.save(tmp_path / "big.npy", np.zeros((1, 3, 600, 600), np.uint8))  # one frame too large
    assert predict_main([*args, "--frames", str(tmp_path / "big.npy")]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "(1, 3, 600, 600)" in line and "is available; frames up to about" in line
    np.save(tmp_path / "many.npy", np.zeros((200, 3, 64, 64), np.uint8))  # too many at once
    assert predict_main([*args, "--frames", str(tmp_path / "many.npy")]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "(200, 3, 64, 64)" in line and "frames of 64x64 fit at once" in line
    assert not (tmp_path / "p.npz").exists()


def test_predict_writes_exactly_the_path_named_and_overwrites_only_when_asked(recorded, tmp_path):
    args = ["--checkpoint", str(recorded["run"] / "checkpoint.pt"), "--frames",
            str(recorded["bad"] / "frames.npy"), "--out", str(tmp_path / "p.npz")]
    assert predict_main(args) == 0
    first = (tmp_path / "p.npz").read_bytes()
    assert predict_main(args) == 2 and (tmp_path / "p.npz").read_bytes() == first
    assert predict_main([*args, "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npz"]  # no temporary file left


@pytest.fixture
def not_ray(tmp_path):
    """A TCP port on every interface whose server answers like an SSH daemon, not a Ray GCS."""
    import threading

    server = socket.create_server(("", 0))

    def serve():
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                with conn:
                    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def test_sweep_address_that_is_not_ray_is_refused_at_once(recorded, not_ray, capsys, one_line_error):
    files = snapshot(recorded["run"], recorded["sweep"])
    assert sweep_main(["--space", "demo", "--out", str(recorded["root"] / "s"), "--address",
                       f"127.0.0.1:{not_ray}"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert f"127.0.0.1:{not_ray}" in line and "not as a Ray cluster" in line
    assert snapshot(recorded["run"], recorded["sweep"]) == files


def test_resume_is_refused_on_other_code_or_on_storage_others_can_write(recorded, capsys,
                                                                       one_line_error):
    """Tune's restore unpickles the sweep's state, and a sweep must not mix code silently."""
    sweep = recorded["sweep"]
    state_file = sweep / "sweep.json"
    saved = state_file.read_text()
    try:
        state_file.write_text(json.dumps({**json.loads(saved), "code": "0" * 40}))
        before = snapshot(sweep)
        assert sweep_main(["--resume", str(sweep)]) == 2
        line = one_line_error(capsys.readouterr().err)
        assert "ran code 0000" in line and "--allow-code-change" in line
        assert snapshot(sweep) == before
        other_edits = code_version().partition("+")[0] + "+dirty.deadbeef"  # this commit, edited
        state_file.write_text(json.dumps({**json.loads(saved), "code": other_edits}))
        before = snapshot(sweep)
        assert sweep_main(["--resume", str(sweep)]) == 2
        line = one_line_error(capsys.readouterr().err)
        assert "+dirty.deadbeef and this is" in line  # the two codes read differently
        assert snapshot(sweep) == before
    finally:
        state_file.write_text(saved)
    mode = sweep.stat().st_mode
    try:
        sweep.chmod(mode | 0o020)
        assert sweep_main(["--resume", str(sweep)]) == 2
        line = one_line_error(capsys.readouterr().err)
        assert "not safe to load" in line and "group or others can write it" in line
    finally:
        sweep.chmod(mode)


def test_report_without_parent_never_writes_another_sweeps_table_into_a_sweep(recorded, capsys):
    """A newer sweep in the experiment is the default parent; pointed at the older sweep's
    directory, report refuses rather than replace its table."""
    client, sweep = recorded["client"], recorded["sweep"]
    exp = client.get_experiment_by_name("seed_table").experiment_id
    newer = tracking.start_parent(client, exp, "newer", {"space": "seed_table", "sweep_dir": "y"})
    before = snapshot(sweep)
    try:
        args = ["--tracking-uri", recorded["uri"], "--experiment", "seed_table", "--out", str(sweep)]
        assert report_main(args) == 2
        err = capsys.readouterr().err
        assert "another sweep's table" in err and "--parent" in err
        assert snapshot(sweep) == before
        assert report_main([*args, "--parent", recorded["parent"]]) == 0  # its own sweep: fine
    finally:
        client.delete_run(newer)
