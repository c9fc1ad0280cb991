"""Tests of mmad.pose: MediaPipe -> BODY_25 mapping, extraction pipeline, `mmad pose extract`, the real model."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from mmad.cli import main as mmad_main
from mmad.errors import DataError
from mmad.keypoints import BODY25_NAMES, get_layout, read_openpose_folder
from mmad.pose import (
    BODY25_FROM_MEDIAPIPE,
    MEDIAPIPE_POSE_NAMES,
    PoseExtraNotInstalled,
    extract_pose,
    extract_pose_folder,
    extract_pose_video,
    load_mediapipe_pose,
    mediapipe_to_body25,
    mediapipe_to_hands,
)
from mmad.video import write_video

W, H = 200, 100
MP = {name: i for i, name in enumerate(MEDIAPIPE_POSE_NAMES)}
B25 = {name: i for i, name in enumerate(BODY25_NAMES)}


def distinct_landmarks(num_frames: int = 2) -> np.ndarray:
    """(T, 33, 4): landmark i of frame t at x = (i + 1) / 40 + t / 100, y = (i + 1) / 36, visibility 0.3 + i / 50."""
    lm = np.zeros((num_frames, 33, 4), np.float32)
    i = np.arange(33)
    for t in range(num_frames):
        lm[t, :, 0] = (i + 1) / 40 + t / 100
        lm[t, :, 1] = (i + 1) / 36
        lm[t, :, 2] = -0.1
        lm[t, :, 3] = 0.3 + i / 50
    return lm


# ---------------------------------------------------------------------------------------- mapping


def test_direct_joints_land_on_exact_pixels():
    lm = distinct_landmarks()
    body = mediapipe_to_body25(lm, W, H)
    assert body.shape == (2, 25, 3) and body.dtype == np.float32
    pairs = {"Nose": "nose", "RShoulder": "right_shoulder", "LElbow": "left_elbow", "RWrist": "right_wrist",
             "LHip": "left_hip", "RKnee": "right_knee", "LAnkle": "left_ankle", "REye": "right_eye",
             "LEar": "left_ear", "LBigToe": "left_foot_index", "RBigToe": "right_foot_index",
             "LHeel": "left_heel", "RHeel": "right_heel"}
    for b25, mp in pairs.items():
        src = lm[:, MP[mp]]
        expected = np.stack([src[:, 0] * W, src[:, 1] * H, src[:, 3]], axis=-1)
        np.testing.assert_allclose(body[:, B25[b25]], expected, atol=1e-4, err_msg=b25)


def test_derived_joints_are_midpoints_with_the_smaller_confidence():
    lm = distinct_landmarks(1)
    lm[0, MP["left_shoulder"], :2] = (0.6, 0.3)
    lm[0, MP["right_shoulder"], :2] = (0.4, 0.32)
    lm[0, MP["left_shoulder"], 3] = 0.9
    lm[0, MP["right_shoulder"], 3] = 0.7
    lm[0, MP["left_hip"], :2] = (0.55, 0.8)
    lm[0, MP["right_hip"], :2] = (0.45, 0.84)
    lm[0, MP["left_hip"], 3] = 0.35
    lm[0, MP["right_hip"], 3] = 0.95
    body = mediapipe_to_body25(lm, W, H)[0]
    np.testing.assert_allclose(body[B25["Neck"]], (0.5 * W, 0.31 * H, 0.7), atol=1e-4)
    np.testing.assert_allclose(body[B25["MidHip"]], (0.5 * W, 0.82 * H, 0.35), atol=1e-4)
    # one undetected source makes the derived joint undetected
    lm[0, MP["right_shoulder"], 3] = 0.0
    assert np.all(mediapipe_to_body25(lm, W, H)[0, B25["Neck"]] == 0)


def test_small_toes_are_undetected_and_every_other_joint_has_a_source():
    body = mediapipe_to_body25(distinct_landmarks(), W, H)
    for name in ("LSmallToe", "RSmallToe"):
        assert np.all(body[:, B25[name]] == 0)
    others = [j for j in range(25) if BODY25_NAMES[j] not in ("LSmallToe", "RSmallToe")]
    assert np.all(body[:, others, 2] > 0)
    assert len(BODY25_FROM_MEDIAPIPE) == 25


def test_left_is_the_persons_left_and_mapping_commutes_with_a_flip():
    # a person facing the camera: their left side is on the image's right
    lm = distinct_landmarks(1)
    lm[0, MP["left_wrist"], 0], lm[0, MP["right_wrist"], 0] = 0.8, 0.2
    body = mediapipe_to_body25(lm, W, H)[0]
    assert body[B25["LWrist"], 0] == pytest.approx(0.8 * W)
    assert body[B25["RWrist"], 0] == pytest.approx(0.2 * W)
    # mirror the image: x -> 1 - x and MediaPipe's left/right landmarks swap roles
    swap = [MP[n.replace("left", "@").replace("right", "left").replace("@", "right")] for n in MEDIAPIPE_POSE_NAMES]
    mirrored = distinct_landmarks(1)[:, swap]
    mirrored[..., 0] = 1 - mirrored[..., 0]
    flip_perm = get_layout("body25").flip_perm
    expected = mediapipe_to_body25(distinct_landmarks(1), W, H)[:, flip_perm]
    expected[..., 0] = np.where(expected[..., 2] > 0, W - expected[..., 0], 0)
    np.testing.assert_allclose(mediapipe_to_body25(mirrored, W, H), expected, atol=1e-3)


def test_points_outside_the_frame_and_undetected_frames():
    lm = distinct_landmarks(3)
    lm[0, MP["left_knee"], 1] = 1.2  # below the frame
    lm[0, MP["nose"], 0] = -0.01
    lm[1] = np.nan  # a frame without a person
    lm[2, :, 3] = 0.0
    body = mediapipe_to_body25(lm, W, H)
    assert np.all(body[0, B25["LKnee"]] == 0) and np.all(body[0, B25["Nose"]] == 0)
    assert body[0, B25["RKnee"], 2] > 0
    assert np.all(body[1:] == 0)
    kept = mediapipe_to_body25(lm, W, H, drop_outside=False)
    assert kept[0, B25["LKnee"], 1] == pytest.approx(1.2 * H)
    single = mediapipe_to_body25(distinct_landmarks(1)[0], W, H)
    assert single.shape == (1, 25, 3)
    with pytest.raises(ValueError, match=r"\(T, 33, 4\)"):
        mediapipe_to_body25(np.zeros((2, 25, 3)), W, H)


def test_hand_points_go_to_openpose_hand_indices():
    lm = distinct_landmarks(1)
    left, right = mediapipe_to_hands(lm, W, H)
    assert left.shape == right.shape == (1, 21, 3)
    for hand, side in ((left, "left"), (right, "right")):
        for index, suffix in ((0, "wrist"), (2, "thumb"), (5, "index"), (17, "pinky")):
            src = lm[0, MP[f"{side}_{suffix}"]]
            np.testing.assert_allclose(hand[0, index], (src[0] * W, src[1] * H, src[3]), atol=1e-4)
        rest = [k for k in range(21) if k not in (0, 2, 5, 17)]
        assert np.all(hand[0, rest] == 0)


# ---------------------------------------------------------------------------------------- extraction


def write_test_video(path, num_frames: int = 7):
    """A small video whose frame t has brightness 20 * t in its top-left pixel block (to tell frames apart)."""
    frames = []
    for t in range(num_frames):
        frame = np.zeros((64, 96, 3), np.uint8)
        frame[:16, :16] = 20 * t
        frames.append(frame)
    return write_video(path, frames, fps=10)


class FakeEstimator:
    """Puts the nose at x = 0.1 * (frame number read from the pixels); no person in frames 2 and 4."""

    def __init__(self):
        self.calls = 0

    def __call__(self, frame):
        self.calls += 1
        assert frame.shape == (64, 96, 3) and frame.dtype == np.uint8
        t = int(round(frame[:16, :16].mean() / 20))
        if t in (2, 4):
            return None
        lm = distinct_landmarks(1)[0]
        lm[MP["nose"], 0] = 0.1 * t
        return lm


def test_extract_pose_writes_openpose_frames_named_by_video_index(tmp_path):
    video = write_test_video(tmp_path / "clip.mp4")
    fake = FakeEstimator()
    result = extract_pose_video(video, tmp_path / "kp", stride=2, estimator=fake, progress=False)
    assert fake.calls == 4
    names = sorted(p.name for p in (tmp_path / "kp").iterdir())
    assert names == [f"clip_{t:012d}_keypoints.json" for t in (0, 2, 4, 6)] + ["keypoints.npz"]
    assert not list(tmp_path.glob(".kp*")), "no staging folder is left"
    assert (result.num_frames, result.num_detected) == (4, 2)
    assert result.detection_rate == 0.5
    for t in (2, 4):
        doc = json.loads((tmp_path / "kp" / f"clip_{t:012d}_keypoints.json").read_text())
        assert doc["people"] == []
    kp = read_openpose_folder(tmp_path / "kp", num_frames=7)
    assert kp.shape == (7, 67, 3)
    assert np.all(kp[[1, 2, 3, 4, 5], :, 2] == 0)
    assert kp[6, B25["Nose"], 0] == pytest.approx(0.6 * 96, abs=1e-3)
    expected = mediapipe_to_body25(distinct_landmarks(1), 96, 64)[0]
    np.testing.assert_allclose(kp[0, 1:25], expected[1:], atol=2e-3)
    left, _ = mediapipe_to_hands(distinct_landmarks(1), 96, 64)
    np.testing.assert_allclose(kp[0, 25:46], left[0], atol=2e-3)
    # the thin wrapper returns the folder; without hands the hand arrays are empty
    out = extract_pose(video, tmp_path / "kp2", estimator=FakeEstimator(), with_hands=False, progress=False)
    assert out == tmp_path / "kp2" and len(list(out.glob("*.json"))) == 7
    doc = json.loads((out / "clip_000000000000_keypoints.json").read_text())
    assert doc["people"][0]["hand_left_keypoints_2d"] == []


def test_extract_pose_bad_video_is_a_data_error(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(DataError, match="broken.mp4"):
        extract_pose_video(bad, tmp_path / "kp", estimator=FakeEstimator(), progress=False)


def test_folder_extraction_skips_a_bad_video(tmp_path):
    videos = tmp_path / "videos"
    write_test_video(videos / "a.mp4", 3)
    write_test_video(videos / "c.mp4", 2)
    (videos / "b.mp4").write_bytes(b"\x00" * 100)
    (videos / "notes.txt").write_text("not a video")
    seen = []
    results = extract_pose_folder(videos, tmp_path / "kp", estimator=FakeEstimator(), progress=False,
                                  on_video=lambda r: seen.append(r.video.name))
    assert seen == ["a.mp4", "b.mp4", "c.mp4"]
    assert [r.error is None for r in results] == [True, False, True]
    assert "b.mp4" in results[1].error
    assert len(list((tmp_path / "kp" / "a").glob("a_*_keypoints.json"))) == 3
    assert len(list((tmp_path / "kp" / "c").glob("c_*_keypoints.json"))) == 2
    with pytest.raises(DataError, match="no video files"):
        extract_pose_folder(tmp_path / "kp" / "a", tmp_path / "x", estimator=FakeEstimator())


# ---------------------------------------------------------------------------------------- missing extra, CLI


def test_missing_mediapipe_gives_the_install_hint(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # makes `import mediapipe` fail
    with pytest.raises(PoseExtraNotInstalled, match=r"pip install -e '\.\[pose\]'"):
        load_mediapipe_pose()
    video = write_test_video(tmp_path / "clip.mp4", 2)
    rc = mmad_main(["pose", "extract", str(video), "--out", str(tmp_path / "kp"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "MediaPipe is not installed" in err and ".[pose]" in err
    assert not (tmp_path / "kp").exists()
    rc = mmad_main(["pose", "extract", str(tmp_path), "--out", str(tmp_path / "kp"), "--quiet"])
    assert rc == 2 and ".[pose]" in capsys.readouterr().err


class FakeMediaPipe(FakeEstimator):
    """Stands in for :class:`MediaPipePoseEstimator` (same constructor and context manager)."""

    def __init__(self, **options):
        super().__init__()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def test_cli_folder_mode_lists_skipped_videos(monkeypatch, tmp_path, capsys):
    import mmad.pose as pose

    monkeypatch.setattr(pose, "MediaPipePoseEstimator", FakeMediaPipe)
    monkeypatch.setattr(pose, "load_mediapipe_pose", lambda: None)
    videos = tmp_path / "videos"
    write_test_video(videos / "a.mp4", 5)
    (videos / "b.mp4").write_bytes(b"junk")
    rc = mmad_main(["pose", "extract", str(videos), "--out", str(tmp_path / "kp"), "--stride", "2", "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert "1 of 2 videos done: 3 frames, person in 1 (33.3%)" in out
    assert "b.mp4" in err and "skipped" in err
    assert sorted(p.name for p in (tmp_path / "kp" / "a").glob("*.json")) == [
        f"a_{t:012d}_keypoints.json" for t in (0, 2, 4)]
    rc = mmad_main(["pose", "extract", str(videos / "a.mp4"), "--out", str(tmp_path / "one"), "--quiet"])
    assert rc == 0 and "5 frames, person in 3 (60.0%)" in capsys.readouterr().out
    assert mmad_main(["pose", "extract", str(videos / "b.mp4"), "--out", str(tmp_path / "one"), "--quiet"]) == 2


def test_native_stderr_is_silenced_and_restored(capfd):
    from mmad.pose import _native_stderr_silenced

    with _native_stderr_silenced():
        os.write(2, b"native noise\n")
    os.write(2, b"after\n")
    with _native_stderr_silenced(False):
        os.write(2, b"kept\n")
    err = capfd.readouterr().err
    assert "native noise" not in err and "after" in err and "kept" in err


# ---------------------------------------------------------------------------------------- the real model


def test_mediapipe_model_on_a_micropuppet_clip(tmp_path):
    pytest.importorskip("mediapipe")
    from mmad.synth.generate import RECOGNITION_PRESETS, plan_recognition, render_job

    _, jobs = plan_recognition(RECOGNITION_PRESETS["tiny"], 0, tmp_path / "synth")
    job = jobs[0]
    render_job(job, 0)
    result = extract_pose_video(job.video_path, tmp_path / "kp", progress=False)
    files = sorted((tmp_path / "kp").glob("*_keypoints.json"))
    assert len(files) == result.num_frames == job.num_frames
    predicted = read_openpose_folder(tmp_path / "kp", num_frames=job.num_frames)
    assert predicted.shape == (job.num_frames, 67, 3)
    assert result.detection_rate >= 0.8
    truth = read_openpose_folder(job.keypoint_folder, num_frames=job.num_frames)
    upper = [B25[n] for n in ("Nose", "Neck", "RShoulder", "LShoulder", "RWrist", "LWrist")]
    both = (predicted[:, upper, 2] > 0.5) & (truth[:, upper, 2] > 0)
    error = np.linalg.norm(predicted[:, upper, :2] - truth[:, upper, :2], axis=-1)[both]
    assert both.mean() > 0.5 and np.median(error) < 8.0  # pixels in a 128 x 160 frame
    # only the wheel's model is used: a missing heavy model is an error, never a download
    heavy = Path(load_mediapipe_pose().__file__).resolve().parents[2] / "modules/pose_landmark/pose_landmark_heavy.tflite"
    if not heavy.exists():
        with pytest.raises(DataError, match="model_complexity=2"):
            extract_pose_video(job.video_path, tmp_path / "kp2", model_complexity=2, progress=False)
        assert not list((tmp_path / "kp2").glob("*.json"))


def test_folder_extraction_with_workers_matches_one_process(monkeypatch, tmp_path, capsys):
    import mmad.pose as pose

    monkeypatch.setattr(pose, "MediaPipePoseEstimator", FakeMediaPipe)  # inherited by forked workers
    monkeypatch.setattr(pose, "load_mediapipe_pose", lambda: None)
    videos = tmp_path / "videos"
    for name, frames in (("a", 5), ("b", 3), ("c", 6)):
        write_test_video(videos / f"{name}.mp4", frames)
    (videos / "d.mp4").write_bytes(b"junk")
    rc = mmad_main(["pose", "extract", str(videos), "--out", str(tmp_path / "one"), "--quiet"])
    assert rc == 1
    capsys.readouterr()
    rc = mmad_main(["pose", "extract", str(videos), "--out", str(tmp_path / "two"), "--workers", "2", "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 1 and "3 of 4 videos done: 14 frames" in out and "d.mp4" in err
    for name in "abc":
        one = sorted(p.name for p in (tmp_path / "one" / name).iterdir())
        two = sorted(p.name for p in (tmp_path / "two" / name).iterdir())
        assert one == two and "keypoints.npz" in two
        np.testing.assert_array_equal(read_openpose_folder(tmp_path / "one" / name),
                                      read_openpose_folder(tmp_path / "two" / name))
    assert not (tmp_path / "two" / "d").exists()
    assert not [p for p in (tmp_path / "two").iterdir() if p.name.startswith(".")]


def test_out_that_is_a_file_fails_before_the_model(tmp_path, capsys, monkeypatch):
    import mmad.pose as pose

    def no_model(**options):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(pose, "MediaPipePoseEstimator", no_model)
    monkeypatch.setattr(pose, "load_mediapipe_pose", lambda: None)
    video = write_test_video(tmp_path / "clip.mp4", 2)
    taken = tmp_path / "taken"
    taken.write_text("keep")
    for source in (video, tmp_path):
        assert mmad_main(["pose", "extract", str(source), "--out", str(taken), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "taken" in err and "not a folder" in err
    assert taken.read_text() == "keep"


def test_a_rerun_replaces_the_folder_whole(tmp_path):
    video = write_test_video(tmp_path / "clip.mp4", 6)
    extract_pose_video(video, tmp_path / "kp", estimator=FakeEstimator(), progress=False)
    (tmp_path / "kp" / "clip_000000000099_keypoints.json").write_text("{}")  # left from another run
    extract_pose_video(video, tmp_path / "kp", stride=3, estimator=FakeEstimator(), progress=False)
    assert sorted(p.name for p in (tmp_path / "kp").glob("*.json")) == [
        f"clip_{t:012d}_keypoints.json" for t in (0, 3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "kp"]
