"""The sweep CLI on real Ray Tune, Optuna and MLflow: bad input, --plan, and two real dry runs.

The two dry runs (``ablation`` into a local sqlite store, ``hpo`` with Optuna + ASHA into a real
``mlflow server``) start once per module, side by side so their Ray start-ups overlap; every
end-to-end test below reads what they left behind.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest
from conftest import ISOLATED, REPO, stop_group
from mlflow.tracking import MlflowClient

from motioncore.config import FIELDS, RunConfig, from_dict, parse_value
from orchestrator import plan
from orchestrator.plan import DRY_RUN_SAMPLES, cell_config, parse_sets
from orchestrator.state import SweepState
from search_spaces import Space, load

SETS = ("steps=4", "eval_every=2", "val_size=16", "test_size=32")
VAL_NAMES = ("acc", "acc_fg", "fg_net", "bg_motion", "acc_zero", "epe", "recon_l1")
TEST_NAMES = ("acc", "acc_fg", "fg_net", "bg_motion", "acc_zero", "epe", "epe_fg", "recon_l1",
              "recon_l1_copy")
TABLES = {"results.parquet", "paired.parquet", "ablation.md", "ablation.tex", "ablation.png"}
TRIAL_FILES = {"config.json", "panel.png", "classes.png", "checkpoint.pt"}
PARENT_TAG = "mlflow.parentRunId"
PROGRESS = re.compile(r"^\[(\d+)/(\d+)\] dry-run (search|replicate) (\S+) seed (\d+): (.*)$")


def sweep_args(*args: str) -> list[str]:
    return ["-m", "orchestrator.sweep", *args]


def child_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
            **ISOLATED}


def sweep_dirs(out: Path, space: str) -> list[Path]:
    if not out.exists():
        return []
    return [d for d in out.iterdir() if d.is_dir() and re.fullmatch(rf"{space}-\d{{8}}-\d{{6}}(-1)*",
                                                                     d.name)]


# --- bad input: one line, exit 2, before any trial ------------------------------------------

BAD_INPUT = {
    "unknown space": (["--space", "no_such_space"], ["no_such_space", "seed_table", "ablation", "hpo"]),
    "unknown --set key": (["--space", "ablation", "--set", "framez=3"], ["framez", *FIELDS]),
    "invalid --set value": (["--space", "ablation", "--set", "frames=4"], ["frames=4", "3, 5"]),
    "zero seeds": (["--space", "ablation", "--seeds", "0"], ["--seeds", ">= 1"]),
    "a seed named twice": (["--space", "ablation", "--seeds", "1,1"], ["--seeds", "'1,1'", "twice"]),
    "--cells naming nothing": (["--space", "ablation", "--cells", ","], ["--cells", "baseline"]),
    "search seed among the replicates": (["--space", "hpo", "--seeds", "3", "--search-seed", "1"],
                                         ["--search-seed 1", "0,1,2"]),
    "a database store without its driver": (["--space", "ablation", "--tracking-uri",
                                              "mysql://u:p@127.0.0.1:1/db"], ["mysql://", "MySQLdb"]),
    "an unreachable database store": (["--space", "ablation", "--tracking-uri",
                                       "postgresql+psycopg2://u:p@127.0.0.1:1/mlflow"],
                                      ["postgresql+psycopg2://", "does not answer"]),
    "unreachable remote storage": (["--space", "ablation", "--storage-path", "s3://no-such-bucket-x/ray"],
                                   ["--storage-path s3://no-such-bucket-x/ray", "cannot be used"]),
    "negative trial timeout": (["--space", "ablation", "--trial-timeout-s", "-5"],
                               ["--trial-timeout-s -5", ">= 0"]),
    "unknown sampler": (["--space", "hpo", "--sampler", "cmaes"], ["--sampler 'cmaes'", "tpe, random, gp"]),
    "unknown scheduler": (["--space", "hpo", "--scheduler", "hb"], ["--scheduler 'hb'", "asha, none"]),
    "a resume with new choices": (["--resume", "nowhere", "--sampler", "tpe", "--seeds", "2"],
                                  ["keeps every choice", "--sampler", "--seeds"]),
    "code change without resume": (["--space", "ablation", "--allow-code-change"],
                                   ["--allow-code-change", "--resume"]),
    "unreachable tracking server": (["--space", "ablation", "--tracking-uri", "http://127.0.0.1:9"],
                                    ["--tracking-uri", "http://127.0.0.1:9"]),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_line_and_exit_2_before_anything_starts(case, run_cli, one_line_error,
                                                                  tmp_path):
    args, mentions = BAD_INPUT[case]
    started = time.monotonic()
    r = run_cli("orchestrator.sweep", *args, "--dry-run", "--out", tmp_path / "out",
                env=ISOLATED, timeout=120)
    elapsed = time.monotonic() - started
    assert r.returncode == 2, r.stdout + r.stderr
    line = one_line_error(r.stderr)
    assert line.startswith("error: ")
    for word in mentions:
        assert word in line, (word, line)
    assert not sweep_dirs(tmp_path / "out", "ablation")
    assert "[1/" not in r.stdout
    assert elapsed < 60  # checked before Ray starts (the process itself needs ~6 s to import)


@pytest.fixture(scope="module")
def gpu_refusal(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path, float]:
    """``--gpus-per-trial 1`` on this GPU-less machine, run once for the tests that read it."""
    cwd = tmp_path_factory.mktemp("gpus")
    started = time.monotonic()
    r = subprocess.run([sys.executable, *sweep_args("--space", "ablation", "--dry-run",
                                                    "--gpus-per-trial", "1", "--out", "out")],
                       cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=300)
    return r, cwd / "out", time.monotonic() - started


def test_gpus_per_trial_without_gpus_is_refused_before_any_trial(gpu_refusal):
    r, out, elapsed = gpu_refusal
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --gpus-per-trial") and "no GPUs" in last
    assert not sweep_dirs(out, "ablation") and "[1/" not in r.stdout
    assert elapsed < 120


def test_gpus_per_trial_refusal_is_exactly_one_line(gpu_refusal, one_line_error):
    r, _, _ = gpu_refusal
    assert one_line_error(r.stderr).startswith("error: --gpus-per-trial")


def test_plan_prints_cells_trials_and_estimate_and_creates_nothing(run_cli, tmp_path):
    r = run_cli("orchestrator.sweep", "--space", "ablation", "--plan", "--seeds", "2",
                "--out", tmp_path / "out", env=ISOLATED)
    assert r.returncode == 0, r.stderr
    space = load("ablation")
    assert f"{len(space.cells)} cells, {2 * len(space.cells)} trials" in r.stdout
    for cell in space.cells:
        assert re.search(rf"^\s+{re.escape(cell.id)}\s+seeds 2\s+~", r.stdout, re.M), cell.id
    assert re.search(r"estimated compute: [\d.]+ CPU-hours", r.stdout)
    assert not (tmp_path / "out").exists()


def test_a_calibrated_plan_times_every_cell_here(run_cli, tmp_path, one_line_error):
    r = run_cli("orchestrator.sweep", "--space", "demo", "--plan", "--calibrate", "--seeds", "2",
                "--set", "width=4", "--set", "batch_size=8", "--set", "val_size=16",
                "--out", tmp_path / "out", env=ISOLATED)
    assert r.returncode == 0, r.stderr
    for cell in load("demo").cells:
        line = re.search(rf"^\s+{re.escape(cell.id)}\s+seeds 2\s+~\s*([\d.]+) CPU-min\s+([\d.]+) "
                         r"s/step", r.stdout, re.M)
        assert line and float(line[1]) > 0 and float(line[2]) > 0, (cell.id, r.stdout)
    assert "steps timed on this machine" in r.stdout
    assert not (tmp_path / "out").exists()
    r = run_cli("orchestrator.sweep", "--space", "demo", "--calibrate", env=ISOLATED)
    assert r.returncode == 2 and one_line_error(r.stderr).startswith("error: --calibrate")


def test_a_calibrated_estimate_counts_steps_and_evaluated_sequences(tiny_config):
    config = tiny_config(steps=10, eval_every=5, val_size=20, test_size=30)
    cost = plan.measure(config)
    assert cost.step_s > 0 and cost.sequence_s > 0
    # 10 steps, 3 evaluations of 20 validation sequences, 30 test sequences
    assert plan.estimate_seconds(config, cost=plan.Cost(2.0, 0.5)) == 10 * 2.0 + (60 + 30) * 0.5


def test_a_reader_that_stops_reading_ends_the_cli_quietly(tmp_path):
    """``--plan | head -1``: stdout's reader is gone before the plan is printed; status 141 (as
    the shell reports SIGPIPE), nothing on stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.sweep", "--space", "ablation",
                             "--plan"], cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and err == "", err


def test_a_set_that_makes_cells_identical_is_named_in_a_warning(run_cli, tmp_path):
    r = run_cli("orchestrator.sweep", "--space", "hpo", "--plan", "--set", "motion_range=3",
                env=ISOLATED)
    assert r.returncode == 0, r.stderr
    first = r.stdout.splitlines()[0]
    assert first.startswith("warning: after --set motion_range=3") and "r3, r5" in first
    r = run_cli("orchestrator.sweep", "--space", "hpo", "--plan", "--set", "lr=0.001",
                env=ISOLATED)
    assert r.returncode == 0 and "warning" not in r.stdout, r.stdout


# --- the two dry runs ----------------------------------------------------------------------

@dataclass
class Launch:
    name: str
    proc: subprocess.Popen
    cwd: Path
    uri: str

    def log(self, stream: str) -> str:
        return (self.cwd / f"{stream}.log").read_text()


@dataclass
class Sweep:
    """What one finished dry run left: its output, directory, MLflow runs."""

    space: Space
    uri: str
    out: Path
    stdout: str
    sweep_dir: Path
    client: MlflowClient
    exp_id: str
    parent: object
    children: list = field(default_factory=list)

    def stage(self, stage: str) -> list:
        return [r for r in self.children if r.data.tags.get("stage") == stage]

    def expected(self, cell_id: str, seed: int = 0) -> RunConfig:
        return cell_config(self.space, self.space.cell(cell_id), dry_run=True,
                           sets=parse_sets(list(SETS)), seed=seed)


def _launch(name: str, cwd: Path, *extra: str, uri: str) -> Launch:
    args = sweep_args("--space", name, "--dry-run", "--max-concurrent", "2", "--out", "out",
                      *[a for s in SETS for a in ("--set", s)], *extra)
    with open(cwd / "stdout.log", "w") as so, open(cwd / "stderr.log", "w") as se:
        proc = subprocess.Popen([sys.executable, *args], cwd=cwd, env=child_env(), stdout=so,
                                stderr=se, start_new_session=True)
    return Launch(name, proc, cwd, uri)


@pytest.fixture(scope="module")
def launched(request, tmp_path_factory):
    """Start both dry runs; the server starts while the ablation sweep's Ray comes up."""
    abl = tmp_path_factory.mktemp("ablation")
    runs = {"ablation": _launch("ablation", abl, uri=f"sqlite:///{(abl / 'out' / 'mlflow.db').resolve()}")}
    try:
        server = request.getfixturevalue("mlflow_server")
        runs["hpo"] = _launch("hpo", tmp_path_factory.mktemp("hpo"), "--tracking-uri", server,
                              uri=server)
        yield runs
    finally:
        for launch in runs.values():
            stop_group(launch.proc)


def _finish(launch: Launch) -> Sweep:
    try:
        rc = launch.proc.wait(timeout=600)
    except subprocess.TimeoutExpired:
        stop_group(launch.proc)
        pytest.fail(f"{launch.name} dry run did not finish in 10 min:\n{launch.log('stdout')[-3000:]}")
    stdout = launch.log("stdout")
    assert rc == 0, f"{launch.name} dry run failed:\n{stdout[-3000:]}\n{launch.log('stderr')[-5000:]}"
    out = launch.cwd / "out"
    dirs = sweep_dirs(out, launch.name)
    assert len(dirs) == 1, list(out.iterdir())
    client = MlflowClient(tracking_uri=launch.uri)
    exp = client.get_experiment_by_name(launch.name)
    assert exp is not None, [e.name for e in client.search_experiments()]
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if PARENT_TAG not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    children = [r for r in runs if PARENT_TAG in r.data.tags]
    return Sweep(load(launch.name), launch.uri, out, stdout, dirs[0], client, exp.experiment_id,
                 parents[0], children)


@pytest.fixture(scope="module")
def ablation_sweep(launched) -> Sweep:
    return _finish(launched["ablation"])


@pytest.fixture(scope="module")
def hpo_sweep(launched) -> Sweep:
    return _finish(launched["hpo"])


@pytest.fixture(params=["ablation", "hpo"])
def sweep(request) -> Sweep:
    return request.getfixturevalue(f"{request.param}_sweep")


def _parsed(params: dict[str, str]) -> dict:
    return {k: parse_value(k, params[k]) if k != "device" else params[k] for k in FIELDS}


# --- MLflow ----------------------------------------------------------------------------------

def test_one_experiment_named_after_the_space_with_one_finished_parent(sweep):
    names = {e.name for e in sweep.client.search_experiments()}
    if sweep.uri.startswith("http"):  # the session's server also holds other tests' experiments
        assert sweep.space.name in names
    else:
        assert names - {"Default"} == {sweep.space.name}
    p = sweep.parent
    assert p.info.status == "FINISHED"
    assert p.info.run_name == sweep.sweep_dir.name + "-dry-run"
    assert p.data.tags["mlflow.note.content"].startswith("DRY RUN")  # its description: the table
    assert "| cell |" in p.data.tags["mlflow.note.content"]
    assert not any(ln.startswith("# ") for ln in p.data.tags["mlflow.note.content"].splitlines())
    assert p.data.params["space"] == sweep.space.name and p.data.params["dry_run"] == "True"
    assert p.data.tags["space"] == sweep.space.name
    assert TABLES <= {a.path for a in sweep.client.list_artifacts(p.info.run_id)}


def test_one_child_run_per_trial_under_the_parent(sweep):
    assert {r.data.tags[PARENT_TAG] for r in sweep.children} == {sweep.parent.info.run_id}
    replicate = sweep.stage("replicate")
    assert sorted(r.info.run_name for r in replicate) == sorted(f"{c.id}-s0" for c in sweep.space.cells)
    search = sweep.stage("search")
    assert len(search) == (DRY_RUN_SAMPLES * len(sweep.space.cells) if sweep.space.search else 0)
    assert len(sweep.children) == len(replicate) + len(search)
    assert all(r.info.status == "FINISHED" for r in replicate)


def test_short_trials_upload_only_their_last_checkpoint(ablation_sweep):
    """Dry-run trials train for well under --checkpoint-every-s: Tune's storage holds one
    checkpoint per trial, the last, with the pictures (each upload costs an experiment snapshot)."""
    trials = list((ablation_sweep.sweep_dir / "ray" / "replicate").glob("*-s0-*"))
    assert len(trials) == len(ablation_sweep.space.cells)
    for trial in trials:
        (checkpoint,) = trial.glob("checkpoint_*")
        assert TRIAL_FILES <= {f.name for f in checkpoint.iterdir()}, trial.name


def test_child_tags_name_cell_space_config_and_commit(sweep):
    for run in sweep.children:
        tags = run.data.tags
        assert tags["space"] == sweep.space.name
        assert tags["cell"] in {c.id for c in sweep.space.cells}
        assert tags["config_hash"] == from_dict(_parsed(run.data.params)).hash()
        assert re.fullmatch(r"[0-9a-f]{40}(\+dirty\.[0-9a-f]{8})?", tags["git_commit"]), tags["git_commit"]
        note = tags["mlflow.note.content"]  # its description in the MLflow UI
        assert note.startswith("DRY RUN") and f"cell `{tags['cell']}`, seed {tags['seed']}" in note
        assert "None" not in tags.values() and "status" not in tags  # the run's status says it


def test_replicate_params_are_every_config_field_of_the_cell(sweep):
    searched = set(sweep.space.search)
    for run in sweep.stage("replicate"):
        want = sweep.expected(run.data.tags["cell"]).to_dict()
        params = run.data.params
        assert set(FIELDS) <= set(params)
        for key in FIELDS:
            if key not in searched:
                assert params[key] == str(want[key]), (run.info.run_name, key)
        assert from_dict(_parsed(params))  # the logged params rebuild a valid config


def test_ablation_params_show_the_one_factor_each_cell_changes(ablation_sweep):
    by_cell = {r.data.tags["cell"]: r.data.params for r in ablation_sweep.stage("replicate")}
    assert by_cell["baseline"]["frames"] == "5" and by_cell["baseline"]["attention"] == "segmentation"
    assert by_cell["frames=3"]["frames"] == "3" and by_cell["frames=3"]["attention"] == "none"
    assert by_cell["noise=0.25"]["noise"] == "0.25"
    assert by_cell["motion_range=5"]["motion_range"] == "5"
    assert by_cell["supervision=supervised"]["supervision"] == "supervised"
    assert {p["seed"] for p in by_cell.values()} == {"0"}
    assert {p["steps"] for p in by_cell.values()} == {"4"}  # --set reached every trial


def _eval_steps(params: dict[str, str]) -> list[int]:
    steps, every = int(params["steps"]), int(params["eval_every"])
    return sorted(set(range(every, steps + 1, every)) | {steps})


def test_finished_children_have_val_curves_test_metrics_and_files(sweep):
    finished = [r for r in sweep.children if r.info.status == "FINISHED"]
    assert len(finished) >= len(sweep.space.cells)
    for run in finished:
        rid, params, metrics = run.info.run_id, run.data.params, run.data.metrics
        t5 = params["frames"] == "5"
        for name in (*VAL_NAMES, *(("attn_acc",) if t5 else ())):
            history = sweep.client.get_metric_history(rid, f"val_{name}")
            assert sorted({m.step for m in history}) == _eval_steps(params), (run.info.run_name, name)
        for name in (*TEST_NAMES, *(("attn_acc",) if t5 else ())):
            assert math.isfinite(metrics[f"test_{name}"]), (run.info.run_name, name)
        assert 0 <= metrics["test_acc"] <= 1 and 0 <= metrics["test_acc_fg"] <= 1
        if not t5:
            assert "val_attn_acc" not in metrics and "test_attn_acc" not in metrics
        assert TRIAL_FILES <= {a.path for a in sweep.client.list_artifacts(rid)}, run.info.run_name


def test_val_curve_holds_each_evaluation_once(ablation_sweep):
    run = ablation_sweep.stage("replicate")[0]
    history = ablation_sweep.client.get_metric_history(run.info.run_id, "val_acc_fg")
    assert len(history) == len(_eval_steps(run.data.params))


def test_logged_config_artifact_matches_the_params(sweep, tmp_path):
    for run in sweep.stage("replicate"):
        path = sweep.client.download_artifacts(run.info.run_id, "config.json", str(tmp_path))
        logged = json.loads(Path(path).read_text())
        assert {k: str(v) for k, v in logged.items()} == {k: run.data.params[k] for k in logged}
        assert set(logged) == set(FIELDS)


# --- the sweep directory and stdout -----------------------------------------------------------

def test_sweep_directory_holds_one_result_row_per_trial(sweep):
    table = pq.read_table(sweep.sweep_dir / "results.parquet")
    needed = {"cell", "seed", "status", "run_id", *FIELDS, *(f"test_{n}" for n in TEST_NAMES)}
    assert needed <= set(table.column_names), needed - set(table.column_names)
    rows = table.to_pylist()
    assert sorted(r["cell"] for r in rows) == sorted(c.id for c in sweep.space.cells)
    assert {r["run_id"] for r in rows} == {r.info.run_id for r in sweep.stage("replicate")}
    by_id = {r.info.run_id: r for r in sweep.stage("replicate")}
    searched = set(sweep.space.search)
    for row in rows:
        assert row["seed"] == 0 and row["status"] == "finished"
        want = sweep.expected(row["cell"]).to_dict()
        for key in FIELDS:
            if key not in searched:
                assert row[key] == want[key], (row["cell"], key)
        metrics = by_id[row["run_id"]].data.metrics
        for name in TEST_NAMES:
            assert row[f"test_{name}"] == pytest.approx(metrics[f"test_{name}"])


def test_ablation_md_has_one_row_per_cell_in_space_order(sweep):
    md = (sweep.sweep_dir / "ablation.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \|", md, re.M)
    assert rows == [c.id for c in sweep.space.cells]


def test_time_left_is_the_plans_rest_at_the_speed_seen_shared_by_the_running_trials():
    from orchestrator.callbacks import time_left

    # Two trials estimated at 100 s each took 120 s: 800 s of the plan left, at 1.2x.
    assert time_left(1000, 200, 240, running=2) == pytest.approx(480)
    assert time_left(1000, 200, 240, running=1) == pytest.approx(960)
    assert time_left(1000, 0, 0, running=2) is None  # nothing with an estimate finished yet
    assert time_left(200, 200, 240, running=2) is None  # the plan is spent


def test_stdout_counts_every_finished_trial_and_ends_with_how_to_browse(sweep):
    lines = sweep.stdout.strip().splitlines()
    progress = [m.groups() for m in map(PROGRESS.match, lines) if m]
    replicate = [p for p in progress if p[2] == "replicate"]
    n = len(sweep.space.cells)
    assert [(int(k), int(total)) for k, total, *_ in replicate] == [(k, n) for k in range(1, n + 1)]
    assert sorted(p[3] for p in replicate) == sorted(c.id for c in sweep.space.cells)
    assert all(p[5].startswith("finished") for p in replicate)
    assert all(re.search(r"\| \S+ elapsed, ~\S+ left$", p[5]) for p in replicate[1:-1])  # an ETA
    assert "Configuration for experiment" not in sweep.stdout  # Tune's own box is gone
    search = [p for p in progress if p[2] == "search"]
    samples = DRY_RUN_SAMPLES * len(sweep.space.cells) if sweep.space.search else 0
    assert [(int(k), int(t)) for k, t, *_ in search] == [(k, samples) for k in range(1, samples + 1)]
    view = re.compile(r"/#/experiments/\d+/runs\?workflowType=machine_learning"
                      rf"&viewStateShareKey={sweep.parent.info.run_id}$")
    if sweep.uri.startswith("http"):
        assert lines[-1].startswith(f"browse them in MLflow: open {sweep.uri.rstrip('/')}/#/")
    else:
        assert f"bin/mlflow ui --backend-store-uri {sweep.uri} --workers 1" in lines[-2]
        assert lines[-1].strip().startswith("then open http://127.0.0.1:5000/")
    assert view.search(lines[-1]), lines[-1]


def test_default_store_is_sqlite_beside_the_sweeps(ablation_sweep):
    assert ablation_sweep.uri == f"sqlite:///{(ablation_sweep.out / 'mlflow.db').resolve()}"
    assert (ablation_sweep.out / "mlflow.db").is_file()


def test_browse_hint_for_a_tracking_server_is_usable(hpo_sweep):
    last = hpo_sweep.stdout.strip().splitlines()[-1]
    m = re.search(r"mlflow ui --backend-store-uri (\S+)", last)
    assert m is None or not m.group(1).startswith(("http://", "https://")), last
    assert hpo_sweep.uri in last


# --- Optuna ----------------------------------------------------------------------------------

def test_hpo_replicates_each_cells_best_optuna_trial(hpo_sweep):
    assert (hpo_sweep.sweep_dir / "optuna.db").is_file()
    replicates = {r.data.tags["cell"]: r for r in hpo_sweep.stage("replicate")}
    assert set(replicates) == {c.id for c in hpo_sweep.space.cells}
    for cell in hpo_sweep.space.cells:  # each cell has its own study, and replicates its best
        study = optuna.load_study(study_name=f"search-{cell.id}",
                                  storage=f"sqlite:///{hpo_sweep.sweep_dir / 'optuna.db'}")
        # a trial ASHA stopped is PRUNED and not a candidate: its value is an early one
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert len(study.trials) == DRY_RUN_SAMPLES and done
        best_value = max(t.value for t in done)
        run = replicates[cell.id]
        chosen = {k: parse_value(k, run.data.params[k]) for k in hpo_sweep.space.search}
        assert any(t.value == best_value and t.params == pytest.approx(chosen) for t in done), (
            cell.id, chosen, [(t.value, t.params) for t in done])
    # Every search child logged the values Optuna sampled for it, inside the declared bounds.
    for run in hpo_sweep.stage("search"):
        for key, dist in hpo_sweep.space.search.items():
            value = parse_value(key, run.data.params[key])
            inside = (value in dist.choices) if dist.choices else dist.low <= value <= dist.high
            assert inside, (key, value)


def test_the_search_outcome_is_in_front_of_the_researcher(hpo_sweep):
    """Per cell: the best trial, importances and history in the sweep directory and on the
    parent run; the studies name their objective and link every trial to its cell, Tune trial
    and MLflow run (what optuna-dashboard shows); the closing lines say how to open it."""
    found = json.loads((hpo_sweep.sweep_dir / "search.json").read_text())
    assert found["metric"] == "val_fg_net"
    assert set(found["cells"]) == {c.id for c in hpo_sweep.space.cells}
    for cell, o in found["cells"].items():
        assert o["best"]["params"].keys() == hpo_sweep.space.search.keys(), cell
        assert [h["best"] for h in o["history"]] == sorted(h["best"] for h in o["history"])
        assert "importances" in o
    assert (hpo_sweep.sweep_dir / "search.png").stat().st_size > 0
    artifacts = {f.path for f in hpo_sweep.client.list_artifacts(hpo_sweep.parent.info.run_id)}
    assert {"search.json", "search.md", "search.png"} <= artifacts
    searched = {r.data.tags["tune_trial_id"]: r for r in hpo_sweep.stage("search")}
    storage = f"sqlite:///{hpo_sweep.sweep_dir / 'optuna.db'}"
    for cell in hpo_sweep.space.cells:
        study = optuna.load_study(study_name=f"search-{cell.id}", storage=storage)
        assert study.metric_names == ["val_fg_net"]
        for t in study.trials:
            run = searched[t.user_attrs["tune_trial_id"]]
            assert t.user_attrs["cell"] == cell.id == run.data.tags["cell"]
            assert t.user_attrs["mlflow_run_id"] == run.info.run_id
    assert f"optuna-dashboard {storage}" in hpo_sweep.stdout
    assert any(line.startswith(f"search {c.id}: best val_fg_net") for c in hpo_sweep.space.cells
               for line in hpo_sweep.stdout.splitlines())
    params = hpo_sweep.parent.data.params
    assert (params["sampler"], params["scheduler"]) == ("random", "asha")


def test_search_trials_checkpoint_every_report_asha_may_stop_them_at(hpo_sweep):
    """At the dry-run budget ASHA's rungs are reports 1 and 2, the final report is 3: every
    search trial, stopped early or not, has a checkpoint for each report Tune received."""
    import json

    seed = SweepState.search_seed  # search trials train with the search seed, not a replicate's
    trials = list((hpo_sweep.sweep_dir / "ray" / "search").glob(f"r*-s{seed}-*"))
    assert len(trials) == DRY_RUN_SAMPLES * len(hpo_sweep.space.cells)
    for trial in trials:
        reports = (trial / "result.json").read_text().splitlines()
        assert [json.loads(r)["training_iteration"] for r in reports] == list(
            range(1, len(reports) + 1))
        assert len(list(trial.glob("checkpoint_*"))) == min(len(reports), 3), trial.name


def test_the_cells_searches_run_at_the_same_time(hpo_sweep):
    """Each cell's search trials, as MLflow timed them: the two cells' searches overlap."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for run in hpo_sweep.stage("search"):
        spans.setdefault(run.data.tags["cell"], []).append((run.info.start_time, run.info.end_time))
    assert set(spans) == {"r3", "r5"}
    (a0, a1), (b0, b1) = [(min(s for s, _ in v), max(e for _, e in v)) for v in spans.values()]
    assert a0 < b1 and b0 < a1, spans  # one cell's search began before the other's ended
    overlapping = [(x, y) for x in spans["r3"] for y in spans["r5"] if x[0] < y[1] and y[0] < x[1]]
    assert overlapping, spans  # and trials of both cells ran at once


# --- the report CLI rebuilds the tables from MLflow alone ----------------------------------

def test_report_reproduces_the_sweep_tables_from_mlflow(sweep, run_cli, tmp_path):
    r = run_cli("orchestrator.report", "--tracking-uri", sweep.uri, "--experiment",
                sweep.space.name, "--out", tmp_path / "rep", env=ISOLATED)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "rep" / "ablation.md").read_bytes() == (sweep.sweep_dir / "ablation.md").read_bytes()
    order = [("cell", "ascending"), ("seed", "ascending")]
    rebuilt = pq.read_table(tmp_path / "rep" / "results.parquet").sort_by(order)
    original = pq.read_table(sweep.sweep_dir / "results.parquet").sort_by(order)
    assert rebuilt.equals(original)


def test_a_sweep_is_recorded_as_data_from_mlflow(ablation_sweep, tmp_path, capsys):
    """orchestrator.record writes a row per replicate trial with its commit, machine, date, wall
    seconds and every test metric, and checks the sweep's trials against its plan; recording
    the same sweep again changes nothing."""
    from orchestrator.record import main as record_main
    from orchestrator.record import read

    out = tmp_path / "ablation.csv"
    args = ["--tracking-uri", ablation_sweep.uri, "--experiment", "ablation", "--out", str(out)]
    assert record_main(args) == 0
    first = out.read_bytes()
    frame = read(out)
    replicates = ablation_sweep.stage("replicate")
    said = capsys.readouterr().out
    assert f"{len(replicates)} of {len(replicates)} planned trials finished\n" in said
    assert "no (cell, seed) finished twice" in said
    assert sorted(frame["run_id"]) == sorted(r.info.run_id for r in replicates)
    assert (frame["status"] == "finished").all() and (frame["wall_s"] > 0).all()
    runs = {r.info.run_id: r for r in replicates}  # wall_s: the trial's time, within its run
    for row in frame.itertuples():
        run = runs[row.run_id]
        assert row.wall_s == pytest.approx(run.data.metrics["trial_s"], rel=1e-5)  # 6 digits
        assert row.wall_s <= (run.info.end_time - run.info.start_time) / 1000
    assert frame["commit"].str.fullmatch(r"[0-9a-f]{40}(\+dirty\.[0-9a-f]{8})?").all()
    assert frame["machine"].str.contains("cores").all()
    assert frame["date"].str.fullmatch(r"\d{4}-\d\d-\d\d").all()
    for name in TEST_NAMES:
        assert frame[f"test_{name}"].notna().all(), name
    assert record_main(args) == 0 and out.read_bytes() == first


def test_the_curves_study_reads_every_cells_plateau_from_mlflow(ablation_sweep, tmp_path, capsys):
    from orchestrator.curves import main as curves_main

    out = tmp_path / "curves.json"
    assert curves_main(["--tracking-uri", ablation_sweep.uri, "--experiment", "ablation",
                        "--json", str(out)]) == 0
    cells = json.loads(out.read_text())["cells"]
    assert set(cells) == {r.data.tags["cell"] for r in ablation_sweep.stage("replicate")}
    for c in cells.values():  # steps=4, eval_every=2 (SETS): evaluations at steps 2 and 4
        assert c["steps"] == 4 and c["plateau"] in (2, 4)
    assert "budget     4  plateau" in capsys.readouterr().out
