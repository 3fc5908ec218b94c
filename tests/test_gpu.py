"""The CUDA paths: the generator, a training run and the ``--gpus-per-trial auto`` probe.

Marked ``gpu``: the default test command deselects them, and they skip without a CUDA device.
Run them on a GPU machine with ``pytest -m gpu``.
"""

from __future__ import annotations

import pytest
import torch

from motioncore.config import RunConfig
from motioncore.data import MovingDigits
from motioncore.train import Trainer, evaluate, fit

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("params", [dict(motion_range=5, frames=5, noise=0.5),
                                    dict(motion_range=3, frames=3, noise=0.0, digits=2, image_size=40)])
def test_the_cuda_generator_makes_the_cpu_sequences(mnist_dir, params):
    cpu = MovingDigits("train", seed=3, **params)[100:356]
    gpu = MovingDigits("train", seed=3, device="cuda", **params)[100:356]
    assert gpu.frames.is_cuda and gpu.labels.is_cuda
    assert torch.equal(gpu.labels.cpu(), cpu.labels)
    assert torch.equal(gpu.fg.cpu(), cpu.fg)
    # Compositing may fuse into FMAs on the GPU: the frames agree to float32 rounding.
    torch.testing.assert_close(gpu.frames.cpu(), cpu.frames, rtol=0, atol=1e-6)


def test_cuda_training_batches_come_several_per_call_and_match_the_cpu(tiny_config):
    config = tiny_config(device="cuda", batch_size=96, steps=20, noise=0.5, frames=5)
    on_gpu = Trainer(config, torch.device("cuda"))
    assert on_gpu.prefetch == 8
    cpu = MovingDigits("train", motion_range=config.motion_range, frames=5, noise=0.5, seed=config.seed)
    for step in (0, 7, 8, 16, 19):  # 8 x 96 = 768 sequences per call: one unchunked CUDA batch
        batch = on_gpu.batch_at(step)
        assert torch.equal(batch.labels.cpu(), cpu[step * 96:(step + 1) * 96].labels), step
    assert len(on_gpu._ahead[1].frames) == 4 * 96  # the last call stops at config.steps


def test_training_on_cuda_learns_and_its_checkpoint_evaluates_the_same_on_cpu(tiny_config, tmp_path):
    config = tiny_config(device="cuda", width=16, depth=2, steps=600, eval_every=200, val_size=256,
                         test_size=256, batch_size=32, motion_range=1, frames=3, lr=3e-3)
    trainer, test = fit(config, checkpoint=tmp_path / "ckpt.pt")
    assert next(trainer.model.parameters()).is_cuda
    first, last = trainer.history[0], trainer.history[-1]
    assert last["acc_fg"] > first["acc_fg"] + 0.2 and test["acc"] > test["acc_zero"], trainer.history

    on_cpu = Trainer(config.replace(device="cpu"), torch.device("cpu"))
    on_cpu.load(tmp_path / "ckpt.pt")
    cpu_test = evaluate(on_cpu.eval_model, on_cpu.config, on_cpu.val_data, 256)
    assert cpu_test["acc_fg"] == pytest.approx(last["acc_fg"], abs=0.01)


def test_the_auto_probe_packs_several_default_trials_on_one_gpu():
    import ray

    from orchestrator import gpu

    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        fraction = gpu.choose(RunConfig(device="cuda").to_dict(), None, steps=5)
    finally:
        ray.shutdown()
    assert 0 < fraction <= 0.5
