"""Our capture folder and label PNGs: round trips, atomicity, and every kind of bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from splatrefine.cli import main
from splatrefine.errors import CaptureError
from splatrefine.io.capture_folder import read_capture_folder, read_capture_json_extra, write_capture_folder
from splatrefine.io.detect import read_capture
from splatrefine.io.labels import read_image, read_labels, read_mask, write_image, write_labels, write_mask
from splatrefine.schema import CELEBAMASK_HQ, LAPA
from test_io_helpers import max_camera_error, ring_capture


@pytest.fixture()
def capture_dir(tmp_path: Path) -> Path:
    return write_capture_folder(ring_capture(), tmp_path / "cap", extra={"synthetic": {"seed": 3, "rig": "ring"}})


def _edit_manifest(folder: Path, edit) -> Path:
    m = folder / "capture.json"
    data = json.loads(m.read_text())
    edit(data)
    m.write_text(json.dumps(data))
    return m


# ---------------------------------------------------------------- round trips


def test_capture_folder_round_trip_is_exact(capture_dir: Path):
    cap = ring_capture()
    back = read_capture_folder(capture_dir)
    assert [v.name for v in back.views] == [v.name for v in cap.views]
    assert max_camera_error(cap, back) < 1e-12
    for a, b in zip(cap.views, back.views):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_allclose(back.points, cap.points, atol=1e-6)  # stored as float32
    np.testing.assert_array_equal(back.point_colors, cap.point_colors)
    np.testing.assert_allclose(back.subject.frontal, [0, 0, 1])
    assert back.schema is CELEBAMASK_HQ
    assert back.source == str(capture_dir)
    assert back.cameras().yaw is not None and len(back.cameras()) == 4


def test_extra_blocks_are_preserved_and_json_file_path_works(capture_dir: Path):
    assert read_capture_json_extra(capture_dir)["synthetic"] == {"seed": 3, "rig": "ring"}
    back = read_capture_folder(capture_dir / "capture.json")
    assert len(back.views) == 4


def test_write_is_atomic_and_replaces(tmp_path: Path):
    cap = ring_capture(n=2)
    cap.views[1].image = cap.views[1].image[:, :-1]  # wrong size: refused before anything is written
    with pytest.raises(ValueError, match="view_01"):
        write_capture_folder(cap, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
    write_capture_folder(ring_capture(n=3), tmp_path / "out")
    write_capture_folder(ring_capture(n=2), tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == ["view_00.png", "view_01.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_odd_view_names_become_safe_unique_file_stems(tmp_path: Path):
    cap = ring_capture(n=3, labels=False, masks=False)
    cap.views[0].name, cap.views[1].name, cap.views[2].name = "cam/a b", "cam_a_b", "../x"
    write_capture_folder(cap, tmp_path / "c")
    back = read_capture_folder(tmp_path / "c")
    assert [v.name for v in back.views] == ["cam_a_b", "cam_a_b_1", "x"]
    assert not back.has_labels and not back.has_masks


def test_labels_png_is_palettized_with_schema_palette(tmp_path: Path):
    labels = np.arange(20 * 19, dtype=np.uint8).reshape(20, 19) % 19
    labels[0, 0] = 255
    write_labels(tmp_path / "l.png", labels, CELEBAMASK_HQ)
    img = Image.open(tmp_path / "l.png")
    assert img.mode == "P"
    assert img.getpalette()[3 * 1 : 3 * 2] == [255, 85, 0]
    np.testing.assert_array_equal(read_labels(tmp_path / "l.png", CELEBAMASK_HQ), labels)
    # an RGB colour-coded picture of the same labels reads back to the same indices
    Image.fromarray(CELEBAMASK_HQ.colorize(labels)).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_labels(tmp_path / "rgb.png", CELEBAMASK_HQ), labels)
    assert not list(tmp_path.glob(".*tmp"))


def test_image_and_mask_round_trip(tmp_path: Path):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    write_image(tmp_path / "a.png", img)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), img)
    Image.fromarray(img[..., 0]).save(tmp_path / "grey.png")
    assert read_image(tmp_path / "grey.png").shape == (7, 9, 3)
    mask = rng.random((7, 9)) > 0.3
    write_mask(tmp_path / "m.png", mask)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), mask)


# ---------------------------------------------------------------- bad input


def test_label_png_with_values_outside_schema(tmp_path: Path):
    labels = np.zeros((4, 4), dtype=np.uint8)
    labels[1, 1] = 12  # fine for celebamask-hq, outside lapa (11 classes)
    write_labels(tmp_path / "l.png", labels, CELEBAMASK_HQ)
    with pytest.raises(CaptureError) as e:
        read_labels(tmp_path / "l.png", LAPA)
    assert str(e.value) == f"{tmp_path / 'l.png'}: label values 12 are outside schema 'lapa' (0..10, 255 = ignore)"
    with pytest.raises(ValueError):
        write_labels(tmp_path / "bad.png", labels, LAPA)


def test_label_png_outside_schema_inside_capture(capture_dir: Path):
    bad = np.full((30, 40), 40, dtype=np.uint8)
    Image.fromarray(bad).save(capture_dir / "labels" / "view_02.png")
    with pytest.raises(CaptureError, match=r"view_02\.png: label values 40 are outside schema 'celebamask-hq'"):
        read_capture_folder(capture_dir)


def test_missing_path(tmp_path: Path):
    with pytest.raises(CaptureError, match="no such file"):
        read_capture_folder(tmp_path / "nope")


def test_unreadable_image(capture_dir: Path):
    (capture_dir / "images" / "view_01.png").write_bytes(b"not a png")
    with pytest.raises(CaptureError, match=r"view_01\.png: cannot read image"):
        read_capture_folder(capture_dir)


def test_capture_json_naming_missing_image(capture_dir: Path):
    (capture_dir / "images" / "view_03.png").unlink()
    with pytest.raises(CaptureError) as e:
        read_capture_folder(capture_dir)
    assert str(e.value) == (f"{capture_dir / 'capture.json'}: view 'view_03' names image "
                            "'images/view_03.png', which does not exist")


def test_image_size_differs_from_camera(capture_dir: Path):
    write_image(capture_dir / "images" / "view_00.png", np.zeros((30, 41, 3), np.uint8))
    with pytest.raises(CaptureError, match=r"view_00\.png: image is 41x30 but capture\.json says the camera is 40x30"):
        read_capture_folder(capture_dir)


def test_mask_size_differs_from_camera(capture_dir: Path):
    write_mask(capture_dir / "masks" / "view_00.png", np.zeros((29, 40), bool))
    with pytest.raises(CaptureError, match=r"masks/view_00\.png: image is 40x29"):
        read_capture_folder(capture_dir)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("viewmat", [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, float("nan"), 0], [0, 0, 0, 1]], "viewmat has non-finite values"),
        ("viewmat", [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]], "rotation is not invertible"),
        ("viewmat", [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "rotation is not a rotation"),
        ("K", [[0, 0, 1], [0, 5, 1], [0, 0, 1]], "intrinsics are not invertible"),
        ("K", [[5, 0, 1], [0, 5, 1]], "K has shape"),
        ("K", "Infinity", "K has shape"),
        ("width", 0, "width must be a positive integer"),
    ],
)
def test_bad_camera(capture_dir: Path, field, value, message):
    m = _edit_manifest(capture_dir, lambda d: d["views"][1].__setitem__(field, value))
    with pytest.raises(CaptureError) as e:
        read_capture_folder(capture_dir)
    assert str(e.value).startswith(f"{m}: view 'view_01'")
    assert message in str(e.value)
    assert "\n" not in e.value.message


def test_non_finite_camera_written_as_json_literal(capture_dir: Path):
    m = capture_dir / "capture.json"
    m.write_text(m.read_text().replace('"K": [\n    [\n     60.0', '"K": [\n    [\n     Infinity', 1))
    with pytest.raises(CaptureError, match="K has non-finite values"):
        read_capture_folder(capture_dir)


def test_labels_name_round_trips_and_is_checked(tmp_path: Path, capture_dir: Path):
    assert read_capture_folder(capture_dir).labels_name == "GT"
    assert "labels_name" not in read_capture_json_extra(capture_dir)  # the default is not written
    folder = write_capture_folder(replace(ring_capture(), labels_name="pseudo-GT"), tmp_path / "pseudo")
    assert read_capture_json_extra(folder)["labels_name"] == "pseudo-GT"
    assert read_capture_folder(folder).labels_name == "pseudo-GT"
    out = CliRunner().invoke(main, ["capture", "info", str(folder)])
    assert out.exit_code == 0 and "labels: yes (pseudo-GT), masks: yes" in out.output.splitlines()[0]
    plain = write_capture_folder(ring_capture(), tmp_path / "plain")
    assert "labels: yes, masks" in CliRunner().invoke(main, ["capture", "info", str(plain)]).output
    for bad in ("", "  ", 3, "x" * 41):
        m = _edit_manifest(folder, lambda d: d.__setitem__("labels_name", bad))
        with pytest.raises(CaptureError) as e:
            read_capture_folder(folder)
        assert str(e.value).startswith(f"{m}: \"labels_name\" must be a short text such as \"GT\" or \"pseudo-GT\"")
        assert "1 to 40 characters, or leave it out (GT)" in e.value.hint


def test_malformed_json(capture_dir: Path):
    m = capture_dir / "capture.json"
    m.write_text('{"format": "splatrefine-capture", "views": [}')
    with pytest.raises(CaptureError) as e:
        read_capture_folder(capture_dir)
    assert str(e.value).startswith(f"{m}: malformed json at line 1 column")


@pytest.mark.parametrize("bad", ["/etc/passwd", "../outside.png", "images/../../x.png", "C:\\x.png", "..\\x.png"])
def test_manifest_paths_cannot_escape(capture_dir: Path, bad: str):
    m = _edit_manifest(capture_dir, lambda d: d["views"][0].__setitem__("image", bad))
    with pytest.raises(CaptureError) as e:
        read_capture_folder(capture_dir)
    assert str(e.value).startswith(f"{m}: view 'view_00' image '{bad}' points outside the capture folder")


def test_unknown_schema_and_format(capture_dir: Path):
    m = _edit_manifest(capture_dir, lambda d: d.__setitem__("schema", "celebamask"))
    with pytest.raises(CaptureError, match="unknown label schema 'celebamask'. Did you mean 'celebamask-hq'"):
        read_capture_folder(capture_dir)
    _edit_manifest(capture_dir, lambda d: d.__setitem__("format", "other"))
    with pytest.raises(CaptureError, match=f"{m}: \"format\" is 'other'"):
        read_capture_folder(capture_dir)
    _edit_manifest(capture_dir, lambda d: d.pop("format"))  # still ours: named capture.json
    with pytest.raises(CaptureError, match=f"{m}: \"format\" is None, expected 'splatrefine-capture'"):
        read_capture(capture_dir)


def test_duplicate_view_names(capture_dir: Path):
    _edit_manifest(capture_dir, lambda d: d["views"][1].__setitem__("name", "view_00"))
    with pytest.raises(CaptureError, match="view name 'view_00' appears twice"):
        read_capture_folder(capture_dir)


def test_the_same_image_for_two_views_is_refused(capture_dir: Path):
    m = _edit_manifest(capture_dir, lambda d: d["views"][2].__setitem__("image", d["views"][0]["image"]))
    first = json.loads(m.read_text())["views"][0]["image"]
    with pytest.raises(CaptureError) as e:
        read_capture_folder(capture_dir)
    assert e.value.message == f"{m}: views[0] and views[2] name the same image '{first}'"
