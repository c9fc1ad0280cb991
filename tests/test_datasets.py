"""Dataset readers and writers: real-file counts, round trips, and every bad-input error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmad.datasets import (
    frame_to_seconds,
    read_detection_annotations,
    read_ma52_list,
    read_mma52_csv,
    read_mmad_json,
    records_from_frame,
    records_to_frame,
    seconds_to_frame,
    write_ma52_list,
    write_mma52_csv,
    write_mmad_json,
)
from mmad.errors import DataError
from mmad.types import ClipRecord, Segment, VideoRecord

MMA_HEADER = "id,video_id,start_frame,end_frame,class,total_frames,fps\n"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _raises(fn, *, file: Path, where: str, problem: str) -> DataError:
    with pytest.raises(DataError) as info:
        fn()
    message = str(info.value)
    assert str(file) in message
    assert where in message
    assert problem in message
    return info.value


# ----------------------------------------------------------------------------------------------
# real annotation files
# ----------------------------------------------------------------------------------------------


def test_ma52_real_counts(shared_datasets):
    counts = {}
    for split in ("train", "val", "test"):
        records = read_ma52_list(shared_datasets / "ma52" / f"{split}_list_videos.txt")
        counts[split] = len(records)
        assert all(r.split == split for r in records)
        if split == "test":
            assert all(r.label is None and not r.labeled for r in records)
        else:
            assert all(r.labeled and r.subject is not None for r in records)
    assert counts == {"train": 11250, "val": 5586, "test": 5586}


def test_mma52_real_counts_and_json_agrees(shared_datasets):
    root = shared_datasets / "mma52"
    expected = {"train": (4534, 13698), "val": (1475, 4735)}
    by_id = {}
    for subset, (n_videos, n_instances) in expected.items():
        records = read_mma52_csv(root / f"{subset}.csv")
        assert (len(records), sum(len(r.segments) for r in records)) == (n_videos, n_instances)
        from_json = read_mmad_json(root / "mmad.json", subset=subset)
        assert (len(from_json), sum(len(r.segments) for r in from_json)) == (n_videos, n_instances)
        by_id.update({r.video_id: r for r in records})
        # seconds in the JSON are exactly the CSV frames converted; fps is recovered too
        assert all(by_id[r.video_id] == r for r in from_json)
    test = read_mma52_csv(root / "test.csv")
    assert len(test) == 519 and not any(r.labeled or r.segments for r in test)
    test_json = read_mmad_json(root / "mmad.json", subset="test")
    assert len(test_json) == 519 and not any(r.labeled for r in test_json)


def test_official_files_round_trip_exactly(shared_datasets, tmp_path):
    root = shared_datasets / "mma52"
    everything = []
    for subset in ("train", "val", "test"):
        records = read_mma52_csv(root / f"{subset}.csv")
        everything += records
        out = write_mma52_csv(records, tmp_path / f"{subset}.csv")
        assert out.read_text().split() == (root / f"{subset}.csv").read_text().split()
    write_mmad_json(everything, tmp_path / "mmad.json")
    assert json.loads((tmp_path / "mmad.json").read_text()) == json.loads((root / "mmad.json").read_text())
    for split in ("train", "test"):
        source = shared_datasets / "ma52" / f"{split}_list_videos.txt"
        out = write_ma52_list(read_ma52_list(source), tmp_path / source.name)
        assert out.read_text().split() == source.read_text().split()


# ----------------------------------------------------------------------------------------------
# round trips on made-up records
# ----------------------------------------------------------------------------------------------


def test_frames_seconds_convention():
    assert frame_to_seconds(23, 30.0) == 0.7667
    assert frame_to_seconds(20, 29.0) == 0.6897
    for fps in (29.0, 30.0, 25.0):
        assert all(seconds_to_frame(frame_to_seconds(f, fps), fps) == f for f in range(0, 2000))


def test_mma52_writers_round_trip(tmp_path):
    videos = [
        VideoRecord("a", duration=frame_to_seconds(300, 29.0), fps=29.0, num_frames=300,
                    segments=[Segment(3, frame_to_seconds(5, 29.0), frame_to_seconds(100, 29.0)),
                              Segment(40, frame_to_seconds(50, 29.0), frame_to_seconds(290, 29.0))],
                    subset="train"),
        VideoRecord("b", duration=5.0, fps=30.0, num_frames=150, segments=[Segment(51, 0.0, 5.0)], subset="train"),
        VideoRecord("c", duration=4.0, fps=30.0, num_frames=120, subset="test", labeled=False),
    ]
    write_mma52_csv(videos[:2], tmp_path / "train.csv")
    assert read_mma52_csv(tmp_path / "train.csv") == videos[:2]
    write_mmad_json(videos, tmp_path / "mmad.json")
    assert read_mmad_json(tmp_path / "mmad.json") == videos
    assert read_detection_annotations(tmp_path / "mmad.json", subset="test") == videos[2:]
    write_mma52_csv(videos[2:], tmp_path / "test.csv")
    assert read_mma52_csv(tmp_path / "test.csv") == videos[2:]
    # a labelled test split with real instances stays labelled
    labelled_test = [VideoRecord("d", 4.0, 30.0, 120, [Segment(1, 0.5, 2.0), Segment(2, 1.0, 3.0)], "test")]
    write_mma52_csv(labelled_test, tmp_path / "test.csv")
    assert read_mma52_csv(tmp_path / "test.csv")[0].labeled
    with pytest.raises(ValueError, match="no segments"):
        write_mma52_csv([VideoRecord("e", 4.0, 30.0, 120, [], "train")], tmp_path / "x.csv")
    with pytest.raises(ValueError, match="duplicated"):
        write_mmad_json([videos[0], videos[0]], tmp_path / "x.json")
    assert not list(tmp_path.glob(".*tmp"))


def test_frame_interop():
    videos = [VideoRecord("a", 10.0, 30.0, 300, [Segment(1, 0.5, 2.0), Segment(2, 1.0, 3.0)], "val"),
              VideoRecord("b", 8.0, 30.0, 240, [], "val"),
              VideoRecord("t", 8.0, 30.0, 240, [], "test", labeled=False)]
    frame = records_to_frame(videos)
    assert list(frame.columns) == ["video_id", "t_start", "t_end", "label"]
    assert len(frame) == 2 and set(frame.video_id) == {"a"}
    back = records_from_frame(frame, videos=videos[:2])
    assert back == videos[:2]
    loose = records_from_frame(frame)
    assert loose[0].duration == 3.0 and loose[0].num_frames == 90
    with pytest.raises(DataError, match="not among"):
        records_from_frame(frame, videos=videos[1:2])


def test_ma52_writer_round_trip(tmp_path):
    clips = [ClipRecord("0007_02_0001", str(tmp_path / "train" / "0007_02_0001.mp4"), 12, 2, "0007", "train"),
             ClipRecord("0007_06_0002", str(tmp_path / "train" / "0007_06_0002.mp4"), 50, 6, "0007", "train")]
    write_ma52_list(clips, tmp_path / "train_list_videos.txt")
    assert read_ma52_list(tmp_path / "train_list_videos.txt") == clips
    hidden = [ClipRecord("0009_05_0003", str(tmp_path / "test" / "0009_05_0003.mp4"), None, 5, "0009", "test")]
    write_ma52_list(hidden, tmp_path / "test_list_videos.txt")
    assert (tmp_path / "test_list_videos.txt").read_text() == "0009_05_0003.mp4 0\n"
    assert read_ma52_list(tmp_path / "test_list_videos.txt") == hidden
