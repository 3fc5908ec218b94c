"""From a declared space and the CLI's options to the list of trials a sweep runs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from motioncore.config import FIELDS, RunConfig, UsageError, from_dict, parse_value
from search_spaces import Cell, Space

# The dry run: every cell, one seed, a budget small enough for seed_table (20 cells) to finish
# in minutes on a 2-core CPU, through exactly the same code path as a real sweep.
DRY_RUN = dict(steps=12, eval_every=6, batch_size=16, width=8, depth=2, val_size=48,
               test_size=96, ema=0.0)
DRY_RUN_SAMPLES = 2  # Optuna trials per cell in a dry run
# Rough cost of a training step on one CPU thread (batch 64, width 16), seconds; wider models
# cost 0.75 + 0.25 (width/16)^2 as much, since fixed per-layer costs dominate small ones
# (measured figures: benchmarks/README.md).
STEP_SECONDS = {(3, "supervised"): 0.12, (3, "unsupervised"): 0.3, (5, "unsupervised"): 0.7,
                (5, "supervised"): 0.5}

BF16_STEP = 0.6  # a bf16 step against an fp32 one, on hardware that multiplies bf16 (0.47-0.65
#   measured; benchmarks/README.md)


@dataclass(frozen=True)
class TrialSpec:
    """One training run: a cell's configuration at one seed."""

    cell: Cell
    seed: int
    config: RunConfig

    @property
    def name(self) -> str:
        return f"{self.cell.id}-s{self.seed}"


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``--set key=value`` pairs as typed config values; unknown keys and bad values rejected."""
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise UsageError(f"--set {item!r}: expected key=value with key one of {', '.join(FIELDS)}")
        if key == "seed":
            raise UsageError(f"--set {item!r}: seeds come from --seeds (the same seeds in every "
                             "cell, so cells pair up); use --seeds N or --seeds 3,4,5")
        out[key] = parse_value(key, value.strip())
    return out


def cell_config(space: Space, cell: Cell, *, dry_run: bool, sets: dict[str, Any],
                seed: int = 0) -> RunConfig:
    """Base, then the cell, then the dry-run budget, then ``--set``: later wins."""
    values = {**space.base, **cell.overrides, **(DRY_RUN if dry_run else {}), **sets, "seed": seed}
    try:
        return from_dict(values)
    except UsageError as e:
        raise UsageError(f"cell {cell.id!r} of space {space.name!r}: {e}") from None


def select_cells(space: Space, cells: list[str] | None) -> tuple[Cell, ...]:
    """The cells ``--cells`` names (default: all), in the space's order."""
    if cells is None:
        return space.cells
    if not cells:
        raise UsageError(f"--cells: names no cell; cells of space {space.name!r}: "
                         + ", ".join(c.id for c in space.cells))
    known = [c.id for c in space.cells]
    for c in cells:
        if c not in known:
            raise UsageError(f"--cells {c!r}: not a cell of space {space.name!r}; cells: "
                             + ", ".join(known))
    return tuple(c for c in space.cells if c.id in cells)


def seed_list(text: str) -> list[int]:
    """``--seeds``: a count N (seeds 0..N-1) or the seeds by name, comma-separated (``3,4,5``;
    one named seed: ``7,``)."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [int(p) for p in parts if p]
    except ValueError:
        values = []
    if not values or any(v < 0 or v >= 2**63 for v in values):
        raise UsageError(f"--seeds {text!r}: expected a count N >= 1 (seeds 0..N-1) or "
                         "seeds >= 0 separated by commas (3,4,5)")
    if "," not in str(text):
        if values[0] < 1:
            raise UsageError(f"--seeds {text}: must be >= 1 (a count; name seed 0 as 0,)")
        return list(range(values[0]))
    if len(set(values)) < len(values):
        raise UsageError(f"--seeds {text!r}: a seed is named twice")
    return values


def trials(space: Space, *, seeds: int | list[int], dry_run: bool, sets: dict[str, Any],
           cells: list[str] | None = None) -> list[TrialSpec]:
    """Every (cell, seed): the same seeds in every cell, so cells pair up (an int N: 0..N-1;
    a dry run: the first seed only)."""
    chosen = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    chosen = chosen[:1] if dry_run else chosen
    return [TrialSpec(cell, s, cell_config(space, cell, dry_run=dry_run, sets=sets, seed=s))
            for cell in select_cells(space, cells) for s in chosen]


def same_configs(specs: list[TrialSpec], sets: dict[str, Any]) -> str | None:
    """A warning when ``--set`` made cells identical (their table rows would compare a
    configuration with itself), else None."""
    if not sets:
        return None
    by_hash: dict[str, list[str]] = {}
    for spec in specs:
        cells = by_hash.setdefault(spec.config.hash(), [])
        if spec.cell.id not in cells:
            cells.append(spec.cell.id)
    groups = [cells for cells in by_hash.values() if len(cells) > 1]
    if not groups:
        return None
    named = "; ".join(", ".join(cells) for cells in groups)
    given = " ".join(f"--set {k}={v}" for k, v in sets.items())
    return (f"warning: after {given} these cells are the same configuration: {named} "
            f"(choose cells with --cells, or set fields the cells do not vary)")


@dataclass(frozen=True)
class Cost:
    """What one run costs on one CPU thread: seconds per training step and per evaluated
    sequence (validation and test)."""

    step_s: float
    sequence_s: float


def measure(config: RunConfig, data_dir=None, steps: int = 3) -> Cost:
    """``config``'s cost timed on this machine, one thread: ``steps`` training steps after a
    warm-up one, and one evaluation batch (the precision ``auto`` picks here)."""
    import time

    import torch

    from motioncore.train import EVAL_BATCH, Trainer, dataset, evaluate_sums

    config = dataclasses.replace(config, device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(config, torch.device("cpu"), data_dir)
        trainer.train_step()
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        step_s = (time.perf_counter() - start) / steps
        val = dataset(config, "val", torch.device("cpu"), data_dir)
        n = min(EVAL_BATCH, config.val_size)
        start = time.perf_counter()
        evaluate_sums(trainer.ema or trainer.model, config, val, n)
        return Cost(step_s, (time.perf_counter() - start) / n)
    finally:
        torch.set_num_threads(threads)


def estimate_seconds(config: RunConfig, bf16_here: bool = False, cost: Cost | None = None
                     ) -> float:
    """The single-thread CPU cost of one run, for ``--plan``: from ``cost`` measured on this
    machine, else from a rough model. ``bf16_here``: ``auto`` precision runs in bf16 (this CPU
    multiplies bf16 in hardware; the model's figures are fp32)."""
    evals = config.steps // config.eval_every + 1
    if cost is not None:
        return (config.steps * cost.step_s
                + (evals * config.val_size + config.test_size) * cost.sequence_s)
    per_step = STEP_SECONDS[(config.frames, config.supervision)]
    per_step *= ((config.batch_size / 64) * (0.75 + 0.25 * (config.width / 16) ** 2)
                 * (1 + 0.1 * config.motion_range))
    if config.precision == "bf16" or (config.precision == "auto" and bf16_here):
        per_step *= BF16_STEP
    return config.steps * per_step + evals * config.val_size * 0.002 + config.test_size * 0.002


def describe(space: Space, specs: list[TrialSpec], *, samples: int, max_concurrent: int,
             calibrate: bool = False, data_dir=None) -> str:
    """The ``--plan`` text: cells, trial counts and a compute estimate for this machine's CPU;
    ``calibrate``: each cell's costs timed here (``measure``) instead of the rough model."""
    import torch
    from tqdm import tqdm

    from motioncore import precision

    here = precision.bf16_matrix_units(torch.device("cpu"))
    lines = [f"space {space.name}: {space.description}", f"{len({s.cell.id for s in specs})} cells, "
             f"{len(specs)} trials" + (f" + {samples} Optuna trials per cell" if samples else "")]
    total = 0.0
    cells = list({s.cell.id: s.cell for s in specs}.values())
    for cell in tqdm(cells, desc="timing each cell's steps", unit="cell", disable=not calibrate,
                     leave=False):
        cs = [s for s in specs if s.cell.id == cell.id]
        cost = measure(cs[0].config, data_dir) if calibrate else None
        secs = sum(estimate_seconds(s.config, here, cost) for s in cs)
        secs += samples * estimate_seconds(cs[0].config, here, cost) if samples else 0
        total += secs
        timed = f"  {cost.step_s:5.2f} s/step" if cost else ""
        changed = ", ".join(f"{k}={v}" for k, v in cell.overrides.items())
        lines.append(f"  {cell.id:<28} seeds {len(cs)}  ~{secs / 60:6.1f} CPU-min{timed}  {changed}")
    how = "steps timed on this machine" if calibrate else "a rough model; --calibrate times them"
    lines.append(f"estimated compute: {total / 3600:.2f} CPU-hours (one thread per trial, "
                 f"{'bf16' if here else 'fp32'} where precision is auto, {how}); "
                 f"~{total / 3600 / max(max_concurrent, 1):.2f} h wall at {max_concurrent} concurrent")
    return "\n".join(lines)
