"""Training, evaluation, checkpoints and exact resume, and the train / predict CLIs, run small."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from motioncore.config import RunConfig, UsageError, from_dict
from motioncore.metrics import NAMES
from motioncore.model import predict_batch
from motioncore.motion import class_index, displacements
from motioncore.predict import load_model, predict
from motioncore.predict import main as predict_main
from motioncore.train import Trainer, dataset, evaluate, fit, load_checkpoint
from motioncore.train import main as train_main

CPU = torch.device("cpu")
TINY_FLAGS = ["--width", "4", "--depth", "1", "--steps", "4", "--eval-every", "2", "--val-size", "16",
              "--test-size", "16", "--batch-size", "8", "--device", "cpu", "--threads", "1"]


def names_for(frames: int) -> set[str]:
    return set(NAMES) if frames == 5 else set(NAMES) - {"attn_acc"}


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# --- fit and evaluate ----------------------------------------------------------------------

@pytest.mark.parametrize("frames,attention", [(3, "none"), (5, "motion")])
def test_fit_reports_every_metric_once_per_eval_period(tiny_config, frames, attention):
    cfg = tiny_config(frames=frames, attention=attention, steps=7)
    reports = []
    trainer, test = fit(cfg, report=reports.append)
    assert [m["step"] for m in reports] == [3, 6, 7]  # every eval_every steps, and the last step
    for m in reports:
        assert names_for(frames) <= set(m)
        assert {"step", "lr", "train_loss", "samples_per_s"} <= set(m)
        assert all(isinstance(v, float | int) and math.isfinite(v) for v in m.values())
        assert 0 <= m["acc"] <= 1 and 0 <= m["acc_fg"] <= 1 and m["epe"] >= 0
    assert set(test) == names_for(frames)
    assert trainer.step == 7 and trainer.history == reports
    # acc_zero is a property of the data alone: the zero-motion share of the val labels.
    labels = dataset(cfg, "val", CPU)[0:cfg.val_size].labels
    assert reports[0]["acc_zero"] == pytest.approx((labels == class_index(0, 0, 1)).float().mean().item())
    assert reports[0]["acc_zero"] == reports[-1]["acc_zero"]


def test_evaluate_is_deterministic_and_restores_training_mode(tiny_config):
    cfg = tiny_config()
    trainer = Trainer(cfg, CPU)
    trainer.train_step()
    assert trainer.model.training
    first = evaluate(trainer.model, cfg, trainer.val_data, 20)
    assert trainer.model.training
    assert evaluate(trainer.model, cfg, trainer.val_data, 20) == first
    test_data = dataset(cfg, "test", CPU)
    assert test_data.split == "test" and test_data.params["seed"] == cfg.eval_seed


def test_nan_loss_raises_floating_point_error(tiny_config):
    trainer = Trainer(tiny_config(), CPU)
    trainer.train_step()
    with torch.no_grad():
        trainer.model.unet.head.weight[0, 0] = float("nan")
    before = [p.clone() for p in trainer.model.parameters()]
    with pytest.raises(FloatingPointError, match="step 1"):
        trainer.train_step()
    assert trainer.step == 1
    for a, b in zip(before, trainer.model.parameters(), strict=True):  # no update was applied
        torch.testing.assert_close(b, a, rtol=0, atol=0, equal_nan=True)


# --- checkpoints ---------------------------------------------------------------------------

def test_checkpoint_round_trip(tiny_config, tmp_path):
    cfg = tiny_config(noise=0.3)
    a = Trainer(cfg, CPU)
    for _ in range(3):
        a.train_step()
    a.history.append({"acc": 0.5})
    a.save(tmp_path / "ck.pt")
    assert not list(tmp_path.glob("*.tmp"))
    state = load_checkpoint(tmp_path / "ck.pt")
    assert state["config"] == cfg.to_dict() and state["step"] == 3
    b = Trainer(cfg, CPU)
    b.load(tmp_path / "ck.pt")
    assert b.step == 3 and b.history == [{"acc": 0.5}]
    assert_same_state(a.model.state_dict(), b.model.state_dict())
    assert_same_state(a.ema.state_dict(), b.ema.state_dict())
    assert a.train_step() == b.train_step()
    with pytest.raises(UsageError, match="different config"):
        Trainer(cfg.replace(lr=1e-3), CPU).load(tmp_path / "ck.pt")
    elsewhere = Trainer(cfg.replace(device="auto"), CPU)  # a run may resume on another device
    elsewhere.load(tmp_path / "ck.pt")
    assert elsewhere.step == 3


def test_resume_from_the_middle_matches_one_uninterrupted_run(tiny_config, tmp_path):
    cfg = tiny_config(noise=0.3, steps=6, eval_every=3)
    ck, half = tmp_path / "full.pt", tmp_path / "half.pt"

    def keep_half(metrics):  # the checkpoint is written just before each report
        if metrics["step"] == 3:
            shutil.copyfile(ck, half)

    full, full_test = fit(cfg, report=keep_half, checkpoint=ck)
    assert load_checkpoint(half)["step"] == 3
    resumed_reports = []
    resumed, resumed_test = fit(cfg, report=resumed_reports.append, checkpoint=half, resume=True)
    assert [m["step"] for m in resumed_reports] == [6]
    assert resumed.step == full.step == 6
    assert_same_state(full.model.state_dict(), resumed.model.state_dict())
    assert_same_state(full.ema.state_dict(), resumed.ema.state_dict())
    assert resumed_test == full_test
    assert len(resumed.history) == 2
    for a, b in zip(full.history, resumed.history, strict=True):
        assert {k: v for k, v in a.items() if k != "samples_per_s"} == \
            {k: v for k, v in b.items() if k != "samples_per_s"}


def test_prefetched_batches_train_exactly_like_one_batch_per_call(tiny_config, tmp_path):
    """What a GPU run does by default (several steps' sequences per generator call), on CPU."""
    cfg = tiny_config(noise=0.3, steps=7, eval_every=7)
    one, ahead = Trainer(cfg, CPU, prefetch=1), Trainer(cfg, CPU, prefetch=3)
    for step in (0, 1, 2, 3, 6, 7, 5):  # forwards, into the last short block, past it, and back
        a, b = one.batch_at(step), ahead.batch_at(step)
        assert b.frames.shape[0] == cfg.batch_size
        for field in ("frames", "labels", "masks", "velocity"):
            assert torch.equal(getattr(a, field), getattr(b, field)), (step, field)
    assert ahead._ahead[0] == 5  # step 5 lies before the block that served step 6: regenerated
    _, test_one = fit(cfg, trainer=Trainer(cfg, CPU, prefetch=1))
    trained, test_ahead = fit(cfg, trainer=Trainer(cfg, CPU, prefetch=3))
    assert test_ahead == test_one and trained.step == 7


def test_train_main_resume_with_another_config_exits_2_with_one_line(tiny_config, tmp_path, capsys,
                                                                     one_line_error):
    Trainer(tiny_config(lr=1e-3), CPU).save(tmp_path / "run" / "checkpoint.pt")
    assert train_main(["--out", str(tmp_path / "run"), "--resume", *TINY_FLAGS]) == 2
    assert "different config" in one_line_error(capsys.readouterr().err)


@pytest.mark.slow
@pytest.mark.parametrize("supervision", ["supervised", "unsupervised"])
def test_training_beats_the_trivial_baselines(tiny_config, supervision):
    """A few hundred steps on CPU: the network learns motion, not just zero motion or copying."""
    if supervision == "supervised":
        cfg = tiny_config(width=16, steps=300, eval_every=300, batch_size=32, lr=5e-3, ema=0.0,
                          val_size=100, test_size=200)
    else:
        cfg = tiny_config(width=8, steps=150, eval_every=150, batch_size=32, lr=5e-3,
                          supervision="unsupervised", val_size=100, test_size=200)
    _, test = fit(cfg)
    assert test["recon_l1"] < 0.85 * test["recon_l1_copy"]
    if supervision == "supervised":
        assert test["acc_fg"] > 0.7 and test["acc"] > test["acc_zero"]
    else:
        assert test["acc_fg"] > 0.2  # chance is 1/9


# --- the predict CLI -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, mnist_dir) -> dict[int, Path]:
    """Tiny trained checkpoints for T=3 and T=5 (depth 2: H, W need not divide by 4)."""
    out = {}
    for frames, attention in ((3, "none"), (5, "segmentation")):
        cfg = from_dict(dict(width=4, depth=2, frames=frames, attention=attention, motion_range=2,
                             batch_size=8, steps=2, device="cpu"))
        trainer = Trainer(cfg, CPU)
        trainer.train_step()
        trainer.train_step()
        out[frames] = tmp_path_factory.mktemp(f"ck{frames}") / "checkpoint.pt"
        trainer.save(out[frames])
    return out


def odd_frames(frames: int, n: int = 3) -> np.ndarray:
    return np.random.default_rng(0).random((n, frames, 13, 21), dtype=np.float32)


def check_prediction(result, frames: int) -> None:
    d = 1 if frames == 3 else 2
    assert result["classes"].shape == (3, d, 13, 21) and result["classes"].dtype == np.int64
    assert result["motion"].shape == (3, d, 13, 21, 2) and result["motion"].dtype == np.int64
    assert result["target"].shape == (3, 13, 21) and result["target"].dtype == np.float32
    assert result["classes"].min() >= 0 and result["classes"].max() < 25
    np.testing.assert_array_equal(result["motion"], displacements(2).numpy()[result["classes"]])
    assert np.abs(result["motion"]).max() <= 2
    if frames == 5:
        assert result["attention"].shape == (3, 13, 21) and result["attention"].dtype == np.float32
        assert 0 <= result["attention"].min() and result["attention"].max() <= 1
    else:
        assert "attention" not in result


def test_predict_cli_on_odd_sizes_t5(checkpoints, tmp_path, run_cli):
    np.save(tmp_path / "frames.npy", odd_frames(5))
    proc = run_cli("motioncore.predict", "--checkpoint", checkpoints[5], "--frames", "frames.npy",
                   "--out", "pred.npz")
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "pred.npz") as z:
        result = dict(z)
    assert sorted(result) == ["attention", "classes", "motion", "target"]
    check_prediction(result, 5)
    model, cfg = load_model(checkpoints[5])
    same = predict(model, cfg, odd_frames(5))
    for k in result:
        np.testing.assert_array_equal(result[k], same[k])


def test_predict_main_on_odd_sizes_t3(checkpoints, tmp_path):
    np.save(tmp_path / "frames.npy", odd_frames(3))
    assert predict_main(["--checkpoint", str(checkpoints[3]), "--frames", str(tmp_path / "frames.npy"),
                         "--out", str(tmp_path / "pred.npz")]) == 0
    with np.load(tmp_path / "pred.npz") as z:
        result = dict(z)
    assert sorted(result) == ["classes", "motion", "target"]
    check_prediction(result, 3)


def test_predict_uses_the_ema_weights_in_eval_mode(checkpoints):
    model, cfg = load_model(checkpoints[3])
    assert not model.training and cfg.frames == 3
    state = load_checkpoint(checkpoints[3])
    assert_same_state(model.state_dict(), state["ema"])


def test_predict_cli_wrong_frame_count_exits_2_with_one_line(checkpoints, tmp_path, run_cli,
                                                             one_line_error):
    np.save(tmp_path / "frames.npy", odd_frames(3))
    proc = run_cli("motioncore.predict", "--checkpoint", checkpoints[5], "--frames", "frames.npy",
                   "--out", "pred.npz")
    assert proc.returncode == 2
    line = one_line_error(proc.stderr)
    assert "(3, 3, 13, 21)" in line and "(N, 5, H, W)" in line
    assert not (tmp_path / "pred.npz").exists()


def test_predict_main_bad_inputs_exit_2_with_one_line(checkpoints, tmp_path, capsys, one_line_error):
    np.save(tmp_path / "small.npy", np.zeros((1, 3, 6, 6), np.float32))
    np.save(tmp_path / "flat.npy", np.zeros((3, 13, 21), np.float32))
    (tmp_path / "text.npy").write_text("not an array")
    ok = str(checkpoints[3])
    for args, named in (
        ([ok, tmp_path / "small.npy"], "H and W must be >= 8"),
        ([ok, tmp_path / "flat.npy"], "(N, 3, H, W)"),
        ([ok, tmp_path / "missing.npy"], "missing.npy"),
        ([ok, tmp_path / "text.npy"], "text.npy"),
        ([tmp_path / "none.pt", tmp_path / "small.npy"], "none.pt"),
    ):
        argv = ["--checkpoint", str(args[0]), "--frames", str(args[1]), "--out", str(tmp_path / "o.npz")]
        assert predict_main(argv) == 2, args
        assert named in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "o.npz").exists()


@pytest.mark.parametrize("content", ["junk", "bad_config"])
def test_predict_main_unloadable_checkpoint_exits_2_with_one_line(checkpoints, tmp_path, capsys,
                                                                  one_line_error, content):
    bad = tmp_path / "bad.pt"
    if content == "junk":
        bad.write_bytes(b"not a checkpoint")
    else:
        state = load_checkpoint(checkpoints[3])
        torch.save({**state, "config": {**state["config"], "renamed_field": 1}}, bad)
    np.save(tmp_path / "frames.npy", odd_frames(3))
    argv = ["--checkpoint", str(bad), "--frames", str(tmp_path / "frames.npy"),
            "--out", str(tmp_path / "o.npz")]
    assert predict_main(argv) == 2
    assert "bad.pt" in one_line_error(capsys.readouterr().err)


def test_a_checkpoint_naming_retired_objective_fields_predicts_but_does_not_resume(checkpoints,
                                                                                   tmp_path):
    """Runs trained by an earlier objective (hard_weight, occlusion_mask, ...) stay usable."""
    state = load_checkpoint(checkpoints[3])
    old = tmp_path / "old.pt"
    torch.save({**state, "config": {**state["config"], "hard_weight": 2.0,
                                    "occlusion_mask": True}}, old)
    model, cfg = load_model(old)
    assert cfg == from_dict(state["config"])
    frames = torch.from_numpy(odd_frames(3))
    with torch.no_grad():
        assert torch.equal(predict_batch(model, frames).classes,
                           predict_batch(load_model(checkpoints[3])[0], frames).classes)
    with pytest.raises(UsageError, match="hard_weight, occlusion_mask"):
        Trainer(cfg, CPU).load(old)


@pytest.mark.parametrize("r", [1, 5])
def test_class_recall_png_draws_every_range_with_missing_classes(tmp_path, r):
    from motioncore import viz

    recall = torch.linspace(0, 1, (2 * r + 1) ** 2)
    recall[::3] = float("nan")  # classes no digit pixel of the test set had
    viz.class_recall_png(recall, RunConfig(motion_range=r), tmp_path / "classes.png", "summary")
    assert (tmp_path / "classes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_panel_png_for_five_frames(checkpoints, tmp_path):
    from motioncore import viz

    model, cfg = load_model(checkpoints[5])
    shown = dataset(cfg, "test", CPU)[0:3]
    viz.panel_png(predict_batch(model.eval(), shown.frames), cfg, shown, tmp_path / "panel.png")
    assert (tmp_path / "panel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- the train CLI -------------------------------------------------------------------------

def test_train_cli_writes_checkpoint_metrics_and_panel(tmp_path, run_cli):
    proc = run_cli("motioncore.train", "--out", "run", *TINY_FLAGS)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) == names_for(3) | {"seconds"}
    for picture in ("panel.png", "classes.png"):
        assert (run / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert re.fullmatch(r"test \d+ of \d+ moving classes lost \(<10% right\).*",
                        proc.stdout.strip().splitlines()[-2])
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["step"] == 4 and [m["step"] for m in state["history"]] == [2, 4]
    config = json.loads((run / "config.json").read_text())
    assert (config["width"], config["steps"], config["device"]) == (4, 4, "cpu")
    assert json.loads(proc.stdout.strip().splitlines()[-3]) == {k: metrics[k] for k in names_for(3)}


def test_train_main_bad_flag_exits_2_with_one_line(tmp_path, capsys, one_line_error):
    assert train_main(["--out", str(tmp_path / "run"), "--frames", "4"]) == 2
    assert "frames=4" in one_line_error(capsys.readouterr().err)
    assert train_main(["--out", str(tmp_path / "run"), "--frames", "3", "--attention", "motion"]) == 2
    assert "attention='motion'" in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("scale,bad", [(255.0, "254"), (float("nan"), "nan")])
def test_predict_rejects_frames_outside_unit_range(checkpoints, scale, bad):
    model, config = load_model(checkpoints[3])
    frames = odd_frames(3) * scale
    with pytest.raises(UsageError, match=r"expected finite values in \[0, 1\]"):
        predict(model, config, frames.astype(np.float32))
