"""The CPU background kernel against the torch formula it replaces (values and gradients)."""

import math

import numpy as np
import pytest
import torch

from splatrefine.plugins.dual_gs.background_kernel import BackgroundSH
from splatrefine.plugins.dual_gs.model import ray_directions, sh_basis


def torch_background(bsh, viewmats, Ks, width, height):
    degree = int(round(math.sqrt(bsh.shape[0]))) - 1
    basis = sh_basis(ray_directions(viewmats, Ks, width, height), degree)
    return torch.einsum("chwb,bk->chwk", basis, bsh) + 0.5


def cameras(n, rng):
    vms, Ks = [], []
    for _ in range(n):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        w, x, y, z = q
        R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                      [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                      [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
        vm = np.eye(4)
        vm[:3, :3], vm[:3, 3] = R, rng.normal(size=3)
        vms.append(vm)
        Ks.append([[rng.uniform(20, 40), rng.uniform(-1, 1), rng.uniform(10, 14)],
                   [0, rng.uniform(20, 40), rng.uniform(8, 12)], [0, 0, 1]])
    return torch.tensor(np.array(vms), dtype=torch.float32), torch.tensor(np.array(Ks), dtype=torch.float32)


@pytest.mark.parametrize("B", [1, 4, 9])
def test_kernel_matches_torch_formula(B):
    rng = np.random.default_rng(B)
    viewmats, Ks = cameras(3, rng)
    W, H = 24, 20
    coeffs = torch.tensor(rng.normal(size=(B, 3)), dtype=torch.float32, requires_grad=True)
    up = torch.tensor(rng.normal(size=(3, H, W, 3)), dtype=torch.float32)

    ref = torch_background(coeffs, viewmats, Ks, W, H)
    (ref * up).sum().backward()
    ref_grad = coeffs.grad.clone()
    coeffs.grad = None
    out = BackgroundSH.apply(coeffs, viewmats, Ks, W, H)
    (out * up).sum().backward()

    assert out.shape == (3, H, W, 3) and out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(coeffs.grad, ref_grad, atol=1e-4, rtol=1e-5)
    assert ref_grad.abs().max() > 1.0  # the comparison is not between zeros
