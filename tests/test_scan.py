"""render-scan: OBJ reading, the z-buffer rasterizer, the head frame, pseudo-GT voting, the command."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from splatrefine import cli
from splatrefine.errors import CaptureError, ConfigError, SplatrefineError
from splatrefine.plugins.scan.mesh import Mesh, read_mesh
from splatrefine.plugins.scan.pseudo_gt import decide, fill_unseen, lift, render_labels, reliable_views, vote
from splatrefine.plugins.scan.raster import render_mesh
from splatrefine.schema import IGNORE
from splatrefine.types import Cameras

COLOURS = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [220, 220, 40]], np.uint8)


def block_texture() -> np.ndarray:
    """8x8 texture of four 4x4 blocks: rows 0-3 (top) = colours 0, 1; rows 4-7 = colours 2, 3."""
    tex = np.zeros((8, 8, 3), np.uint8)
    tex[:4, :4], tex[:4, 4:], tex[4:, :4], tex[4:, 4:] = COLOURS
    return tex


def quad_mesh(z: float = 0.0, half: float = 0.2, texture: np.ndarray | None = None) -> Mesh:
    """A square in the plane `z`, x and y in [-half, half], uv = (x, y) mapped onto 0..1."""
    v = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]])
    uv = (v[:, :2] + half) / (2 * half)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    return Mesh(v, f, uv, f.copy(), block_texture() if texture is None else texture, Path("quad.obj"), Path("t.png"))


def front_camera(size: int = 64, f: float = 100.0, distance: float = 1.0) -> Cameras:
    """Camera at (0, 0, -distance) looking along +z with OpenCV axes (image y = world y)."""
    vm = np.eye(4)
    vm[2, 3] = distance
    K = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])
    return Cameras(vm[None], K[None], size, size, ("v0",))


@pytest.mark.parametrize("supersample", [1, 3])
def test_textured_quad_colours_depth_mask_face_ids(supersample):
    mesh = quad_mesh()
    out = render_mesh(mesh, mesh.vertices, front_camera(), supersample=supersample, shading=0.0)
    # the quad spans pixels 12..51 (centres 12.5..51.5 inside +-20 px around 32)
    assert out.mask[0].sum() == 40 * 40
    assert out.mask[0, 12:52, 12:52].all()
    np.testing.assert_array_equal(out.depth[0][out.mask[0]], 1.0)
    assert (out.depth[0][~out.mask[0]] == 0).all()
    # image top (world y < 0) has v near 0, i.e. the texture's bottom rows (OBJ v runs upwards)
    rgb = out.rgb[0]
    np.testing.assert_array_equal(rgb[20, 20], COLOURS[2])
    np.testing.assert_array_equal(rgb[20, 44], COLOURS[3])
    np.testing.assert_array_equal(rgb[44, 20], COLOURS[0])
    np.testing.assert_array_equal(rgb[44, 44], COLOURS[1])
    # triangle 0 = (0, 1, 2) holds the pixels above the diagonal x = y; background is -1
    fid = out.face_ids[0]
    assert fid[15, 48] == 0 and fid[48, 15] == 1 and fid[0, 0] == -1
    assert set(np.unique(fid)) == {-1, 0, 1}


def test_perspective_correct_uvs_and_depth_on_a_slanted_plane():
    """A plane tilted about the y axis: texture u read back from the red channel matches the ray /
    plane intersection (a screen-space interpolation would be off by several texels)."""
    tex = np.zeros((4, 256, 3), np.uint8)
    tex[:, :, 0] = np.arange(256)
    half = 0.3
    v = np.array([[-half, -half, -0.25], [half, -half, 0.25], [half, half, 0.25], [-half, half, -0.25]])
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1.0]])
    f = np.array([[0, 1, 2], [0, 2, 3]])
    mesh = Mesh(v, f, uv, f.copy(), tex, Path("p.obj"), Path("t.png"))
    cam = front_camera(96, 60.0)
    out = render_mesh(mesh, mesh.vertices, cam, supersample=1, shading=0.0)
    for j in (26, 40, 50, 61):
        i = 48
        d = np.array([(j + 0.5 - 48) / 60.0, (i + 0.5 - 48) / 60.0, 1.0])  # ray from (0, 0, -1)
        # plane z = (5/6) x: -1 + t = (5/6) t dx
        t = 1.0 / (1.0 - (0.25 / half) * d[0])
        x = t * d[0]
        u = (x + half) / (2 * half)
        assert out.mask[0, i, j]
        assert abs(out.depth[0, i, j] - t) < 1e-5
        assert abs(float(out.rgb[0, i, j, 0]) - (u * 256 - 0.5)) < 1.0


def test_nearer_surface_wins():
    near, far = quad_mesh(z=-0.1, half=0.05), quad_mesh(z=0.2, half=0.2)
    both = Mesh(np.vstack([far.vertices, near.vertices]), np.vstack([far.faces, near.faces + 4]),
                np.vstack([far.uvs, near.uvs]), np.vstack([far.face_uvs, near.face_uvs + 4]), far.texture,
                Path("two.obj"), Path("t.png"))
    out = render_mesh(both, both.vertices, front_camera(), supersample=1, shading=0.0)
    assert out.face_ids[0, 32, 32] in (2, 3) and abs(out.depth[0, 32, 32] - 0.9) < 1e-6
    assert out.face_ids[0, 18, 18] in (0, 1) and abs(out.depth[0, 18, 18] - 1.2) < 1e-6


# OBJ reading ------------------------------------------------------------------------------------
def write_obj(folder: Path, body: str, mtl: str | None = "newmtl m\nmap_Kd tex.png\n", texture: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    head = "mtllib scan.mtl\n" if mtl is not None else ""
    (folder / "scan.obj").write_text(head + body)
    if mtl is not None:
        (folder / "scan.mtl").write_text(mtl)
    if texture:
        Image.fromarray(block_texture()).save(folder / "tex.png")
    return folder / "scan.obj"


QUAD = ("v -1 -1 0\nv 1 -1 0\nv 1 1 0\nv -1 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nvn 0 0 1\n"
        "f 1/1/1 2/2/1 3/3/1 4/4/1\n")


def test_read_obj_fans_polygons_and_finds_the_texture(tmp_path):
    mesh = read_mesh(write_obj(tmp_path, QUAD))
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3]])
    np.testing.assert_array_equal(mesh.face_uvs, [[0, 1, 2], [0, 2, 3]])
    assert mesh.texture.shape == (8, 8, 3) and mesh.texture_path == tmp_path / "tex.png"
    # negative (relative) indices mean the same
    rel = read_mesh(write_obj(tmp_path / "rel", QUAD.replace("f 1/1/1 2/2/1 3/3/1 4/4/1", "f -4/-4 -3/-3 -2/-2 -1/-1")))
    np.testing.assert_array_equal(rel.faces, mesh.faces)


@pytest.mark.parametrize("body, mtl, texture, message", [
    (QUAD.replace("1/1/1 2/2/1 3/3/1 4/4/1", "1//1 2//1 3//1 4//1"), "default", True, "has no texture coordinates"),
    (QUAD, None, False, "no texture image (no --texture and no map_Kd"),
    (QUAD, "newmtl m\nmap_Kd missing.png\n", False, "missing.png: texture image not found"),
    ("# nothing\n", "default", True, "the mesh is empty (0 vertices, 0 faces)"),
    (QUAD.replace("f 1/1/1", "f 9/1/1"), "default", True, "face refers to vertex 9, but only 4 are defined"),
    (QUAD.replace("v 1 1 0", "v 1 nan 0"), "default", True, "vertex 3 is not finite"),
    (QUAD.replace("../", ""), "newmtl m\nmap_Kd ../tex.png\n", True, "points outside the mesh's folder"),
])
def test_bad_meshes_are_one_clear_error(tmp_path, body, mtl, texture, message):
    mtl = "newmtl m\nmap_Kd tex.png\n" if mtl == "default" else mtl
    obj = write_obj(tmp_path, body, mtl, texture)
    with pytest.raises(CaptureError) as exc:
        read_mesh(obj)
    assert message in str(exc.value)
    assert "\n" not in exc.value.message


def test_texture_that_does_not_open(tmp_path):
    obj = write_obj(tmp_path, QUAD, texture=False)
    (tmp_path / "tex.png").write_bytes(b"not a png at all")
    with pytest.raises(CaptureError, match=r"tex.png: texture image does not open"):
        read_mesh(obj)


# head frame -------------------------------------------------------------------------------------
def test_given_frame_without_mediapipe_and_the_no_mediapipe_error(tmp_path, monkeypatch):
    from splatrefine.errors import PluginError
    from splatrefine.plugins.mediapipe_parser import parser as mp
    from splatrefine.plugins.scan import frame as fr

    def missing():
        raise PluginError("the mediapipe parser needs mediapipe (No module named 'mediapipe')")

    monkeypatch.setattr(mp, "import_face_mesh", missing)
    mesh = read_mesh(write_obj(tmp_path, QUAD))
    with pytest.raises(ConfigError, match="no frontal direction given and mediapipe is not installed") as exc:
        fr.find_frame(mesh)
    assert "--frontal x,y,z" in str(exc.value) and "docs/parsers.md" in str(exc.value)
    # a quad facing +z, up +y, 2 units tall: given frame, 0.25 m tall, centred
    frame = fr.find_frame(mesh, np.array([0, 0, 1.0]), np.array([0, 1.0, 0]))
    np.testing.assert_allclose(frame.apply(mesh.vertices)[2], [0.125, 0.125, 0.0])
    # facing -x with up +y: the subject's left is then +z
    frame = fr.find_frame(mesh, np.array([-1.0, 0, 0]), np.array([0, 1.0, 0]))
    np.testing.assert_allclose(frame.rotation, [[0, 0, 1], [0, 1, 0], [-1, 0, 0]], atol=1e-12)
    with pytest.raises(SplatrefineError, match="the mesh has no extent along its up direction"):
        fr.find_frame(mesh, np.array([-1.0, 0, 0]), np.array([0, 0, 1.0]))
    with pytest.raises(ConfigError, match="expected three numbers"):
        fr.parse_direction("1,2", "--frontal")


def portrait_mesh() -> Mesh:
    """Grace Hopper's portrait on a quad facing -x with up +z (the mesh's own axes), backed by a
    uniform grey quad so the mirrored face does not show from behind."""
    pytest.importorskip("mediapipe")
    import matplotlib

    path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    if not os.path.isfile(path):
        pytest.skip("this matplotlib ships no sample_data/grace_hopper.jpg")
    img = np.asarray(Image.open(path).convert("RGB"))
    tex = img.copy()
    tex[-4:, -4:] = 128  # a grey corner for the back
    h, w = img.shape[:2]
    a, b = 0.12, 0.12 * h / w  # half width (along -y, the subject's left... seen from the front) and height
    # front face at x = 0, seen from -x: image right = mesh +y, image up = mesh +z
    front = np.array([[0, -a, -b], [0, a, -b], [0, a, b], [0, -a, b]], float)
    back = front + [0.01, 0, 0]
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0.999, 0.001]])
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    fuv = np.array([[0, 1, 2], [0, 2, 3], [4, 4, 4], [4, 4, 4]])
    return Mesh(np.vstack([front, back]), faces, uv, fuv, tex, Path("portrait.obj"), Path(path))


def test_auto_frame_finds_a_face_on_a_textured_quad():
    from splatrefine.plugins.scan.frame import find_frame

    mesh = portrait_mesh()
    frame = find_frame(mesh)
    assert frame.method == "landmarks"
    left, up, frontal = frame.rotation
    assert frontal @ [-1, 0, 0] > 0.97  # the portrait is seen from -x
    assert up @ [0, 0, 1] > 0.95
    # eyes 63 mm apart in metres: the 0.24 m wide photo becomes life size or so
    width = np.ptp(frame.apply(mesh.vertices[:4]), axis=0)[0]
    assert 0.1 < width < 0.6


# pseudo-GT --------------------------------------------------------------------------------------
def test_pseudo_gt_voting_on_a_known_case():
    # 5 triangles; two source views of 1x6 pixels
    fids = np.array([[[0, 0, 1, 1, 2, -1]], [[0, 1, 1, 2, 3, -1]]])
    labs = np.array([[[1, 1, 2, 255, 255, 0]], [[1, 2, 2, 255, 2, 7]]], np.uint8)
    votes = vote(fids, labs, 5, 4)
    np.testing.assert_array_equal(votes[0], [0, 3, 0, 0, 0])      # class 1 three times
    np.testing.assert_array_equal(votes[1], [0, 0, 3, 0, 1])      # class 2 three times, one "none"
    np.testing.assert_array_equal(votes[2], [0, 0, 0, 0, 2])      # only "none"
    np.testing.assert_array_equal(votes[3], [0, 0, 1, 0, 0])      # one vote
    np.testing.assert_array_equal(decide(votes, min_votes=2), [1, 2, IGNORE, IGNORE, IGNORE])
    np.testing.assert_array_equal(decide(votes, min_votes=1), [1, 2, IGNORE, 2, IGNORE])
    # triangle 4 (unseen) shares vertex 0 with triangle 0 only: it takes class 1; triangle 5
    # (unseen) touches nothing labelled and stays unlabelled; seen triangles never change
    faces = np.array([[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5], [0, 8, 9], [10, 11, 12]])
    face_labels, outside = lift(fids, labs, faces, 4, min_votes=2, fill_rings=2)
    np.testing.assert_array_equal(face_labels, [1, 2, IGNORE, IGNORE, 1, IGNORE])
    np.testing.assert_array_equal(outside, [False, False, True, False, False, False])
    votes6 = vote(fids, labs, 6, 4)
    np.testing.assert_array_equal(fill_unseen(decide(votes6, 2), votes6.sum(1) > 0, faces, 4, rings=0),
                                  [1, 2, IGNORE, IGNORE, IGNORE, IGNORE])
    rendered = render_labels(np.array([[[-1, 0, 1, 2, 3, 4]]]), face_labels)
    np.testing.assert_array_equal(rendered, [[[0, 1, 2, IGNORE, IGNORE, 1]]])
    strict = render_labels(np.array([[[-1, 0, 1, 2, 3, 4]]]), face_labels, outside)
    np.testing.assert_array_equal(strict, [[[0, 1, 2, 0, IGNORE, 1]]])
    np.testing.assert_array_equal(reliable_views(np.array([0, 30, 31, -10, 5]), np.array([0, 15, 0, -16, -15])),
                                  [True, True, False, False, True])


# the command ------------------------------------------------------------------------------------
def cube_obj(folder: Path) -> Path:
    """A 2-unit cube, each face textured with the 8x8 block texture."""
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    lines = [f"v {x} {y} {z}" for x, y, z in corners] + ["vt 0 0", "vt 1 0", "vt 1 1", "vt 0 1"]
    lines += [f"f {a + 1}/1 {b + 1}/2 {c + 1}/3 {d + 1}/4" for a, b, c, d in quads]
    return write_obj(folder, "\n".join(lines) + "\n")


def test_render_scan_command_writes_a_capture(tmp_path, monkeypatch):
    from splatrefine.io.capture_folder import read_capture_folder
    from splatrefine.plugins.scan.capture import read_scan_buffers

    obj = cube_obj(tmp_path / "mesh")
    out = tmp_path / "cap"
    runner = CliRunner()
    args = ["render-scan", str(obj), "-o", str(out), "--rig", "frontal-only", "--resolution", "32",
            "--frontal", "0,0,1", "--up", "0,1,0", "--supersample", "2", "-q"]
    result = runner.invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    cap = read_capture_folder(out)
    assert len(cap.views) == 33 and cap.has_masks and not cap.has_labels
    depth, fids, faces, block = read_scan_buffers(out, cap)
    assert block["rig"] == "frontal-only" and block["num_faces"] == 12 and faces.shape == (12, 3)
    assert depth.shape == (33, 32, 32) and fids.shape == (33, 32, 32)
    np.testing.assert_array_equal(fids >= 0, np.stack([v.mask for v in cap.views]))
    # every foreground pixel's depth lands on the cube's surface (0.25 m cube, centred)
    cam = cap.views[16].camera
    ii, jj = np.nonzero(depth[16] > 0)
    pc = depth[16][ii, jj, None] * np.stack([(jj + 0.5 - cam.K[0, 2]) / cam.K[0, 0],
                                              (ii + 0.5 - cam.K[1, 2]) / cam.K[1, 1], np.ones(len(ii))], 1)
    world = (pc - cam.viewmat[:3, 3]) @ cam.viewmat[:3, :3]
    np.testing.assert_allclose(np.abs(world).max(axis=1), 0.125, atol=1e-5)
    meta = json.loads((out / "capture.json").read_text())
    assert meta["subject"]["frontal"] == [0.0, 0.0, 1.0]
    # an existing folder is refused, and bad input leaves nothing behind
    again = runner.invoke(cli.main, args)
    assert again.exit_code == 2 and "already exists and is not empty" in again.output
    bad = runner.invoke(cli.main, ["render-scan", str(tmp_path / "none.obj"), "-o", str(tmp_path / "x" / "y")])
    assert bad.exit_code == 2 and "none.obj: mesh file not found" in bad.output
    assert not (tmp_path / "x").exists()
    bad = runner.invoke(cli.main, args[:3] + [str(tmp_path / "y"), "--frontal", "0,0"])
    assert bad.exit_code == 2 and "--frontal '0,0': expected three numbers" in bad.output
    assert not (tmp_path / "y").exists()


def test_pseudo_gt_capture_lifts_source_labels_to_every_view():
    """A cube whose every quad is a red and a blue triangle; a 'parser' that calls red 1 and blue 2
    in the 13 near-frontal views. Every triangle those views see gets its colour's class at every
    view, including the side and top views the parser never labelled."""
    from splatrefine.plugins.scan.capture import render_scan_capture
    from splatrefine.plugins.scan.frame import HeadFrame
    from splatrefine.plugins.scan.pseudo_gt import pseudo_gt_capture

    tex = np.zeros((64, 64, 3), np.uint8)
    yy, xx = np.mgrid[0:64, 0:64]
    tex[(xx + 0.5) / 64 + (yy + 0.5) / 64 < 1] = (220, 20, 20)   # uv triangle v > u: red
    tex[(xx + 0.5) / 64 + (yy + 0.5) / 64 >= 1] = (20, 20, 220)  # v < u: blue
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    quads = np.array([(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)])
    faces = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]], axis=1).reshape(-1, 3)
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1.0]])
    fuv = np.tile([[0, 1, 2], [0, 2, 3]], (6, 1))
    mesh = Mesh(corners, faces, uv, fuv, tex, Path("cube.obj"), Path("t.png"))
    frame = HeadFrame(np.eye(3), np.zeros(3), 0.125, "given")
    capture, render = render_scan_capture(mesh, frame, "facescape-like", 32, supersample=1, shading=0.0)

    def parser(image, name):
        r, b = image[..., 0].astype(int), image[..., 2].astype(int)
        return np.where((r > 150) & (b < 80), 1, np.where((b > 150) & (r < 80), 2, IGNORE)).astype(np.uint8)

    labelled, info = pseudo_gt_capture(capture, render.face_ids, faces, parser)
    assert len(info["source_views"]) == 13 and info["classes"] == [labelled.schema.classes[1], labelled.schema.classes[2]]
    labels = np.stack([v.labels for v in labelled.views])
    fids = render.face_ids
    seen = (fids >= 0) & (fids // 2 != 4)  # quad 4 is the back (-z): no source view sees it
    np.testing.assert_array_equal(labels[seen], np.where(fids[seen] % 2 == 1, 1, 2))
    assert (labels[fids < 0] == 0).all()
    side = [i for i, v in enumerate(labelled.views) if abs(labelled.cameras().yaw[i]) == 90]
    assert side and all((labels[i][fids[i] >= 0] != IGNORE).mean() > 0.9 for i in side)
    assert capture.labels_name == "GT" and labelled.labels_name == "pseudo-GT"  # what reports call them
