"""`splatrefine export RUN --format cvat-mask`: CVAT's Segmentation mask 1.1, read back with Datumaro
pixel for pixel; view selection (least confident first, --below, --worst) and bad input."""

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from splatrefine.cli import main
from splatrefine.io.labels import write_image, write_labels
from splatrefine.schema import CELEBAMASK_HQ

W, H = 24, 20
# face confidence per view: export order (least confident first) is c, a, e, b, d
CONF = {"a": 0.5, "b": 0.8, "c": 0.3, "d": 0.9, "e": 0.6}


def make_run(root: Path) -> Path:
    """A run folder with just a refined/ (what export reads): random labels with ignore pixels,
    constant confidence per view, a face region away from the borders."""
    rng = np.random.default_rng(0)
    run = root / "run"
    samples = []
    for i, (name, conf) in enumerate(CONF.items()):
        lab = np.zeros((H, W), np.uint8)
        lab[4:16, 5:19] = rng.integers(1, CELEBAMASK_HQ.num_classes, (12, 14))
        lab[2, 2:6] = 255
        write_labels(run / "refined" / "labels" / f"{name}.png", lab, CELEBAMASK_HQ)
        write_image(run / "refined" / "images" / f"{name}.png", rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        write_image(run / "refined" / "confidence" / f"{name}.png", np.full((H, W), round(conf * 255), np.uint8))
        samples.append({"name": name, "image": f"images/{name}.png", "labels": f"labels/{name}.png",
                        "confidence": f"confidence/{name}.png", "yaw": 20.0 * i, "pitch": 0.0,
                        "source": "input" if i < 4 else "novel", "width": W, "height": H,
                        "viewmat": np.eye(4).tolist(), "K": [[20, 0, 12], [0, 20, 10], [0, 0, 1]]})
    (run / "refined" / "manifest.json").write_text(json.dumps({"schema": "celebamask-hq", "samples": samples}))
    return run


@pytest.fixture()
def run(tmp_path) -> Path:
    return make_run(tmp_path)


def _export(*args) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["export", *map(str, args)])
    return r.exit_code, r.output


def _datumaro_labels(path: Path) -> dict[str, np.ndarray]:
    """Read an export with Datumaro's VOC segmentation importer -> schema indices per item."""
    dm = pytest.importorskip("datumaro")
    ds = dm.Dataset.import_from(str(path), "voc_segmentation")
    names = [c.name for c in ds.categories()[dm.AnnotationType.label]]
    lut = {i: (255 if n == "ignore" else CELEBAMASK_HQ.index(n)) for i, n in enumerate(names)}
    out = {}
    for item in ds:
        lab = np.full((H, W), 254, np.uint8)  # 254: no mask painted here (must not survive)
        for ann in item.annotations:
            if ann.type == dm.AnnotationType.mask:
                lab[ann.image.astype(bool)] = lut[ann.label]
        out[item.id] = lab
    return out


def test_zip_reads_back_in_datumaro_pixel_for_pixel(run, tmp_path):
    from splatrefine.io.labels import read_labels

    code, out = _export(run, "--format", "cvat-mask", "-o", tmp_path / "out.zip")
    assert code == 0, out
    assert out.startswith(f"{tmp_path / 'out.zip'}: 5 view(s) in cvat-mask layout, least confident first (c 0.298")
    folder = tmp_path / "unzipped"
    with zipfile.ZipFile(tmp_path / "out.zip") as zf:
        assert sorted(zf.namelist())[:3] == ["ImageSets/Segmentation/default.txt", "JPEGImages/a.jpg", "JPEGImages/b.jpg"]
        assert zf.read("ImageSets/Segmentation/default.txt").decode().split() == ["c", "a", "e", "b", "d"]
        labelmap = zf.read("labelmap.txt").decode().splitlines()
        zf.extractall(folder)
    assert labelmap[1:4] == ["background:0,0,0::", "skin:255,85,0::", "l_brow:255,170,0::"]
    assert labelmap[-1] == "ignore:255,255,255::" and len(labelmap) == 1 + 19 + 1
    got = _datumaro_labels(folder)
    assert sorted(got) == sorted(CONF)
    for name, lab in got.items():
        want = read_labels(run / "refined" / "labels" / f"{name}.png", CELEBAMASK_HQ)
        assert np.array_equal(lab, want), name
        assert (want == 255).sum() == 4


def test_folder_output_and_selection(run, tmp_path):
    code, out = _export(run, "-o", tmp_path / "worst2", "--worst", "2")
    assert code == 0, out
    assert (tmp_path / "worst2" / "ImageSets/Segmentation/default.txt").read_text().split() == ["c", "a"]
    assert sorted(p.name for p in (tmp_path / "worst2" / "SegmentationClass").iterdir()) == ["a.png", "c.png"]
    assert sorted(_datumaro_labels(tmp_path / "worst2")) == ["a", "c"]
    code, out = _export(run, "-o", tmp_path / "below.zip", "--below", "0.7", "--source", "input")
    assert code == 0, out
    with zipfile.ZipFile(tmp_path / "below.zip") as zf:
        assert zf.read("ImageSets/Segmentation/default.txt").decode().split() == ["c", "a"]  # e is novel


@pytest.mark.parametrize("make, args, message", [
    (lambda r: r / "refined" / "manifest.json", ["-o", "{tmp}/x.zip"],
     "Error: {run}: has no refined/ yet (refined/manifest.json is missing)"),
    (None, ["-o", "{tmp}/x.zip", "--below", "0.1"],
     "Error: {run}: no refined view matches (source all, confidence below 0.1)"),
    (None, ["-o", "{tmp}/x.zip", "--worst", "0"], "Error: --worst 0: give at least 1 view"),
    (None, ["-o", "{run}"], "Error: {run}: exists and is not an empty folder"),
])
def test_bad_input_exits_2_with_one_line(run, tmp_path, make, args, message):
    if make is not None:
        make(run).unlink()
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    args = [a.format(tmp=tmp_path, run=run) for a in args]
    code, out = _export(run, *args)
    assert code == 2
    assert out.splitlines()[0] == message.format(run=run)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    assert not (tmp_path / "x.zip").exists()
