"""What a search found, in front of the researcher: per cell the best trial, Optuna's parameter
importances and the best-so-far history, as search.json, search.md and search.png.

Importances are Optuna's own (its default evaluator) over the trials that ran their whole budget:
a trial ASHA stopped is PRUNED in its study, and its early value is not a final one.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import optuna

COMPLETE, PRUNED = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED


def cell_outcome(study: optuna.Study) -> dict:
    """The best trial, importances and the best-so-far history of one cell's study."""
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == COMPLETE and t.value is not None
            and math.isfinite(t.value)]
    out = {"complete": len(done), "pruned": sum(t.state == PRUNED for t in trials),
           "failed": sum(t.state == optuna.trial.TrialState.FAIL for t in trials),
           "best": None, "importances": {}, "history": []}
    best = -math.inf
    for t in sorted(done, key=lambda t: t.number):
        best = max(best, t.value)
        out["history"].append({"trial": t.number, "value": t.value, "best": best})
    if done:
        top = max(done, key=lambda t: t.value)
        out["best"] = {"trial": top.number, "value": top.value, "params": top.params,
                       "mlflow_run_id": top.user_attrs.get("mlflow_run_id", ""),
                       "tune_trial_id": top.user_attrs.get("tune_trial_id", "")}
    if len(done) >= 2:
        try:
            with warnings.catch_warnings():  # few trials: "importances will be equal"
                warnings.simplefilter("ignore", UserWarning)
                out["importances"] = dict(optuna.importance.get_param_importances(study))
        except (RuntimeError, ValueError):  # every finished trial sampled the same values
            pass
    return out


def lines(outcomes: dict[str, dict], metric: str, storage_url: str) -> list[str]:
    """The closing summary: one line per cell, then how to open the dashboard."""
    text = []
    for cell, o in outcomes.items():
        counts = f"{o['complete']} complete, {o['pruned']} stopped early, {o['failed']} failed"
        if o["best"] is None:
            text.append(f"search {cell}: no trial ran its whole budget ({counts})")
            continue
        b = o["best"]
        params = ", ".join(f"{k}={_short(v)}" for k, v in b["params"].items())
        imp = (", ".join(f"{k} {v:.2f}" for k, v in o["importances"].items())
               or "n/a (needs two complete trials that differ)")
        text.append(f"search {cell}: best val_{metric} {b['value']:.4f} (trial {b['trial']}, "
                    f"MLflow run {b['mlflow_run_id'] or '?'}) at {params}; importance: {imp}; "
                    f"{counts}")
    text.append(f"the studies in optuna-dashboard: optuna-dashboard {storage_url} "
                "(pip install '.[dashboard]')")
    return text


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def plot(outcomes: dict[str, dict], metric: str, path: Path) -> None:
    """Best-so-far validation metric against trial number per cell, and the importances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for cell, o in outcomes.items():
        if o["history"]:
            xs = [h["trial"] for h in o["history"]]
            left.step(xs, [h["best"] for h in o["history"]], where="post", label=cell)
            left.scatter(xs, [h["value"] for h in o["history"]], s=10, alpha=0.4)
    left.set(xlabel="Optuna trial", ylabel=f"val {metric}",
             title="best so far (line) and each complete trial (dots)")
    params = sorted({p for o in outcomes.values() for p in o["importances"]})
    width = 0.8 / max(len(outcomes), 1)
    for i, (cell, o) in enumerate(outcomes.items()):
        right.bar([j + i * width for j in range(len(params))],
                  [o["importances"].get(p, 0.0) for p in params], width, label=cell)
    right.set_xticks([j + 0.4 - width / 2 for j in range(len(params))], params, rotation=20)
    right.set(ylabel="importance (complete trials)", title="which hyperparameters mattered")
    for ax in (left, right):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(storage_url: str, cells: list[str], metric: str, out: Path) -> tuple[list[str], list[Path]]:
    """search.json, search.md and search.png for the cells' studies; the summary lines."""
    from orchestrator.search import study_name

    outcomes = {c: cell_outcome(optuna.load_study(study_name=study_name(c), storage=storage_url))
                for c in cells}
    summary = lines(outcomes, metric, storage_url)
    files = [out / "search.json", out / "search.md", out / "search.png"]
    files[0].write_text(json.dumps({"metric": f"val_{metric}", "cells": outcomes}, indent=2))
    # bold, not a heading: it ends the parent run's description in MLflow, under the table
    files[1].write_text("**What the search found**\n\n" + "\n".join(f"- {s}" for s in summary)
                        + "\n")
    plot(outcomes, metric, files[2])
    return summary, files
