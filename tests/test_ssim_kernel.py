"""The CPU SSIM kernel against the torch closed form it replaces (value and gradient)."""

import pytest
import torch

from splatrefine.plugins.dual_gs import losses
from splatrefine.plugins.dual_gs.ssim_kernel import SSIMKernel


@pytest.mark.parametrize("shape", [(1, 3, 32, 40), (2, 3, 9, 7), (1, 3, 64, 64)])
def test_kernel_matches_torch_ssim(shape):
    g = torch.Generator().manual_seed(sum(shape))
    y = torch.rand(shape, generator=g)
    x0 = (y + 0.2 * torch.randn(shape, generator=g)).clamp(0, 1)
    window = losses._gaussian_kernel(torch.device("cpu"))

    x = x0.clone().requires_grad_(True)
    ref = losses._SSIM.apply(x, y)
    (3.0 * ref).backward()
    ref_grad = x.grad.clone()

    x = x0.clone().requires_grad_(True)
    out = SSIMKernel.apply(x, y, window)
    (3.0 * out).backward()

    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(x.grad, ref_grad, atol=1e-7, rtol=1e-4)
    assert 0.1 < float(out.detach()) < 0.99 and ref_grad.abs().max() > 1e-4  # not a trivial pair


def test_kernel_is_one_for_identical_images():
    y = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(1))
    x = y.clone().requires_grad_(True)
    out = SSIMKernel.apply(x, y, losses._gaussian_kernel(torch.device("cpu")))
    out.backward()
    assert abs(float(out.detach()) - 1.0) < 1e-6
    assert x.grad.abs().max() < 1e-5  # SSIM is at its maximum


@pytest.mark.parametrize("shape", [(1, 3, 32, 40), (2, 3, 9, 7)])
def test_precomputed_target_moments_give_the_same_bits(shape):
    g = torch.Generator().manual_seed(7)
    y = torch.rand(shape, generator=g)
    x0 = (y + 0.2 * torch.randn(shape, generator=g)).clamp(0, 1)
    results = []
    for moments in (None, losses.ssim_target_moments(y)):
        x = x0.clone().requires_grad_(True)
        out = losses.ssim_planes(x, y, moments)
        (2.0 * out).backward()
        results.append((out.detach(), x.grad))
    assert results[1][0].item() == results[0][0].item()
    assert torch.equal(results[1][1], results[0][1])
    assert losses.ssim_target_moments(y).shape == (2, shape[0] * shape[1]) + shape[2:]


def test_scratch_maps_kept_between_calls_do_not_leak_into_results():
    """The kernel keeps its scratch maps between calls, one per name, resized when the shape
    changes (a fit's coarse and full levels): the same inputs give the same bits whatever ran
    before."""
    window = losses._gaussian_kernel(torch.device("cpu"))

    def run(shape, seed):
        gen = torch.Generator().manual_seed(seed)
        y = torch.rand(shape, generator=gen)
        x = (y + 0.2 * torch.randn(shape, generator=gen)).clamp(0, 1).requires_grad_(True)
        out = SSIMKernel.apply(x, y, window)
        out.backward()
        return float(out.detach()), x.grad.clone()

    first = run((1, 3, 24, 20), 0)
    run((1, 3, 12, 10), 1)  # the coarse level
    run((1, 3, 24, 20), 2)  # other images of the same shape
    again = run((1, 3, 24, 20), 0)
    assert first[0] == again[0]
    assert torch.equal(first[1], again[1])
