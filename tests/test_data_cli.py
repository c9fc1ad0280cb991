"""``mmad data stats`` and ``mmad data check`` on real files and on tiny folders made here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmad.cli import main
from mmad.datasets import write_ma52_list, write_mma52_csv, write_mmad_json
from mmad.keypoints import write_openpose_frames
from mmad.types import ClipRecord, Segment, VideoRecord
from mmad.video import write_video

torch.set_num_threads(1)

FPS = 30.0


def _video(path: Path, num_frames: int) -> None:
    frames = [np.full((32, 48, 3), 10 * (t % 20), dtype=np.uint8) for t in range(num_frames)]
    write_video(path, frames, FPS)


def _keypoints(folder: Path, video_id: str, num_frames: int, detected: int) -> None:
    body = np.zeros((num_frames, 25, 3))
    body[:detected, :, 0] = 10.0 + np.arange(25)
    body[:detected, :, 1] = 5.0 + np.arange(25)
    body[:detected, :, 2] = 0.9
    write_openpose_frames(folder, video_id, body)


def _mma52_folder(root: Path) -> list[VideoRecord]:
    videos = [
        VideoRecord("train0000", 1.0, FPS, 30, [Segment(3, 0.1, 0.5), Segment(9, 0.3, 0.9)], "train"),
        VideoRecord("val0000", 1.0, FPS, 30, [Segment(40, 0.0, 0.6)], "val"),
        VideoRecord("test0000", 1.0, FPS, 30, [], "test", labeled=False),
    ]
    for v in videos:
        _video(root / "videos" / f"{v.video_id}.mp4", v.num_frames)
        _keypoints(root / "keypoints" / v.video_id, v.video_id, v.num_frames, v.num_frames)
    for subset in ("train", "val", "test"):
        write_mma52_csv([v for v in videos if v.subset == subset], root / f"{subset}.csv")
    write_mmad_json(videos, root / "mmad.json")
    return videos


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


# ----------------------------------------------------------------------------------------------
# stats
# ----------------------------------------------------------------------------------------------


def test_stats_json_on_real_files(capsys, shared_datasets):
    rc, out, _ = run_cli(capsys, "data", "stats", str(shared_datasets / "mma52" / "train.csv"), "--json")
    stats = json.loads(out)
    assert rc == 0 and (stats["videos"], stats["instances"], stats["classes"]) == (4534, 13698, 52)
    rc, out, _ = run_cli(capsys, "data", "stats", str(shared_datasets / "mma52" / "mmad.json"),
                         "--subset", "val", "--json")
    stats = json.loads(out)
    assert (stats["videos"], stats["instances"]) == (1475, 4735)
    rc, out, _ = run_cli(capsys, "data", "stats", str(shared_datasets / "imigue" / "labels_20200831.csv"),
                         "--split", "train", "--json")
    assert json.loads(out)["instances"] == 13935


def test_stats_text_and_bad_input(capsys, tmp_path):
    path = tmp_path / "train.csv"
    write_mma52_csv([VideoRecord("v", 2.0, FPS, 60, [Segment(5, 0.0, 1.0), Segment(7, 0.5, 2.0)], "train")], path)
    rc, out, _ = run_cli(capsys, "data", "stats", str(path))
    assert rc == 0 and "instances  2" in out and "overlapping instances  100.0%" in out and "bowing head" in out

    path.write_text(path.read_text() + "2,w,9,3,5,60,30.0\n")
    rc, out, err = run_cli(capsys, "data", "stats", str(path))
    assert rc == 2 and out == ""
    assert err.strip().count("\n") == 0
    assert str(path) in err and "line 4" in err and "end frame 3 not after start frame 9" in err
    rc, out, err = run_cli(capsys, "data", "stats", str(path), "--skip-bad", "--json")
    assert rc == 0 and json.loads(out)["instances"] == 2 and "line 4" in err

    rc, _, err = run_cli(capsys, "data", "stats", str(tmp_path / "absent.txt"))
    assert rc == 2 and "absent.txt" in err and "file not found" in err


# ----------------------------------------------------------------------------------------------
# check
# ----------------------------------------------------------------------------------------------


def test_check_clean_detection_folder(capsys, tmp_path):
    _mma52_folder(tmp_path)
    rc, out, _ = run_cli(capsys, "data", "check", str(tmp_path), "--report", str(tmp_path / "report.json"))
    assert rc == 0, out
    assert "mma52 layout" in out and "no problems" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] and report["counts"]["videos_readable"] == 3
    assert report["keypoint_coverage_mean"] == pytest.approx(1.0)


def test_check_lists_every_problem(capsys, tmp_path):
    videos = _mma52_folder(tmp_path)
    # segment beyond the end of the video, and annotations that disagree with the file's frames
    videos[0].segments.append(Segment(2, 0.5, 1.5))
    videos[1].num_frames, videos[1].duration = 45, 1.5
    write_mma52_csv(videos[:1], tmp_path / "train.csv")
    write_mma52_csv(videos[1:2], tmp_path / "val.csv")
    (tmp_path / "videos" / "test0000.mp4").write_bytes(b"not a video")
    _keypoints(tmp_path / "keypoints" / "val0000", "val0000", 30, detected=6)
    report_path = tmp_path / "report.json"
    rc, out, _ = run_cli(capsys, "data", "check", str(tmp_path), "--report", str(report_path))
    assert rc == 1
    messages = [p["message"] for p in json.loads(report_path.read_text())["problems"]]
    assert any("outside the video" in m for m in messages)
    assert any("30 frames in the file but 45 in the annotations" in m for m in messages)
    assert any("unreadable" in m or "truncated" in m for m in messages)
    assert any("only 20% of frames" in m for m in messages)
    assert len(messages) == 4 and all(m in out for m in messages)
    rc, _, _ = run_cli(capsys, "data", "check", str(tmp_path), "--skip-bad")
    assert rc == 1  # the test split has no usable video left

    (tmp_path / "test.csv").unlink()
    (tmp_path / "mmad.json").unlink()
    rc, out, _ = run_cli(capsys, "data", "check", str(tmp_path), "--skip-bad")
    assert rc == 1  # train and val each lost their only video too
    rc, _, _ = run_cli(capsys, "data", "check", str(tmp_path), "--no-videos", "--no-keypoints")
    assert rc == 1  # the segment outside the video is found from the annotations alone


def test_check_recognition_folder(capsys, tmp_path):
    clips = [ClipRecord("0001_01_0001", str(tmp_path / "train" / "0001_01_0001.mp4"), 9, 1, "0001", "train"),
             ClipRecord("0001_02_0002", str(tmp_path / "train" / "0001_02_0002.mp4"), 12, 2, "0001", "train"),
             ClipRecord("0002_06_0001", str(tmp_path / "val" / "0002_06_0001.mp4"), 50, 6, "0002", "val")]
    for clip in clips:
        _video(Path(clip.path), 20)
        _keypoints(tmp_path / "keypoints" / clip.split / clip.video_id, clip.video_id, 20, 20)
    write_ma52_list(clips[:2], tmp_path / "train_list_videos.txt")
    write_ma52_list(clips[2:], tmp_path / "val_list_videos.txt")
    rc, out, _ = run_cli(capsys, "data", "check", str(tmp_path))
    assert rc == 0 and "ma52 layout" in out
    Path(clips[1].path).unlink()
    rc, out, _ = run_cli(capsys, "data", "check", str(tmp_path))
    assert rc == 1 and "0001_02_0002.mp4: video file not found" in out
    report_path = tmp_path / "skipped.json"
    rc, out, _ = run_cli(capsys, "data", "check", str(tmp_path), "--skip-bad", "--report", str(report_path))
    report = json.loads(report_path.read_text())
    assert rc == 0 and report["usable"] == {"train": 1, "val": 1}
    assert [p["path"] for p in report["problems"]] == [clips[1].path]


def test_check_user_errors(capsys, tmp_path):
    rc, out, err = run_cli(capsys, "data", "check", str(tmp_path / "absent"))
    assert rc == 2 and "dataset folder not found" in err and out == ""
    rc, _, err = run_cli(capsys, "data", "check", str(tmp_path))
    assert rc == 2 and "no known dataset layout" in err


def test_synth_command_calls_the_generator_and_summarises(capsys, tmp_path, monkeypatch):
    import mmad.synth

    calls = []

    def fake_generate_detection(out, *, preset, seed):
        calls.append((out, preset, seed))
        _mma52_folder(Path(out))

    monkeypatch.setattr(mmad.synth, "generate_detection", fake_generate_detection, raising=False)
    out_dir = tmp_path / "d2"
    rc, out, _ = run_cli(capsys, "data", "synth", "detection", "--preset", "tiny", "--out", str(out_dir), "--seed", "3")
    assert rc == 0 and calls == [(str(out_dir), "tiny", 3)]
    assert f"to {out_dir}" in out and "train 1 videos / 2 instances" in out and "test 1 videos" in out


def test_check_reports_each_video_whose_clocks_disagree(capsys, tmp_path):
    """29 fps in the annotation, 29.97 in the file, same frames: a clock note; other frames as well: a problem."""
    ntsc = 30000 / 1001
    videos = [
        VideoRecord("train0000", 30 / 29.0, 29.0, 30, [Segment(3, 0.1, 0.5)], "train"),  # MMA-52's case
        VideoRecord("val0000", 1.0, 25.0, 25, [Segment(40, 0.0, 0.6)], "val"),  # 25 declared, 30 frames at 30 fps
        VideoRecord("test0000", 1.0, FPS, 30, [Segment(2, 0.2, 0.6)], "test"),
    ]
    for v, fps in zip(videos, (ntsc, FPS, FPS)):
        frames = [np.full((32, 48, 3), 10 * (t % 20), dtype=np.uint8) for t in range(30)]
        write_video(tmp_path / "videos" / f"{v.video_id}.mp4", frames, fps)
        _keypoints(tmp_path / "keypoints" / v.video_id, v.video_id, 30, 30)
    for v in videos:
        write_mma52_csv([v], tmp_path / f"{v.subset}.csv")
    rc, out, _ = run_cli(capsys, "data", "check", str(tmp_path), "--report", str(tmp_path / "r.json"))
    report = json.loads((tmp_path / "r.json").read_text())
    clocks = {c["video_id"]: c for c in report["clocks"]}
    assert set(clocks) == {"train0000", "val0000"}
    assert clocks["train0000"]["clock"] == "annotation" and clocks["train0000"]["decoded_frames"] == 30
    assert clocks["train0000"]["annotation_fps"] == 29.0 and clocks["train0000"]["container_fps"] == pytest.approx(ntsc)
    assert clocks["val0000"]["clock"] == "container"
    assert "train0000: annotation 29 fps / 30 frames, container 29.97 fps / 30 frames, 30 decoded" in out
    messages = [p["message"] for p in report["problems"]]
    assert messages == ["30 frames in the file but 25 in the annotations", "30 fps in the file but 25 in the annotations"]
    assert rc == 1
