"""The one `resolve_device` (splatrefine.devices) and the wording each caller gives a missing GPU."""

import pytest
import torch

from splatrefine.devices import resolve_device
from splatrefine.errors import ConfigError, SplatrefineError


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_cpu_and_auto(no_cuda):
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == "cpu"
    assert resolve_device("") == "cpu" and resolve_device(None) == "cpu"


def test_auto_picks_cuda_when_torch_sees_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda:1") == "cuda:1"


def test_missing_cuda_default_is_the_cli_wording(no_cuda):
    with pytest.raises(SplatrefineError) as exc:
        resolve_device("cuda")
    assert str(exc.value) == "--device cuda: no CUDA device is available\n  Use --device cpu or auto."


def test_missing_cuda_caller_wording(no_cuda):
    with pytest.raises(ConfigError, match=r"^device 'cuda:0' asked for"):
        resolve_device("cuda:0", unavailable=lambda d: ConfigError(f"device '{d}' asked for"))


def test_dual_gs_keeps_its_wording(no_cuda):
    from splatrefine.plugins.dual_gs.config import DualGSConfig
    from splatrefine.plugins.dual_gs.representation import DualGS
    from splatrefine.roles import ComponentContext

    assert DualGS(DualGSConfig(), ComponentContext(device="cpu")).device == torch.device("cpu")
    with pytest.raises(SplatrefineError) as exc:
        DualGS(DualGSConfig(), ComponentContext(device="cuda"))
    assert str(exc.value) == ("device 'cuda' was asked for but torch sees no CUDA device\n"
                              "  Use --device cpu or auto.")


def test_dual_gs_on_cuda_without_gsplat_says_how_to_get_it(monkeypatch):
    """A CUDA torch without gsplat: the representation stops when it is built (before the run
    folder is touched), not at the first render."""
    import importlib.util

    from splatrefine.plugins.dual_gs.config import DualGSConfig
    from splatrefine.plugins.dual_gs.representation import DualGS
    from splatrefine.roles import ComponentContext

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gsplat" else real(name, *a))
    with pytest.raises(ConfigError) as exc:
        DualGS(DualGSConfig(), ComponentContext(device="cuda"))
    assert str(exc.value) == ("dual-gs on device 'cuda' renders with gsplat, which is not installed\n"
                              "  Install it with pip install 'splatrefine[gpu]' (gsplat 1.5.3), or use --device cpu.")
    assert DualGS(DualGSConfig(), ComponentContext(device="cpu")).device == torch.device("cpu")


def test_trainable_parsers_keep_their_wording(no_cuda):
    from splatrefine.roles import ComponentContext
    from splatrefine.training import ParserOptions, TorchParser

    with pytest.raises(ConfigError) as exc:
        TorchParser(ParserOptions(), ComponentContext(device="cuda"))
    assert str(exc.value) == "device 'cuda' asked for, but torch sees no CUDA device"
