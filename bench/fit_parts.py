"""Parts of the dual-gs fit step, each against the way it was done before, in the same process:
SSIM (separable blur vs one 11x11 window, forward + backward at 256x256x3) and Adam (fused vs the
default, one optimizer per parameter group as the trainer has them, 20k Gaussians).

    python bench/fit_parts.py
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from splatrefine.plugins.dual_gs import losses  # noqa: E402


def ssim_2d_window(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The baseline: five depthwise 11x11 convolutions."""
    x, y = a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2)
    g = losses._gaussian_kernel(x.device)
    w = (g[:, None] * g[None, :]).expand(3, 1, 11, 11).contiguous()

    def blur(z):
        return F.conv2d(z, w, padding=5, groups=3)

    mu_x, mu_y = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mu_x * mu_x, blur(y * y) - mu_y * mu_y, blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return (((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (sxx + syy + c2))).mean()


def median_ms(fn, a, b, repeats: int = 30) -> float:
    for _ in range(3):
        fn(a, b).backward()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(a, b).backward()
        times.append(time.perf_counter() - t)
    return 1000 * sorted(times)[len(times) // 2]


def adam_ms(fused: bool, gaussians: int = 20000, repeats: int = 50) -> float:
    shapes = {"means": (3,), "scales": (3,), "quats": (4,), "opacities": (), "sh0": (1, 3), "shN": (3, 3),
              "classes": (19,)}
    params = [torch.nn.Parameter(torch.randn((gaussians, *s))) for s in shapes.values()]
    optims = [torch.optim.Adam([p], lr=1e-3, eps=1e-15, fused=fused) for p in params]
    for p in params:
        p.grad = torch.randn_like(p)
    times = []
    for i in range(repeats + 5):
        t = time.perf_counter()
        for o in optims:
            o.step()
        if i >= 5:
            times.append(time.perf_counter() - t)
    return 1000 * sorted(times)[len(times) // 2]


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    a = torch.rand(1, 256, 256, 3, requires_grad=True)
    b = torch.rand(1, 256, 256, 3)
    diff = float((ssim_2d_window(a, b) - losses.ssim(a, b)).detach().abs())
    base, new = median_ms(ssim_2d_window, a, b), median_ms(losses.ssim, a, b)
    print(f"SSIM forward + backward, 256x256x3, 2 threads: 11x11 window {base:.1f} ms, "
          f"separable {new:.1f} ms ({base / new:.2f}x); values differ by {diff:.1e}")
    base, new = adam_ms(False), adam_ms(True)
    print(f"Adam step, 7 parameter groups of 20k Gaussians, 2 threads: default {base:.1f} ms, "
          f"fused {new:.1f} ms ({base / new:.2f}x)")


if __name__ == "__main__":
    main()
