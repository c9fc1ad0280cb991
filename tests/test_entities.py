"""Tests for mmad.entities: Eq. (1) boxes on hand-made keypoints and the Table III alternatives."""

from __future__ import annotations

import numpy as np
import pytest

from mmad.entities import (
    ENTITY_SETS,
    FIXED_REGIONS,
    center_crop_boxes,
    entity_boxes,
    entity_joint_groups,
    fixed_region_boxes,
)
from mmad.keypoints import LAYOUTS

HEAD = 0  # column of the head entity in "k6"
RIGHT_HAND = 3


def _skeleton(num_frames: int = 1) -> np.ndarray:
    """A frontal BODY_25 person: shoulders 60 px apart, torso (neck to mid hip) 120 px -> scale 120."""
    kp = np.zeros((num_frames, 25, 3), dtype=np.float32)
    joints = {
        0: (100, 50, 0.9),  # nose
        15: (90, 45, 0.9),  # right eye
        16: (110, 45, 0.9),  # left eye
        17: (80, 50, 0.25),  # right ear, below the threshold
        18: (120, 50, 0.3),  # left ear, exactly at the threshold: not visible
        1: (100, 90, 0.9),  # neck
        2: (70, 90, 0.8),
        5: (130, 90, 0.8),
        8: (100, 210, 0.8),
        9: (85, 210, 0.8),
        12: (115, 210, 0.8),
    }
    for j, v in joints.items():
        kp[:, j] = v
    return kp


def test_head_box_threshold_and_padding():
    boxes, conf = entity_boxes(_skeleton(), "body25", min_size=0.0)
    # visible head joints: nose, eyes, neck -> [90, 45, 110, 90]; w 20, h 45, 10 % per side
    np.testing.assert_allclose(boxes[0, HEAD], [88.0, 40.5, 112.0, 94.5], atol=1e-4)
    np.testing.assert_allclose(conf[0, HEAD], 0.9, atol=1e-6)
    assert boxes.shape == (1, 6, 4) and conf.shape == (1, 6)


def test_threshold_is_configurable():
    boxes, _ = entity_boxes(_skeleton(), "body25", min_size=0.0, conf_threshold=0.2)
    # both ears now count: x range 80..120
    np.testing.assert_allclose(boxes[0, HEAD, [0, 2]], [76.0, 124.0], atol=1e-4)


def test_carry_forward_and_first_frame():
    kp = _skeleton(4)
    head = [0, 15, 16, 17, 18, 1]
    kp[0, head, 2] = 0.0  # first frame: no head -> takes the first later valid box
    kp[2, head, 2] = 0.1  # below threshold -> previous frame's box
    kp[3, head, :2] += 30.0  # moved
    kp[3, 15, 2] = 0.0
    kp[3, [0, 16, 1], 2] = 0.0
    kp[3, 0, 2] = 0.95  # only the nose visible: |V| = 1 < 2 -> carried
    boxes, conf = entity_boxes(kp, "body25", min_size=0.0)
    np.testing.assert_allclose(boxes[1, HEAD], [88.0, 40.5, 112.0, 94.5], atol=1e-4)
    for t in (0, 2, 3):
        np.testing.assert_allclose(boxes[t, HEAD], boxes[1, HEAD])
        assert conf[t, HEAD] == 0.0
    assert conf[1, HEAD] > 0


def test_minimum_size_for_wrist_and_elbow_hand():
    kp = _skeleton(1)
    kp[0, 3] = (60, 130, 0.9)  # right elbow
    kp[0, 4] = (60, 180, 0.7)  # right wrist; hand extends to y = 180 + 0.4 * 50 = 200
    boxes, conf = entity_boxes(kp, "body25")
    x1, y1, x2, y2 = boxes[0, RIGHT_HAND]
    # raw box [60, 180, 60, 200] -> padded height 24; width 0 -> grown to 0.15 * 120 = 18
    np.testing.assert_allclose([x1, x2], [51.0, 69.0], atol=1e-4)
    np.testing.assert_allclose([y1, y2], [178.0, 202.0], atol=1e-4)
    np.testing.assert_allclose(conf[0, RIGHT_HAND], 0.8, atol=1e-6)
    no_min, _ = entity_boxes(kp, "body25", min_size=0.0)
    assert no_min[0, RIGHT_HAND, 2] - no_min[0, RIGHT_HAND, 0] == pytest.approx(0.0)


def test_hand_points_define_the_hand_box():
    kp = np.zeros((1, 67, 3), dtype=np.float32)
    kp[0, :25] = _skeleton(1)[0]
    kp[0, 7] = (200, 200, 0.9)  # left wrist
    kp[0, 6] = (190, 140, 0.9)  # left elbow: not used when hand points are visible
    kp[0, 25:46, 0] = np.linspace(195, 235, 21)
    kp[0, 25:46, 1] = np.linspace(200, 240, 21)
    kp[0, 25:46, 2] = 0.6
    boxes, conf = entity_boxes(kp, "body25_hands", min_size=0.0)
    np.testing.assert_allclose(boxes[0, 2], [191.0, 196.0, 239.0, 244.0], atol=1e-4)
    np.testing.assert_allclose(conf[0, 2], (0.9 + 21 * 0.6) / 22, atol=1e-5)


def test_clipping_to_frame():
    kp = _skeleton(1)
    kp[0, :, :2] -= 60.0  # head partly off the top-left
    boxes, _ = entity_boxes(kp, "body25", frame_size=(640, 480))
    assert (boxes[..., 0::2] >= 0).all() and (boxes[..., 0::2] <= 640).all()
    assert (boxes[..., 1::2] >= 0).all() and (boxes[..., 1::2] <= 480).all()
    assert boxes[0, HEAD, 1] == 0.0


def test_never_visible_entity_gets_default_region():
    kp = _skeleton(3)  # no knees/ankles/feet; hips are visible -> lower body valid from 3 hips
    kp[:, [8, 9, 12], 2] = 0.0
    boxes, conf = entity_boxes(kp, "body25", min_size=0.0)
    visible = kp[0, kp[0, :, 2] > 0, :2]
    person = np.concatenate([visible.min(0), visible.max(0)])
    w, h = person[2] - person[0], person[3] - person[1]
    f = FIXED_REGIONS["lower_body"]
    expected = [person[0] + f[0] * w, person[1] + f[1] * h, person[0] + f[2] * w, person[1] + f[3] * h]
    np.testing.assert_allclose(boxes[:, 5], np.tile(expected, (3, 1)), atol=1e-4)
    assert (conf[:, 5] == 0).all()
    empty = np.zeros((2, 25, 3), dtype=np.float32)
    boxes, conf = entity_boxes(empty, "body25", frame_size=(200, 100))
    np.testing.assert_allclose(boxes[0, HEAD], [60.0, 0.0, 140.0, 30.0], atol=1e-4)
    assert not conf.any()


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_every_layout_gives_boxes(name):
    layout = LAYOUTS[name]
    rng = np.random.default_rng(0)
    kp = np.concatenate(
        [
            rng.uniform(0, 300, size=(5, layout.num_joints, 2)),
            rng.uniform(0.5, 1, size=(5, layout.num_joints, 1)),
        ],
        axis=-1,
    ).astype(np.float32)
    for entities, k in (("k6", 6), ("k5", 5), ("k4", 4)):
        boxes, conf = entity_boxes(kp, layout, entities=entities, frame_size=(300, 300))
        assert boxes.shape == (5, k, 4) and conf.shape == (5, k)
        assert (boxes[..., 2] >= boxes[..., 0]).all() and (boxes[..., 3] >= boxes[..., 1]).all()
        assert np.isfinite(boxes).all()
    groups = entity_joint_groups(layout, "k6")
    assert all(max(g) < layout.num_joints for g in groups if g)


def test_entity_groups_use_face_and_hands_when_present():
    face_layout = LAYOUTS["body25_hands_face"]
    head, face, left, right, torso, lower = entity_joint_groups(face_layout, "k6")
    assert face == tuple(range(67, 137)) and 1 in head and 1 not in face
    assert left == (7,) + tuple(range(25, 46)) and right == (4,) + tuple(range(46, 67))
    assert entity_joint_groups("miga_22", "k6")[5] == ()
    assert ENTITY_SETS["k4"] == ("head", "left_hand", "right_hand", "torso")
    with pytest.raises(ValueError, match="unknown entity set"):
        entity_joint_groups("body25", "k3")


def test_fixed_and_center_crop_boxes():
    boxes, conf = fixed_region_boxes(3, (200, 100), "k5")
    assert boxes.shape == (3, 5, 4) and conf.shape == (3, 5) and (conf == 1).all()
    np.testing.assert_allclose(boxes[1, 0], [60.0, 0.0, 140.0, 30.0])
    # person's left hand is on the image's right
    assert boxes[0, 2, 0] > boxes[0, 3, 2]
    boxes, conf = center_crop_boxes(2, (200, 100), 6)
    assert boxes.shape == (2, 6, 4)
    np.testing.assert_allclose(boxes[0, 4], [50.0, 25.0, 150.0, 75.0])
    assert (boxes == boxes[0, 0]).all()


def test_torso_without_hips_extends_below_shoulders():
    kp = np.zeros((1, 22, 3), dtype=np.float32)
    kp[0, 1] = (100, 80, 0.9)  # neck
    kp[0, 2] = (70, 82, 0.9)  # right shoulder
    kp[0, 5] = (130, 82, 0.9)  # left shoulder -> body scale 60
    boxes, _ = entity_boxes(kp, "miga_22", entities="k5", min_size=0.0, pad=0.0)
    np.testing.assert_allclose(boxes[0, 4], [70.0, 80.0, 130.0, 140.0], atol=1e-4)
