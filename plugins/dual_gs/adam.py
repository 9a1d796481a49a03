"""Adam for the fit: torch's fused Adam kernel behind the small interface the trainer and the
densifier use (`param_groups` with "params" and "lr", `state[param]` with step / exp_avg /
exp_avg_sq, `zero_grad`, `step`), without torch.optim.

Why not torch.optim.Adam(fused=True): constructing the first torch.optim optimizer imports
torch._dynamo (1-2 s on 2 cores, in every process that fits) for a decorator a fit never uses. The
update is the same kernel called with the same arguments and the same state, so a fit is
bit-identical (tests/test_dual_gs_adam.py steps both side by side).
"""

from __future__ import annotations

from collections import defaultdict

import torch


class FusedAdam:
    def __init__(self, groups: list[dict], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.param_groups = [{"params": list(g["params"]), "lr": float(g["lr"])} for g in groups]
        self.state: defaultdict[torch.Tensor, dict] = defaultdict(dict)
        self.betas = betas
        self.eps = eps

    def zero_grad(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:  # as torch.optim.Adam(fused=True) starts a parameter
                    state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                params.append(p)
                grads.append(p.grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                steps.append(state["step"])
            if not params:
                continue
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False,
                               lr=group["lr"], beta1=self.betas[0], beta2=self.betas[1], weight_decay=0.0,
                               eps=self.eps, maximize=False, grad_scale=None, found_inf=None)
