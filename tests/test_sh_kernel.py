"""The CPU kernel of the RGB head's SH colours against the torch formula (values and gradients)."""

import pytest
import torch

from splatrefine.plugins.dual_gs.model import eval_sh_rgb
from splatrefine.plugins.dual_gs.sh_kernel import SHColors


@pytest.mark.parametrize("degree,rest", [(0, 0), (1, 3), (2, 8), (3, 15), (1, 15)])
def test_colours_and_gradients_match_torch(degree, rest):
    g = torch.Generator().manual_seed(degree * 10 + rest)
    N, C = 50, 3
    sh0 = torch.randn(N, 1, 3, generator=g, dtype=torch.float64)
    shN = 0.5 * torch.randn(N, rest, 3, generator=g, dtype=torch.float64)
    sh0[:5] = -3.0  # colours clamped at 0: no gradient there
    means = torch.randn(N, 3, generator=g, dtype=torch.float64)
    centers = 4 * torch.randn(C, 3, generator=g, dtype=torch.float64)
    g_out = torch.randn(C, N, 3, generator=g, dtype=torch.float64)

    def run(fn, dtype):
        a, b, m = (t.to(dtype).clone().requires_grad_(True) for t in (sh0, shN, means))
        out = fn(a, b, m, centers.to(dtype))
        out.backward(g_out.to(dtype))
        grads = [torch.zeros_like(t) if t.grad is None else t.grad for t in (a, b, m)]  # degree 0: means unused
        return out.detach().double(), *(t.double() for t in grads)

    ref = run(lambda a, b, m, c: eval_sh_rgb(torch.cat([a, b], 1), m, c, degree), torch.float64)
    got = run(lambda a, b, m, c: SHColors.apply(a, b, m, c, degree), torch.float32)
    assert (ref[0] == 0).any() and (ref[0] > 0).any()
    for r, k in zip(ref, got):
        torch.testing.assert_close(k, r, rtol=2e-4, atol=2e-5)
    if rest:  # coefficients above the active degree get no gradient
        assert torch.count_nonzero(got[2][:, (degree + 1) ** 2 - 1:]) == 0
