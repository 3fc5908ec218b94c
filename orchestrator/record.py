"""The research record: a sweep's trials as a CSV under docs/, and the tables made from it.

    python -m orchestrator.record --tracking-uri URI --experiment seed_table [--parent RUN_ID] \
        --out docs/results/seed_table.csv          # add the sweep's trials to the record
    python -m orchestrator.record --tables docs/results/seed_table.csv
        # regenerate the tables of README.md and docs/results.md, and its plot, from the record

A row per trial: cell, seed, status, commit, machine, date, wall seconds, every test metric and
the MLflow run id. Rows are keyed by (cell, seed): a sweep adds the ones the record lacks, and
never replaces one recorded by another run unless told to (``--overwrite``). The tables sit in
each document between ``<!-- table:NAME -->`` (``table:NAME:front``: the README's shorter one)
and ``<!-- /table -->``; nothing else is touched.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import pandas as pd

from motioncore import cli
from motioncore.config import METRIC_NAMES, UsageError
from orchestrator import plan, report
from search_spaces import load

COLUMNS = ["cell", "seed", "status", "commit", "machine", "date", "wall_s",
           *(f"test_{m}" for m in METRIC_NAMES), "run_id"]
SHOWN = ("acc", "acc_fg", "fg_net", "bg_motion", "acc_zero")  # in %, in the generated table
DOCS = ("README.md", "docs/results.md")


def merge(old: pd.DataFrame, new: pd.DataFrame, overwrite: bool) -> pd.DataFrame:
    """The record with ``new``'s rows added; a (cell, seed) whose recorded run finished, from
    another run, is refused unless ``overwrite`` (an unfinished one is replaced)."""
    if not old.empty and not overwrite:
        both = old.merge(new, on=["cell", "seed"], suffixes=("_old", ""))
        clash = both[(both["run_id_old"] != both["run_id"]) & (both["status_old"] == "finished")]
        if len(clash):
            first = clash.iloc[0]
            raise UsageError(f"--out: cell {first['cell']} seed {first['seed']} is recorded from "
                             f"run {first['run_id_old']}, and this sweep ran it again "
                             f"({len(clash)} such rows); pass --overwrite to replace them")
    kept = old[~old.set_index(["cell", "seed"]).index.isin(new.set_index(["cell", "seed"]).index)]
    out = pd.concat([kept, new], ignore_index=True) if len(kept) else new
    return out.sort_values(["cell", "seed"]).reset_index(drop=True)[COLUMNS]


def settle(new: pd.DataFrame, planned: set[tuple[str, int]] | None
           ) -> tuple[pd.DataFrame, list[str]]:
    """One row per (cell, seed) of a sweep (``new``: its runs, each (cell, seed)'s in the order
    they started): the last finished run, else the last run. And what a reader should know: the
    ``planned`` trials with no finished run (None: the sweep's plan is not known), a (cell, seed)
    finished more than once (it ran twice), the runs that ended unfinished before a later run of
    theirs finished (an interruption or a failure, run again). Runs still running are left out."""
    running = int((new["status"] == "running").sum())  # not a result yet
    new = new[new["status"] != "running"]
    kept, done, twice, again = [], set(), [], 0
    for (cell, seed), runs in new.groupby(["cell", "seed"], sort=True):
        status = list(runs["status"])
        ends = [i for i, st in enumerate(status) if st == "finished"]
        kept.append(runs.index[ends[-1] if ends else -1])
        if ends:
            done.add((cell, int(seed)))
            again += sum(st != "finished" for st in status[:ends[-1]])
        if len(ends) > 1:
            twice.append(f"{cell} seed {seed}")
    if planned is None:
        lines = [f"{len(done)} trials finished (the parent run records no plan to check them "
                 "against)"]
    else:
        missing = sorted(planned - done)
        lines = [f"{len(done & planned)} of {len(planned)} planned trials finished" + (
            "" if not missing else ": no finished run for " + ", ".join(
                f"{c} seed {s}" for c, s in missing[:5]) + (" ..." if len(missing) > 5 else ""))]
    lines.append("finished more than once (kept the last): " + ", ".join(twice) if twice
                 else "no (cell, seed) finished twice")
    if again:
        lines.append(f"{again} run(s) ended unfinished and were run again to the end (the "
                     "finished run is recorded)")
    if running:
        lines.append(f"{running} run(s) still running, not recorded")
    return new.loc[kept].reset_index(drop=True), lines


def read(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise UsageError(f"{path}: not a readable record ({cli.first_line(e, 120)})") from None
    missing = [c for c in ("cell", "seed", "run_id") if c not in frame]
    if missing:
        raise UsageError(f"{path}: not a record (no column {missing[0]!r})")
    return frame.reindex(columns=COLUMNS)


def _cell(values: pd.Series) -> str:
    vals = [v for v in values if isinstance(v, float | int) and math.isfinite(v)]
    if not vals:
        return "–"
    mean = 100 * sum(vals) / len(vals)
    if len(vals) == 1:
        return f"{mean:.2f} ± –"
    std = 100 * pd.Series(vals).std(ddof=1)
    return f"{mean:.2f} ± {std:.2f}"


def _range(space, cell) -> int | None:
    return {**space.base, **cell.overrides}.get("motion_range")


def _label(space, cell) -> str:
    """A cell as a row of the front page: its design and motion range."""
    r = _range(space, cell)
    return f"{cell.design}, r={r}" if cell.design and r is not None else (cell.design or cell.id)


def _by_cell(frame: pd.DataFrame, space):
    """Each cell of the space with its finished rows of the record and its published figure."""
    done = frame[frame["status"] == "finished"]
    for c in space.cells:
        yield c, done[done["cell"] == c.id], "–" if c.published is None else f"{c.published:g}"


def front(frame: pd.DataFrame, space_name: str) -> str:
    """The README's table: a row per cell of the space, the published figure, then mean ± std
    over finished seeds of what the headline needs (acc_zero, one fixed test set, as its mean)."""
    space = load(space_name)
    lines = ["| row | published | acc | acc_fg | bg_motion | acc_zero | n | CELL |",
             "|---|---|---|---|---|---|---|---|"]
    for c, rows, pub in _by_cell(frame, space):
        figures = [_cell(rows[f"test_{m}"]) for m in ("acc", "acc_fg", "bg_motion")]
        zeros = rows["test_acc_zero"].dropna()
        zero = f"{100 * zeros.mean():.2f}" if len(zeros) else "–"
        lines.append(f"| {_label(space, c)} | {pub} | " + " | ".join(figures)
                     + f" | {zero} | {len(rows)} | `{c.id}` |")
    return "\n".join(lines) + "\n"


def table(frame: pd.DataFrame, space_name: str) -> str:
    """The markdown table of a space's cells from the record: mean ± std over finished seeds
    (n = 1 shows a dash), every cell of the space, those without a trial marked so."""
    head = ["cell", "published acc", "n", *(f"{m} %" for m in SHOWN), "seeds", "commit", "machine"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c, rows, pub in _by_cell(frame, load(space_name)):
        if rows.empty:
            lines.append(f"| `{c.id}` | {pub} | 0 | " + " | ".join("–" for _ in SHOWN)
                         + " | not yet recorded | | |")
            continue
        seeds = ", ".join(str(int(s)) for s in sorted(rows["seed"]))
        commits = ", ".join(sorted({str(x)[:7] for x in rows["commit"].dropna()}))
        machines = "; ".join(sorted({str(x) for x in rows["machine"].dropna()}))
        lines.append(f"| `{c.id}` | {pub} | {len(rows)} | "
                     + " | ".join(_cell(rows[f"test_{m}"]) for m in SHOWN)
                     + f" | {seeds} | {commits} | {machines} |")
    return "\n".join(lines) + "\n"


def replace_table(text: str, name: str, body: str) -> str:
    """``text`` with the block between ``<!-- table:NAME -->`` and ``<!-- /table -->`` replaced."""
    pattern = re.compile(rf"(<!-- table:{re.escape(name)} -->\n).*?(<!-- /table -->)", re.S)
    if not pattern.search(text):
        raise UsageError(f"no <!-- table:{name} --> ... <!-- /table --> block to fill")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text, count=1)


def plot(frame: pd.DataFrame, space_name: str, path: Path) -> None:
    """The ablation plot of the record (``report.plot``): acc, acc_fg and bg_motion against the
    motion range, a line per design."""
    space = load(space_name)
    cells = {c.id: c for c in space.cells}
    rows = [{**r, "design": cells[r["cell"]].design, "published": cells[r["cell"]].published,
             "motion_range": _range(space, cells[r["cell"]])}
            for r in frame.to_dict("records") if r["cell"] in cells]
    summary = report.summarise(rows, list(cells), space.baseline)
    report.plot(summary, path, f"{space.name}: the record ({path.with_suffix('.csv').name})")


def write_tables(record: Path, root: Path) -> list[Path]:
    """Fill the record's tables in every doc that has their blocks: ``table:NAME`` (NAME the
    record file's, e.g. seed_table) the whole table, ``table:NAME:front`` the README's, and draw
    its plot beside the record (NAME.png); return the documents changed."""
    name, frame = record.stem, read(record)
    plot(frame, name, record.with_suffix(".png"))
    bodies = {name: table(frame, name), f"{name}:front": front(frame, name)}
    changed = []
    for doc in DOCS:
        path = root / doc
        text = path.read_text() if path.exists() else ""
        new = text
        for block, body in bodies.items():
            if f"<!-- table:{block} -->" in new:
                new = replace_table(new, block, body)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


def planned(client, parent: str) -> set[tuple[str, int]] | None:
    """The (cell, seed) pairs a sweep's parent run says it set out to run; None when it does not
    say (a parent from before the seeds were logged by name, or of a space no longer here)."""
    params = client.get_run(parent).data.params
    if not {"space", "seeds", "search_seed"} <= params.keys():
        return None
    try:
        space = load(params["space"])
        wanted = None if params.get("cells", "all") == "all" else params["cells"].split(",")
        cells = [c.id for c in plan.select_cells(space, wanted)]
    except (KeyError, UsageError):
        return None
    seeds = [int(s) for s in params["seeds"].split(",") if s]
    if params.get("dry_run") == "True":
        seeds = seeds[:1]
    return {(c, s) for c in cells for s in seeds}


@cli.command
def main(argv: list[str] | None = None) -> int:
    p = cli.ArgumentParser(prog="python -m orchestrator.record", description=__doc__.split("\n")[0])
    p.add_argument("--tracking-uri")
    p.add_argument("--experiment")
    p.add_argument("--parent", help="the sweep's parent run id (default: the latest sweep)")
    p.add_argument("--out", help="the record (CSV) the sweep's trials are added to")
    p.add_argument("--overwrite", action="store_true",
                   help="replace rows the record holds from other runs of the same cell and seed")
    p.add_argument("--tables", metavar="RECORD", help="regenerate the docs' tables from a record")
    a = p.parse_args(argv)
    if a.tables:
        record = Path(a.tables)
        if not record.is_file():
            raise UsageError(f"--tables {record}: no such record")
        try:
            load(record.stem)
        except KeyError:
            raise UsageError(f"--tables {record}: named after no space (a record is "
                             "<space>.csv)") from None
        changed = write_tables(record, Path.cwd())
        print("updated " + (", ".join(map(str, changed)) or "nothing (the tables are current)")
              + f"; drew {record.with_suffix('.png')}")
        return 0
    if not (a.tracking_uri and a.experiment and a.out):
        raise UsageError("--tracking-uri, --experiment and --out are needed to record a sweep "
                         "(or --tables RECORD to regenerate the tables)")
    out = cli.check_output("--out", a.out)
    old = read(out) if out.exists() else pd.DataFrame(columns=COLUMNS)
    client, exp_id, parent = report.open_sweep(a.tracking_uri, a.experiment, a.parent)
    rows = report.rows_from_mlflow(client, exp_id, parent)
    if not rows:
        raise UsageError(f"sweep {parent}: has no replicate trial to record")
    new, check = settle(pd.DataFrame(rows).reindex(columns=COLUMNS), planned(client, parent))
    merged = merge(old, new, a.overwrite)
    merged.to_csv(out, index=False, float_format="%.6g")
    print(f"recorded {len(new)} trials of sweep {parent} in {out} ({len(merged)} rows)")
    for line in check:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
