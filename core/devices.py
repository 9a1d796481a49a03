"""Where to compute: the one `resolve_device`. torch is imported only when the answer depends on it."""

from __future__ import annotations

from collections.abc import Callable

from .errors import SplatrefineError


def no_cuda_error(device: str) -> SplatrefineError:
    """The CLI's message for `--device cuda` on a machine where torch sees no CUDA device."""
    return SplatrefineError(f"--device {device}: no CUDA device is available", "Use --device cpu or auto.")


def resolve_device(device: str | None, *,
                   unavailable: Callable[[str], Exception] = no_cuda_error) -> str:
    """'auto' (or '' / None) -> 'cuda' when torch sees a CUDA device, else 'cpu'. A CUDA device
    ('cuda', 'cuda:N') that torch cannot see raises `unavailable(device)` (a caller's own wording;
    by default the CLI's). Any other device is returned as given."""
    if device in ("auto", "", None):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise unavailable(device)
    return device
