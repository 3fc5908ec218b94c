"""Does a model-guided search (TPE + ASHA) beat random search at the same compute?

    python benchmarks/search_efficiency.py [--reps 5] [--budget-trials 10] [--cell C] [--out DIR]
    python benchmarks/search_efficiency.py --smoke        # the plumbing, in minutes

Three arms through the real sweep on a cell of ``search_spaces/search_bench.py`` (``--cell``, by
default its first; each fixed before its first run with its budget and four hyperparameters):
TPE with ASHA, random search with the same ASHA (the sweep's default), random search without
early stopping. Each repetition gives every arm the same search seed (100 + rep), and every arm
the same compute: ``--budget-trials`` times the plan's
cost of one full trial, in summed trial CPU-seconds (one thread per trial, so a trial's wall
time). Every arm is given more samples than fit and its sweep is stopped once its trials have
spent the budget; trials that end past it do not count. A trial's value is its final validation
fg_net; a trial ASHA stopped has none.

Reports, per arm: every repetition's best-so-far curve against CPU-seconds, the median and
spread of the final best, the area under the curve (mean best-so-far over the budget), and the
CPU-seconds to reach random search's final median (never reached: the whole budget); and, from
the plain random arm's full curves, whether ASHA's early rungs rank trials as their end does
(``rung_fidelity``: each report's Spearman correlation with the last, and how many of the five
best trials halving would keep at each of ``GRACES``). ``--arms`` runs some arms only. Writes
search_efficiency.json and .png into ``--out``; prints the JSON last. Run again with the same
``--out``, it reuses every arm and repetition that finished there and runs the rest.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARMS = {"tpe+asha": ("tpe", "asha"), "random+asha": ("random", "asha"),
        "random": ("random", "none")}
BASELINE = "random"
GRACES = (0.25, 0.5)  # ASHA grace fractions whose rungs rung_fidelity judges: the default, twice it


def trial_cost_s(cell: str) -> float:
    from orchestrator import plan
    from search_spaces import load

    space = load("search_bench")
    return plan.estimate_seconds(plan.cell_config(space, space.cell(cell), dry_run=False, sets={}))


def run_arm(arm: str, rep: int, samples: int, out: Path, smoke: bool, budget: float,
            cell: str) -> Path:
    """One arm's sweep of ``cell``, stopped once its trials have spent ``budget`` CPU-seconds
    (what runs past the budget would not count): its Optuna study."""
    from orchestrator.search import study_name

    sampler, scheduler = ARMS[arm]
    args = [sys.executable, "-m", "orchestrator.sweep", "--space", "search_bench", "--seeds", "1",
            "--cells", cell,
            "--search-seed", str(100 + rep), "--sampler", sampler, "--scheduler", scheduler,
            "--num-samples", str(samples), "--max-concurrent", "2", "--out", str(out)]
    if smoke:
        args += ["--set", "steps=20", "--set", "eval_every=5", "--set", "val_size=32",
                 "--set", "test_size=32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "RAY_ADDRESS": "local",
           "MOTIONCORE_TRACKING_URI": "", "MOTIONCORE_STORAGE_PATH": ""}
    log = out / "sweep.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(args, cwd=out, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
        cut = False
        while proc.poll() is None:
            time.sleep(5)
            db = study_db(out)
            if db is not None and spent(db, study_name(cell)) >= budget:
                cut = True
                stop(proc)
    if proc.returncode != 0 and not cut:
        raise SystemExit(f"{arm} rep {rep} failed:\n{log.read_text()[-4000:]}")
    (out / "arm.done").write_text(json.dumps({"cut_at_budget": cut, "rc": proc.returncode}))
    return study_db(out)


def study_db(out: Path) -> Path | None:
    found = [d / "optuna.db" for d in out.iterdir() if (d / "optuna.db").exists()]
    return found[0] if found else None


def query(db: Path, sql: str, *args) -> list | None:
    """``sql``'s rows from a study database, read with sqlite3 on a read-only connection:
    opening it through Optuna would set up its schema, which races with the sweep setting it up
    (UNIQUE constraint failed: alembic_version). None when it cannot be read yet."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            return con.execute(sql, args).fetchall()
    except sqlite3.Error:  # not created yet, or being created
        return None


def spent(db: Path, study: str) -> float:
    """Trial CPU-seconds so far: ended trials' durations and running trials' time until now."""
    rows = query(db, "SELECT t.datetime_start, t.datetime_complete FROM trials t JOIN studies s "
                 "ON t.study_id = s.study_id WHERE s.study_name = ?", study)
    if rows is None:
        return 0.0
    parse = datetime.datetime.fromisoformat
    return spent_at([(parse(start), end and parse(end)) for start, end in rows if start],
                    datetime.datetime.now())


def spent_at(runs, moment: datetime.datetime) -> float:
    """Every started trial's running time up to ``moment`` (one thread each); ``runs``: its
    (start, end or None) pairs."""
    return sum(max(0.0, (min(end or moment, moment) - start).total_seconds())
               for start, end in runs)


def intervals(trials) -> list:
    """Optuna trials' (start, end or None), those that started."""
    return [(t.datetime_start, t.datetime_complete) for t in trials if t.datetime_start]


def stop(proc: subprocess.Popen) -> None:
    """Interrupt the sweep and its Ray processes (a new session of their own); kill what is
    left after a minute."""
    for sig, wait in ((signal.SIGINT, 60), (signal.SIGKILL, 30)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def finished(out: Path, arm: str, rep: int, study: str) -> Path | None:
    """The study of an earlier run of this arm and repetition that ran to its end or to its
    budget, so that an interrupted benchmark goes on where it stopped."""
    for work in sorted(out.glob(f"{arm}-{rep}-*")):
        if (work / "arm.done").exists() or any(work.glob("*/search.json")):
            db = study_db(work)
            if db is not None and query(db, "SELECT 1 FROM studies WHERE study_name = ?", study):
                return db
    return None


def curve(db: Path, name: str) -> list[tuple[float, float | None]]:
    """(trial CPU-seconds spent by the moment each trial ended, its final value or None), in
    the order trials ended. Spent: every trial's running time up to that moment, the trials
    still running included (one thread each), which is what the budget stops an arm at."""
    import optuna

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    ended = sorted((t for t in study.trials if t.datetime_complete),
                   key=lambda t: t.datetime_complete)
    runs = intervals(study.trials)
    return [(spent_at(runs, t.datetime_complete),
             t.value if t.state == optuna.trial.TrialState.COMPLETE else None) for t in ended]


def best_so_far(points, at: float) -> float | None:
    values = [v for s, v in points if s <= at and v is not None]
    return max(values) if values else None


def summarise(curves: dict[str, list], budget: float) -> dict:
    grid = [budget * i / 100 for i in range(1, 101)]
    finals = {arm: [best_so_far(c, budget) for c in cs] for arm, cs in curves.items()}
    target = statistics.median([f for f in finals[BASELINE] if f is not None])
    out = {"budget_cpu_s": budget, "target": target, "arms": {}}
    for arm, cs in curves.items():
        reached, areas = [], []
        for c in cs:
            hit = next((s for s, _ in c if s <= budget and (best_so_far(c, s) or -1e9) >= target),
                       budget)
            reached.append(hit)
            bests = [best_so_far(c, t) for t in grid]
            floor = min(v for v in bests if v is not None) if any(bests) else 0.0
            areas.append(statistics.mean(v if v is not None else floor for v in bests))
        vals = [f for f in finals[arm] if f is not None]
        out["arms"][arm] = {
            "final_best": finals[arm], "final_median": statistics.median(vals) if vals else None,
            "final_spread": [min(vals), max(vals)] if vals else None,
            "auc": areas, "auc_median": statistics.median(areas),
            "cpu_s_to_target": reached, "cpu_s_to_target_median": statistics.median(reached),
            "curves": c_round(cs)}
    return out


def full_curves(db: Path, name: str) -> list[list[float]]:
    """Every completed trial's validation values at each report, of an arm without early
    stopping (so every trial has all of them)."""
    import optuna

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    curves = [[t.intermediate_values[k] for k in sorted(t.intermediate_values)]
              for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return [c for c in curves if c and len(c) == max(map(len, curves))]


def rung_fidelity(curves: list[list[float]], rung_sets: dict[str, list[int]], best: int = 5
                  ) -> dict:
    """Whether an early report ranks trials as their end does, from full curves (plain random
    search): each report's Spearman correlation with the last, and how many of the ``best``
    trials by the last report would pass every rung of each rung set (reports, 1-based) if the
    trials below the median of those still running were stopped there (synchronous halving)."""
    import pandas as pd

    table = pd.DataFrame(curves)
    last = table.columns[-1]
    top = table[last].nlargest(best).index
    passed = {}
    for name, rungs in rung_sets.items():
        alive = pd.Series(True, index=table.index)
        for r in (r for r in rungs if r - 1 < last):
            alive &= table[r - 1] >= table.loc[alive, r - 1].median()
        passed[name] = {"rungs": rungs, f"best_{best}_passed": int(alive[top].sum())}
    rho = [table[k].corr(table[last], method="spearman") for k in table.columns]
    return {"trials": len(table), "spearman_with_last": [
        None if pd.isna(v) else round(float(v), 3) for v in rho], "halving": passed}


def c_round(cs):
    return [[[round(s, 1), v] for s, v in c] for c in cs]


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    budget = result["budget_cpu_s"]
    for (arm, r), colour in zip(result["arms"].items(), ("C0", "C1", "C2"), strict=False):
        for i, c in enumerate(r["curves"]):
            xs = [t for t, _ in c if t <= budget]
            ys = [best_so_far(c, t) for t in xs]
            pts = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
            if pts:
                ax.step(*zip(*pts, strict=True), where="post", color=colour, alpha=0.6,
                        label=arm if i == 0 else None)
    ax.axhline(result["target"], color="k", ls=":", label="random's final median")
    ax.set_ylim(bottom=result["target"] - 1.0)  # diverged trials (fg_net near -4) would flatten it
    ax.set(xlabel="trial CPU-seconds", ylabel="best val fg_net so far",
           title="search efficiency: every repetition")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--budget-trials", type=float, default=10,
                   help="compute per arm and repetition, in full trials (default 10)")
    p.add_argument("--out", default=None, help="where the JSON and plot go (default: a temp dir)")
    p.add_argument("--smoke", action="store_true", help="tiny trials, two repetitions")
    p.add_argument("--cell", help="the search_bench cell (default: its first)")
    p.add_argument("--arms", help=f"run only these ({', '.join(ARMS)}; default all); the others "
                   "count where they finished in --out")
    a = p.parse_args()
    reps = 2 if a.smoke else a.reps
    from orchestrator.search import asha_rungs, asha_settings, study_name
    from search_spaces import load

    space = load("search_bench")
    cells = [c.id for c in space.cells]
    cell = a.cell or cells[0]
    if cell not in cells:
        p.error(f"--cell {cell}: search_bench's cells are {', '.join(cells)}")
    study = study_name(cell)
    budget = (5.0 if a.smoke else trial_cost_s(cell)) * a.budget_trials
    out = Path(a.out or tempfile.mkdtemp(prefix="search-efficiency-"))
    out.mkdir(parents=True, exist_ok=True)
    run = a.arms.split(",") if a.arms else list(ARMS)
    if unknown := [arm for arm in run if arm not in ARMS]:
        p.error(f"--arms {','.join(unknown)}: arms are {', '.join(ARMS)}")
    curves: dict[str, list] = {arm: [] for arm in ARMS}
    full: list[list[float]] = []  # every plain random trial's validation curve
    for rep in range(reps):
        for arm in ARMS:
            # more than fit, so the budget ends each arm (ASHA ends a cheap trial in seconds)
            samples = int(a.budget_trials * 10) + 1
            db = finished(out, arm, rep, study)
            if db is None and arm not in run:
                continue
            if db is None:
                work = Path(tempfile.mkdtemp(prefix=f"{arm}-{rep}-", dir=out))
                db = run_arm(arm, rep, samples, work, a.smoke, budget, cell)
            curves[arm].append(curve(db, study))
            if ARMS[arm][1] == "none":
                full += full_curves(db, study)
            print(f"{arm} rep {rep}: best {best_so_far(curves[arm][-1], budget)}", flush=True)
    curves = {arm: cs for arm, cs in curves.items() if len(cs) == reps}  # every repetition
    if BASELINE not in curves:
        raise SystemExit(f"no {BASELINE} arm for every repetition in {out}: its final median "
                         "is the target (run it with --arms)")
    result = {"cell": f"search_bench/{cell}", "reps": reps, **summarise(curves, budget)}
    if full:  # one report per evaluation and the last with the test metrics
        reports = max(map(len, full))
        result["rung_fidelity"] = rung_fidelity(full, {  # the sweep's rungs (search.cell_searches)
            f"grace {g:g}": asha_rungs(**asha_settings(reports - 1, g, space.reduction_factor))
            for g in GRACES})
    (out / "search_efficiency.json").write_text(json.dumps(result, indent=2))
    plot(result, out / "search_efficiency.png")
    print(f"wrote {out}/search_efficiency.json and .png", flush=True)
    print(json.dumps({k: v for k, v in result.items() if k != "arms"} | {
        arm: {k: v for k, v in r.items() if k != "curves"} for arm, r in result["arms"].items()}))


if __name__ == "__main__":
    main()
