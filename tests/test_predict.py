"""``mmad detect`` on raw video: the sampled-frame pipeline, what the video really holds, and user mistakes.

Tiny generated videos (PyAV), a randomly initialised tiny rgb+pose recognizer and an untrained head
(saved as checkpoints); pose comes from a fake estimator or from OpenPose JSON folders, so MediaPipe
is not needed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mmad.cli import main
from mmad.errors import DataError
from mmad.video import probe, write_video

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
W, H, FPS, FRAMES = 96, 64, 10, 48


def run_cli(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def landmarks(shift: float = 0.0) -> np.ndarray:
    """33 MediaPipe landmarks of an upright person in the middle of the frame (normalised x, y, z, visibility)."""
    rng = np.random.default_rng(0)
    lm = np.zeros((33, 4), np.float32)
    lm[:, 0] = 0.5 + 0.25 * (rng.random(33) - 0.5) + shift
    lm[:, 1] = np.linspace(0.1, 0.9, 33)
    lm[:, 3] = 0.9
    return lm


class FakePose:
    """A person in the frames whose top-left block is bright (frame brightness tells the frame apart)."""

    def __init__(self):
        self.shapes = []

    def __call__(self, frame):
        self.shapes.append(frame.shape)
        if frame[:4, :4].mean() < 100:
            return None
        return landmarks(0.01 * (frame[:4, :4].mean() % 7))

    def close(self):
        pass


def person_video(path, num_frames=FRAMES, person=lambda t: True, size=(W, H), rotation=0, fps=FPS):
    """Frames with moving texture; the top-left block is bright where ``person(t)``."""
    rng = np.random.default_rng(1)
    frames = []
    for t in range(num_frames):
        frame = rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8)
        frame[:8, :8] = 230 if person(t) else 0
        frames.append(frame)
    return write_video(path, frames, fps=fps, rotation=rotation)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from detection.config import DetectionConfig
    from detection.task import build_detector
    from mmad.config import from_dict, to_dict
    from recognition.config import RecognitionConfig
    from recognition.model import build_model

    base = tmp_path_factory.mktemp("predict")
    rcfg = from_dict(RecognitionConfig, {
        "model": {"num_classes": 52, "dim": 16, "backbone": {"arch": "resnet18"},
                  "sem": {"roi_size": 2, "pose_hidden": 16},
                  "transformer": {"num_layers": 1, "num_heads": 2, "ffn_dim": 32}, "head": {"hidden_dim": 16}},
        "data": {"num_frames": 4, "frame_stride": 4, "image_size": 48, "resize_short_side": 48},
    })
    torch.manual_seed(0)
    recognizer = base / "recognizer.pt"
    torch.save({"model": build_model(rcfg.model).state_dict(), "ema": None, "config": to_dict(rcfg)}, recognizer)
    dcfg = from_dict(DetectionConfig, {
        "model": {"feature_dim": 512 + 16, "num_classes": 52, "embed_dim": 16, "num_levels": 3,
                  "num_stem_layers": 1, "num_heads": 2, "head_convs": 1},
        "encoder": {"stride_frames": 2, "chunk_frames": 8, "device": "cpu"},
        "postprocess": {"max_segments": 20},
    })
    head = build_detector(dcfg)
    with torch.no_grad():  # an untrained head whose scores reach well above the threshold
        for m in head.modules():
            if isinstance(m, torch.nn.Conv1d) and m.out_channels == 52:
                m.bias.fill_(0.0)
    detector = base / "detector.pt"
    torch.save({"model": head.state_dict(), "ema": None, "config": to_dict(dcfg)}, detector)
    return {"recognizer": recognizer, "detector": detector, "base": base}


def detect(models, video, **kw):
    from detection.predict import detect_video

    kw.setdefault("estimator", FakePose() if kw.get("keypoints") is None else None)
    return detect_video(video, recognizer=models["recognizer"], detector=models["detector"], device="cpu", **kw)


def keypoint_folder(video, out, **kw):
    from mmad.pose import extract_pose_video

    extract_pose_video(video, out, estimator=FakePose(), progress=False, **kw)
    return out


# ------------------------------------------------------------------------------------------- the pipeline


def test_sampled_pipeline_equals_the_feature_extraction_path(models, tmp_path):
    """With a keypoint folder, detections equal those of ``detection extract``'s encoder on the same video."""
    from detection.postprocess import postprocess_detections
    from detection.predict import _detect_steps, build_encoder, load_detector
    from detection.timeline import Timeline

    video = person_video(tmp_path / "v.mp4")
    folder = keypoint_folder(video, tmp_path / "kp")
    result = detect(models, video, keypoints=folder)
    assert len(result.detections) > 0
    model, cfg = load_detector(models["detector"])
    encoder = build_encoder(models["recognizer"], cfg, device=torch.device("cpu"))
    features, _ = encoder.encode_video(video, folder)
    person = np.ones(features.shape[0], dtype=bool)
    expected = _detect_steps(model, cfg, torch.from_numpy(features.astype(np.float32)), person, encoder=encoder,
                             fps=FPS, duration=FRAMES / FPS, video=video, score_threshold=None, max_detections=None,
                             timeline_cls=Timeline, postprocess=postprocess_detections, device="cpu")
    got = result.detections
    assert len(got) == len(expected)
    np.testing.assert_allclose(got[["t_start", "t_end", "score"]].to_numpy(float),
                               expected[["t_start", "t_end", "score"]].to_numpy(float), atol=1e-5)
    assert got["label"].tolist() == expected["label"].astype(int).tolist()
    report = result.report
    assert (report.frames_decoded, report.sampled, report.with_person) == (FRAMES, FRAMES // 2, FRAMES // 2)
    assert not report.warnings


def test_pose_runs_only_on_sampled_frames_and_the_track_is_kept(models, tmp_path):
    video = person_video(tmp_path / "v.mp4")
    fake = FakePose()
    result = detect(models, video, estimator=fake)
    assert len(fake.shapes) == FRAMES // 2  # stride_frames = 2: frames 1, 3, 5, ...
    assert result.keypoints.frames.tolist() == list(range(1, FRAMES, 2))
    files = __import__("detection.predict", fromlist=["x"]).write_detections(result, tmp_path / "out")
    from mmad.pose import read_keypoint_track

    back = read_keypoint_track(files["keypoints"])
    np.testing.assert_array_equal(back.keypoints, result.keypoints.keypoints)
    assert (back.width, back.height, back.num_frames) == (W, H, FRAMES)
    # the kept track is a valid --keypoints input and gives the same detections
    again = detect(models, video, keypoints=files["keypoints"])
    pd.testing.assert_frame_equal(again.detections, result.detections)


def test_no_person_means_no_detections_and_a_warning(models, tmp_path):
    video = person_video(tmp_path / "black.mp4", person=lambda t: False)
    result = detect(models, video)
    assert len(result.detections) == 0
    assert result.report.with_person == 0
    assert any("no person found" in w for w in result.report.warnings)
    # without a person the same head on the same features would detect: the masking is what stops it
    unmasked = detect(models, person_video(tmp_path / "p.mp4"))
    assert len(unmasked.detections) > 0


def test_person_absent_for_a_stretch_gets_no_detections_there(models, tmp_path):
    video = person_video(tmp_path / "half.mp4", num_frames=96, person=lambda t: t < 40)
    result = detect(models, video)
    report = result.report
    assert report.sampled == 48 and report.with_person == 20
    assert len(result.detections) > 0
    # a detection needs a person in at least half of its steps: none lies mostly past 4.0 s
    centres = (result.detections.t_start + result.detections.t_end) / 2
    assert (centres < 4.0 + 0.6).all(), result.detections
    assert result.to_dict()["person_fraction"] == pytest.approx(20 / 48, abs=1e-3)


def test_score_threshold_and_cap(models, tmp_path):
    video = person_video(tmp_path / "v.mp4")
    base = detect(models, video)
    assert len(base.detections) > 3
    capped = detect(models, video, max_detections=3)
    assert len(capped.detections) == 3
    cut = float(base.detections.score.median())
    high = detect(models, video, score_threshold=cut)
    assert len(high.detections) > 0 and (high.detections.score >= cut).all()
    assert len(high.detections) < len(base.detections)


# ------------------------------------------------------------------------------------------- what the video holds


def truncated(video: Path, out: Path, keep: float = 0.5) -> Path:
    data = video.read_bytes()
    out.write_bytes(data[: int(len(data) * keep)])
    return out


def test_truncated_video_detects_only_where_frames_were_seen(models, tmp_path):
    video = person_video(tmp_path / "long.mkv", num_frames=120)  # Matroska: the header comes first
    cut = truncated(video, tmp_path / "cut.mkv", 0.5)
    info = probe(cut)
    assert info.num_frames == 120  # the header still announces the whole video
    result = detect(models, cut)
    report = result.report
    assert 0 < report.frames_decoded < 120
    assert any(f"decoded {report.frames_decoded} of the 120 frames" in w for w in report.warnings)
    assert result.seconds_seen == pytest.approx(report.frames_decoded / FPS)
    assert (result.detections.t_end <= result.seconds_seen + 1e-6).all()
    rc, out, err = run_cli(["detect", cut, "--keypoints", keypoint_folder(video, tmp_path / "kp"),
                            "--recognizer", models["recognizer"], "--detector", models["detector"],
                            "--out", tmp_path / "o", "--device", "cpu", "--strict"])
    assert rc == 2 and err.count("\n") == 1 and "cut.mkv" in err and "decoded" in err
    assert "Traceback" not in err and not (tmp_path / "o").exists()


def test_one_frame_video_is_too_short(models, tmp_path):
    video = person_video(tmp_path / "one.mp4", num_frames=1)
    with pytest.raises(DataError, match=r"one.mp4: too short: 1 frame\(s\) decoded"):
        detect(models, video)


@pytest.mark.parametrize("case", ["zero_bytes", "audio_only", "text"])
def test_unusable_videos_fail_with_one_line(models, tmp_path, case):
    path = tmp_path / f"{case}.mp4"
    if case == "zero_bytes":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("not a video\n" * 50)
    else:
        import av

        with av.open(str(path), "w") as container:
            stream = container.add_stream("aac", rate=16000)
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    rc, out, err = run_cli(["detect", path, "--keypoints", tmp_path, "--recognizer", models["recognizer"],
                            "--detector", models["detector"], "--out", tmp_path / "o", "--device", "cpu"])
    assert rc == 2, (out, err)
    assert err.count("\n") == 1 and path.name in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_rotated_phone_video_is_processed_upright(models, tmp_path):
    video = person_video(tmp_path / "phone.mp4", size=(96, 64), rotation=90)
    info = probe(video)
    assert (info.width, info.height, info.rotation) == (64, 96, 90)
    class SeesBottomLeft(FakePose):  # the bright block, top-left when stored, is bottom-left upright
        def __call__(self, frame):
            return super().__call__(np.ascontiguousarray(frame[::-1]))

    fake = SeesBottomLeft()
    result = detect(models, video, estimator=fake)
    assert set(fake.shapes) == {(96, 64, 3)}  # portrait, as shown
    assert result.report.with_person == result.report.sampled > 0
    assert detect(models, video).report.with_person == 0  # the stored (sideways) corner is empty
    # the bright block, top-left when stored, is bottom-left when upright
    from mmad.video import read_frames

    frame = read_frames(video, [0])[0]
    assert frame[-8:, :8].mean() > 200 and frame[:8, :8].mean() < 100


def test_variable_frame_rate_video(models, tmp_path):
    import av

    path = tmp_path / "vfr.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.time_base = __import__("fractions").Fraction(1, 1000)
        pts = 0
        for t in range(40):
            frame = np.full((H, W, 3), 40, np.uint8)
            frame[:8, :8] = 230
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = pts, stream.codec_context.time_base
            pts += 50 if t % 2 else 150  # 20 fps and ~6.7 fps alternating
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    result = detect(models, path)
    assert result.report.frames_decoded == 40
    assert (result.detections.t_end <= result.seconds_seen + 1e-6).all()


# ------------------------------------------------------------------------------------------- keypoints that do not fit


def test_keypoints_of_another_video_are_refused(models, tmp_path):
    video = person_video(tmp_path / "v.mp4")
    big = person_video(tmp_path / "big.mp4", size=(320, 192))
    folder = keypoint_folder(big, tmp_path / "kp_big")
    rc, _, err = run_cli(["detect", video, "--keypoints", folder, "--recognizer", models["recognizer"],
                          "--detector", models["detector"], "--out", tmp_path / "o", "--device", "cpu"])
    assert rc == 2 and err.count("\n") == 1 and "320x192" in err and "96x64" in err
    (folder / "keypoints.npz").unlink()  # a plain OpenPose folder: judged by where its points lie
    rc, _, err = run_cli(["detect", video, "--keypoints", folder, "--recognizer", models["recognizer"],
                          "--detector", models["detector"], "--out", tmp_path / "o", "--device", "cpu"])
    assert rc == 2 and err.count("\n") == 1 and "outside the 96x64 frame" in err
    assert not (tmp_path / "o").exists()


def test_keypoints_covering_fewer_frames_warn_and_count_as_no_person(models, tmp_path):
    long = person_video(tmp_path / "v.mp4", num_frames=96)
    short = person_video(tmp_path / "short.mp4", num_frames=30)
    folder = keypoint_folder(short, tmp_path / "kp")
    (folder / "keypoints.npz").unlink()
    result = detect(models, long, keypoints=folder)
    assert any("keypoints cover frames 0-29 of the 96" in w for w in result.report.warnings)
    assert result.report.with_person == 15
    centres = (result.detections.t_start + result.detections.t_end) / 2
    assert (centres < 3.0 + 0.6).all()
    rc, _, err = run_cli(["detect", long, "--keypoints", folder, "--recognizer", models["recognizer"],
                          "--detector", models["detector"], "--out", tmp_path / "o", "--device", "cpu", "--strict"])
    assert rc == 2 and err.count("\n") == 1 and "keypoints cover" in err


def test_interrupted_pose_extract_leaves_no_folder_and_a_partial_one_is_refused(models, tmp_path):
    from mmad.pose import extract_pose_video

    video = person_video(tmp_path / "v.mp4")

    class Dies(FakePose):
        def __call__(self, frame):
            if len(self.shapes) == 10:
                raise KeyboardInterrupt
            return super().__call__(frame)

    with pytest.raises(KeyboardInterrupt):
        extract_pose_video(video, tmp_path / "kp", estimator=Dies(), progress=False)
    assert not (tmp_path / "kp").exists() and not list(tmp_path.glob(".kp*"))
    # a staging folder left by a killed run (SIGKILL cannot be caught): refused by detect, removed by the next run
    partial = tmp_path / ".kp.partial-x1"
    keypoint_folder(video, tmp_path / "full")
    os.rename(tmp_path / "full", partial)
    rc, _, err = run_cli(["detect", video, "--keypoints", partial, "--recognizer", models["recognizer"],
                          "--detector", models["detector"], "--out", tmp_path / "o", "--device", "cpu"])
    assert rc == 2 and err.count("\n") == 1 and "interrupted" in err
    keypoint_folder(video, tmp_path / "kp")
    assert not partial.exists() and (tmp_path / "kp" / "keypoints.npz").is_file()


# ------------------------------------------------------------------------------------------- the command line


def test_bad_out_and_device_fail_before_any_work(models, tmp_path, monkeypatch):
    import detection.predict as predict

    def no_work(*a, **k):
        raise AssertionError("work started")

    monkeypatch.setattr(predict, "detect_video", no_work)
    video = person_video(tmp_path / "v.mp4")
    taken = tmp_path / "taken.txt"
    taken.write_text("keep me")
    args = ["detect", video, "--keypoints", tmp_path, "--recognizer", models["recognizer"],
            "--detector", models["detector"]]
    rc, _, err = run_cli([*args, "--out", taken])
    assert rc == 2 and err.count("\n") == 1 and "taken.txt" in err and "not a folder" in err
    assert taken.read_text() == "keep me"
    rc, _, err = run_cli([*args, "--out", taken / "sub"])
    assert rc == 2 and err.count("\n") == 1 and "taken.txt" in err
    if not torch.cuda.is_available():
        rc, _, err = run_cli([*args, "--out", tmp_path / "o", "--device", "cuda"])
        assert rc == 2 and err.count("\n") == 1 and "no CUDA GPU" in err
    rc, _, err = run_cli([*args, "--out", tmp_path / "o", "--device", "nonsense"])
    assert rc == 2 and err.count("\n") == 1 and "nonsense" in err
    assert not (tmp_path / "o").exists()


def test_cli_reports_video_length_person_share_and_stage_times(models, tmp_path):
    video = person_video(tmp_path / "v.mp4")
    folder = keypoint_folder(video, tmp_path / "kp")
    rc, out, err = run_cli(["detect", video, "--keypoints", folder, "--recognizer", models["recognizer"],
                            "--detector", models["detector"], "--out", tmp_path / "o", "--device", "cpu",
                            "--max-detections", "4"])
    assert rc == 0, err
    assert "4.80 s of video (48 frames, 24 sampled), a person in 100% of the sampled frames" in out
    assert "4 detection(s):" in out and "took " in out and "decode" in out and "encode" in out
    record = json.loads((tmp_path / "o" / "v.json").read_text())
    assert len(record["detections"]) == 4 and record["seconds_seen"] == pytest.approx(4.8)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["v.csv", "v.json", "v_timeline.png"]


def test_sigterm_during_detect_leaves_nothing_behind(models, tmp_path):
    """Pose estimated in a subprocess (a slow fake model); SIGTERM mid-way: status 130, no files, no temp folders."""
    video = person_video(tmp_path / "v.mp4", num_frames=200)
    started = tmp_path / "started"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        import numpy as np
        import mmad.pose as pose

        class Slow:
            def __init__(self, **kw):
                pass
            def __call__(self, frame):
                Path({str(started)!r}).touch()
                time.sleep(0.05)
                lm = np.zeros((33, 4), np.float32); lm[:, :2] = 0.5; lm[:, 3] = 0.9
                return lm
            def close(self):
                pass

        pose.MediaPipePoseEstimator = Slow
        pose.load_mediapipe_pose = lambda: None
        from mmad.cli import main
        sys.exit(main(sys.argv[1:]))
    """)
    env = {**os.environ, "TMPDIR": str(scratch), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script, "detect", str(video), "--recognizer",
                             str(models["recognizer"]), "--detector", str(models["detector"]), "--out",
                             str(tmp_path / "o"), "--device", "cpu", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    deadline = time.time() + 120
    while not started.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "interrupted"
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())
    assert not list(scratch.iterdir())


def test_keypoint_track_at_fills_from_the_nearest_looked_at_frame():
    from mmad.pose import KeypointTrack

    kp = np.arange(3 * 2 * 3, dtype=np.float32).reshape(3, 2, 3) + 1
    track = KeypointTrack(frames=np.array([0, 4, 8]), keypoints=kp)
    got = track.at([0, 1, 2, 3, 6, 9, 11], max_gap=1)
    np.testing.assert_array_equal(got[0], kp[0])
    np.testing.assert_array_equal(got[1], kp[0])
    assert not got[2].any()  # two frames from both neighbours
    np.testing.assert_array_equal(got[3], kp[1])
    assert not got[4].any()
    np.testing.assert_array_equal(got[5], kp[2])
    assert not got[6].any()


def test_damaged_keypoint_cache_is_one_line(tmp_path):
    from mmad.pose import read_keypoint_track

    bad = tmp_path / "k.npz"
    bad.write_bytes(b"PK\x03\x04 junk")
    with pytest.raises(DataError, match="k.npz"):
        read_keypoint_track(bad)


def test_wrong_or_damaged_checkpoints_are_one_line(models, tmp_path):
    import shutil

    from detection.features import checkpoint_hash

    video = person_video(tmp_path / "v.mp4")
    folder = keypoint_folder(video, tmp_path / "kp")
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    noise = tmp_path / "noise.pt"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    base = ["detect", video, "--keypoints", folder, "--out", tmp_path / "o", "--device", "cpu"]
    for recognizer, detector, expect in ((text, models["detector"], "notes.pt"),
                                         (models["recognizer"], noise, "noise.pt"),
                                         (models["recognizer"], models["recognizer"], "recognizer.pt"),
                                         (models["detector"], models["detector"], "detector.pt")):
        rc, _, err = run_cli([*base, "--recognizer", recognizer, "--detector", detector])
        assert rc == 2 and err.count("\n") == 1 and expect in err and "Traceback" not in err, err
    # a detector trained on another recognizer: the message names the checkpoint that fits, when it is beside
    from mmad.config import to_dict

    state = torch.load(models["detector"], weights_only=True)
    state["config"]["data"]["encoder_hash"] = checkpoint_hash(models["recognizer"])
    pinned = tmp_path / "pinned.pt"
    torch.save(state, pinned)
    ckpts = tmp_path / "rec"
    ckpts.mkdir()
    shutil.copy(models["recognizer"], ckpts / "last.pt")
    other = torch.load(models["recognizer"], weights_only=True)
    other["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in other["model"].items()}
    torch.save(other, ckpts / "best.pt")
    rc, _, err = run_cli([*base, "--recognizer", ckpts / "best.pt", "--detector", pinned])
    assert rc == 2 and err.count("\n") == 1 and f"--recognizer {ckpts / 'last.pt'}" in err
    del to_dict


def test_sampled_mediapipe_track_is_close_to_the_every_frame_track(request, tmp_path):
    """With the real model: pose on every 2nd frame only lands within a few pixels of pose on every frame."""
    pytest.importorskip("mediapipe")
    models = request.getfixturevalue("models")
    from mmad.pose import extract_pose_video, read_keypoint_track
    from mmad.synth.generate import RECOGNITION_PRESETS, plan_recognition, render_job

    _, jobs = plan_recognition(RECOGNITION_PRESETS["tiny"], 0, tmp_path / "synth")
    render_job(jobs[0], 0)
    video = Path(jobs[0].video_path)
    extract_pose_video(video, tmp_path / "every", progress=False)
    every = read_keypoint_track(tmp_path / "every")
    from detection.predict import detect_video

    result = detect_video(video, recognizer=models["recognizer"], detector=models["detector"], device="cpu")
    sampled = result.keypoints
    assert result.report.person_fraction >= 0.8
    reference = every.at(sampled.frames)
    upper = [0, 1, 2, 5, 15, 16]  # nose, neck, shoulders, eyes
    both = (sampled.keypoints[:, upper, 2] > 0.5) & (reference[:, upper, 2] > 0.5)
    error = np.linalg.norm(sampled.keypoints[:, upper, :2] - reference[:, upper, :2], axis=-1)[both]
    assert both.mean() > 0.5 and np.median(error) < 4.0  # pixels in a 128 x 160 frame
