"""The research record (orchestrator/record.py): merging a sweep's trials, and the tables."""

from __future__ import annotations

import pandas as pd
import pytest

from motioncore.config import UsageError
from orchestrator.record import COLUMNS, front, main, merge, read, replace_table, settle, table


def rows(*specs: tuple[str, int, str, float]) -> pd.DataFrame:
    """(cell, seed, run_id, acc_fg) -> record rows, every other test metric fixed."""
    out = []
    for cell, seed, run_id, acc_fg in specs:
        out.append({"cell": cell, "seed": seed, "status": "finished", "commit": "abcdef123",
                    "machine": "AMD EPYC, 2 cores", "date": "2026-12-02", "wall_s": 100.0,
                    "test_acc": 0.99, "test_acc_fg": acc_fg, "test_fg_net": acc_fg - 0.01,
                    "test_bg_motion": 0.002, "test_acc_zero": 0.81, "run_id": run_id})
    return pd.DataFrame(out).reindex(columns=COLUMNS)


def test_a_sweep_adds_the_trials_the_record_lacks():
    old = rows(("sup_T3_r1", 0, "a", 0.98))
    merged = merge(old, rows(("sup_T3_r1", 1, "b", 0.97), ("sup_T3_r2", 0, "c", 0.99)), False)
    assert list(zip(merged["cell"], merged["seed"], merged["run_id"], strict=True)) == [
        ("sup_T3_r1", 0, "a"), ("sup_T3_r1", 1, "b"), ("sup_T3_r2", 0, "c")]
    assert merge(old, rows(("sup_T3_r1", 0, "a", 0.98)), False)["run_id"].tolist() == ["a"]


def test_a_recorded_trial_is_replaced_only_when_asked():
    old = rows(("sup_T3_r1", 0, "a", 0.98))
    again = rows(("sup_T3_r1", 0, "z", 0.90))
    with pytest.raises(UsageError, match="sup_T3_r1 seed 0 is recorded from run a.*--overwrite"):
        merge(old, again, False)
    assert merge(old, again, True)["run_id"].tolist() == ["z"]
    old.loc[0, "status"] = "failed"  # not a result: the run that finished it replaces it
    assert merge(old, again, False)["run_id"].tolist() == ["z"]


def test_a_sweeps_trials_are_checked_against_its_plan_one_row_per_cell_and_seed():
    sweep = rows(("sup_T3_r1", 0, "killed", 0.5), ("sup_T3_r1", 0, "again", 0.98),
                 ("sup_T3_r1", 1, "one", 0.97), ("sup_T3_r2", 0, "first", 0.99),
                 ("sup_T3_r2", 0, "second", 0.99))
    sweep.loc[0, "status"] = "stopped early"  # an interruption ended it; it ran again
    planned = {(c, s) for c in ("sup_T3_r1", "sup_T3_r2") for s in (0, 1)}
    kept, said = settle(sweep, planned)
    assert sorted(zip(kept["cell"], kept["seed"], kept["run_id"], strict=True)) == [
        ("sup_T3_r1", 0, "again"), ("sup_T3_r1", 1, "one"), ("sup_T3_r2", 0, "second")]
    assert said == ["3 of 4 planned trials finished: no finished run for sup_T3_r2 seed 1",
                    "finished more than once (kept the last): sup_T3_r2 seed 0",
                    "1 run(s) ended unfinished and were run again to the end (the finished run "
                    "is recorded)"]
    kept, said = settle(sweep.iloc[1:3], {("sup_T3_r1", 0), ("sup_T3_r1", 1)})
    assert said == ["2 of 2 planned trials finished", "no (cell, seed) finished twice"]
    sweep.loc[2, "status"] = "running"  # not a result yet
    kept, said = settle(sweep.iloc[1:3], {("sup_T3_r1", 0), ("sup_T3_r1", 1)})
    assert list(kept["run_id"]) == ["again"]
    assert said[0] == "1 of 2 planned trials finished: no finished run for sup_T3_r1 seed 1"
    assert said[-1] == "1 run(s) still running, not recorded"


def test_a_run_that_failed_after_its_trial_finished_was_not_run_again_and_none_finished_keeps_the_last():
    sweep = rows(("sup_T3_r1", 0, "done", 0.98), ("sup_T3_r1", 0, "late", 0.1),
                 ("sup_T3_r2", 0, "first", 0.2), ("sup_T3_r2", 0, "second", 0.3))
    sweep.loc[1:, "status"] = "failed"
    kept, said = settle(sweep, None)
    assert list(kept["run_id"]) == ["done", "second"]
    assert said == ["1 trials finished (the parent run records no plan to check them against)",
                    "no (cell, seed) finished twice"]  # nothing ran again to its end


def test_the_plan_a_record_checks_against_is_the_parent_runs(tmp_path):
    from mlflow.tracking import MlflowClient

    from orchestrator.record import planned

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("seed_table", artifact_location=str(tmp_path / "art"))

    def parent(**params) -> str:
        run = client.create_run(exp)
        for k, v in params.items():
            client.log_param(run.info.run_id, k, v)
        return run.info.run_id

    sweep = dict(space="seed_table", seeds="3,4", search_seed=1000, dry_run=False)
    assert planned(client, parent(**sweep, cells="sup_T3_r1,unsup_T3_r3")) == {
        ("sup_T3_r1", 3), ("sup_T3_r1", 4), ("unsup_T3_r3", 3), ("unsup_T3_r3", 4)}
    assert len(planned(client, parent(**sweep, cells="all"))) == 40  # 20 cells, 2 seeds
    assert planned(client, parent(**{**sweep, "dry_run": True}, cells="sup_T3_r1")) == {
        ("sup_T3_r1", 3)}  # a dry run, its first seed
    assert planned(client, parent(space="seed_table", seeds="3", cells="all")) is None  # older
    assert planned(client, parent(**{**sweep, "space": "gone"}, cells="all")) is None
    assert planned(client, parent(**sweep, cells="sup_T3_r1,gone")) is None


def test_the_table_is_mean_and_std_over_finished_seeds_with_every_cell_of_the_space():
    frame = rows(("sup_T3_r1", 0, "a", 0.98), ("sup_T3_r1", 1, "b", 0.96),
                 ("sup_T3_r2", 0, "c", 0.99))
    frame.loc[len(frame)] = {**rows(("sup_T3_r2", 1, "d", 0.10)).iloc[0], "status": "failed"}
    text = table(frame, "seed_table")
    by_cell = {line.split("|")[1].strip(): [x.strip() for x in line.split("|")[2:-1]]
               for line in text.splitlines()[2:]}
    assert len(by_cell) == 20  # every cell of the research table, recorded or not
    r1 = by_cell["`sup_T3_r1`"]
    assert r1[:4] == ["100", "2", "99.00 ± 0.00", "97.00 ± 1.41"]  # published, n, acc, acc_fg
    assert by_cell["`sup_T3_r2`"][1:4] == ["1", "99.00 ± –", "99.00 ± –"]  # one seed: no std
    assert by_cell["`unsup_T3_r5`"][1:3] == ["0", "–"] and "not yet recorded" in text


def test_the_front_page_table_has_every_row_with_the_headline_beside_acc():
    frame = rows(("unsup_T3_r3", 0, "a", 0.96), ("unsup_T3_r3", 1, "b", 0.98))
    lines = front(frame, "seed_table").splitlines()
    assert lines[0] == "| row | published | acc | acc_fg | bg_motion | acc_zero | n | CELL |"
    assert len(lines) == 2 + 20
    assert ("| unsupervised T=3, r=3 | 93 | 99.00 ± 0.00 | 97.00 ± 1.41 | 0.20 ± 0.00 | 81.00 | 2 "
            "| `unsup_T3_r3` |") in lines
    assert "| supervised T=3, r=1 | 100 | – | – | – | – | 0 | `sup_T3_r1` |" in lines


def test_only_the_tables_block_is_replaced():
    text = "intro\n<!-- table:seed_table -->\nold\n<!-- /table -->\nafter\n"
    assert replace_table(text, "seed_table", "new\n") == (
        "intro\n<!-- table:seed_table -->\nnew\n<!-- /table -->\nafter\n")
    with pytest.raises(UsageError, match="table:ablation"):
        replace_table(text, "ablation", "x")


def test_the_tables_command_regenerates_the_docs_from_the_record(tmp_path, monkeypatch, capsys):
    record = tmp_path / "docs" / "results" / "seed_table.csv"
    record.parent.mkdir(parents=True)
    rows(("unsup_T3_r3", 3, "a", 0.96), ("unsup_T3_r3", 4, "b", 0.97)).to_csv(record, index=False)
    block = "<!-- table:seed_table -->\nstale\n<!-- /table -->\n"
    front_block = "<!-- table:seed_table:front -->\nstale\n<!-- /table -->\n"
    (tmp_path / "README.md").write_text("# front\n" + block + front_block + "rest\n")
    (tmp_path / "docs" / "results.md").write_text("# results\n" + block)
    monkeypatch.chdir(tmp_path)
    assert main(["--tables", str(record)]) == 0
    assert record.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the plot beside it
    for doc in ("README.md", "docs/results.md"):
        text = (tmp_path / doc).read_text()
        assert "stale" not in text and "| `unsup_T3_r3` | 93 | 2 |" in text
        assert "96.50 ± 0.71" in text and "3, 4" in text
    readme = (tmp_path / "README.md").read_text()
    assert readme.endswith("<!-- /table -->\nrest\n")
    assert "| unsupervised T=3, r=3 | 93 | 99.00 ± 0.00 | 96.50 ± 0.71 |" in readme
    assert main(["--tables", str(record)]) == 0  # run again: nothing changes
    assert "the tables are current" in capsys.readouterr().out
    assert len(read(record)) == 2


@pytest.mark.parametrize("args, named", [
    (["--tables", "nowhere.csv"], "no such record"),
    (["--experiment", "x"], "--tracking-uri, --experiment and --out"),
])
def test_bad_record_commands_are_one_line(args, named, capsys):
    assert main(args) == 2
    assert named in capsys.readouterr().err


@pytest.mark.parametrize("curve, within, want", [
    ([(100, 50.0), (200, 80.0), (300, 90.0), (400, 90.2), (500, 90.1)], 0.5, 300),
    ([(100, 50.0), (200, 80.0), (300, 90.0)], 0.5, 300),  # still rising: the last evaluation
    ([(100, 90.0), (200, 95.0), (300, 90.2)], 0.5, 300),  # a dip and back is not a plateau
    ([(100, 90.0), (200, 90.3)], 0.5, 100),
    ([], 0.5, None),
])
def test_a_plateau_is_where_every_later_evaluation_stays_near_the_last(curve, within, want):
    from orchestrator.curves import plateau_step

    assert plateau_step(curve, within) == want
