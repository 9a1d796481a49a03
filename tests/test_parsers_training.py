"""LabelledDataset and the shared training pieces: OHEM, LR schedule, augmentation, checkpoints."""

import json

import numpy as np
import pytest
from PIL import Image

from splatrefine.datasets import LabelledDataset, write_labelled_folder
from splatrefine.errors import ConfigError, SplatrefineError
from splatrefine.schema import CELEBAMASK_HQ, LAPA
from splatrefine.testing import tiny_capture
from splatrefine.training import TrainOptions, lr_at, train_options

torch = pytest.importorskip("torch")


def _folder(tmp_path, name="ds", views=4, size=32, yaw=True):
    cap = tiny_capture(views=views, size=size)
    cams = cap.cameras()
    return write_labelled_folder(tmp_path / name, [v.name for v in cap.views], [v.image for v in cap.views],
                                 [v.labels for v in cap.views], yaw=cams.yaw if yaw else None), cap


# datasets --------------------------------------------------------------------------------------
def test_dataset_reads_manifest_with_yaw(tmp_path):
    root, cap = _folder(tmp_path)
    ds = LabelledDataset(root)
    assert len(ds) == 4 and ds.names == [v.name for v in cap.views]
    np.testing.assert_allclose(ds.yaw, cap.cameras().yaw)
    img, lab = ds[2]
    np.testing.assert_array_equal(img, cap.views[2].image)
    np.testing.assert_array_equal(lab, cap.views[2].labels)


def test_dataset_plain_folder_and_run_folder_and_mix(tmp_path):
    root, _ = _folder(tmp_path, "a", views=3)
    (root / "manifest.json").unlink()
    plain = LabelledDataset(root)
    assert len(plain) == 3 and plain.yaw is None
    run = tmp_path / "run"
    (run).mkdir()
    root.rename(run / "refined")
    other, _ = _folder(tmp_path, "b", views=2)
    mixed = LabelledDataset([run, other])
    assert len(mixed) == 5 and mixed.yaw is None  # the plain part has no yaw


def test_dataset_capture_folder_gives_yaw(tmp_path):
    from splatrefine.io.capture_folder import write_capture_folder

    cap = tiny_capture(views=5, size=32)
    write_capture_folder(cap, tmp_path / "cap")
    ds = LabelledDataset(tmp_path / "cap")
    assert len(ds) == 5
    np.testing.assert_allclose(ds.yaw, cap.cameras().yaw, atol=1e-6)
    np.testing.assert_array_equal(ds[4][1], cap.views[4].labels)


def test_dataset_image_missing_labels_names_the_file(tmp_path):
    root, cap = _folder(tmp_path, views=3)
    (root / "manifest.json").unlink()
    (root / "labels" / f"{cap.views[1].name}.png").unlink()
    with pytest.raises(SplatrefineError, match=rf"images/{cap.views[1].name}\.png: image has no labels"):
        LabelledDataset(root)


def test_dataset_labels_outside_schema_name_the_file(tmp_path):
    root, cap = _folder(tmp_path, views=2)
    bad = np.full((32, 32), 40, np.uint8)
    Image.fromarray(bad, mode="L").save(root / "labels" / f"{cap.views[0].name}.png")
    ds = LabelledDataset(root)
    with pytest.raises(SplatrefineError, match=rf"{cap.views[0].name}\.png: label values 40 are outside schema"):
        ds.load_all()


def test_dataset_manifest_cannot_escape_its_folder(tmp_path):
    root, _ = _folder(tmp_path, views=2)
    m = json.loads((root / "manifest.json").read_text())
    m["samples"][0]["labels"] = "../../etc/passwd"
    (root / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(SplatrefineError, match="points outside"):
        LabelledDataset(root)


def test_dataset_maps_another_schema(tmp_path):
    lab = np.zeros((8, 8), np.uint8)
    lab[2:4] = LAPA.index("inner_mouth")
    root = write_labelled_folder(tmp_path / "lapa", ["a"], [np.zeros((8, 8, 3), np.uint8)], [lab], LAPA)
    m = json.loads((root / "manifest.json").read_text())
    assert m["schema"] == "lapa"
    _, got = LabelledDataset(root, CELEBAMASK_HQ)[0]
    assert set(np.unique(got)) == {0, CELEBAMASK_HQ.index("mouth")}


def test_dataset_missing_folder_and_empty(tmp_path):
    with pytest.raises(SplatrefineError, match="no such dataset folder"):
        LabelledDataset(tmp_path / "nope")
    (tmp_path / "e" / "images").mkdir(parents=True)
    (tmp_path / "e" / "labels").mkdir()
    with pytest.raises(SplatrefineError, match="no labelled images found"):
        LabelledDataset(tmp_path / "e")


# training pieces -------------------------------------------------------------------------------
def test_ohem_keeps_hard_pixels_or_the_minimum():
    from splatrefine.training import ohem_cross_entropy

    logits = torch.zeros(1, 2, 1, 4)
    logits[0, 0, 0] = torch.tensor([10.0, 10.0, 10.0, -10.0])  # three easy (class 0), one hard
    target = torch.zeros(1, 1, 4, dtype=torch.long)
    per_pixel = torch.nn.functional.cross_entropy(logits, target, reduction="none").flatten()
    got = ohem_cross_entropy(logits, target, thresh=0.7, min_fraction=0.0)
    assert got.item() == pytest.approx(per_pixel[3].item())  # only the hard pixel
    got_min = ohem_cross_entropy(logits, target, thresh=1e-9, min_fraction=0.5)  # none "hard": top 2
    assert got_min.item() == pytest.approx(per_pixel.topk(2).values.mean().item())
    target[0, 0, 3] = 255  # ignored -> nothing hard: the hardest quarter of 3 valid = 1 pixel
    assert ohem_cross_entropy(logits, target, 0.7, 0.25).item() == pytest.approx(per_pixel[0].item())


def test_poly_lr_with_warmup():
    o = TrainOptions(lr=0.1, warmup_steps=10, warmup_start=0.1, power=1.0)
    assert lr_at(0, 100, o) == pytest.approx(0.01)
    assert lr_at(5, 100, o) == pytest.approx(0.1 * (0.1 + 0.9 * 0.5))
    assert lr_at(10, 100, o) == pytest.approx(0.1)
    assert lr_at(55, 100, o) == pytest.approx(0.05)
    assert lr_at(99, 100, o) == pytest.approx(0.1 / 90)
    # warm-up is capped at a fifth of a short run
    assert lr_at(2, 10, o) == pytest.approx(0.1)


def test_train_options_overrides_are_checked():
    o = train_options(TrainOptions(), {"epochs": 3, "scale_range": [1.0, 1.0]})
    assert o.epochs == 3 and o.scale_range == (1.0, 1.0)
    with pytest.raises(ConfigError, match="no training setting 'epoch'. Did you mean 'epochs'"):
        train_options(TrainOptions(), {"epoch": 3})
    # values are checked like any plugin setting: a typo in a choice is not silently the default
    with pytest.raises(ConfigError, match="fit\\(\\).precision: 'bf61' is not one of fp32, bf16, auto. Did you mean 'bf16'"):
        train_options(TrainOptions(), {"precision": "bf61"})
    with pytest.raises(ConfigError, match="fit\\(\\).steps: -1 is below the minimum 0"):
        train_options(TrainOptions(), {"steps": -1})


def test_augment_flip_swaps_left_and_right_classes():
    from splatrefine.training import augment

    img = np.zeros((16, 16, 3), np.uint8)
    img[:, :8] = 200  # bright left half
    lab = np.zeros((16, 16), np.uint8)
    lab[:, :8] = CELEBAMASK_HQ.index("l_eye")
    lab[:, 8:] = CELEBAMASK_HQ.index("nose")
    o = TrainOptions(scale_range=(1.0, 1.0), jitter=0.0, flip=True)
    flips = 0
    for seed in range(8):
        x, y = augment(img, lab, 16, o, CELEBAMASK_HQ.flip_lut(), np.random.default_rng(seed))
        assert x.shape == (3, 16, 16) and y.shape == (16, 16) and y.dtype == torch.long
        if x[0, 0, 0] < 0.5:  # flipped: the bright half moved right ...
            flips += 1
            assert (y[:, 8:] == CELEBAMASK_HQ.index("r_eye")).all()  # ... and left became right
            assert (y[:, :8] == CELEBAMASK_HQ.index("nose")).all()
        else:
            assert (y[:, :8] == CELEBAMASK_HQ.index("l_eye")).all()
    assert 0 < flips < 8


def test_augment_scale_pads_with_ignore_and_jitter_stays_in_range():
    from splatrefine.training import augment

    img = np.full((20, 20, 3), 128, np.uint8)
    lab = np.ones((20, 20), np.uint8)
    o = TrainOptions(scale_range=(0.5, 0.5), jitter=0.5, flip=False)
    x, y = augment(img, lab, 20, o, CELEBAMASK_HQ.flip_lut(), np.random.default_rng(0))
    assert (y == 255).sum() == 400 - 100 and (y == 1).sum() == 100
    assert 0.0 <= x.min() and x.max() <= 1.0
    o2 = TrainOptions(scale_range=(2.0, 2.0), jitter=0.0, flip=False)
    x2, y2 = augment(img, lab, 20, o2, CELEBAMASK_HQ.flip_lut(), np.random.default_rng(0))
    assert (y2 == 1).all() and torch.allclose(x2, torch.full_like(x2, 128 / 255), atol=1e-6)


def test_training_loop_is_seeded_checkpoints_and_resumes(tmp_path):
    from splatrefine.training import train_segmenter

    root, _ = _folder(tmp_path, views=3, size=16)
    ds = LabelledDataset(root)

    def make():
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                                       torch.nn.ReLU(), torch.nn.Conv2d(8, 19, 1))

    o = TrainOptions(steps=6, train_batch_size=2, optimizer="adam", lr=0.01, checkpoint_every=3)
    nets = [make() for _ in range(3)]
    kw = dict(input_size=16, schema=CELEBAMASK_HQ, seed=3)
    h1 = train_segmenter(nets[0], lambda x: [nets[0](x)], ds, o, **kw)
    h2 = train_segmenter(nets[1], lambda x: [nets[1](x)], ds, o, workdir=tmp_path / "w", **kw)
    assert h1["loss"] == h2["loss"] and len(h1["loss"]) == 6 and h1["step"] == list(range(6))
    assert h1["lr"][0] < h1["lr"][1]  # warm-up
    state = torch.load(tmp_path / "w" / "last.pt", weights_only=True)
    assert state["step"] == 6
    # interrupted after step 3 (the step-3 checkpoint is written), then resumed: same history as
    # an uninterrupted run
    calls = []

    def crashing(x):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return [nets[2](x)]

    with pytest.raises(KeyboardInterrupt):
        train_segmenter(nets[2], crashing, ds, o, workdir=tmp_path / "r", **kw)
    assert torch.load(tmp_path / "r" / "last.pt", weights_only=True)["step"] == 3
    net = make()
    h3 = train_segmenter(net, lambda x: [net(x)], ds, o, workdir=tmp_path / "r", resume=True, **kw)
    assert h3["loss"] == h1["loss"]
    for a, b in zip(net.state_dict().values(), nets[0].state_dict().values()):
        assert torch.equal(a, b)


def test_dataset_labels_dir_beside_a_runs_refined_folder(tmp_path):
    root, cap = _folder(tmp_path, "run/refined", views=2)
    gt = tmp_path / "run" / "gt"
    gt.mkdir()
    from splatrefine.io.labels import write_labels

    for v in cap.views:
        write_labels(gt / f"{v.name}.png", np.full((32, 32), 17, np.uint8), CELEBAMASK_HQ)
    ds = LabelledDataset(tmp_path / "run", labels_dir="gt")  # the run folder -> refined/, gt/ beside it
    assert ds[1][1].max() == 17 and ds.yaw is not None
    with pytest.raises(SplatrefineError, match="no such labels folder"):
        LabelledDataset(tmp_path / "run", labels_dir="nope")


def _hardware_bf16(monkeypatch, amx: bool, avx512_bf16: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)


def test_precision_auto_is_bf16_only_where_the_hardware_has_it(monkeypatch):
    from splatrefine.training import resolve_precision

    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"
    _hardware_bf16(monkeypatch, amx=False, avx512_bf16=False)
    assert resolve_precision("auto", "cpu") == "fp32"
    _hardware_bf16(monkeypatch, amx=True, avx512_bf16=False)
    assert resolve_precision("auto", "cpu") == "bf16"
    _hardware_bf16(monkeypatch, amx=False, avx512_bf16=True)
    assert resolve_precision("auto", torch.device("cpu")) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", "cuda:0") == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", torch.device("cuda", 0)) == "bf16"


def test_precision_auto_trains_as_the_precision_it_resolves_to(tmp_path, monkeypatch):
    from splatrefine.training import train_segmenter

    root, _ = _folder(tmp_path, views=2, size=16)
    ds = LabelledDataset(root)
    kw = dict(input_size=16, schema=CELEBAMASK_HQ, seed=1)
    histories = {}
    for name, precision, amx in (("fp32", "fp32", False), ("auto-fp32", "auto", False),
                                 ("bf16", "bf16", True), ("auto-bf16", "auto", True)):
        _hardware_bf16(monkeypatch, amx=amx, avx512_bf16=False)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 19, 1))
        o = TrainOptions(steps=3, train_batch_size=2, optimizer="adam", lr=0.01, precision=precision)
        histories[name] = train_segmenter(net, lambda x, net=net: [net(x)], ds, o, **kw)["loss"]
    assert histories["auto-fp32"] == histories["fp32"]
    assert histories["auto-bf16"] == histories["bf16"]
    assert histories["bf16"] != histories["fp32"]  # the bf16 path did run
