"""nerfstudio, COLMAP (text + binary) and FaceScape readers: round trips, one scene through every
reader, undistortion, bad input, and the splatrefine_open_capture hook."""

from __future__ import annotations

import json
import math
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from splatrefine.errors import CaptureError
from splatrefine.io.capture_folder import write_capture_folder
from splatrefine.io.colmap import read_colmap, rotmat_to_qvec, qvec_to_rotmat, write_colmap_text
from splatrefine.io.describe import describe_capture
from splatrefine.io.detect import detect_format, read_capture
from splatrefine.io.facescape import read_facescape
from splatrefine.io.labels import write_image, write_labels
from splatrefine.io.nerfstudio import cameras_to_transforms, read_nerfstudio, transforms_dict, write_nerfstudio
from splatrefine.registry import Registry, make_plugin_manager
from splatrefine.schema import CELEBAMASK_HQ
from splatrefine.types import Camera, Capture, View
from test_io_helpers import KNOWN_POINT, max_camera_error, ring_capture

# ---------------------------------------------------------------- writers used only by the tests


def write_colmap_binary(model: Path, cameras, images, points=()) -> None:
    """cameras: (id, model_id, w, h, params); images: (id, qvec, tvec, cam_id, name, points2d);
    points: (id, xyz, rgb, error, track). Layout of COLMAP's cameras/images/points3D.bin."""
    model.mkdir(parents=True, exist_ok=True)
    b = struct.pack("<Q", len(cameras))
    for cid, mid, w, h, params in cameras:
        b += struct.pack("<IiQQ", cid, mid, w, h) + struct.pack(f"<{len(params)}d", *params)
    (model / "cameras.bin").write_bytes(b)
    b = struct.pack("<Q", len(images))
    for iid, q, t, cid, name, pts in images:
        b += struct.pack("<I7dI", iid, *q, *t, cid) + name.encode() + b"\0" + struct.pack("<Q", len(pts))
        for x, y, pid in pts:
            b += struct.pack("<ddq", x, y, pid)
    (model / "images.bin").write_bytes(b)
    b = struct.pack("<Q", len(points))
    for pid, xyz, rgb, err, track in points:
        b += struct.pack("<Q3d3Bd", pid, *xyz, *rgb, err) + struct.pack("<Q", len(track))
        for iid, idx in track:
            b += struct.pack("<II", iid, idx)
    (model / "points3D.bin").write_bytes(b)


def colmap_binary_from_capture(cap: Capture, ws: Path) -> Path:
    (ws / "images").mkdir(parents=True)
    cams, imgs = [], []
    for i, v in enumerate(cap.views, 1):
        K = v.camera.K
        cams.append((i, 1, v.camera.width, v.camera.height, (K[0, 0], K[1, 1], K[0, 2], K[1, 2])))
        q = rotmat_to_qvec(v.camera.viewmat[:3, :3])
        imgs.append((i, q, v.camera.viewmat[:3, 3], i, f"{v.name}.png", [(1.5, 2.5, -1), (3.0, 4.0, 7)]))
        write_image(ws / "images" / f"{v.name}.png", v.image)
    pts = [(j + 1, p, c, 0.5, [(1, 0), (2, 1)]) for j, (p, c) in enumerate(zip(cap.points, cap.point_colors))]
    write_colmap_binary(ws / "sparse" / "0", cams, imgs, pts)
    return ws


def facescape_from_capture(cap: Capture, folder: Path, invalid: tuple[int, ...] = (), dist=None) -> Path:
    """A FaceScape tuple folder for `cap` (K stored in OpenCV's pixel-centre convention)."""
    folder.mkdir(parents=True)
    params = {}
    for i, v in enumerate(cap.views):
        K = v.camera.K.copy()
        K[:2, 2] -= 0.5
        params[f"{i}_K"] = K.tolist()
        params[f"{i}_Rt"] = v.camera.viewmat[:3].tolist()
        params[f"{i}_distortion"] = list(dist) if dist is not None else [0.0] * 5
        params[f"{i}_width"], params[f"{i}_height"] = v.camera.width, v.camera.height
        params[f"{i}_valid"] = i not in invalid
        params[f"{i}_matches"], params[f"{i}_sn"], params[f"{i}_ori"] = 100, f"SN{i}", f"IMG_{i}.JPG"
        write_image(folder / f"{i}.jpg", v.image)
    (folder / "params.json").write_text(json.dumps(params))
    return folder


# ---------------------------------------------------------------- round trips


def test_nerfstudio_round_trip(tmp_path: Path):
    cap = ring_capture()
    write_nerfstudio(cap, tmp_path / "ns")
    data = json.loads((tmp_path / "ns" / "transforms.json").read_text())
    assert data["frames"][0]["label_path"] == "labels/view_00.png"
    # OpenGL camera-to-world: the camera looks down its -z axis, towards the origin
    c2w = np.array(data["frames"][0]["transform_matrix"])
    to_origin = -c2w[:3, 3] / np.linalg.norm(c2w[:3, 3])
    assert float(-c2w[:3, 2] @ to_origin) == pytest.approx(1.0, abs=1e-9)
    back = read_nerfstudio(tmp_path / "ns")
    assert max_camera_error(cap, back) < 1e-6
    assert [v.name for v in back.views] == [v.name for v in cap.views]
    for a, b in zip(cap.views, back.views):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_allclose(back.points, cap.points, atol=1e-6)
    # the json file itself, and cameras.json, are accepted too
    assert len(read_nerfstudio(tmp_path / "ns" / "transforms.json").views) == 4
    (tmp_path / "ns" / "transforms.json").rename(tmp_path / "ns" / "cameras.json")
    assert max_camera_error(cap, read_capture(tmp_path / "ns")) < 1e-6


def test_nerfstudio_global_intrinsics_and_camera_angle(tmp_path: Path):
    cap = ring_capture(n=2, labels=False, masks=False)
    root = tmp_path / "blender"
    d = transforms_dict([v.camera for v in cap.views], ["./r_0", "./r_1"])
    for f in d["frames"]:
        for k in ("fl_x", "fl_y", "cx", "cy", "w", "h"):
            f.pop(k)
    w = cap.views[0].camera.width
    d["camera_angle_x"] = 2 * math.atan(0.5 * w / 50.0)  # fl_x = 50
    d["fl_y"] = 51.0  # a global key
    for i, v in enumerate(cap.views):
        write_image(root / f"r_{i}.png", v.image)  # Blender style: file_path without extension
    (root / "transforms.json").write_text(json.dumps(d))
    back = read_nerfstudio(root)
    K = back.views[1].camera.K
    np.testing.assert_allclose([K[0, 0], K[1, 1], K[0, 2], K[1, 2]], [50.0, 51.0, w / 2, 15.0], atol=1e-9)
    assert [v.name for v in back.views] == ["r_0", "r_1"]


def test_colmap_text_round_trip(tmp_path: Path):
    cap = ring_capture()
    write_colmap_text(cap, tmp_path / "ws")
    assert (tmp_path / "ws" / "sparse" / "0" / "cameras.txt").read_text().splitlines()[3].startswith("1 PINHOLE 40 30 60.0 61.0 ")
    for path in (tmp_path / "ws", tmp_path / "ws" / "sparse" / "0", tmp_path / "ws" / "sparse" / "0" / "images.txt"):
        back = read_colmap(path)
        assert max_camera_error(cap, back) < 1e-9
    assert [v.name for v in back.views] == [v.name for v in cap.views]
    np.testing.assert_allclose(back.points, cap.points, atol=1e-12)
    np.testing.assert_array_equal(back.point_colors, cap.point_colors)
    for a, b in zip(cap.views, back.views):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.mask, b.mask)


def test_colmap_binary_round_trip(tmp_path: Path):
    cap = ring_capture(labels=False, masks=False)
    ws = colmap_binary_from_capture(cap, tmp_path / "ws")
    back = read_colmap(ws)
    assert max_camera_error(cap, back) < 1e-9
    np.testing.assert_allclose(back.points, cap.points, atol=1e-12)
    np.testing.assert_array_equal(back.point_colors, cap.point_colors)
    # binary wins over text when both are present (COLMAP's rule): break the text files
    (ws / "sparse" / "0" / "cameras.txt").write_text("garbage\n")
    (ws / "sparse" / "0" / "images.txt").write_text("garbage\n")
    assert max_camera_error(cap, read_colmap(ws)) < 1e-9


def test_colmap_images_txt_with_empty_points_lines_and_spaces_in_names(tmp_path: Path):
    cap = ring_capture(n=2, labels=False, masks=False)
    sparse = tmp_path / "ws" / "sparse"
    sparse.mkdir(parents=True)
    K = cap.views[0].camera.K
    (sparse / "cameras.txt").write_text(f"# c\n7 SIMPLE_PINHOLE 40 30 {K[0, 0]} {K[0, 2]} {K[1, 2]}\n")
    lines = ["# Image list", "#   POINTS2D"]
    for i, v in enumerate(cap.views):
        q, t = rotmat_to_qvec(v.camera.viewmat[:3, :3]), v.camera.viewmat[:3, 3]
        lines.append(f"{10 + i} {' '.join(repr(float(x)) for x in (*q, *t))} 7 my view {i}.png")
        lines.append("" if i == 0 else "1.0 2.0 -1 3.0 4.0 5")
        write_image(tmp_path / "ws" / "images" / f"my view {i}.png", v.image)
    (sparse / "images.txt").write_text("\n".join(lines) + "\n")
    back = read_colmap(tmp_path / "ws")
    assert [v.name for v in back.views] == ["my_view_0", "my_view_1"]
    np.testing.assert_allclose(back.views[1].camera.viewmat, cap.views[1].camera.viewmat, atol=1e-12)
    assert back.views[1].camera.K[1, 1] == K[0, 0]  # SIMPLE_PINHOLE: fy = fx


def test_quaternion_conversion_round_trip():
    rng = np.random.default_rng(5)
    for _ in range(50):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        R = qvec_to_rotmat(q)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(qvec_to_rotmat(rotmat_to_qvec(R)), R, atol=1e-12)
    np.testing.assert_allclose(rotmat_to_qvec(np.diag([1.0, -1.0, -1.0])), [0, 1, 0, 0], atol=1e-12)


def test_facescape_folder_skips_invalid_views(tmp_path: Path):
    cap = ring_capture(labels=False, masks=False)
    folder = facescape_from_capture(cap, tmp_path / "1" / "1_neutral", invalid=(2,))
    back = read_facescape(folder)
    assert [v.name for v in back.views] == ["0", "1", "3"]
    kept = Capture([cap.views[i] for i in (0, 1, 3)])
    assert max_camera_error(kept, back) < 1e-12
    np.testing.assert_array_equal(back.views[0].image.shape, (30, 40, 3))


def test_one_scene_projects_to_the_same_pixel_through_every_reader(tmp_path: Path):
    cap = ring_capture()
    expected = np.stack([v.camera.project(KNOWN_POINT[None])[0][0] for v in cap.views])
    assert np.all((expected > 0) & (expected < [40, 30]))
    write_capture_folder(cap, tmp_path / "ours")
    write_nerfstudio(cap, tmp_path / "ns")
    write_colmap_text(cap, tmp_path / "colmap_txt")
    colmap_binary_from_capture(cap, tmp_path / "colmap_bin")
    facescape_from_capture(cap, tmp_path / "facescape")
    readers = {}
    for name in ("ours", "ns", "colmap_txt", "colmap_bin", "facescape"):
        back = read_capture(tmp_path / name)
        readers[name] = detect_format(tmp_path / name)
        got = np.stack([v.camera.project(KNOWN_POINT[None])[0][0] for v in back.views])
        np.testing.assert_allclose(got, expected, atol=1e-6, err_msg=name)
        depth = np.array([v.camera.project(KNOWN_POINT[None])[1][0] for v in back.views])
        assert np.all(depth > 0), name
    assert readers == {"ours": "splatrefine", "ns": "nerfstudio", "colmap_txt": "colmap",
                       "colmap_bin": "colmap", "facescape": "facescape"}


# ---------------------------------------------------------------- undistortion


def _distort_opencv(xn, yn, k1, k2, p1, p2, k3=0.0):
    r2 = xn * xn + yn * yn
    radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 ** 3
    return (xn * radial + 2 * p1 * xn * yn + p2 * (r2 + 2 * xn * xn),
            yn * radial + p1 * (r2 + 2 * yn * yn) + 2 * p2 * xn * yn)


def _distort_fisheye(xn, yn, k1, k2, k3, k4):
    r = math.hypot(xn, yn)
    th = math.atan(r)
    thd = th * (1 + k1 * th ** 2 + k2 * th ** 4 + k3 * th ** 6 + k4 * th ** 8)
    return xn * thd / r, yn * thd / r


def _blob_scene(distort, width=80, height=60):
    """(camera, image with a Gaussian blob where KNOWN_POINT lands through the distorted lens,
    the undistorted pixel, the distorted pixel); pixels in our convention (centre of (0,0) = 0.5)."""
    cam = Camera(np.eye(4), np.array([[60.0, 0, 40.0], [0, 62.0, 30.0], [0, 0, 1]]), width, height)
    cam = Camera(np.array([[1, 0, 0, -0.02], [0, 1, 0, 0.01], [0, 0, 1, 2.0], [0, 0, 0, 1.0]]), cam.K, width, height)
    pc = cam.viewmat[:3, :3] @ KNOWN_POINT + cam.viewmat[:3, 3]
    pc = pc + np.array([0.9, 0.55, 0.0])  # push the point off-axis, where distortion is strong
    point = np.linalg.solve(cam.viewmat[:3, :3], pc - cam.viewmat[:3, 3])
    xn, yn = pc[0] / pc[2], pc[1] / pc[2]
    undist = np.array([cam.K[0, 0] * xn + cam.K[0, 2], cam.K[1, 1] * yn + cam.K[1, 2]])
    xd, yd = distort(xn, yn)
    dist = np.array([cam.K[0, 0] * xd + cam.K[0, 2], cam.K[1, 1] * yd + cam.K[1, 2]])
    yy, xx = np.mgrid[0:height, 0:width] + 0.5
    img = 255.0 * np.exp(-((xx - dist[0]) ** 2 + (yy - dist[1]) ** 2) / (2 * 1.5 ** 2))
    image = np.repeat(np.round(img).astype(np.uint8)[..., None], 3, axis=2)
    return cam, image, point, undist, dist


def _blob_centre(image: np.ndarray) -> np.ndarray:
    w = image[..., 0].astype(np.float64)
    w[w < 20] = 0
    yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]] + 0.5
    return np.array([(w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()])


@pytest.mark.parametrize("fmt", ["colmap-opencv", "colmap-fisheye", "nerfstudio-opencv", "facescape"])
def test_undistortion_moves_the_point_to_its_pinhole_pixel(tmp_path: Path, fmt: str):
    if fmt.endswith("fisheye"):
        coeffs = (0.05, -0.02, 0.01, 0.0)
        cam, image, point, undist, dist = _blob_scene(lambda x, y: _distort_fisheye(x, y, *coeffs))
    else:
        coeffs = (-0.25, 0.05, 0.002, -0.003, 0.01)  # k1 k2 p1 p2 k3
        k1, k2, p1, p2, k3 = coeffs
        cam, image, point, undist, dist = _blob_scene(lambda x, y: _distort_opencv(x, y, k1, k2, p1, p2, k3))
    assert np.linalg.norm(undist - dist) > 1.5  # the lens moves the point noticeably
    K = cam.K
    if fmt.startswith("colmap"):
        ws = tmp_path / "ws"
        write_image(ws / "images" / "a.png", image)
        model, params = (4, (K[0, 0], K[1, 1], K[0, 2], K[1, 2], coeffs[0], coeffs[1], coeffs[2], coeffs[3])) \
            if fmt == "colmap-opencv" else (5, (K[0, 0], K[1, 1], K[0, 2], K[1, 2], *coeffs))
        if fmt == "colmap-opencv":  # COLMAP's OPENCV model has no k3: redraw without it
            cam, image, point, undist, dist = _blob_scene(lambda x, y: _distort_opencv(x, y, *coeffs[:4]))
            write_image(ws / "images" / "a.png", image)
        write_colmap_binary(ws / "sparse", [(1, model, 80, 60, params)],
                            [(1, rotmat_to_qvec(cam.viewmat[:3, :3]), cam.viewmat[:3, 3], 1, "a.png", [])])
        back = read_colmap(ws)
    elif fmt == "nerfstudio-opencv":
        d = transforms_dict([cam], ["a.png"])
        d.update(dict(zip(("k1", "k2", "p1", "p2", "k3"), coeffs)))
        write_image(tmp_path / "a.png", image)
        (tmp_path / "transforms.json").write_text(json.dumps(d))
        back = read_nerfstudio(tmp_path)
    else:
        single = Capture([View("a", cam, image)])
        facescape_from_capture(single, tmp_path / "fs", dist=coeffs)
        back = read_facescape(tmp_path / "fs")
    view = back.views[0]
    np.testing.assert_allclose(view.camera.K, K, atol=1e-12)  # undistortion keeps the pinhole part
    projected = view.camera.project(point[None])[0][0]
    np.testing.assert_allclose(projected, undist, atol=1e-9)
    np.testing.assert_allclose(_blob_centre(view.image), undist, atol=0.15)


def test_undistorted_labels_use_nearest_and_ignore_outside(tmp_path: Path):
    cam = Camera(np.eye(4), np.array([[30.0, 0, 20.0], [0, 30.0, 15.0], [0, 0, 1]]), 40, 30)
    labels = np.full((30, 40), 1, dtype=np.uint8)
    labels[:, 20:] = 10
    d = transforms_dict([cam], ["a.png"], label_paths=["a_labels.png"])
    d.update(k1=0.4)  # pincushion: the undistorted corners come from outside the source image
    write_image(tmp_path / "a.png", np.zeros((30, 40, 3), np.uint8))
    write_labels(tmp_path / "a_labels.png", labels, CELEBAMASK_HQ)
    (tmp_path / "transforms.json").write_text(json.dumps(d))
    out = read_nerfstudio(tmp_path).views[0].labels
    assert set(np.unique(out).tolist()) == {1, 10, 255}
    assert out[0, 0] == 255 and out[15, 5] == 1 and out[15, 35] == 10


# ---------------------------------------------------------------- bad input


def _ns(tmp_path: Path, edit=None) -> Path:
    cap = ring_capture(n=2)
    write_nerfstudio(cap, tmp_path / "ns")
    m = tmp_path / "ns" / "transforms.json"
    if edit is not None:
        data = json.loads(m.read_text())
        edit(data)
        m.write_text(json.dumps(data))
    return m


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["frames"][1].__setitem__("file_path", "../../etc/x.png"),
         "frames[1] file_path '../../etc/x.png' points outside the capture folder"),
        (lambda d: d["frames"][0].__setitem__("label_path", "/abs/labels.png"),
         "frames[0] label_path '/abs/labels.png' points outside the capture folder"),
        (lambda d: d["frames"][0].__setitem__("file_path", "images/missing.png"),
         "frames[0] names image 'images/missing.png', which does not exist"),
        (lambda d: d.__setitem__("camera_model", "EQUIRECTANGULAR"), "camera_model 'EQUIRECTANGULAR' is not supported"),
        (lambda d: d.__setitem__("k4", 0.1), "k4 != 0"),
        (lambda d: d["frames"][1]["transform_matrix"][0].__setitem__(0, float("nan")), "transform_matrix has non-finite values"),
        (lambda d: d["frames"][1].__setitem__("transform_matrix", [[0] * 4] * 3 + [[0, 0, 0, 1]]), "transform_matrix is not invertible"),
        (lambda d: d["frames"][0].__setitem__("w", 41), "image is 40x30 but the camera says 41x30"),
        (lambda d: d["frames"][0].__setitem__("fl_x", -5.0), "intrinsics are not invertible"),
        (lambda d: d["frames"][0].pop("transform_matrix"), "no \"transform_matrix\""),
        (lambda d: d.__setitem__("label_schema", "lapa"), "label values"),
    ],
)
def test_nerfstudio_bad_input(tmp_path: Path, edit, message):
    _ns(tmp_path, edit)
    with pytest.raises(CaptureError) as e:
        read_nerfstudio(tmp_path / "ns")
    assert message in str(e.value)
    assert "\n" not in e.value.message


def test_nerfstudio_malformed_json(tmp_path: Path):
    m = _ns(tmp_path)
    m.write_text('{"frames": [1, 2,]}')
    assert detect_format(tmp_path / "ns") == "nerfstudio"
    with pytest.raises(CaptureError, match=r"transforms\.json: malformed json at line 1 column 18"):
        read_capture(tmp_path / "ns")


def test_colmap_unsupported_model_is_refused(tmp_path: Path):
    cap = ring_capture(n=1, labels=False, masks=False)
    write_colmap_text(cap, tmp_path / "ws")
    cams = tmp_path / "ws" / "sparse" / "0" / "cameras.txt"
    cams.write_text("1 FOV 40 30 60 60 20 15 0.9\n")
    with pytest.raises(CaptureError) as e:
        read_colmap(tmp_path / "ws")
    assert "uses COLMAP model FOV, which splatrefine cannot undistort" in str(e.value)
    assert "image_undistorter" in e.value.hint


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda ws: (ws / "images" / "view_01.png").unlink(), "image 2 'view_01.png': image file"),
        (lambda ws: shutil.rmtree(ws / "images"), "image 'view_00.png' not found in any of"),
        (lambda ws: write_image(ws / "images" / "view_00.png", np.zeros((31, 40, 3), np.uint8)),
         "view_00.png: image is 40x31 but the camera says 40x30"),
        (lambda ws: (ws / "sparse/0/cameras.txt").write_text("1 PINHOLE 40 30 60 61 20\n"), "PINHOLE takes 4 parameters, got 3"),
        (lambda ws: (ws / "sparse/0/cameras.txt").write_text("2 PINHOLE 40 30 60 61 20 15\n"), "refers to camera 1, which cameras.txt does not define"),
        (lambda ws: (ws / "sparse/0/images.txt").write_text("1 0 0 0 0 0 0 1 1 view_00.png\n\n"), "quaternion [0.0, 0.0, 0.0, 0.0] is not a rotation"),
        (lambda ws: (ws / "sparse/0/images.txt").write_text("1 1 0 0 0 0 nan 1 1 view_00.png\n\n"), "camera has non-finite values"),
        (lambda ws: (ws / "sparse/0/images.txt").write_text("1 1 0 0 0 0 0 1 1 ../../x.png\n\n"), "points outside the capture folder"),
    ],
)
def test_colmap_text_bad_input(tmp_path: Path, mutate, message):
    cap = ring_capture(n=2, labels=False, masks=False)
    write_colmap_text(cap, tmp_path / "ws")
    mutate(tmp_path / "ws")
    with pytest.raises(CaptureError) as e:
        read_colmap(tmp_path / "ws")
    assert message in str(e.value)


def test_colmap_truncated_binary(tmp_path: Path):
    ws = colmap_binary_from_capture(ring_capture(n=2, labels=False, masks=False), tmp_path / "ws")
    f = ws / "sparse" / "0" / "images.bin"
    f.write_bytes(f.read_bytes()[:-30])
    with pytest.raises(CaptureError, match=r"images\.bin: truncated at byte"):
        read_colmap(ws)
    f = ws / "sparse" / "0" / "cameras.bin"
    f.write_bytes(struct.pack("<Q", 1) + struct.pack("<IiQQ", 1, 42, 40, 30))
    with pytest.raises(CaptureError, match=r"cameras\.bin: camera 1 has unknown model id 42"):
        read_colmap(ws)


def test_facescape_bad_input(tmp_path: Path):
    cap = ring_capture(n=3, labels=False, masks=False)
    folder = facescape_from_capture(cap, tmp_path / "fs")
    params = json.loads((folder / "params.json").read_text())

    def check(edit, message):
        p = json.loads(json.dumps(params))
        edit(p)
        (folder / "params.json").write_text(json.dumps(p))
        with pytest.raises(CaptureError) as e:
            read_facescape(folder)
        assert message in str(e.value)

    check(lambda p: p["1_K"][0].__setitem__(0, float("inf")), "view 1: 1_K has non-finite values")
    check(lambda p: p.__setitem__("2_Rt", [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]][:2]), "2_Rt has shape [2, 4]")
    check(lambda p: p.__setitem__("0_distortion", [0.1, 0.2]), "0_distortion must be 4, 5 or 8 finite numbers")
    check(lambda p: [p.__setitem__(f"{i}_valid", False) for i in range(3)], "every view is marked invalid")
    check(lambda p: p.__setitem__("0_width", 50), "0.jpg: image is 40x30 but the camera says 50x30")
    (folder / "1.jpg").unlink()
    check(lambda p: None, "view 1 is valid but its image 1.jpg does not exist")
    (folder / "params.json").write_text(json.dumps({**params, "1_valid": False}))  # invalid: needs no image
    assert [v.name for v in read_facescape(folder).views] == ["0", "2"]


# ---------------------------------------------------------------- hook, describe


def test_open_capture_hook_dispatches_and_reports(tmp_path: Path):
    cap = ring_capture(n=2)
    write_nerfstudio(cap, tmp_path / "ns")
    write_colmap_text(cap, tmp_path / "colmap")
    registry = Registry(make_plugin_manager(entrypoints=False))
    for name in ("ns", "colmap"):
        assert max_camera_error(cap, registry.open_capture(str(tmp_path / name))) < 1e-6
    (tmp_path / "empty").mkdir()
    assert registry.manager.hook.splatrefine_open_capture(path=str(tmp_path / "empty")) is None
    with pytest.raises(CaptureError, match="not a capture any installed reader understands"):
        registry.open_capture(str(tmp_path / "empty"))
    with pytest.raises(CaptureError, match="no such file or folder"):
        registry.open_capture(str(tmp_path / "nope"))


def test_describe_capture(tmp_path: Path):
    cap = ring_capture(n=3)
    write_colmap_text(cap, tmp_path / "ws")
    info = describe_capture(read_capture(tmp_path / "ws"))
    json.dumps(info)  # json-ready
    assert info["reader"] == "colmap" and info["schema"] == "celebamask-hq"
    assert info["num_views"] == 3 and info["has_labels"] and info["has_masks"] and info["num_points"] == 20
    assert info["subject"] is None
    v = info["views"][2]
    assert (v["name"], v["width"], v["height"]) == ("view_02", 40, 30)
    np.testing.assert_allclose(v["K"], cap.views[2].camera.K, atol=1e-12)
    np.testing.assert_allclose(v["viewmat"], cap.views[2].camera.viewmat, atol=1e-9)
    write_capture_folder(cap, tmp_path / "ours")
    info = describe_capture(read_capture(tmp_path / "ours"))
    assert info["reader"] == "splatrefine" and info["subject"]["up"] == [0.0, 1.0, 0.0]


def test_cameras_to_transforms_from_manifest_samples_reads_back(tmp_path: Path):
    cap = ring_capture(n=3)
    samples = []
    for v in cap.views:
        write_image(tmp_path / "images" / f"{v.name}.png", v.image)
        write_labels(tmp_path / "labels" / f"{v.name}.png", v.labels, CELEBAMASK_HQ)
        samples.append({"name": v.name, "image": f"images/{v.name}.png", "labels": f"labels/{v.name}.png",
                        "confidence": f"confidence/{v.name}.png", "source": "input", "yaw": 1.0, "pitch": None,
                        "K": v.camera.K.tolist(), "viewmat": v.camera.viewmat.tolist(), "width": 40, "height": 30})
    d = cameras_to_transforms(samples)
    assert d["frames"][0]["confidence_path"] == "confidence/view_00.png" and d["frames"][0]["source"] == "input"
    (tmp_path / "cameras.json").write_text(json.dumps(d))
    back = read_capture(tmp_path)
    assert detect_format(tmp_path) == "nerfstudio"
    assert max_camera_error(cap, back) < 1e-6
    np.testing.assert_array_equal(back.views[2].labels, cap.views[2].labels)
    with pytest.raises(ValueError, match="sample 0: needs image"):
        cameras_to_transforms([{"image": "a.png"}])


def test_the_same_image_listed_twice_is_refused(tmp_path: Path):
    m = _ns(tmp_path, lambda d: d["frames"][1].__setitem__("file_path", "./" + d["frames"][0]["file_path"]))
    first = json.loads(m.read_text())["frames"][0]["file_path"]
    with pytest.raises(CaptureError) as e:
        read_nerfstudio(m)
    assert str(e.value) == (f"{m}: frames[0] and frames[1] name the same image './{first}'\n"
                            "  Each view needs its own image; remove the duplicate entry.")
