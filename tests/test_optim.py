"""motioncore.optim.AdamW against torch.optim.AdamW, and the import it spares a fresh process."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from motioncore.optim import AdamW


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.GELU(), torch.nn.Conv2d(4, 3, 1),
                               torch.nn.Flatten(), torch.nn.Linear(3 * 6 * 6, 5))


def _loss(model: torch.nn.Module, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(step)
    x, y = torch.randn(8, 2, 8, 8, generator=g), torch.randint(0, 5, (8,), generator=g)
    return torch.nn.functional.cross_entropy(model(x), y)


def _train(opt_cls, steps: int, *, freeze_first_until: int = 0, **kw) -> tuple[torch.nn.Module, object]:
    model = _model()
    opt = opt_cls(model.parameters(), lr=3e-2, weight_decay=0.05, **kw)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = 3e-2 * (0.9 ** step)  # a schedule, as Trainer sets one
        opt.zero_grad(set_to_none=True)
        _loss(model, step).backward()
        if step < freeze_first_until:  # a parameter without a gradient is skipped entirely
            model[0].weight.grad = None
        opt.step()
    return model, opt


@pytest.mark.parametrize("freeze", [0, 3])
def test_adamw_matches_torch_adamw(freeze):
    ours, _ = _train(AdamW, 12, freeze_first_until=freeze)
    ref, _ = _train(torch.optim.AdamW, 12, freeze_first_until=freeze, foreach=False)
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    moved = next(iter(ours.parameters())) - next(iter(_model().parameters()))
    assert moved.abs().max() > 1e-3  # the comparison is not between two untouched models


def test_adamw_state_round_trip_continues_exactly():
    straight, _ = _train(AdamW, 10)
    first, opt = _train(AdamW, 6)
    model = _model()
    model.load_state_dict(first.state_dict())
    resumed = AdamW(model.parameters(), lr=1.0)
    resumed.load_state_dict(opt.state_dict())
    for step in range(6, 10):
        resumed.param_groups[0]["lr"] = 3e-2 * (0.9 ** step)
        resumed.zero_grad()
        _loss(model, step).backward()
        resumed.step()
    for a, b in zip(model.parameters(), straight.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("freeze", [0, 5])
def test_adamw_loads_a_torch_adamw_state(freeze):
    """Checkpoints written with torch.optim.AdamW resume with this optimiser (freeze 5: the first
    weight never had a gradient, so torch kept no state for it)."""
    ref, ref_opt = _train(torch.optim.AdamW, 5, freeze_first_until=freeze, foreach=False)
    model = _model()
    model.load_state_dict(ref.state_dict())
    ours = AdamW(model.parameters(), lr=1.0)
    ours.load_state_dict(ref_opt.state_dict())
    assert ours.steps == [0 if freeze and i == 0 else 5 for i in range(len(ours.params))]
    assert ours.param_groups[0]["lr"] == pytest.approx(3e-2 * 0.9**4)
    for opt in (ours, ref_opt):
        opt.zero_grad()
    _loss(model, 5).backward()
    _loss(ref, 5).backward()
    ours.step()
    ref_opt.step()
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_adamw_refuses_a_state_of_other_parameters():
    _, opt = _train(AdamW, 2)
    other = AdamW(torch.nn.Linear(3, 3).parameters(), lr=1e-3)
    with pytest.raises(ValueError, match="does not match"):
        other.load_state_dict(opt.state_dict())


def test_a_training_step_does_not_import_torch_dynamo(tiny_config):
    """The point of the class: a fresh process trains without paying for torch._dynamo."""
    code = ("import sys, torch\n"
            "from motioncore.config import from_dict\n"
            "from motioncore.train import Trainer\n"
            f"t = Trainer(from_dict({tiny_config().to_dict()!r}), torch.device('cpu'))\n"
            "t.train_step()\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
