"""Tests for mmad.keypoints: layouts, OpenPose JSON round trip and errors, pickles, MiGA arrays,
person selection and normalisation."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from mmad.errors import DataError
from mmad.keypoints import (
    LAYOUTS,
    body_scale,
    get_layout,
    normalize_keypoints,
    read_miga_npy,
    read_openpose_folder,
    read_openpose_frame,
    read_pose_pickle,
    select_person,
    select_person_from_tracks,
    write_openpose_frames,
)


def _body(num_frames: int, *, seed: int = 0, offset=(100.0, 50.0), scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    body = np.zeros((num_frames, 25, 3), dtype=np.float32)
    body[..., 0] = offset[0] + scale * rng.uniform(0, 200, size=(num_frames, 25))
    body[..., 1] = offset[1] + scale * rng.uniform(0, 300, size=(num_frames, 25))
    body[..., 2] = rng.uniform(0.2, 1.0, size=(num_frames, 25))
    return body


# ---------------------------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_layout_flip_perm_is_an_involution_swapping_sides(name):
    layout = LAYOUTS[name]
    assert layout.num_joints == len(layout.joint_names) == len(layout.flip_perm)
    perm = layout.flip_perm
    np.testing.assert_array_equal(perm[perm], np.arange(layout.num_joints))
    for a, b in enumerate(perm):
        if a != b:
            na, nb = layout.joint_names[a].removeprefix("Face"), layout.joint_names[b].removeprefix("Face")
            assert {na[0], nb[0]} == {"L", "R"} or na.startswith(("Jaw", "Nose", "Mouth")), (na, nb)
    # left hand and right hand parts map onto each other
    if layout.has_hands:
        np.testing.assert_array_equal(perm[list(layout.part("left_hand"))], layout.part("right_hand"))


def test_body25_flip_pairs_match_openpose():
    perm = LAYOUTS["body25"].flip_perm
    for a, b in [
        (2, 5),
        (3, 6),
        (4, 7),
        (9, 12),
        (10, 13),
        (11, 14),
        (15, 16),
        (17, 18),
        (19, 22),
        (20, 23),
        (21, 24),
    ]:
        assert perm[a] == b and perm[b] == a
    for j in (0, 1, 8):
        assert perm[j] == j
    hands = LAYOUTS["body25_hands"]
    assert hands.num_joints == 67 and hands.flip_perm[25] == 46 and hands.flip_perm[66] == 45


def test_get_layout_unknown_name():
    with pytest.raises(ValueError, match="ma52_28"):
        get_layout("coco17")


# ---------------------------------------------------------------------------------------------
# OpenPose JSON
# ---------------------------------------------------------------------------------------------


def test_write_then_read_round_trip(tmp_path):
    body = _body(6)
    hand_left = _body(6, seed=1)[:, :21]
    hand_right = _body(6, seed=2)[:, :21]
    mask = np.array([True, True, False, True, True, True])
    for stream in (body, hand_left, hand_right):
        stream[4, :, 2] = 0.0  # all-zero confidence: written as an empty frame
    paths = write_openpose_frames(
        tmp_path, "vid", body, hand_left=hand_left, hand_right=hand_right, people_mask=mask
    )
    assert [p.name for p in paths][:2] == [
        "vid_000000000000_keypoints.json",
        "vid_000000000001_keypoints.json",
    ]
    assert json.loads(paths[2].read_text())["people"] == []
    assert json.loads(paths[4].read_text())["people"] == []
    doc = json.loads(paths[0].read_text())
    assert doc["version"] == 1.3 and doc["people"][0]["face_keypoints_2d"] == []

    kp = read_openpose_folder(tmp_path)
    assert kp.shape == (6, 67, 3) and kp.dtype == np.float32
    for t in (0, 1, 3, 5):
        np.testing.assert_allclose(kp[t, :25], body[t], atol=1e-3)
        np.testing.assert_allclose(kp[t, 25:46], hand_left[t], atol=1e-3)
        np.testing.assert_allclose(kp[t, 46:], hand_right[t], atol=1e-3)
    assert not kp[2].any() and not kp[4].any()


def test_read_folder_fills_missing_frames_and_orders_by_index(tmp_path):
    body = _body(5)
    paths = write_openpose_frames(tmp_path, "clip", body)
    paths[2].unlink()
    (tmp_path / "notes.txt").write_text("ignored")
    kp = read_openpose_folder(tmp_path)
    assert kp.shape == (5, 67, 3)
    assert not kp[2].any()
    np.testing.assert_allclose(kp[3, :25], body[3], atol=1e-3)
    assert not kp[:, 25:].any()  # no hands written -> zero confidence
    padded = read_openpose_folder(tmp_path, num_frames=8)
    assert padded.shape == (8, 67, 3) and not padded[5:].any()
    with pytest.raises(DataError, match="beyond"):
        read_openpose_folder(tmp_path, num_frames=3)


def test_read_folder_with_face_and_frame_size(tmp_path):
    body = _body(2)
    face = _body(3, seed=4)[:2, :1].repeat(70, axis=1)
    body[0, 0, :2] = (5000.0, 10.0)  # outside a 640 x 480 frame
    write_openpose_frames(tmp_path, "v", body, face=face)
    kp = read_openpose_folder(tmp_path, with_face=True, frame_size=(640, 480))
    assert kp.shape == (2, 137, 3)
    assert tuple(kp[0, 0]) == (0.0, 0.0, 0.0)
    np.testing.assert_allclose(kp[1, 67:], face[1], atol=1e-3)


def _write_json(path, text):
    path.write_text(text)
    return path


def test_bad_json_names_the_file(tmp_path):
    write_openpose_frames(tmp_path, "v", _body(3))
    bad = _write_json(tmp_path / "v_000000000001_keypoints.json", '{"version": 1.3, "people": [')
    with pytest.raises(DataError) as err:
        read_openpose_folder(tmp_path)
    assert bad.name in str(err.value) and "invalid JSON" in str(err.value)


def test_json_without_people_is_an_error(tmp_path):
    path = _write_json(tmp_path / "v_000000000000_keypoints.json", '{"version": 1.3}')
    with pytest.raises(DataError, match="people"):
        read_openpose_frame(path)


def test_empty_people_is_a_zero_frame(tmp_path):
    path = _write_json(tmp_path / "v_000000000000_keypoints.json", '{"version": 1.3, "people": []}')
    assert read_openpose_frame(path).shape == (0, 67, 3)
    kp = read_openpose_folder(tmp_path)
    assert kp.shape == (1, 67, 3) and not kp.any()


def test_nan_keypoint_is_an_error(tmp_path):
    values = [1.0] * 75
    values[7] = "NaN"
    text = json.dumps({"version": 1.3, "people": [{"pose_keypoints_2d": values}]}).replace('"NaN"', "NaN")
    path = _write_json(tmp_path / "v_000000000003_keypoints.json", text)
    with pytest.raises(DataError) as err:
        read_openpose_folder(tmp_path)
    assert path.name in str(err.value) and "NaN" in str(err.value) and "keypoint 2" in str(err.value)


def test_wrong_length_is_an_error(tmp_path):
    path = _write_json(
        tmp_path / "v_000000000000_keypoints.json",
        json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 54}]}),
    )
    with pytest.raises(DataError, match="expected 75 numbers, got 54"):
        read_openpose_frame(path)


def test_missing_folder_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_openpose_folder(tmp_path / "nope")
    with pytest.raises(DataError, match="no '<name>"):
        read_openpose_folder(tmp_path)


def test_real_openpose_sample(shared_datasets):
    path = shared_datasets / "imigue" / "openpose_frame_sample.json"
    people = read_openpose_frame(path, with_face=True)
    assert people.shape == (1, 137, 3)
    person = people[0]
    # nose and neck detected, confidences in (0, 1], lower body undetected in this seated shot
    assert person[0, 2] > 0.5 and person[1, 2] > 0.3
    assert (person[:, 2] <= 1.0).all() and (person[:, 2] >= 0).all()
    assert (person[person[:, 2] > 0, :2] > 0).all()
    assert person[67:, 2].max() > 0  # face points present
    raw = json.loads(path.read_text())["people"][0]["pose_keypoints_2d"]
    np.testing.assert_allclose(person[:25].reshape(-1), np.asarray(raw, dtype=np.float32))


# ---------------------------------------------------------------------------------------------
# Pickles and MiGA arrays
# ---------------------------------------------------------------------------------------------


def _pose_annotation(name: str, num_people: int = 1, num_frames: int = 4) -> dict:
    rng = np.random.default_rng(len(name))
    return {
        "frame_dir": name,
        "label": 3,
        "img_shape": (480, 640),
        "total_frames": num_frames,
        "keypoint": rng.uniform(0, 400, size=(num_people, num_frames, 28, 2)).astype(np.float32),
        "keypoint_score": rng.uniform(0, 1, size=(num_people, num_frames, 28)).astype(np.float32),
    }


@pytest.mark.parametrize("wrapped", [False, True])
def test_read_pose_pickle(tmp_path, wrapped):
    anns = [_pose_annotation("0001_01_0001"), _pose_annotation("0002_03_0010", num_people=2)]
    doc = {"split": {"train": ["0001_01_0001"]}, "annotations": anns} if wrapped else anns
    path = tmp_path / "MA52_train.pkl"
    path.write_bytes(pickle.dumps(doc, protocol=2))
    out = read_pose_pickle(path)
    assert list(out) == ["0001_01_0001", "0002_03_0010"]
    assert out["0002_03_0010"].shape == (2, 4, 28, 3)
    np.testing.assert_allclose(out["0001_01_0001"][..., :2], anns[0]["keypoint"])
    np.testing.assert_allclose(out["0001_01_0001"][..., 2], anns[0]["keypoint_score"])
    single = select_person_from_tracks(out["0002_03_0010"])
    assert single.shape == (4, 28, 3)


class _Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pose_pickle_refuses_foreign_globals(tmp_path, capsys):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps([{"frame_dir": "x", "keypoint": _Exploit()}]))
    with pytest.raises(DataError, match="refusing to load global builtins.print"):
        read_pose_pickle(path)
    assert "pwned" not in capsys.readouterr().out


def test_pose_pickle_bad_content(tmp_path):
    ann = _pose_annotation("a")
    del ann["keypoint_score"]
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps([ann]))
    with pytest.raises(DataError, match=r"annotation 0 \('a'\): missing 'keypoint_score'"):
        read_pose_pickle(path)
    ann = _pose_annotation("b")
    ann["keypoint"][0, 2, 5, 0] = np.nan
    path.write_bytes(pickle.dumps([ann]))
    with pytest.raises(DataError, match="frame 2"):
        read_pose_pickle(path)
    path.write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(DataError, match="p.pkl"):
        read_pose_pickle(path)


def test_read_miga_npy(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.uniform(0.1, 1.0, size=(3, 3, 5, 22, 1)).astype(np.float32)
    path = tmp_path / "train_data.npy"
    np.save(path, arr)
    out = read_miga_npy(path)
    assert out.shape == (3, 5, 22, 3)
    np.testing.assert_allclose(out[1, 2, 7], arr[1, :, 2, 7, 0])
    np.save(path, arr[:, :2])  # x, y only: confidence from presence
    out = read_miga_npy(path)
    assert (out[..., 2] == 1.0).all()
    arr[2, 0, 4, 0, 0] = np.nan
    np.save(path, arr)
    with pytest.raises(DataError, match="sample 2 frame 4"):
        read_miga_npy(path)
    np.save(path, arr[:, :, :, :20])
    with pytest.raises(DataError, match="expected shape"):
        read_miga_npy(path)


# ---------------------------------------------------------------------------------------------
# Person selection
# ---------------------------------------------------------------------------------------------


def _person(cx: float, cy: float, size: float, conf: float = 0.9, num_joints: int = 25) -> np.ndarray:
    rng = np.random.default_rng(int(cx * 7 + cy))
    p = np.zeros((num_joints, 3), dtype=np.float32)
    p[:, 0] = cx + rng.uniform(-size / 2, size / 2, num_joints)
    p[:, 1] = cy + rng.uniform(-size / 2, size / 2, num_joints)
    p[:, 2] = conf
    return p


def test_select_person_follows_subject_when_order_swaps():
    frames = []
    for t in range(8):
        subject = _person(200 + 3 * t, 300, 200)  # large, confident, slowly moving right
        other = _person(600 - 5 * t, 320, 150, conf=0.7)
        frames.append(np.stack([subject, other] if t % 2 == 0 else [other, subject]))
    frames.insert(4, np.zeros((0, 25, 3), dtype=np.float32))  # nobody in one frame
    out = select_person(frames)
    assert out.shape == (9, 25, 3)
    assert not out[4].any()
    for t, people in enumerate(frames):
        if len(people):
            centre = out[t, :, 0].mean()
            assert centre < 400, f"frame {t} jumped to the other person"


def test_read_folder_keeps_one_subject_in_multi_person_json(tmp_path):
    for t in range(6):
        subject = _person(200 + 2 * t, 300, 200)
        other = _person(600, 310, 120, conf=0.6)
        people = [subject, other] if t % 2 else [other, subject]
        doc = {"version": 1.3, "people": [{"pose_keypoints_2d": p.reshape(-1).tolist()} for p in people]}
        (tmp_path / f"v_{t:012d}_keypoints.json").write_text(json.dumps(doc))
    kp = read_openpose_folder(tmp_path)
    assert kp.shape == (6, 67, 3)
    np.testing.assert_allclose(
        kp[:, :25, 0].mean(axis=1), [_person(200 + 2 * t, 300, 200)[:, 0].mean() for t in range(6)], rtol=1e-5
    )


def test_select_person_ignores_bigger_newcomer_far_away():
    frames = [np.stack([_person(200, 300, 150)]) for _ in range(6)]
    frames += [np.stack([_person(900, 300, 300, conf=1.0), _person(205, 300, 150)]) for _ in range(4)]
    out = select_person(frames)
    assert (out[6:, :, 0].mean(axis=1) < 400).all()


def test_select_person_initial_choice_is_largest_confident():
    small = _person(100, 100, 60, conf=0.9)
    big = _person(500, 300, 250, conf=0.8)
    frames = [np.stack([small, big]), np.stack([big, small])]
    out = select_person(frames)
    assert (out[:, :, 0].mean(axis=1) > 300).all()
    assert select_person([np.zeros((0, 5, 3))] * 3, num_joints=5).shape == (3, 5, 3)


# ---------------------------------------------------------------------------------------------
# Scale and normalisation
# ---------------------------------------------------------------------------------------------


def _standing_body25(num_frames: int = 3, dx: float = 0.0) -> np.ndarray:
    kp = np.zeros((num_frames, 25, 3), dtype=np.float32)
    joints = {
        0: (100, 40),
        1: (100, 80),
        2: (70, 80),
        5: (130, 80),
        8: (100, 200),
        9: (85, 200),
        12: (115, 200),
    }
    for j, (x, y) in joints.items():
        kp[:, j] = (x, y, 0.9)
    kp[:, :, 0] += np.where(kp[:, :, 2] > 0, dx * np.arange(num_frames)[:, None], 0)
    return kp


def test_body_scale_uses_longer_of_shoulders_and_torso():
    kp = _standing_body25()
    np.testing.assert_allclose(body_scale(kp, "body25"), 120.0)  # torso 120 > shoulders 60
    kp[1, 8, 2] = 0.0
    kp[1, [9, 12], 2] = 0.0  # torso unmeasurable in frame 1 -> shoulders only
    np.testing.assert_allclose(body_scale(kp, "body25")[1], 60.0)
    kp[:, :, 2] = 0
    assert np.isnan(body_scale(kp, "body25")).all()


def test_normalize_keypoints_centres_and_scales():
    kp = _standing_body25(num_frames=4, dx=10.0)
    out = normalize_keypoints(kp, "body25", per_frame=True)
    np.testing.assert_allclose(out[:, 1, :2], 0.0, atol=1e-6)  # neck at the origin
    np.testing.assert_allclose(out[:, 8, 1], 1.0, atol=1e-6)  # mid hip one torso below
    assert not out[:, 3].any()  # undetected joint stays zero
    clip = normalize_keypoints(kp, "body25")
    np.testing.assert_allclose(np.diff(clip[:, 1, 0]), 10.0 / 120.0, atol=1e-6)  # motion kept
    np.testing.assert_allclose(out[..., 2], kp[..., 2])
