"""AdamW without ``torch.optim``: the same update, a few ``torch._foreach_*`` calls a step.

Building any ``torch.optim`` optimizer imports ``torch._dynamo`` (its methods are wrapped to
keep ``torch.compile`` out), which costs every fresh process 1.6 s of CPU on a 2-core machine:
each sweep trial process, each ``python -m motioncore.train``. This class computes what
``torch.optim.AdamW`` computes (decoupled weight decay, bias-corrected moments, per-parameter
step counts; parameters without a gradient are skipped) and imports nothing beyond torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


class AdamW:
    """``torch.optim.AdamW(params, lr, betas, eps, weight_decay)`` with one parameter group.

    ``param_groups[0]["lr"]`` may be changed between steps, as with torch's optimizers.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], *, lr: float,
                 weight_decay: float = 1e-2, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.params = [p for p in params if p.requires_grad]
        self.param_groups = [{"lr": lr, "weight_decay": weight_decay, "betas": tuple(betas),
                              "eps": eps}]
        self.steps = [0] * len(self.params)
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format)
                        for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format)
                           for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        lr, wd, eps, (b1, b2) = group["lr"], group["weight_decay"], group["eps"], group["betas"]
        by_step: dict[int, list[int]] = {}  # one pass per step count (one pass in practice)
        for i, p in enumerate(self.params):
            if p.grad is not None:
                self.steps[i] += 1
                by_step.setdefault(self.steps[i], []).append(i)
        for t, idx in by_step.items():
            params = [self.params[i] for i in idx]
            grads = [self.params[i].grad for i in idx]
            m, v = [self.exp_avg[i] for i in idx], [self.exp_avg_sq[i] for i in idx]
            torch._foreach_mul_(params, 1 - lr * wd)
            torch._foreach_lerp_(m, grads, 1 - b1)
            torch._foreach_mul_(v, b2)
            torch._foreach_addcmul_(v, grads, grads, 1 - b2)
            denom = torch._foreach_sqrt(v)
            torch._foreach_div_(denom, math.sqrt(1 - b2**t))
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, m, denom, -lr / (1 - b1**t))

    def state_dict(self) -> dict:
        return {"param_groups": [dict(g) for g in self.param_groups], "steps": list(self.steps),
                "exp_avg": list(self.exp_avg), "exp_avg_sq": list(self.exp_avg_sq)}

    def load_state_dict(self, state: dict) -> None:
        """Load ``state_dict()`` output, or a ``torch.optim.AdamW`` state of the same parameters."""
        if "state" in state:  # torch.optim's layout: {"state": {index: {...}}, "param_groups"}
            per = state["state"]  # parameters that never had a gradient have no entry

            def column(key: str) -> list:
                return [per[i][key] if i in per else torch.zeros_like(p)
                        for i, p in enumerate(self.params)]

            state = {"param_groups": state["param_groups"],
                     "steps": [int(per[i]["step"]) if i in per else 0 for i in range(len(self.params))],
                     "exp_avg": column("exp_avg"), "exp_avg_sq": column("exp_avg_sq")}
        if len(state["steps"]) != len(self.params) or any(
                a.shape != p.shape for a, p in zip(state["exp_avg"], self.params, strict=True)):
            raise ValueError("optimizer state does not match these parameters")
        saved = state["param_groups"][0]
        self.param_groups[0].update({k: saved[k] for k in ("lr", "weight_decay", "eps")},
                                    betas=tuple(saved["betas"]))
        self.steps = [int(s) for s in state["steps"]]
        for mine, theirs in ((self.exp_avg, state["exp_avg"]), (self.exp_avg_sq, state["exp_avg_sq"])):
            for a, b in zip(mine, theirs, strict=True):
                a.copy_(b)
