"""dual-gs densification: every per-Gaussian tensor and its Adam moments follow each edit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from splatrefine.plugins.dual_gs import densify as D

N, K = 12, 5


def make(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    params = {
        "means": torch.randn(N, 3, generator=g),
        "scales": torch.log(torch.rand(N, 3, generator=g) * 0.1 + 0.01),
        "quats": torch.randn(N, 4, generator=g),
        "opacities": torch.randn(N, generator=g),
        "sh0": torch.randn(N, 1, 3, generator=g),
        "shN": torch.randn(N, 3, 3, generator=g),
        "classes": torch.randn(N, K, generator=g),
    }
    params = {k: torch.nn.Parameter(v) for k, v in params.items()}
    optims = {k: torch.optim.Adam([p], lr=1e-2) for k, p in params.items()}
    loss = sum((p ** 2).sum() * (i + 1) for i, p in enumerate(params.values()))
    loss.backward()
    for o in optims.values():
        o.step()
    return params, optims


def moments(params, optims, name):
    st = optims[name].state[params[name]]
    return st["exp_avg"], st["exp_avg_sq"]


def check_consistent(params, optims):
    n = params["means"].shape[0]
    for name, p in params.items():
        assert p.shape[0] == n, name
        assert optims[name].param_groups[0]["params"][0] is p
        m, v = moments(params, optims, name)
        assert m.shape == p.shape and v.shape == p.shape


def test_duplicate_copies_rows_and_zeroes_new_moments():
    params, optims = make()
    old = {k: v.detach().clone() for k, v in params.items()}
    old_m = {k: moments(params, optims, k)[0].clone() for k in params}
    mask = torch.zeros(N, dtype=torch.bool)
    mask[[1, 4, 7]] = True
    D.duplicate(params, optims, mask)
    check_consistent(params, optims)
    assert params["means"].shape[0] == N + 3
    for k in params:
        torch.testing.assert_close(params[k][:N].detach(), old[k])
        torch.testing.assert_close(params[k][N:].detach(), old[k][[1, 4, 7]])
        m, v = moments(params, optims, k)
        torch.testing.assert_close(m[:N], old_m[k])
        assert m[N:].abs().max() == 0 and v[N:].abs().max() == 0


def test_split_two_smaller_children_keep_class_logits():
    params, optims = make()
    old = {k: v.detach().clone() for k, v in params.items()}
    mask = torch.zeros(N, dtype=torch.bool)
    mask[[0, 5]] = True
    D.split(params, optims, mask, torch.Generator().manual_seed(0))
    check_consistent(params, optims)
    assert params["means"].shape[0] == N + 2
    rest = [i for i in range(N) if i not in (0, 5)]
    torch.testing.assert_close(params["classes"][: N - 2].detach(), old["classes"][rest])
    torch.testing.assert_close(params["classes"][N - 2:].detach(), old["classes"][[0, 5, 0, 5]])
    torch.testing.assert_close(params["scales"][N - 2:].detach(),
                               (old["scales"][[0, 5, 0, 5]] - math.log(1.6)))
    m, _ = moments(params, optims, "classes")
    assert m[N - 2:].abs().max() == 0 and m[: N - 2].abs().min() > 0


def test_remove_and_reset_opacity():
    params, optims = make()
    old = {k: v.detach().clone() for k, v in params.items()}
    old_v = moments(params, optims, "classes")[1].clone()
    mask = torch.zeros(N, dtype=torch.bool)
    mask[[2, 3]] = True
    D.remove(params, optims, mask)
    check_consistent(params, optims)
    keep = [i for i in range(N) if i not in (2, 3)]
    torch.testing.assert_close(params["classes"].detach(), old["classes"][keep])
    torch.testing.assert_close(moments(params, optims, "classes")[1], old_v[keep])
    D.reset_opacity(params, optims, 0.01)
    assert torch.sigmoid(params["opacities"]).max() <= 0.01 + 1e-6
    assert moments(params, optims, "opacities")[0].abs().max() == 0
    # an optimizer step after the edits runs and changes every parameter
    before = {k: v.detach().clone() for k, v in params.items()}
    sum((p ** 2).sum() for p in params.values()).backward()
    for o in optims.values():
        o.step()
    for k in params:
        assert not torch.equal(before[k], params[k].detach())


def test_default_densifier_refines_on_schedule():
    params, optims = make()
    dens = D.DefaultDensifier(refine_start=0, refine_stop=100, refine_every=2, reset_every=1000,
                              grow_grad2d=0.01, grow_scale3d=0.05, prune_opacity=0.2, prune_scale3d=10.0,
                              max_gaussians=100, scene_scale=1.0, seed=0)
    with torch.no_grad():
        params["scales"][:6] = math.log(0.01)  # small -> clone
        params["scales"][6:] = math.log(0.2)  # large -> split
        params["opacities"][:] = 3.0
        params["opacities"][11] = -5.0  # transparent -> pruned
    m2d = torch.zeros(1, N, 2, requires_grad=True)
    (m2d * torch.tensor([1.0, 0.0]) * torch.arange(N).float()[None, :, None]).sum().backward()
    meta = {"means2d": m2d, "radii": torch.ones(1, N, 2, dtype=torch.int32)}
    # grad norm of Gaussian i = i * W/2 (W = 2): i >= 1 exceeds the threshold
    dens.step_post_backward(params, optims, 1, meta, 2, 2)
    info = dens.step_post_backward(params, optims, 2, meta, 2, 2)
    assert info == {"cloned": 5, "split": 6, "pruned": 2}  # 1..5 cloned, 6..11 split, both children of 11 pruned
    check_consistent(params, optims)
    assert params["means"].shape[0] == N + 5 + 6 - 2
    assert dens.grad2d.shape[0] == params["means"].shape[0]


def test_relocation_formula_preserves_single_and_splits_opacity():
    op = torch.tensor([0.6, 0.6])
    sc = torch.ones(2, 3)
    new_o, new_s = D._relocation(op, sc, torch.tensor([1, 2]), 51)
    assert new_o[0].item() == pytest.approx(0.6)
    torch.testing.assert_close(new_s[0], torch.ones(3))
    # two copies composite to the original opacity: 1 - (1 - o')^2 = o
    assert 1 - (1 - new_o[1].item()) ** 2 == pytest.approx(0.6)
    assert new_s[1, 0].item() < 1.0


def test_mcmc_relocates_dead_and_grows_to_budget():
    params, optims = make()
    with torch.no_grad():
        params["opacities"][:4] = -10.0  # dead
        params["opacities"][4:] = 2.0
    dens = D.MCMCDensifier(refine_start=0, refine_stop=100, refine_every=1, max_gaussians=14, min_opacity=0.005,
                           noise_lr=5e5, seed=0)
    info = dens.step_post_backward(params, optims, 1, {}, 8, 8)
    check_consistent(params, optims)
    assert info["relocated"] == 4 and info["added"] == 1  # grows by 5%, at least one
    assert torch.sigmoid(params["opacities"][:4]).min() > 0.005
    for _ in range(5):
        dens.step_post_backward(params, optims, 2, {}, 8, 8)
    assert params["means"].shape[0] == 14
    check_consistent(params, optims)
    before = params["means"].detach().clone()
    dens.step_post_optimizer(params, 3, 1e-3)
    assert torch.isfinite(params["means"]).all()
    assert np.isclose(before.numpy(), params["means"].detach().numpy(), atol=1.0).all()
