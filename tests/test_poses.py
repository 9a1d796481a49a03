"""Camera pose conventions: look_at gives upright OpenCV cameras; yaw/pitch signs."""

import numpy as np
import pytest

from splatrefine.poses import direction, estimate_subject, look_at, subject_left, yaw_pitch
from splatrefine.testing import SUBJECT, ring_cameras, tiny_capture
from splatrefine.types import Camera, Subject

WORLD = Subject(center=np.zeros(3), frontal=np.array([0.0, 0.0, 1.0]), up=np.array([0.0, 1.0, 0.0]))


def test_look_at_is_upright_and_centred():
    K = np.array([[50.0, 0, 32], [0, 50.0, 32], [0, 0, 1]])
    eye = np.array([0.0, 0.0, 5.0])
    cam = Camera(look_at(eye, np.zeros(3), WORLD.up), K, 64, 64)
    uv, depth = cam.project(np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    assert np.allclose(uv[0], [32, 32]) and depth[0] == pytest.approx(5.0)
    assert uv[1, 1] < 32  # a point above the centre is drawn above the image centre
    # looking at the face from the front, the subject's left (+x here) is on the image right
    assert np.allclose(subject_left(WORLD), [1, 0, 0]) and uv[2, 0] > 32
    R = cam.viewmat[:3, :3]
    assert np.allclose(R @ R.T, np.eye(3)) and np.linalg.det(R) == pytest.approx(1.0)


@pytest.mark.parametrize("yaw, pitch", [(0, 0), (45, 10), (-90, -20), (120, 30)])
def test_yaw_pitch_inverts_direction(yaw, pitch):
    eye = WORLD.center + 4.0 * direction(yaw, pitch, WORLD)
    y, p = yaw_pitch(eye[None], WORLD)
    assert y[0] == pytest.approx(yaw) and p[0] == pytest.approx(pitch)


def test_positive_yaw_shows_the_subjects_left_ear():
    cap = tiny_capture(views=3, yaw_range=(-90, 90))
    l_ear, r_ear = 7, 8
    left_view, right_view = cap.views[2].labels, cap.views[0].labels
    assert (left_view == l_ear).sum() > 20 and (left_view == r_ear).sum() == 0
    assert (right_view == r_ear).sum() > 20 and (right_view == l_ear).sum() == 0


def test_estimate_subject_from_a_frontal_rig():
    cams = ring_cameras(np.linspace(-60, 60, 7), pitch=5.0)
    est = estimate_subject(cams)
    assert np.linalg.norm(est.center - SUBJECT.center) < 1e-6
    assert est.frontal @ SUBJECT.frontal > 0.99 and est.up @ SUBJECT.up > 0.99


def test_nominal_bucket_edges_land_in_their_bucket():
    """A rig's -30/-60 degree views come back from the trigonometry a hair short of the edge
    (29.999999999999993): yaw_pitch snaps them so they fall into mid/extreme, not the bucket below."""
    from splatrefine.types import pose_bucket

    frontal = np.array([0.3, -0.2, 0.93])
    up = np.array([0.1, 0.98, 0.2])
    subject = Subject(center=np.array([0.1, -0.4, 2.3]), frontal=frontal / np.linalg.norm(frontal),
                      up=up / np.linalg.norm(up))
    nominal = [-60.0, -30.0, 0.0, 30.0, 60.0]
    eyes = np.stack([subject.center + 3.7 * direction(y, 15.0, subject) for y in nominal])
    yaw, pitch = yaw_pitch(eyes, subject)
    assert yaw.tolist() == nominal and pitch.tolist() == [15.0] * 5
    assert [pose_bucket(y) for y in yaw] == ["extreme", "mid", "frontal", "mid", "extreme"]
