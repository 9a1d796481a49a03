"""`splatrefine correct RUN EDITED`: corrected views become GT, the class head is updated (geometry
and RGB untouched), every other view is re-rendered, and bad input leaves the run as it was."""

import dataclasses
import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from splatrefine.cli import main
from splatrefine.corrections.export import cvat_mask_files, select_views, write_files
from splatrefine.corrections.runs import open_run
from splatrefine.io.labels import read_labels

TINY = {"seed": 0, "device": "cpu", "initial_parser": {"plugin": "simulated"},
        "representation": {"plugin": "dual-gs", "params": {"iterations": 60, "init_points": 800}},
        "view_sampler": {"plugin": "orbit", "params": {"yaw_count": 2, "pitch_count": 1}},
        "label_aggregator": {"plugin": "argmax"}, "target_parser": {"plugin": "bisenet"}}


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """A real refined run: 16 views of a 32 px synthetic head, a 60-step dual-gs fit (~10 s)."""
    from splatrefine.io.capture_folder import read_capture_folder, write_capture_folder
    from splatrefine.plugins.synthetic import write_synthetic
    from splatrefine.refine import run_refine

    root = tmp_path_factory.mktemp("correct")
    cap = read_capture_folder(write_synthetic(root / "caps", identities=1, seed=3, resolution=32)[0])
    write_capture_folder(dataclasses.replace(cap, views=cap.views[::4]), root / "cap16")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    run_refine(capture=root / "cap16", demo=False, config_path=root / "tiny.yaml", plugin_args=[], set_args=[],
               output=root / "run", resume=False, overwrite=False, device="cpu", quiet=True)
    return root / "run"


@pytest.fixture()
def run(base_run, tmp_path) -> Path:
    shutil.copytree(base_run, tmp_path / "run")
    return tmp_path / "run"


def _gt(run: Path, name: str) -> np.ndarray:
    return read_labels(run / "gt" / f"{name}.png", open_run(run).schema)


def _edited(run: Path, names: list[str], out: Path, **replace: bytes) -> tuple[Path, dict[str, bytes]]:
    """An edited export of `names` whose masks are GT; `replace` swaps whole files (path -> bytes)."""
    r = open_run(run)
    files = cvat_mask_files(r, names, {n: _gt(run, n) for n in names})
    files.update({k.replace("__", "/"): v for k, v in replace.items()})
    write_files(files, out)
    return out, files


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _correct(*args) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["correct", *map(str, args)])
    return r.exit_code, r.output


def test_correct_replaces_labels_and_propagates(run, tmp_path):
    import torch

    r0 = open_run(run)
    worst = select_views(r0, source="input", worst=2).names
    before_labels = {n: r0.labels(n) for n in r0.names}
    before_files = _digest(run / "refined")
    model_before = (run / "model" / "model.pt").read_bytes()
    edited, _ = _edited(run, worst, tmp_path / "edited.zip")

    code, out = _correct(run, edited)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith(f"corrected 2 view(s) ({', '.join(sorted(worst, key=r0.names.index))}); ")
    assert lines[1].startswith("mIoU of the views not corrected: frontal ")

    r1 = open_run(run)
    status = {s["name"]: s["correction"] for s in r1.samples}
    for n in r1.names:
        now = r1.labels(n)
        if n in worst:
            assert status[n] == "corrected" and np.array_equal(now, _gt(run, n))
        else:
            changed = float((now != before_labels[n]).mean())
            assert status[n] == ("propagated" if changed > 0 else "unchanged")
            assert r1.sample(n)["changed"] == pytest.approx(changed, abs=1e-6)
    assert sum(v == "propagated" for v in status.values()) > 0
    after_files = _digest(run / "refined")
    assert all(after_files[k] == v for k, v in before_files.items() if k.startswith("images/"))  # RGB as before
    assert (run / "model" / "model.before-corrections.pt").read_bytes() == model_before

    old = torch.load(io.BytesIO(model_before), weights_only=True)["params"]
    new = torch.load(run / "model" / "model.pt", weights_only=True)["params"]
    for k in old:
        assert torch.equal(old[k], new[k]) == (k != "classes"), k

    summary = json.loads((run / "refined" / "corrections.json").read_text())["rounds"]
    assert len(summary) == 1 and summary[0]["corrected"] == sorted(worst, key=r0.names.index)
    assert summary[0]["edited"] == "edited.zip" and summary[0]["method"] == "fit"
    others = [n for n in r1.names if n not in worst and (run / "gt" / f"{n}.png").is_file()]
    from splatrefine.metrics import evaluate_labels

    gt = np.stack([_gt(run, n) for n in others])
    for key, labels in (("before", before_labels), ("after", {n: r1.labels(n) for n in others})):
        m = evaluate_labels(np.stack([labels[n] for n in others]), gt, None, r1.schema)
        assert summary[0]["gt_uncorrected"][key]["all"] == pytest.approx(m["miou"], abs=1e-9)
    page = (run / "report.html").read_text()
    assert "<h2>Corrections</h2>" in page and 'src="report/corrections.png"' in page
    assert (run / "report" / "corrections.png").is_file() and (run / "refined" / "corrections.png").is_file()


@pytest.mark.slow
def test_second_round_keeps_the_first_rounds_corrections(run, base_run, tmp_path):
    names = open_run(run).names
    first, second = names[0], names[5]
    assert _correct(run, _edited(run, [first], tmp_path / "one.zip")[0])[0] == 0
    code, out = _correct(run, _edited(run, [second], tmp_path / "two")[0])  # a folder this time
    assert code == 0, out
    r = open_run(run)
    assert {s["name"] for s in r.samples if s["correction"] == "corrected"} == {first, second}
    assert np.array_equal(r.labels(first), _gt(run, first)) and np.array_equal(r.labels(second), _gt(run, second))
    rounds = json.loads((run / "refined" / "corrections.json").read_text())["rounds"]
    assert [x["round"] for x in rounds] == [1, 2] and rounds[1]["all_corrected"] == [first, second]
    assert (run / "model" / "model.before-corrections.pt").is_file()
    # rounds start from the refined model with every correction so far: two rounds of one view
    # give exactly what one round of both views gives
    both = shutil.copytree(base_run, tmp_path / "both")
    assert _correct(both, _edited(both, [first, second], tmp_path / "both.zip")[0])[0] == 0
    rb = open_run(both)
    for n in names:
        assert np.array_equal(r.labels(n), rb.labels(n)), n


@pytest.mark.slow
def test_an_observing_aggregator_is_shown_the_corrections(run, tmp_path, monkeypatch):
    """With the `transfer` aggregator (it carries the input views' labels through the geometry),
    correct shows it the parser's probabilities at the input views as refine did, and the corrected
    view's labels (one-hot) in place of the parser's."""
    from splatrefine.plugins.aggregators.transfer import TransferAggregator

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["label_aggregator"] = {"plugin": "transfer", "params": {}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    seen: dict[str, np.ndarray] = {}
    original = TransferAggregator.observe

    def spy(self, renders):
        for i, n in enumerate(renders.cameras.names):
            seen[n] = np.asarray(renders.observed[i])
        return original(self, renders)

    monkeypatch.setattr(TransferAggregator, "observe", spy)
    r = open_run(run)
    inputs = [s["name"] for s in r.samples if s["source"] == "input"]
    fixed, other = inputs[3], inputs[7]
    code, out = _correct(run, _edited(run, [fixed], tmp_path / "e.zip")[0])
    assert code == 0, out
    assert set(seen) == set(inputs)
    gt = _gt(run, fixed)
    assert np.array_equal(seen[fixed].argmax(-1)[gt != 255], gt[gt != 255])
    assert float(seen[fixed].max(-1)[gt != 255].min()) == 1.0
    initial = np.load(run / "initial" / "probs.npy")[inputs.index(other)]
    assert np.allclose(seen[other], np.moveaxis(initial.astype(np.float32), 0, -1))
    assert np.array_equal(open_run(run).labels(fixed), gt)


def test_reads_what_datumaro_writes(run, tmp_path):
    dm = pytest.importorskip("datumaro")
    from splatrefine.corrections.edited import read_edited

    r = open_run(run)
    names = r.names[:3]
    _edited(run, names, tmp_path / "ours")
    ds = dm.Dataset.import_from(str(tmp_path / "ours"), "voc_segmentation")
    ds.export(str(tmp_path / "theirs"), "voc_segmentation", save_media=True)
    got = read_edited(tmp_path / "theirs", r)
    assert sorted(got.labels) == sorted(names)
    for n in names:
        assert np.array_equal(got.labels[n], _gt(run, n)), n


def test_unchanged_masks_change_nothing(run, tmp_path):
    r = open_run(run)
    write_files(cvat_mask_files(r, r.names[:2]), tmp_path / "same.zip")
    before = _digest(run)
    code, out = _correct(run, tmp_path / "same.zip")
    assert code == 0 and out == f"{tmp_path / 'same.zip'}: no edited mask differs from refined/; nothing to do\n"
    assert _digest(run) == before


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _bad_zip(kind: str, run: Path, tmp: Path) -> tuple[Path, str]:
    """(path, expected first line of the error) for one kind of bad input."""
    names = open_run(run).names
    v = names[1]
    z = tmp / "bad.zip"
    if kind == "not a zip":
        z.write_text("not a zip")
        return z, f"{z}: not a zip file"
    _, files = _edited(run, [v], tmp / "good")
    labelmap = files["labelmap.txt"].decode()
    if kind == "no labelmap":
        del files["labelmap.txt"]
        msg = f"{z}: no labelmap.txt: not a CVAT 'Segmentation mask 1.1' export"
    elif kind == "unknown name":
        files["labelmap.txt"] = labelmap.replace("skin:", "skinn:").encode()
        msg = f"{z}:labelmap.txt: line 3: label 'skinn' is not a class of schema 'celebamask-hq'. Did you mean 'skin'?"
    elif kind == "duplicate name":
        files["labelmap.txt"] = (labelmap + "skin:1,2,3::\n").encode()
        msg = f"{z}:labelmap.txt: line 22: label 'skin' is listed twice"
    elif kind == "duplicate colour":
        files["labelmap.txt"] = labelmap.replace("hat:255,0,255::", "hat:255,85,0::").encode()
        msg = f"{z}:labelmap.txt: line 20: colour 255,85,0 of 'hat' is already used by another label"
    elif kind == "wrong size":
        files[f"SegmentationClass/{v}.png"] = _png(np.zeros((16, 16, 3)))
        msg = f"{z}:SegmentationClass/{v}.png: mask is 16x16 but view '{v}' is 32x32"
    elif kind == "unknown view":
        files["SegmentationClass/ghost.png"] = files.pop(f"SegmentationClass/{v}.png")
        files["ImageSets/Segmentation/default.txt"] = b"ghost\n"
        msg = f"{z}:SegmentationClass/ghost.png: no view 'ghost' in {run}/refined"
    elif kind == "unknown colour":
        rgb = np.asarray(Image.open(io.BytesIO(files[f"SegmentationClass/{v}.png"])).convert("RGB")).copy()
        rgb[0, 0] = (1, 2, 3)
        files[f"SegmentationClass/{v}.png"] = _png(rgb)
        msg = f"{z}:SegmentationClass/{v}.png: colour 1,2,3 is not a label of labelmap.txt"
    elif kind == "path escape":
        msg = f"{z}: member '../evil.txt' points outside the archive"
    with zipfile.ZipFile(z, "w") as zf:
        for k, data in files.items():
            zf.writestr(k, data)
        if kind == "path escape":
            zf.writestr("../evil.txt", b"x")
    return z, msg


@pytest.mark.parametrize("option, message", [("--weight=0", "Error: --weight 0.0: must be > 0"),
                                             ("--prior=-1", "Error: --prior -1.0: must be > 0")])
def test_bad_settings_exit_2(run, tmp_path, option, message):
    edited, _ = _edited(run, [open_run(run).names[0]], tmp_path / "e.zip")
    before = _digest(run)
    code, out = _correct(run, edited, option)
    assert code == 2 and out.splitlines()[0] == message
    assert _digest(run) == before


@pytest.mark.parametrize("kind", ["not a zip", "no labelmap", "unknown name", "duplicate name", "duplicate colour",
                                  "wrong size", "unknown view", "unknown colour", "path escape", "no refined"])
def test_bad_input_exits_2_and_leaves_the_run_alone(run, tmp_path, kind):
    if kind == "no refined":
        edited, _ = _edited(run, [open_run(run).names[0]], tmp_path / "e.zip")
        shutil.rmtree(run / "refined")
        msg = f"{run}: has no refined/ yet (refined/manifest.json is missing)"
    else:
        edited, msg = _bad_zip(kind, run, tmp_path)
    before = _digest(run)
    code, out = _correct(run, edited)
    assert code == 2, out
    assert out.splitlines()[0] == f"Error: {msg}"
    assert _digest(run) == before
    assert not (tmp_path / "evil.txt").exists()


def _ball_model():
    """200 small Gaussians in a ball with random class logits (a dual-gs model, no fit)."""
    import torch

    from splatrefine.plugins.dual_gs.model import DualGSModel

    gen = torch.Generator().manual_seed(0)
    n, K = 200, 19
    params = {"means": torch.randn(n, 3, generator=gen) * 0.3, "scales": torch.full((n, 3), -2.5),
              "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), "opacities": torch.full((n,), 2.0),
              "sh0": torch.zeros(n, 1, 3), "shN": torch.zeros(n, 0, 3), "classes": torch.randn(n, K, generator=gen)}
    return DualGSModel(params=params, mode="logits", sh_degree=0, active_sh_degree=0, background=(0, 0, 0),
                       num_classes=K, schema="celebamask-hq")


def test_vote_without_labels_keeps_the_class_head():
    import torch

    from splatrefine.plugins.dual_gs.relabel import RelabelSettings, relabel_vote
    from splatrefine.testing import ring_cameras

    model = _ball_model()
    params = model.params
    cams = ring_cameras([0.0, 90.0], size=24)
    blank = np.full((2, 24, 24), 255, np.uint8)
    same = relabel_vote(model, cams, blank, np.zeros(2, np.float32), RelabelSettings())
    assert torch.allclose(torch.softmax(same.params["classes"], -1), torch.softmax(params["classes"], -1), atol=2e-3)
    hair = np.full((2, 24, 24), 17, np.uint8)
    new = relabel_vote(model, cams, hair, np.array([20.0, 0.0], np.float32), RelabelSettings())
    for k in ("means", "scales", "quats", "opacities", "sh0"):
        assert torch.equal(new.params[k], params[k])
    p_old, p_new = torch.softmax(params["classes"], -1)[:, 17], torch.softmax(new.params["classes"], -1)[:, 17]
    moved = (p_new - p_old) > 0.5
    assert moved.sum() > 20 and bool((p_new >= p_old - 1e-4).all())


def test_overlapping_corrections_vote_as_one():
    """Two corrected views of the same pose move the head exactly as one does (votes averaged per
    Gaussian over the corrected views that see it), so overlapping corrections cannot add up."""
    import torch

    from splatrefine.plugins.dual_gs.relabel import RelabelSettings, relabel_vote
    from splatrefine.testing import ring_cameras

    model = _ball_model()
    cams = ring_cameras([0.0, 0.0, 90.0], size=24)
    labels = np.stack([np.full((24, 24), 17, np.uint8)] * 2 + [np.full((24, 24), 255, np.uint8)])
    twice = relabel_vote(model, cams, labels, np.array([20.0, 20.0, 0.0], np.float32), RelabelSettings())
    once = relabel_vote(model, cams, labels, np.array([20.0, 0.0, 0.0], np.float32), RelabelSettings())
    def probs(m):
        return torch.softmax(m.params["classes"], -1)

    assert torch.allclose(probs(twice), probs(once), atol=1e-5)
    summed = relabel_vote(model, cams, labels, np.array([20.0, 20.0, 0.0], np.float32),
                          RelabelSettings(average_top=False))
    assert float((probs(summed) - probs(once))[:, 17].max()) > 0.05


def test_fit_carries_a_correction_to_views_nobody_corrected():
    """`correct`'s default method: half of one view relabelled by hand changes what another view
    renders where it sees the same Gaussians, the other half keeps its class (the visibility-
    weighted anchor), and the geometry stays as it was."""
    import torch

    from splatrefine.plugins.dual_gs.model import render_model
    from splatrefine.plugins.dual_gs.relabel import RelabelSettings, relabel_fit
    from splatrefine.testing import ring_cameras

    model = _ball_model()
    model.params["classes"] = torch.zeros_like(model.params["classes"])
    model.params["classes"][:, 1] = 5.0  # every Gaussian sure it is skin
    cams = ring_cameras([0.0, 60.0], size=24)
    corrected = np.full((24, 24), 255, np.uint8)
    corrected[:, :12] = 17  # hair on the left half, no opinion on the right
    labels = np.stack([corrected, np.full((24, 24), 255, np.uint8)])
    new = relabel_fit(model, cams, labels, np.array([100.0, 0.0], np.float32), RelabelSettings(method="fit"))
    for k in ("means", "scales", "quats", "opacities", "sh0"):
        assert torch.equal(new.params[k], model.params[k])

    def hair(m, view):
        vm = torch.from_numpy(np.asarray(cams.viewmats[view:view + 1])).float()
        Ks = torch.from_numpy(np.asarray(cams.Ks[view:view + 1])).float()
        _, cls, alpha, _, _ = render_model(m, vm, Ks, 24, 24, m.params)
        return (cls[0].argmax(-1) == 17).numpy(), (alpha[0, ..., 0] > 0.5).numpy()

    is_hair, fg = hair(model, 1)
    assert not is_hair[fg].any()
    is_hair, fg = hair(new, 0)
    assert is_hair[:, :12][fg[:, :12]].mean() > 0.9 and is_hair[:, 14:][fg[:, 14:]].mean() < 0.05
    is_hair, fg = hair(new, 1)
    assert 0.2 < is_hair[fg].mean() < 0.8
