"""Training and evaluation: ``fit(config, report=...)`` knows nothing of its caller.

A CLI, a test and a Ray trial all call ``fit``; it reports validation metrics through the
callback once per evaluation period and returns the final test metrics. Checkpoints hold
model, EMA weights, optimiser, step and RNG state, and resume exactly: the training data of
step s is the sequence range [s*B, (s+1)*B) of the seeded stream, so nothing else is needed.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from motioncore import cli, mnist, precision, viz
from motioncore.checkpoint import check_out, clear_run, load_checkpoint, weights_mismatch
from motioncore.config import (
    LR_FLOOR,
    WARMUP_STEPS,
    RunConfig,
    UsageError,
    add_config_flags,
    config_from_flags,
    from_dict,
    resolve_device,
)
from motioncore.data import Batch, MovingDigits
from motioncore.losses import objective
from motioncore.metrics import (
    add,
    batch_sums,
    class_recall,
    finalize,
    lost_classes,
    recall_summary,
)
from motioncore.model import MotionNet, predict_batch

Report = Callable[[dict[str, float]], None]
EVAL_BATCH = 250


def build_model(config: RunConfig, device: torch.device) -> MotionNet:
    torch.manual_seed(config.seed)
    return MotionNet(config).to(device)


def dataset(config: RunConfig, split: str, device: torch.device, data_dir=None) -> MovingDigits:
    """The sequence stream of a split: training uses the run seed, val/test the shared eval seed."""
    return MovingDigits(split, motion_range=config.motion_range, frames=config.frames,
                        noise=config.noise, digits=config.digits, image_size=config.image_size,
                        seed=config.seed if split == "train" else config.eval_seed,
                        device=device, data_dir=data_dir)


def lr_at(config: RunConfig, step: int) -> float:
    """Linear warm-up over ``WARMUP_STEPS``, then constant or cosine decay to ``LR_FLOOR`` of lr."""
    warm = min(1.0, (step + 1) / WARMUP_STEPS)
    if config.schedule == "constant" or config.steps <= 1:
        return config.lr * warm
    t = min(step / (config.steps - 1), 1.0)
    return config.lr * warm * (LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * t)))


def evaluate(model: MotionNet, config: RunConfig, data: MovingDigits, n: int) -> dict[str, float]:
    """Every docs/conventions.md metric over the first ``n`` sequences of ``data``."""
    return finalize(evaluate_sums(model, config, data, n))


@torch.no_grad()
def evaluate_sums(model: MotionNet, config: RunConfig, data: MovingDigits, n: int) -> dict:
    """The summed ``batch_sums`` parts over the first ``n`` sequences of ``data``."""
    was_training = model.training
    model.eval()
    total = None
    for batch in data.batches(EVAL_BATCH, n):
        p = predict_batch(model, batch.frames)
        total = add(total, batch_sums(
            pred=p.classes, labels=batch.labels, fg=batch.fg, r=config.motion_range,
            frames=batch.frames, recon=p.recon, attention=p.attention))
    model.train(was_training)
    return total


class Trainer:
    """The state of one run: model, EMA copy, optimiser and step.

    ``prefetch``: training batches generated per generator call (default 1 on CPU, 8 on an
    accelerator). A batch costs a fixed ~40 tensor ops whatever its size, which is nothing next
    to a CPU step but 8-16% of a small model's GPU step; one call for 8 steps' sequences spreads
    that cost. The batches are the same either way: a sequence depends only on its index.
    """

    def __init__(self, config: RunConfig, device: torch.device, data_dir=None,
                 prefetch: int | None = None):
        self.config, self.device = config, device
        self.prefetch = prefetch or (1 if device.type == "cpu" else 8)
        self._ahead: tuple[int, Batch] | None = None  # (first step, sequences of several steps)
        self.precision = precision.resolve(config.precision, device)
        self.model = build_model(config, device)
        if self.precision == "bf16":  # bf16 convolutions run fastest on channels-last tensors
            self.model.to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.model).requires_grad_(False) if config.ema > 0 else None
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=config.lr,
                                     weight_decay=config.weight_decay)
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.test_recall: torch.Tensor | None = None  # (K,) per class, set by fit's test pass
        self.train_data = dataset(config, "train", device, data_dir)
        self.val_data = dataset(config, "val", device, data_dir)
        self.data_dir = data_dir

    @property
    def eval_model(self) -> MotionNet:
        return self.ema if self.ema is not None else self.model

    def batch_at(self, step: int) -> Batch:
        """The training batch of ``step``: sequences ``[step * B, (step + 1) * B)``."""
        b = self.config.batch_size
        if self.prefetch <= 1:
            return self.train_data[step * b:(step + 1) * b]
        if self._ahead is None or not 0 <= step - self._ahead[0] < len(self._ahead[1].frames) // b:
            count = max(1, min(self.prefetch, self.config.steps - step))
            self._ahead = (step, self.train_data[step * b:(step + count) * b])
        first, ahead = self._ahead
        i = (step - first) * b
        return ahead[i:i + b]

    def train_step(self) -> dict[str, float]:
        c = self.config
        batch = self.batch_at(self.step)
        for group in self.opt.param_groups:
            group["lr"] = lr_at(c, self.step)
        with precision.autocast(self.precision, self.device):
            out = self.model(batch.frames)
        attention = out.attention.float() if out.attention is not None else None
        loss, parts = objective(frames=batch.frames, labels=batch.labels,
                                logits=out.logits.float(), attention=attention, config=c)
        if not torch.isfinite(loss):
            raise cli.Diverged(f"loss is {loss.item()} at step {self.step} of "
                               f"{self.config.steps}: the run diverged (try a lower lr)")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.ema is not None:
            with torch.no_grad():
                for e, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                    e.lerp_(p, 1 - c.ema)
                for e, b in zip(self.ema.buffers(), self.model.buffers(), strict=True):
                    e.copy_(b)
        self.step += 1
        return {"loss": loss.item(), **{k: float(v) for k, v in parts.items()}}

    def state_dict(self) -> dict:
        return {
            "config": self.config.to_dict(), "step": self.step, "history": self.history,
            "model": self.model.state_dict(), "opt": self.opt.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": torch.get_rng_state(),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the checkpoint atomically (a killed run never leaves a half-written file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)

    def load(self, path: str | os.PathLike) -> None:
        state = load_checkpoint(path)
        changed = self.config.differs(state["config"])
        if changed:
            raise UsageError(f"checkpoint {path} was written by a different config (differs in "
                             f"{', '.join(changed)})")
        try:
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["opt"])
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
            self.step, self.history = int(state["step"]), list(state["history"])
            torch.set_rng_state(state["rng"])
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            # load_state_dict's first line names no tensor: say which one does not fit
            reason = weights_mismatch(self.model, state.get("model")) or cli.first_line(e)
            raise UsageError(f"checkpoint {path} does not fit this model and optimiser "
                             f"({reason})") from None


def fit(config: RunConfig, *, report: Report | None = None, data_dir=None,
        checkpoint: str | os.PathLike | None = None, resume: bool = False,
        progress: bool = False, trainer: Trainer | None = None) -> tuple[Trainer, dict[str, float]]:
    """Train ``config``; call ``report(metrics)`` every ``eval_every`` steps; return test metrics.

    ``checkpoint``: a file written before each report (and at the end); with ``resume`` an
    existing one is loaded first, so an interrupted run continues where it stopped.
    ``trainer``: a state built beforehand (default: a fresh one for ``config``).
    """
    device = resolve_device(config.device)
    trainer = trainer or Trainer(config, device, data_dir)
    if resume and checkpoint and Path(checkpoint).exists():
        trainer.load(checkpoint)
    bar = Progress(config.steps, trainer.step, enabled=progress)
    started, samples, recent = time.perf_counter(), 0, {}
    try:  # a diverged run's one line must not land on the progress bar's
        while trainer.step < config.steps:
            recent = trainer.train_step()
            samples += config.batch_size
            bar.update(recent["loss"])
            if trainer.step % config.eval_every == 0 or trainer.step == config.steps:
                sums = evaluate_sums(trainer.eval_model, config, trainer.val_data, config.val_size)
                metrics = finalize(sums)
                elapsed = time.perf_counter() - started
                metrics.update(step=trainer.step, lr=lr_at(config, trainer.step - 1),
                               train_loss=recent["loss"], samples_per_s=samples / max(elapsed, 1e-9))
                trainer.history.append(metrics)
                if checkpoint:
                    trainer.save(checkpoint)
                bar.note(metrics, class_recall(sums))
                if report:
                    report(metrics)
    finally:
        bar.close()
    sums = evaluate_sums(trainer.eval_model, config, dataset(config, "test", device, data_dir),
                         config.test_size)
    trainer.test_recall = class_recall(sums)
    return trainer, finalize(sums)


def write_results(trainer: Trainer, test: dict[str, float], out: Path, data_dir=None,
                  **extra: float) -> str:
    """Write a finished run's config.json, metrics.json (test metrics and ``extra``), panel.png
    (predictions on six test sequences) and classes.png (test recall per motion class) into
    ``out``; return the one-line class summary."""
    config = trainer.config
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    (out / "metrics.json").write_text(json.dumps({**test, **extra}, indent=2))
    shown = dataset(config, "test", trainer.device, data_dir)[0:6]
    trainer.eval_model.eval()
    viz.panel_png(predict_batch(trainer.eval_model, shown.frames), config, shown, out / "panel.png")
    summary = recall_summary(trainer.test_recall)
    viz.class_recall_png(trainer.test_recall, config, out / "classes.png", summary)
    return summary


class Progress:
    """Progress on stderr through tqdm (steps, rate, loss, ETA), and one line per evaluation.

    On a terminal the bar is redrawn at most once a second; into a log file or pipe, every 30 s.
    """

    def __init__(self, total: int, initial: int, enabled: bool):
        tty = sys.stderr.isatty()
        self.bar = tqdm(total=total, initial=initial, disable=not enabled, file=sys.stderr,
                        unit="step", mininterval=1.0 if tty else 30.0, dynamic_ncols=True)

    def update(self, loss: float) -> None:
        self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        self.bar.update(1)

    def note(self, m: dict, recall: torch.Tensor) -> None:
        """One line per evaluation: the metrics and how many moving classes are lost."""
        if not self.bar.disable:
            lost, seen = lost_classes(recall)
            self.bar.write(f"step {m['step']:>6}: val acc {m['acc']:.4f} acc_fg {m['acc_fg']:.4f} "
                           f"(zero {m['acc_zero']:.4f}) epe {m['epe']:.3f} recon_l1 "
                           f"{m['recon_l1']:.4f}"
                           + (f" attn_acc {m['attn_acc']:.3f}" if "attn_acc" in m else "")
                           + f" lost {lost}/{seen}", file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def read_config(path: str) -> RunConfig:
    """A ``--config`` file: a JSON object of config fields."""
    try:
        values = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"--config {path}: cannot read it as JSON ({e})") from None
    if not isinstance(values, dict):
        raise UsageError(f"--config {path}: expected a JSON object of config fields, "
                         f"not a {type(values).__name__}")
    return from_dict(values)


@cli.command
def main(argv: list[str] | None = None) -> int:
    p = cli.ArgumentParser(prog="python -m motioncore.train",
                           description="Train one motion network and evaluate it on test.")
    p.add_argument("--out", required=True,
                   help="directory for checkpoint.pt, metrics.json, panel.png, classes.png")
    p.add_argument("--data-dir", help=f"MNIST directory (default ${mnist.ENV_VAR} or the cache)")
    p.add_argument("--config", help="JSON file with config fields (flags override it)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if present")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in OUT")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    add_config_flags(p)
    args = p.parse_args(argv)
    config = config_from_flags(args, read_config(args.config) if args.config else None)
    resolve_device(config.device)
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads {args.threads}: must be an integer >= 1")
    out = Path(args.out)
    check_out(out, config, resume=args.resume, overwrite=args.overwrite)
    mnist.load_split("train", args.data_dir)  # missing or corrupt MNIST: before anything is written
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.overwrite and not args.resume:
        clear_run(out)  # every check passed: the old run goes before the new one writes a file
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    started = time.perf_counter()
    trainer, test = fit(config, data_dir=args.data_dir, checkpoint=out / "checkpoint.pt",
                        resume=args.resume, progress=True)
    seconds = time.perf_counter() - started
    trainer.save(out / "checkpoint.pt")
    summary = write_results(trainer, test, out, args.data_dir, seconds=seconds)
    print(json.dumps(test))
    print(f"test {summary}")
    print(f"wrote {out}/checkpoint.pt, metrics.json, panel.png, classes.png ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
