"""Parts of the dual-gs fit step, each against the way it was done before, in the same process:
SSIM forward + backward at 256x256x3 (one 11x11 window; separable blur through autograd; separable
with the gradient in closed form, as now), the class loss forward + backward at 256x256x19 (log of
all K probabilities then the label's; the label's probability first, from stored uint8 labels, as
now) and Adam (fused vs the default, one optimizer per parameter group as the trainer has them, 20k
Gaussians). Times are medians of wall and of process CPU time (the CPU time is steadier on a
shared machine).

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


def ssim_autograd(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The separable SSIM with autograd's gradient (before the closed form)."""
    return losses.ssim(a, b.detach().requires_grad_(True))


def class_loss_all_k(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The previous GCE: the log of every class's probability, then the argmax label's."""
    logp = torch.log(pred.clamp_min(1e-6))
    lp = torch.gather(logp, -1, target.argmax(dim=-1, keepdim=True))[..., 0]
    per_pixel = (1.0 - torch.exp(0.5 * lp)) / 0.5
    return (per_pixel * weight).sum() / weight.sum().clamp_min(1.0)


def median_ms(fn, *args, repeats: int = 30) -> tuple[float, float]:
    """(wall, process CPU) medians in ms of fn(*args).backward()."""
    for _ in range(3):
        fn(*args).backward()
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn(*args).backward()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return 1000 * sorted(wall)[len(wall) // 2], 1000 * sorted(cpu)[len(cpu) // 2]


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
    window, separable, closed = (median_ms(f, a, b) for f in (ssim_2d_window, ssim_autograd, losses.ssim))
    print("SSIM forward + backward, 256x256x3, 2 threads, ms wall / CPU: "
          f"11x11 window {window[0]:.1f} / {window[1]:.1f}, separable (autograd) {separable[0]:.1f} / "
          f"{separable[1]:.1f}, closed-form gradient {closed[0]:.1f} / {closed[1]:.1f} "
          f"({separable[1] / closed[1]:.2f}x CPU against separable); values differ by {diff:.1e}")
    logits = torch.randn(1, 256, 256, 19, requires_grad=True)
    target = torch.softmax(3 * torch.randn(1, 256, 256, 19), -1)
    labels = target.argmax(-1).to(torch.uint8)
    weight = torch.rand(1, 256, 256)
    pred = torch.softmax(logits.detach(), -1).requires_grad_(True)
    old = median_ms(class_loss_all_k, pred, target, weight)
    new = median_ms(lambda p, t, w: losses.class_loss(p, t, w, "gce"), pred, labels, weight)
    print(f"class loss (GCE) forward + backward, 256x256x19, ms wall / CPU: all K {old[0]:.1f} / {old[1]:.1f}, "
          f"label first {new[0]:.1f} / {new[1]:.1f} ({old[1] / new[1]:.2f}x CPU)")
    base, new = adam_ms(False), adam_ms(True)
    print(f"Adam step, 7 parameter groups of 20k Gaussians, 2 threads: default {base:.1f} ms, "
          f"fused {new:.1f} ms ({base / new:.2f}x)")


if __name__ == "__main__":
    main()
