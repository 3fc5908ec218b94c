"""The ablation table, from MLflow alone: results.parquet, paired.parquet, ablation.md/.tex/.png.

    python -m orchestrator.report --tracking-uri sqlite:///sweeps/mlflow.db \
        --experiment seed_table [--parent RUN_ID] --out DIR
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from mlflow.exceptions import MlflowException

from motioncore import cli
from motioncore.config import FIELDS, UsageError, parse_value
from motioncore.config import METRIC_NAMES as NAMES
from orchestrator import stats, store, tracking
from search_spaces import load

TABLE_METRICS = ("acc", "acc_fg", "fg_net", "bg_motion", "acc_zero", "epe", "recon_l1", "attn_acc")
PERCENT = {"acc", "acc_fg", "fg_net", "bg_motion", "acc_zero", "attn_acc"}
STATUS = {"FINISHED": "finished", "KILLED": "stopped early", "FAILED": "failed"}  # from MLflow's
PAIRED_METRICS = ("acc", "acc_fg", "fg_net")  # the paired difference to the baseline, with its interval


def rows_from_mlflow(client, exp_id: str, parent: str) -> list[dict]:
    """One row per replicate trial: cell, seed, every config field, test metrics, status, run id."""
    rows = []
    for run in tracking.child_runs(client, exp_id, parent):
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        if tags.get("stage") != "replicate":
            continue
        info = run.info
        row = {"cell": tags.get("cell", ""), "seed": int(tags.get("seed", params.get("seed", 0))),
               "design": tags.get("design", ""),
               "status": STATUS.get(info.status, info.status.lower()),
               "commit": tags.get("git_commit", ""), "machine": tags.get("machine", ""),
               "date": time.strftime("%Y-%m-%d", time.gmtime(info.start_time / 1000)),
               # The trial's running time; a run that spans an interrupted sweep's pause
               # would count the pause (runs logged before trial_s: the run's span).
               "wall_s": metrics.get("trial_s") or (
                   (info.end_time - info.start_time) / 1000 if info.end_time else None),
               "failure_reason": tags.get("failure_reason", ""), "run_id": run.info.run_id,
               "published": float(tags["published"]) if tags.get("published") else None}
        for name in FIELDS:
            if name in params:
                row[name] = parse_value(name, params[name]) if name != "device" else params[name]
        for name in NAMES:
            row[f"test_{name}"] = metrics.get(f"test_{name}")
        rows.append(row)
    return sorted(rows, key=lambda r: (r["cell"], r["seed"]))


def write_parquet(rows: list[dict], path: Path) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    table = pa.table({c: [r.get(c) for r in rows] for c in columns}) if rows else pa.table({})
    pq.write_table(table, path)


def _stats(values: list[float]) -> tuple[float, float, int]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return float("nan"), float("nan"), 0
    # the std of one value is undefined, not 0: NaN, shown as a dash
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else math.nan, len(vals)


def _per_seed(rows: list[dict], metric: str) -> dict[int, float]:
    return {r["seed"]: r[f"test_{metric}"] for r in rows if r["status"] == "finished"}


def summarise(rows: list[dict], order: list[str], baseline: str = "") -> list[dict]:
    """Per cell: mean, std and n of each table metric over its finished seeds, and for
    ``PAIRED_METRICS`` the paired difference to the baseline cell (``stats.Paired``)."""
    cells = order + sorted({r["cell"] for r in rows} - set(order))
    base_rows = [r for r in rows if r["cell"] == baseline]
    out = []
    for cell in cells:
        rs = [r for r in rows if r["cell"] == cell]
        if not rs:
            continue
        done = [r for r in rs if r["status"] == "finished"]
        s = {"cell": cell, "design": rs[0]["design"], "published": rs[0]["published"],
             "n": len(done), "failed": sum(r["status"] == "failed" for r in rs),
             "motion_range": rs[0].get("motion_range")}
        for m in TABLE_METRICS:
            s[m] = _stats([r[f"test_{m}"] for r in done])
        for m in PAIRED_METRICS:
            s[f"paired_{m}"] = stats.paired(_per_seed(rs, m), _per_seed(base_rows, m))
        out.append(s)
    return out


def paired_rows(summary: list[dict], baseline: str) -> list[dict]:
    """The paired differences as plain rows (for paired.parquet), in percentage points."""
    return [{"cell": s["cell"], "baseline": baseline, "metric": m, "n_pairs": p.n,
             "mean_diff_pct": 100 * p.mean, "ci95_low_pct": 100 * p.low,
             "ci95_high_pct": 100 * p.high, "significant": p.significant}
            for s in summary if s["cell"] != baseline
            for m in PAIRED_METRICS for p in [s[f"paired_{m}"]]]


def _fmt(metric: str, stat: tuple[float, float, int]) -> str:
    mean, std, n = stat
    if n == 0:
        return "–"
    scale = 100 if metric in PERCENT else 1
    digits = 2 if metric in PERCENT else 3
    spread = "–" if math.isnan(std) else f"{std * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {spread}"


def _delta(metric: str, s: dict, baseline: str) -> str:
    """``+1.2 [+0.4, +2.0]*``: paired mean difference in points, its 95% interval, * if it
    excludes zero; "n/a" below two shared seeds; "baseline" on the baseline's row."""
    if s["cell"] == baseline:
        return "baseline"
    p = s[f"paired_{metric}"]
    if p.n < 2:
        return "n/a"
    return f"{100 * p.mean:+.2f} [{100 * p.low:+.2f}, {100 * p.high:+.2f}]" + (
        "*" if p.significant else "")


PAIRED_NOTE = ("Δ: the paired difference to the baseline over the seeds both finished, mean "
               "[95% CI, Student's t with n-1 degrees of freedom], in points; * marks an interval "
               "that excludes zero; n/a below two shared seeds.")


def markdown(summary: list[dict], baseline: str, title: str) -> str:
    head = ["cell", "n", "acc %", "acc_fg %", "fg_net %", "bg_motion %", "acc_zero %", "epe",
            "recon_l1", "attn_acc %", "published acc %", "Δacc", "Δacc_fg", "Δfg_net"]
    lines = [f"# {title}", "",
             f"Test metrics, mean ± std over seeds (n = finished seeds). Baseline: `{baseline}`. "
             "fg_net (the selection metric) counts background given motion against the digit; "
             "bg_motion is the share of background pixels given motion; acc_zero is the "
             "zero-motion baseline on the same data. " + PAIRED_NOTE, "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summary:
        pub = "–" if s["published"] is None else f"{s['published']:g}"
        n = f"{s['n']}" + (f" ({s['failed']} failed)" if s["failed"] else "")
        cells = [f"`{s['cell']}`", n] + [_fmt(m, s[m]) for m in TABLE_METRICS] + [
            pub, *(_delta(m, s, baseline) for m in PAIRED_METRICS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def latex(summary: list[dict], baseline: str) -> str:
    head = ["cell", "$n$", "acc (\\%)", "acc\\_fg (\\%)", "fg\\_iou (\\%)", "bg\\_motion (\\%)",
            "acc\\_zero (\\%)", "EPE", "recon L1", "attn acc (\\%)", "published (\\%)", "$\\Delta$acc",
            "$\\Delta$acc\\_fg", "$\\Delta$fg\\_iou"]
    lines = ["\\begin{tabular}{l" + "r" * (len(head) - 1) + "}", "\\toprule",
             " & ".join(head) + " \\\\", "\\midrule"]
    for s in summary:
        pub = "--" if s["published"] is None else f"{s['published']:g}"
        vals = [_fmt(m, s[m]).replace("±", "$\\pm$").replace("–", "--") for m in TABLE_METRICS]
        deltas = [_delta(m, s, baseline).replace("*", "$^*$") for m in PAIRED_METRICS]
        lines.append(" & ".join([s["cell"].replace("_", "\\_"), str(s["n"]), *vals, pub, *deltas])
                     + " \\\\")
    return "\n".join(lines + ["\\bottomrule", "\\end{tabular}"]) + "\n"


def plot(summary: list[dict], path: Path, title: str) -> None:
    """acc, acc_fg and bg_motion (the background given motion, which raises acc_fg) against
    motion range, one line per design, error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4), sharex=True)
    designs = list(dict.fromkeys(s["design"] for s in summary))
    for ax, metric in zip(axes, ("acc", "acc_fg", "bg_motion"), strict=True):
        for design in designs:
            pts = sorted((s["motion_range"], s[metric]) for s in summary
                         if s["design"] == design and s[metric][2] > 0 and s["motion_range"])
            if pts:
                ax.errorbar([p[0] for p in pts], [100 * p[1][0] for p in pts],
                            yerr=[100 * np.nan_to_num(p[1][1]) for p in pts], marker="o",
                            capsize=3, label=design)
        ax.set_title(f"test {metric}: mean over seeds, error bars ± 1 std", fontsize=8)
        pubs = [(s["motion_range"], s["published"]) for s in summary if s["published"] is not None]
        if metric == "acc" and pubs:
            ax.scatter(*zip(*pubs, strict=True), marker="*", s=120, c="k", label="published", zorder=5)
        ranges = sorted({s["motion_range"] for s in summary if s["motion_range"]})
        if ranges:
            ax.set_xticks(ranges)
        ax.set_xlabel("motion range r")
        ax.set_ylabel(f"test {metric} (%)")
        ax.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:  # an empty table draws empty axes
        axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build(client, exp_id: str, parent: str, out: Path, space=None,
          rows: list[dict] | None = None) -> list[Path]:
    """Write the four result files for one sweep (parent run) into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    if space is None:
        name = client.get_run(parent).data.tags.get("space")
        try:
            space = load(name) if name else None
        except KeyError:
            space = None
    rows = rows_from_mlflow(client, exp_id, parent) if rows is None else rows
    order = [c.id for c in space.cells] if space else []
    baseline = space.baseline if space else (rows[0]["cell"] if rows else "")
    summary = summarise(rows, order, baseline)
    run = client.get_run(parent)
    title = (f"{space.name}: {space.description} ({run.info.run_name})" if space
             else f"sweep {run.info.run_name}")
    if run.data.tags.get("dry_run") == "True":
        title = f"DRY RUN, not results (every cell at a tiny plumbing budget): {title}"
    files = [out / "results.parquet", out / "paired.parquet", out / "ablation.md",
             out / "ablation.tex", out / "ablation.png"]
    write_parquet(rows, files[0])
    write_parquet(paired_rows(summary, baseline), files[1])
    files[2].write_text(markdown(summary, baseline, title))
    files[3].write_text(latex(summary, baseline))
    plot(summary, files[4], title)
    return files


def _existing_run_ids(path: Path) -> set[str]:
    """The run ids of a results.parquet already in ``--out`` (empty when there is none)."""
    if not path.exists():
        return set()
    if not path.is_file():
        raise UsageError(f"--out {path.parent}: its results.parquet is not a file; move it away "
                         "or choose another --out")
    try:
        table = pq.read_table(path, columns=["run_id"])
    except (OSError, pa.ArrowException, KeyError) as e:
        raise UsageError(f"--out {path.parent}: its results.parquet is not a results table "
                         f"({cli.first_line(e, 120)}); "
                         "move it away or choose another --out") from None
    return set(table.column("run_id").to_pylist())


def check_parent(client, exp, run_id: str) -> str:
    """``run_id`` if it is the parent run of a sweep in experiment ``exp``; else one line why not."""
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise UsageError(f"--parent {run_id!r}: no such run in this tracking store") from None
    tags = run.data.tags
    if run.info.experiment_id != exp.experiment_id:
        raise UsageError(f"--parent {run_id}: a run of another experiment, not of "
                         f"{exp.name!r}")
    if tracking.PARENT_TAG in tags:
        raise UsageError(f"--parent {run_id}: a trial of sweep {tags[tracking.PARENT_TAG]}, not a "
                         "sweep; pass that parent run's id")
    if "sweep_dir" not in tags:
        raise UsageError(f"--parent {run_id}: not a sweep's parent run")
    return run_id


def open_sweep(uri: str, experiment: str, parent: str | None):
    """``(client, experiment id, parent run id)`` of a sweep named by the report-like CLIs'
    flags; one line when the store, experiment or run is not there (a mistyped sqlite path
    is refused rather than made into a new, empty store)."""
    db = store.sqlite_file(uri)
    if db is not None and not db.is_file():
        raise UsageError(f"--tracking-uri {uri}: no such store (a sqlite file that does not "
                         "exist); pass the store the sweep logged to")
    client = store.client_for(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise UsageError(f"--experiment {experiment!r}: not in {uri}")
    run = check_parent(client, exp, parent) if parent else latest_parent(client, exp.experiment_id)
    return client, exp.experiment_id, run


def latest_parent(client, exp_id: str) -> str:
    runs = client.search_runs([exp_id], filter_string="tags.sweep_dir != ''",  # parents only
                              order_by=["attributes.start_time DESC"], max_results=1)
    parents = [r for r in runs if tracking.PARENT_TAG not in r.data.tags]
    if not parents:
        raise UsageError("no sweep (parent run) in this experiment")
    return parents[0].info.run_id


@cli.command
def main(argv: list[str] | None = None) -> int:
    p = cli.ArgumentParser(prog="python -m orchestrator.report",
                                description="Rebuild a sweep's ablation table from MLflow alone.")
    p.add_argument("--tracking-uri", required=True)
    p.add_argument("--experiment", required=True)
    p.add_argument("--parent", help="the sweep's parent run id (default: the latest sweep)")
    p.add_argument("--out", required=True, help="directory for the result files")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a results.parquet in OUT that holds runs this sweep does not "
                        "have (another sweep's table, or runs since deleted)")
    a = p.parse_args(argv)
    out = cli.check_output("--out", a.out, directory=True)
    before = _existing_run_ids(out / "results.parquet")
    client, exp_id, parent = open_sweep(a.tracking_uri, a.experiment, a.parent)
    rows = rows_from_mlflow(client, exp_id, parent)
    if before and not a.overwrite:
        other = before - {r["run_id"] for r in rows}
        if other:  # another sweep's table, or runs this one no longer has
            raise UsageError(f"--out {out}: its results.parquet holds {len(other)} run(s) that "
                             f"sweep {parent} does not have (another sweep's table?); name the "
                             "sweep with --parent, choose another --out, or pass --overwrite")
    files = build(client, exp_id, parent, out, rows=rows)
    print((Path(a.out) / "ablation.md").read_text())
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
