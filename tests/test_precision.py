"""The precision choice: bf16 autocast learns, keeps fp32 weights, and resumes in fp32."""

from __future__ import annotations

import shutil

import pytest
import torch

from motioncore import precision
from motioncore.config import UsageError
from motioncore.train import Trainer, fit

CPU = torch.device("cpu")


def test_torch_still_has_the_cpu_probes_auto_relies_on():
    # precision.bf16_matrix_units calls these private torch functions; if torch drops or
    # renames one, ``auto`` would silently stay fp32 on machines that have the units.
    for name in precision.CPU_PROBES:
        assert isinstance(getattr(torch.cpu, name)(), bool), name


def test_auto_takes_bf16_only_where_there_are_bf16_matrix_units(capsys):
    fast = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    want = "bf16" if fast else "fp32"
    precision._say_once.cache_clear()  # an earlier test in this process may have said it
    assert precision.resolve("auto", CPU) == want
    assert precision.resolve("fp32", CPU) == "fp32" and precision.resolve("bf16", CPU) == "bf16"
    precision.resolve("auto", CPU)
    said = capsys.readouterr().err
    assert said.count("training in fp32") == (want == "fp32")  # said once, not per call


def test_a_bf16_run_learns_keeps_fp32_weights_and_resumes_in_fp32(tiny_config, tmp_path):
    cfg = tiny_config(width=8, steps=40, eval_every=20, batch_size=16, lr=5e-3, ema=0.0,
                      precision="bf16", val_size=32, test_size=32)
    trainer = Trainer(cfg, CPU)
    first = trainer.train_step()["loss"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert trainer.model(trainer.batch_at(0).frames).logits.dtype == torch.bfloat16
    def keep_midway(metrics):  # the checkpoint of step 20, as a killed run would leave it
        if metrics["step"] == 20:
            shutil.copy(tmp_path / "ckpt.pt", tmp_path / "mid.pt")

    trainer, test = fit(cfg, trainer=trainer, checkpoint=tmp_path / "ckpt.pt", report=keep_midway)
    _, test32 = fit(cfg.replace(precision="fp32"))  # the same run in fp32
    last = trainer.history[-1]["train_loss"]
    assert last < 0.9 * first, (first, last)  # it learns...
    assert abs(test["acc"] - test32["acc"]) < 0.02, (test, test32)  # ...as fp32 does
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    state = torch.load(tmp_path / "mid.pt", weights_only=True)
    assert state["step"] == 20
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())
    in_fp32 = cfg.replace(precision="fp32")  # the same run, continued in fp32
    resumed, _ = fit(in_fp32, checkpoint=tmp_path / "mid.pt", resume=True)
    assert resumed.step == 40 and resumed.precision == "fp32"
    assert [m["step"] for m in resumed.history] == [20, 40]
    with pytest.raises(UsageError, match="differs in lr"):
        fit(in_fp32.replace(lr=1e-3), checkpoint=tmp_path / "mid.pt", resume=True)
