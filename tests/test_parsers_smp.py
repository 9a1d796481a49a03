"""smp: segmentation-models-pytorch models behind the parser contract (skipped without smp)."""

import os

import numpy as np
import pytest

from splatrefine.errors import ConfigError
from splatrefine.roles import ComponentContext, InitialParser, TargetParser
from splatrefine.testing import tiny_capture

torch = pytest.importorskip("torch")
if os.environ.get("CI"):  # CI installs every extra: a missing one must fail, not skip
    __import__("segmentation_models_pytorch")
pytest.importorskip("segmentation_models_pytorch")


def make(**params):
    from splatrefine.config import build_settings
    from splatrefine.plugins.smp_parsers.plugin import SmpConfig, make_smp

    params.setdefault("input_size", 64)
    return make_smp(build_settings(SmpConfig, params, "target_parser 'smp'"), ComponentContext(device="cpu", seed=0))


@pytest.mark.parametrize("arch,encoder", [("Unet", "resnet18"), ("FPN", "mobilenet_v2"), ("deeplabv3plus", "resnet18")])
def test_contract_for_several_architectures(arch, encoder, tmp_path):
    from splatrefine.datasets import LabelledDataset, write_labelled_folder
    from splatrefine.registry import Registry
    from splatrefine.training import load_parser

    p = make(arch=arch, encoder=encoder, train_batch_size=2, optimizer="adam", lr=1e-3)
    assert isinstance(p, InitialParser) and isinstance(p, TargetParser)
    probs = p.predict(torch.rand(2, 3, 48, 40))
    assert probs.shape == (2, 19, 48, 40)
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 48, 40))
    cap = tiny_capture(views=4, size=32)
    root = write_labelled_folder(tmp_path / "ds", [v.name for v in cap.views], [v.image for v in cap.views],
                                 [v.labels for v in cap.views])
    hist = p.fit(LabelledDataset(root), steps=2)
    assert len(hist["loss"]) == 2 and all(np.isfinite(hist["loss"]))
    out = p.parse(cap)
    assert out.shape == (4, 19, 32, 32) and out.dtype == np.float32
    p.save(tmp_path / "parser")
    q = load_parser(Registry(), tmp_path / "parser")
    assert q.config.arch == arch and q.config.encoder == encoder
    np.testing.assert_allclose(q.parse(cap), out, atol=1e-5)


def test_unknown_encoder_and_architecture_suggest_a_name():
    with pytest.raises(ConfigError) as err:
        make(encoder="resnet81")
    assert str(err.value).splitlines()[0] == "smp: unknown encoder 'resnet81'. Did you mean 'resnet18'?"
    assert "resnet34" not in str(err.value)  # no dump of every name
    with pytest.raises(ConfigError, match="smp: unknown architecture 'Unte'. Did you mean 'Unet'?"):
        make(arch="Unte")
    with pytest.raises(ConfigError, match="unknown timm encoder 'tu-resnet1'. Did you mean 'tu-resnet18'"):
        make(encoder="tu-resnet1")
    with pytest.raises(ConfigError, match="input_size 60 is not a multiple of 32"):
        make(input_size=60)


def test_checkpoint_of_another_encoder_is_refused_with_names(tmp_path):
    a = make(arch="Unet", encoder="resnet18")
    torch.save(a.net.state_dict(), tmp_path / "unet_r18.pt")
    b = make(arch="Unet", encoder="resnet18", checkpoint=str(tmp_path / "unet_r18.pt"))
    for x, y in zip(a.net.state_dict().values(), b.net.state_dict().values()):
        assert torch.equal(x, y)
    with pytest.raises(ConfigError, match=r"unet_r18\.pt: checkpoint does not fit smp FPN/resnet18 \(19 classes\): .*missing"):
        make(arch="FPN", encoder="resnet18", checkpoint=str(tmp_path / "unet_r18.pt"))
