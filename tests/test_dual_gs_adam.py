"""FusedAdam against torch.optim.Adam(fused=True): the same parameters, bit for bit."""

import torch

from splatrefine.plugins.dual_gs.adam import FusedAdam


def test_steps_equal_torch_fused_adam_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    init = [torch.randn(50, 3, generator=g), torch.randn(50, generator=g), torch.randn(7, 19, generator=g)]
    lrs = [1e-3, 5e-2, 3e-1]
    ours = [torch.nn.Parameter(t.clone()) for t in init]
    ref = [torch.nn.Parameter(t.clone()) for t in init]
    opt = FusedAdam([{"params": [p], "lr": lr} for p, lr in zip(ours, lrs)], eps=1e-15)
    ref_opt = torch.optim.Adam([{"params": [p], "lr": lr} for p, lr in zip(ref, lrs)], eps=1e-15, fused=True)
    for step in range(6):
        grads = [torch.randn(t.shape, generator=g) * 10 ** (step % 3) for t in init]
        opt.zero_grad()
        ref_opt.zero_grad(set_to_none=True)
        for i, (a, b, gr) in enumerate(zip(ours, ref, grads)):
            if step == 2 and i == 1:
                continue  # a parameter without a gradient this step keeps its state
            a.grad, b.grad = gr.clone(), gr.clone()
        if step == 3:  # a learning-rate change, as the schedule makes
            opt.param_groups[0]["lr"] = ref_opt.param_groups[0]["lr"] = 2e-4
        opt.step()
        ref_opt.step()
        for a, b in zip(ours, ref):
            assert torch.equal(a, b)
    for a, b in zip(ours, ref):
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(opt.state[a][key], ref_opt.state[b][key])
    assert not torch.equal(ours[0], init[0])
