"""The ablation table, from MLflow alone: results.parquet, ablation.md, ablation.tex, ablation.png.

    python -m orchestrator.report --tracking-uri sqlite:///sweeps/mlflow.db \
        --experiment seed_table [--parent RUN_ID] --out DIR
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from mlflow.exceptions import MlflowException

from motioncore import cli
from motioncore.config import FIELDS, UsageError, parse_value
from motioncore.config import METRIC_NAMES as NAMES
from orchestrator import tracking
from search_spaces import load

TABLE_METRICS = ("acc", "acc_fg", "acc_zero", "epe", "recon_l1", "attn_acc")
PERCENT = {"acc", "acc_fg", "acc_zero", "attn_acc"}


def rows_from_mlflow(client, exp_id: str, parent: str) -> list[dict]:
    """One row per replicate trial: cell, seed, every config field, test metrics, status, run id."""
    rows = []
    for run in tracking.child_runs(client, exp_id, parent):
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        if tags.get("stage") != "replicate":
            continue
        row = {"cell": tags.get("cell", ""), "seed": int(tags.get("seed", params.get("seed", 0))),
               "design": tags.get("design", ""), "status": tags.get("status", run.info.status.lower()),
               "failure_reason": tags.get("failure_reason", ""), "run_id": run.info.run_id,
               "published": float(tags["published"]) if tags.get("published") not in (None, "", "None")
               else None}
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
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, len(vals)


def summarise(rows: list[dict], order: list[str]) -> list[dict]:
    """Per cell: mean, std and n of each table metric over its finished seeds."""
    cells = order + sorted({r["cell"] for r in rows} - set(order))
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
        out.append(s)
    return out


def _fmt(metric: str, stat: tuple[float, float, int]) -> str:
    mean, std, n = stat
    if n == 0:
        return "–"
    scale = 100 if metric in PERCENT else 1
    digits = 1 if metric in PERCENT else 3
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def _delta(metric: str, s: dict, base: dict | None) -> str:
    if base is None or s[metric][2] == 0 or base[metric][2] == 0:
        return "–"
    scale = 100 if metric in PERCENT else 1
    return f"{(s[metric][0] - base[metric][0]) * scale:+.1f}"


def markdown(summary: list[dict], baseline: str, title: str) -> str:
    base = next((s for s in summary if s["cell"] == baseline), None)
    head = ["cell", "n", "acc %", "acc_fg %", "acc_zero %", "epe", "recon_l1", "attn_acc %",
            "published acc %", "Δacc_fg vs baseline"]
    lines = [f"# {title}", "",
             f"Test metrics, mean ± std over seeds (n = finished seeds). Baseline: `{baseline}`. "
             "acc_zero is the zero-motion baseline on the same data.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summary:
        pub = "–" if s["published"] is None else f"{s['published']:g}"
        n = f"{s['n']}" + (f" ({s['failed']} failed)" if s["failed"] else "")
        cells = [f"`{s['cell']}`", n] + [_fmt(m, s[m]) for m in TABLE_METRICS] + [
            pub, "baseline" if s["cell"] == baseline else _delta("acc_fg", s, base)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def latex(summary: list[dict], baseline: str) -> str:
    base = next((s for s in summary if s["cell"] == baseline), None)
    head = ["cell", "$n$", "acc (\\%)", "acc\\_fg (\\%)", "acc\\_zero (\\%)", "EPE", "recon L1",
            "attn acc (\\%)", "published (\\%)", "$\\Delta$acc\\_fg"]
    lines = ["\\begin{tabular}{l" + "r" * (len(head) - 1) + "}", "\\toprule",
             " & ".join(head) + " \\\\", "\\midrule"]
    for s in summary:
        pub = "--" if s["published"] is None else f"{s['published']:g}"
        vals = [_fmt(m, s[m]).replace("±", "$\\pm$").replace("–", "--") for m in TABLE_METRICS]
        delta = "--" if s["cell"] == baseline else _delta("acc_fg", s, base).replace("–", "--")
        lines.append(" & ".join([s["cell"].replace("_", "\\_"), str(s["n"]), *vals, pub, delta])
                     + " \\\\")
    return "\n".join(lines + ["\\bottomrule", "\\end{tabular}"]) + "\n"


def plot(summary: list[dict], path: Path, title: str) -> None:
    """acc and acc_fg against motion range, one line per design, error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    designs = list(dict.fromkeys(s["design"] for s in summary))
    for ax, metric in zip(axes, ("acc", "acc_fg"), strict=True):
        for design in designs:
            pts = sorted((s["motion_range"], s[metric]) for s in summary
                         if s["design"] == design and s[metric][2] > 0 and s["motion_range"])
            if pts:
                ax.errorbar([p[0] for p in pts], [100 * p[1][0] for p in pts],
                            yerr=[100 * p[1][1] for p in pts], marker="o", capsize=3, label=design)
        pubs = [(s["motion_range"], s["published"]) for s in summary if s["published"] is not None]
        if metric == "acc" and pubs:
            ax.scatter(*zip(*pubs, strict=True), marker="*", s=120, c="k", label="published", zorder=5)
        ax.set_xlabel("motion range r")
        ax.set_ylabel(f"test {metric} (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build(client, exp_id: str, parent: str, out: Path, space=None) -> list[Path]:
    """Write the four result files for one sweep (parent run) into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    if space is None:
        name = client.get_run(parent).data.tags.get("space")
        try:
            space = load(name) if name else None
        except KeyError:
            space = None
    rows = rows_from_mlflow(client, exp_id, parent)
    order = [c.id for c in space.cells] if space else []
    baseline = space.baseline if space else (rows[0]["cell"] if rows else "")
    summary = summarise(rows, order)
    title = f"{space.name if space else 'sweep'}: {client.get_run(parent).info.run_name}"
    files = [out / "results.parquet", out / "ablation.md", out / "ablation.tex", out / "ablation.png"]
    write_parquet(rows, files[0])
    files[1].write_text(markdown(summary, baseline, title))
    files[2].write_text(latex(summary, baseline))
    plot(summary, files[3], title)
    return files


def latest_parent(client, exp_id: str) -> str:
    runs = client.search_runs([exp_id], filter_string="tags.sweep_dir != ''",  # parents only
                              order_by=["attributes.start_time DESC"], max_results=1)
    parents = [r for r in runs if tracking.PARENT_TAG not in r.data.tags]
    if not parents:
        raise UsageError("no sweep (parent run) in this experiment")
    return parents[0].info.run_id


@cli.command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m orchestrator.report",
                                description="Rebuild a sweep's ablation table from MLflow alone.")
    p.add_argument("--tracking-uri", required=True)
    p.add_argument("--experiment", required=True)
    p.add_argument("--parent", help="the sweep's parent run id (default: the latest sweep)")
    p.add_argument("--out", required=True, help="directory for the result files")
    a = p.parse_args(argv)
    try:
        client = tracking.client_for(a.tracking_uri)
        exp = client.get_experiment_by_name(a.experiment)
        if exp is None:
            raise UsageError(f"--experiment {a.experiment!r}: not in {a.tracking_uri}")
        parent = a.parent or latest_parent(client, exp.experiment_id)
        files = build(client, exp.experiment_id, parent, Path(a.out))
    except MlflowException as e:
        raise UsageError(f"--parent {a.parent!r}: {str(e).splitlines()[0][:300]}") from None
    print((Path(a.out) / "ablation.md").read_text())
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
