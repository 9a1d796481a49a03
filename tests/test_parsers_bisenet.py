"""bisenet: face-parsing.PyTorch's checkpoint layout, strict loading with clear errors, the parser
contract (predict / parse / fit / save / load) on tiny inputs."""

import numpy as np
import pytest

from splatrefine.datasets import LabelledDataset, write_labelled_folder
from splatrefine.errors import ConfigError, SplatrefineError
from splatrefine.roles import ComponentContext, InitialParser, Role, TargetParser
from splatrefine.testing import tiny_capture

torch = pytest.importorskip("torch")


def published_layout(n_classes: int = 19) -> dict:
    """Key -> shape of face-parsing.PyTorch's BiSeNet state dict (79999_iter.pth), written out
    from that project's model.py / resnet.py, independently of our network code."""
    L = {}

    def bn(p, c):
        L.update({f"{p}.weight": (c,), f"{p}.bias": (c,), f"{p}.running_mean": (c,), f"{p}.running_var": (c,),
                  f"{p}.num_batches_tracked": ()})

    def cbr(p, cin, cout, k):
        L[f"{p}.conv.weight"] = (cout, cin, k, k)
        bn(f"{p}.bn", cout)

    L["cp.resnet.conv1.weight"] = (64, 3, 7, 7)
    bn("cp.resnet.bn1", 64)
    for li, (cin, cout) in enumerate([(64, 64), (64, 128), (128, 256), (256, 512)], 1):
        for b in range(2):
            p, ci = f"cp.resnet.layer{li}.{b}", (cin if b == 0 else cout)
            L[f"{p}.conv1.weight"] = (cout, ci, 3, 3)
            bn(f"{p}.bn1", cout)
            L[f"{p}.conv2.weight"] = (cout, cout, 3, 3)
            bn(f"{p}.bn2", cout)
            if b == 0 and li > 1:
                L[f"{p}.downsample.0.weight"] = (cout, cin, 1, 1)
                bn(f"{p}.downsample.1", cout)
    for name, cin in (("arm16", 256), ("arm32", 512)):
        cbr(f"cp.{name}.conv", cin, 128, 3)
        L[f"cp.{name}.conv_atten.weight"] = (128, 128, 1, 1)
        bn(f"cp.{name}.bn_atten", 128)
    cbr("cp.conv_head32", 128, 128, 3)
    cbr("cp.conv_head16", 128, 128, 3)
    cbr("cp.conv_avg", 512, 128, 1)
    cbr("ffm.convblk", 256, 256, 1)
    L["ffm.conv1.weight"] = (64, 256, 1, 1)
    L["ffm.conv2.weight"] = (256, 64, 1, 1)
    for name, cin, mid in (("conv_out", 256, 256), ("conv_out16", 128, 64), ("conv_out32", 128, 64)):
        cbr(f"{name}.conv", cin, mid, 3)
        L[f"{name}.conv_out.weight"] = (n_classes, mid, 1, 1)
    return L


def fake_checkpoint(seed=0, n_classes=19, drop_tracked=False) -> dict:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in published_layout(n_classes).items():
        if k.endswith("num_batches_tracked"):
            if not drop_tracked:
                sd[k] = torch.tensor(1000)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[k] = torch.randn(shape, generator=g) * 0.05
    return sd


def make(**params):
    from splatrefine.config import build_settings
    from splatrefine.plugins.bisenet.plugin import BiSeNetConfig, make_bisenet

    params.setdefault("input_size", 64)
    return make_bisenet(build_settings(BiSeNetConfig, params, "bisenet"), ComponentContext(device="cpu", seed=0))


def test_network_matches_the_published_layout_exactly():
    p = make()
    got = {k: tuple(v.shape) for k, v in p.net.state_dict().items()}
    assert got == published_layout()
    assert sum(int(np.prod(s)) for k, s in got.items() if "num_batches" not in k) == 13_313_088


def test_loads_a_checkpoint_with_the_published_keys_strictly(tmp_path):
    sd = fake_checkpoint(drop_tracked=True)  # old torch versions saved no num_batches_tracked
    torch.save(sd, tmp_path / "79999_iter.pth")
    p = make(checkpoint=str(tmp_path / "79999_iter.pth"))
    own = p.net.state_dict()
    for k, v in sd.items():
        assert torch.equal(own[k], v), k
    # a DataParallel-style "module." prefix and a {"state_dict": ...} wrapper are accepted
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "wrapped.pt")
    q = make(checkpoint=str(tmp_path / "wrapped.pt"))
    assert torch.equal(q.net.state_dict()["conv_out.conv_out.weight"], sd["conv_out.conv_out.weight"])


def test_wrong_keys_and_shapes_say_which_and_whether_strict_false_helps(tmp_path):
    sd = fake_checkpoint(n_classes=11)
    sd.pop("ffm.conv1.weight")
    sd["extra.weight"] = torch.zeros(3)
    torch.save(sd, tmp_path / "lapa.pth")
    with pytest.raises(ConfigError) as err:
        make(checkpoint=str(tmp_path / "lapa.pth"))
    msg = str(err.value)
    assert msg.splitlines()[0] == (
        f"{tmp_path / 'lapa.pth'}: checkpoint does not fit BiSeNet (19 classes, spatial_path=resnet): "
        "1 missing (ffm.conv1.weight); 1 unexpected (extra.weight); 3 of another shape "
        "(conv_out.conv_out.weight: checkpoint [11, 256, 1, 1], model [19, 256, 1, 1]; "
        "conv_out16.conv_out.weight: checkpoint [11, 64, 1, 1], model [19, 64, 1, 1], ...)")
    assert "'strict: false' would load the 156 matching tensors and leave 4 at their initial values" in msg
    # strict: false loads what matches (a 19-class start for an 11-class fine-tune, say)
    p = make(checkpoint=str(tmp_path / "lapa.pth"), strict=False)
    assert torch.equal(p.net.state_dict()["cp.resnet.conv1.weight"], sd["cp.resnet.conv1.weight"])
    # a checkpoint of another architecture: strict: false would not help
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="'strict: false' would not help"):
        make(checkpoint=str(tmp_path / "other.pth"))


def test_files_that_are_not_state_dicts(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(SplatrefineError, match=r"list\.pt: not a state dict \(found list\)"):
        make(checkpoint=str(tmp_path / "list.pt"))
    torch.save({"epoch": 1, "note": "x"}, tmp_path / "meta.pt")
    with pytest.raises(SplatrefineError, match=r"meta\.pt: not a state dict \(found a dict with keys epoch, note\)"):
        make(checkpoint=str(tmp_path / "meta.pt"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(SplatrefineError, match=r"junk\.pth: cannot read as a PyTorch checkpoint"):
        make(checkpoint=str(tmp_path / "junk.pth"))
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a pickled module, not weights
    with pytest.raises(SplatrefineError, match=r"module\.pt: not a plain state dict"):
        make(checkpoint=str(tmp_path / "module.pt"))
    with pytest.raises(ConfigError, match=r"missing\.pth: checkpoint file not found"):
        make(checkpoint=str(tmp_path / "missing.pth"))


def test_logits_match_the_original_implementation():
    """Golden values computed once by running face-parsing.PyTorch's own model.py (eval mode) with
    this seeded state dict and input: our network computes the same function, not just the same
    keys. (Max abs difference over a whole [2,19,128,96] output was 1.5e-8.)"""
    from splatrefine.plugins.bisenet.network import BiSeNet

    net = BiSeNet(19)
    net.load_state_dict(fake_checkpoint(seed=0), strict=True)
    net.eval()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = net(x)
    means = [-0.029276, -0.006873, 0.001439, 0.011823, -0.003708, -0.006157, 0.001486, 0.000907, 0.00182,
             -0.016996, -0.114729, -0.013434, -0.001402, -0.001298, 0.020359, 0.04029, -0.049052, 0.012991,
             -0.01192]
    np.testing.assert_allclose(out.mean((0, 2, 3)).numpy(), means, atol=2e-6)
    np.testing.assert_allclose(out[0, :4, 0, 0].numpy(), [-0.032306, -0.00725, -0.000558, 0.011551], atol=2e-6)
    np.testing.assert_allclose(out[0, 15:19, 32, 32].numpy(), [0.041657, -0.049036, 0.012269, -0.011325], atol=2e-6)


def test_predict_and_parse_contract():
    p = make()
    assert isinstance(p, InitialParser) and isinstance(p, TargetParser)
    x = torch.rand(2, 3, 40, 56)
    probs = p.predict(x)
    assert probs.shape == (2, 19, 40, 56) and probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 40, 56))
    cap = tiny_capture(views=3, size=32)
    out = p.parse(cap)
    assert out.shape == (3, 19, 32, 32) and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-5)
    # the same image through parse and predict gives the same answer
    img = torch.from_numpy(cap.views[1].image).permute(2, 0, 1)[None].float() / 255
    np.testing.assert_allclose(out[1], p.predict(img)[0].numpy(), atol=1e-5)


def test_separate_spatial_path_variant():
    p = make(spatial_path="conv")
    keys = p.net.state_dict().keys()
    assert "sp.conv1.conv.weight" in keys and "sp.conv_out.conv.weight" in keys
    assert p.predict(torch.rand(1, 3, 64, 64)).shape == (1, 19, 64, 64)


def _tiny_dataset(tmp_path):
    """A 6-view tiny capture and the labelled dataset of its views."""
    cap = tiny_capture(views=6, size=64)
    root = write_labelled_folder(tmp_path / "ds", [v.name for v in cap.views], [v.image for v in cap.views],
                                 [v.labels for v in cap.views], yaw=cap.cameras().yaw)
    return cap, LabelledDataset(root)


@pytest.mark.slow
def test_fit_learns_and_save_load_round_trip(tmp_path):
    from splatrefine.training import load_parser
    from splatrefine.registry import Registry

    cap, ds = _tiny_dataset(tmp_path)
    p = make(train_batch_size=2, optimizer="adam", lr=1e-3, jitter=0.2)
    gt = np.stack([v.labels for v in cap.views])
    before = (p.parse(cap).argmax(1) == gt).mean()
    hist = p.fit(ds, steps=24)
    assert len(hist["loss"]) == 24
    assert np.mean(hist["loss"][-4:]) < 0.7 * np.mean(hist["loss"][:4])
    probs = p.parse(cap)
    after = (probs.argmax(1) == gt).mean()
    assert after > 0.8 and after > before + 0.2
    p.save(tmp_path / "parser")
    assert sorted(f.name for f in (tmp_path / "parser").iterdir()) == ["parser.json", "weights.pt"]
    reg = Registry()
    if "bisenet" not in reg.names(Role.TARGET_PARSER):
        pytest.skip("bisenet not yet registered as a builtin")
    q = load_parser(reg, tmp_path / "parser")
    assert q.config.input_size == 64 and q.config.optimizer == "adam"
    np.testing.assert_allclose(q.parse(cap), probs, atol=1e-6)
    # a folder saved by another plugin is refused by name
    info = (tmp_path / "parser" / "parser.json").read_text().replace('"bisenet"', '"smp"')
    (tmp_path / "parser" / "parser.json").write_text(info)
    with pytest.raises(ConfigError, match="a saved 'smp' parser cannot be loaded into 'bisenet'"):
        make(checkpoint=str(tmp_path / "parser"))


@pytest.mark.slow
def test_bf16_training_learns_like_fp32_and_keeps_fp32_weights(tmp_path):
    cap, ds = _tiny_dataset(tmp_path)
    gt = np.stack([v.labels for v in cap.views])
    acc, losses = {}, {}
    for precision in ("fp32", "bf16"):
        p = make(train_batch_size=2, optimizer="adam", lr=1e-3, jitter=0.2, precision=precision)
        hist = p.fit(ds, steps=24)
        losses[precision] = np.mean(hist["loss"][-4:])
        acc[precision] = (p.parse(cap).argmax(1) == gt).mean()
        assert all(t.dtype == torch.float32 for t in p.net.state_dict().values() if t.is_floating_point())
        assert all(t.is_contiguous() for t in p.net.parameters())  # channels-last undone for saving
    assert acc["bf16"] > 0.8 and abs(acc["bf16"] - acc["fp32"]) < 0.05
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.25)


@pytest.mark.gpu
def test_cuda_predict_matches_cpu(tmp_path):
    torch.save(fake_checkpoint(seed=1), tmp_path / "w.pth")
    from splatrefine.config import build_settings
    from splatrefine.plugins.bisenet.plugin import BiSeNetConfig, make_bisenet

    settings = build_settings(BiSeNetConfig, {"input_size": 128, "checkpoint": str(tmp_path / "w.pth")}, "bisenet")
    cpu = make_bisenet(settings, ComponentContext(device="cpu"))
    gpu = make_bisenet(settings, ComponentContext(device="cuda"))
    x = torch.rand(2, 3, 96, 80, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(gpu.predict(x.cuda()).cpu(), cpu.predict(x), atol=1e-4, rtol=1e-3)
