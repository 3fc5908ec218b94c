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
from orchestrator import report
from search_spaces import load

COLUMNS = ["cell", "seed", "status", "commit", "machine", "date", "wall_s",
           *(f"test_{m}" for m in METRIC_NAMES), "run_id"]
SHOWN = ("acc", "acc_fg", "fg_net", "bg_motion", "acc_zero")  # in %, in the generated table
DOCS = ("README.md", "docs/results.md")


def merge(old: pd.DataFrame, new: pd.DataFrame, overwrite: bool) -> pd.DataFrame:
    """The record with ``new``'s rows added; a (cell, seed) recorded by another run is refused
    unless ``overwrite``."""
    if not old.empty and not overwrite:
        both = old.merge(new, on=["cell", "seed"], suffixes=("_old", ""))
        clash = both[both["run_id_old"] != both["run_id"]]
        if len(clash):
            first = clash.iloc[0]
            raise UsageError(f"--out: cell {first['cell']} seed {first['seed']} is recorded from "
                             f"run {first['run_id_old']}, and this sweep ran it again "
                             f"({len(clash)} such rows); pass --overwrite to replace them")
    kept = old[~old.set_index(["cell", "seed"]).index.isin(new.set_index(["cell", "seed"]).index)]
    out = pd.concat([kept, new], ignore_index=True) if len(kept) else new
    return out.sort_values(["cell", "seed"]).reset_index(drop=True)[COLUMNS]


def settle(new: pd.DataFrame, planned: set[tuple[str, int]]) -> tuple[pd.DataFrame, list[str]]:
    """One row per (cell, seed) of a sweep (``new``: its runs, the earliest started first), and
    what a reader should know: the ``planned`` trials with no finished run, a (cell, seed)
    finished by more than one run (it ran twice), the runs an interruption or a failure ended
    that a later run finished."""
    finished = new[new["status"] == "finished"]
    twice = finished[finished.duplicated(["cell", "seed"], keep=False)]
    # the finished run where there is one, else the latest
    ranked = new.assign(_done=new["status"] == "finished", _at=range(len(new)))
    kept = (ranked.sort_values(["_done", "_at"]).groupby(["cell", "seed"]).tail(1)
            .drop(columns=["_done", "_at"]))
    done = {(c, int(s)) for c, s in zip(finished["cell"], finished["seed"], strict=True)}
    replaced = sum((c, int(s)) in done and st != "finished"
                   for c, s, st in zip(new["cell"], new["seed"], new["status"], strict=True))
    missing = sorted(planned - done)
    lines = [f"{len(done & planned)} of {len(planned)} planned trials finished"
             + ("" if not missing else ": no finished run for " + ", ".join(
                 f"{c} seed {s}" for c, s in missing[:5]) + (" ..." if len(missing) > 5 else ""))]
    lines.append("no (cell, seed) finished twice" if twice.empty else
                 "finished more than once (kept the last): " + ", ".join(sorted(
                     {f"{c} seed {s}" for c, s in zip(twice["cell"], twice["seed"], strict=True)})))
    if replaced:
        lines.append(f"{replaced} run(s) an interruption or a failure ended were run again to "
                     "the end (the finished run is recorded)")
    return kept.reset_index(drop=True), lines


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


def _label(cell) -> str:
    """A cell as a row of the front page: its design and motion range."""
    r = cell.overrides.get("motion_range")
    return f"{cell.design}, r={r}" if cell.design and r is not None else (cell.design or cell.id)


def front(frame: pd.DataFrame, space_name: str) -> str:
    """The README's table: a row per cell of the space, the published figure, then mean ± std
    over finished seeds of what the headline needs (acc_zero, one fixed test set, as its mean)."""
    space = load(space_name)
    done = frame[frame["status"] == "finished"]
    lines = ["| row | published | acc | acc_fg | bg_motion | acc_zero | n | CELL |",
             "|---|---|---|---|---|---|---|---|"]
    for c in space.cells:
        rows = done[done["cell"] == c.id]
        pub = "–" if c.published is None else f"{c.published:g}"
        figures = [_cell(rows[f"test_{m}"]) for m in ("acc", "acc_fg", "bg_motion")]
        zero = _cell(rows["test_acc_zero"]).split(" ±")[0]
        lines.append(f"| {_label(c)} | {pub} | " + " | ".join(figures)
                     + f" | {zero} | {len(rows)} | `{c.id}` |")
    return "\n".join(lines) + "\n"


def table(frame: pd.DataFrame, space_name: str) -> str:
    """The markdown table of a space's cells from the record: mean ± std over finished seeds
    (n = 1 shows a dash), every cell of the space, those without a trial marked so."""
    space = load(space_name)
    done = frame[frame["status"] == "finished"]
    head = ["cell", "published acc", "n", *(f"{m} %" for m in SHOWN), "seeds", "commit", "machine"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in space.cells:
        rows = done[done["cell"] == c.id]
        pub = "–" if c.published is None else f"{c.published:g}"
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
             "motion_range": cells[r["cell"]].overrides.get("motion_range")}
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


def planned(client, parent: str) -> set[tuple[str, int]]:
    """The (cell, seed) pairs a sweep's parent run says it set out to run."""
    params = client.get_run(parent).data.params
    space = load(params["space"])
    cells = [c.id for c in space.cells] if params.get("cells", "all") == "all" else \
        params["cells"].split(",")
    seeds = [int(s) for s in params.get("seeds", "").split(",") if s]
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
