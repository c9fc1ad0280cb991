"""Dataset readers and writers: real-file counts, round trips, and every bad-input error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmad.datasets import (
    frame_to_seconds,
    read_detection_annotations,
    read_imigue_csv,
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


def test_imigue_real_counts(shared_datasets):
    path = shared_datasets / "imigue" / "labels_20200831.csv"
    train = read_imigue_csv(path, split="train")
    test = read_imigue_csv(path, split="test")
    assert (len(train), len(test)) == (13935, 4563)
    assert {r.subject for r in train}.isdisjoint({r.subject for r in test})
    every = read_imigue_csv(path)
    assert len(every) == 18498 and len({r.video_id for r in every}) == 18498
    assert {r.label for r in every} == set(range(32))
    assert all(r.t_end > r.t_start and r.path.endswith(".mp4") for r in every)


# ----------------------------------------------------------------------------------------------
# bad input: each error names the file, the line and the problem
# ----------------------------------------------------------------------------------------------

MMA_GOOD = "0,v1,0,30,5,90,30.0\n"


@pytest.mark.parametrize("rows, where, problem", [
    ("0,v1,40,30,5,90,30.0\n", "line 2", "end frame 30 not after start frame 40"),
    ("0,v1,0,30,52,90,30.0\n", "line 2", "unknown class 52"),
    ("0,v1,0,nan,5,90,30.0\n", "line 2", "bad field"),
    ("0,v1,0,30,5,90,nan\n", "line 2", "bad field"),
    (MMA_GOOD + "0,v1,5,30,6,90,30.0\n", "line 3", "duplicated id 0"),
    (MMA_GOOD + "1,v1,5,30,6,91,30.0\n", "line 3", "total_frames=91"),
    (MMA_GOOD + "1,v1,5,30\n", "line 3", "expected 7 fields, found 4"),
    (MMA_GOOD + "1,v2,-3,30,6,91,30.0\n", "line 3", "negative start frame"),
])
def test_mma52_csv_bad_rows(tmp_path, rows, where, problem):
    path = _write(tmp_path / "train.csv", MMA_HEADER + rows)
    _raises(lambda: read_mma52_csv(path), file=path, where=where, problem=problem)
    kept = read_mma52_csv(path, skip_bad=True)
    assert len(kept.problems) == 1 and kept.problems[0].where == where
    assert problem in str(kept.problems[0])


def test_mma52_csv_file_level_errors(tmp_path):
    empty = _write(tmp_path / "empty.csv", "\n\n")
    _raises(lambda: read_mma52_csv(empty), file=empty, where="", problem="empty file")
    wrong = _write(tmp_path / "wrong.csv", "id,video,start,end\n0,v,1,2\n")
    _raises(lambda: read_mma52_csv(wrong), file=wrong, where="line 1", problem="missing video_id")
    with pytest.raises(DataError, match="file not found"):
        read_mma52_csv(tmp_path / "absent.csv")
    with pytest.raises(DataError, match="unknown detection annotation format"):
        read_detection_annotations(_write(tmp_path / "a.txt", "x"))


@pytest.mark.parametrize("entry, where, problem", [
    ({"subset": "train", "duration": 5.0, "actions": [[3, 2.0, 1.0]]}, "video 'v' action 0", "end 1 s not after"),
    ({"subset": "train", "duration": 5.0, "actions": [[60, 1.0, 2.0]]}, "video 'v' action 0", "unknown class 60"),
    ({"subset": "train", "duration": 5.0, "actions": [[3, "a", 2.0]]}, "video 'v' action 0", "finite numbers"),
    ({"subset": "train", "duration": 5.0, "actions": [[3, 1.0]]}, "video 'v' action 0", "expected [class"),
    ({"subset": "train", "actions": []}, "video 'v'", "missing key duration"),
    ({"subset": "train", "duration": -1, "actions": []}, "video 'v'", "bad duration"),
])
def test_mmad_json_bad_entries(tmp_path, entry, where, problem):
    path = _write(tmp_path / "mmad.json", json.dumps({"v": entry}))
    _raises(lambda: read_mmad_json(path), file=path, where=where, problem=problem)
    assert len(read_mmad_json(path, skip_bad=True).problems) == 1


def test_mmad_json_file_level_errors(tmp_path):
    dup = _write(tmp_path / "dup.json", '{"v": {"subset": "train", "duration": 3, "actions": []},'
                                        ' "v": {"subset": "val", "duration": 3, "actions": []}}')
    _raises(lambda: read_mmad_json(dup), file=dup, where="video 'v'", problem="duplicated video id")
    nan = _write(tmp_path / "nan.json", '{"v": {"subset": "train", "duration": 3, "actions": [[1, NaN, 2]]}}')
    _raises(lambda: read_mmad_json(nan), file=nan, where="action 0", problem="finite numbers")
    broken = _write(tmp_path / "broken.json", '{"v": ')
    _raises(lambda: read_mmad_json(broken), file=broken, where="line 1", problem="invalid JSON")
    listed = _write(tmp_path / "list.json", "[1, 2]")
    _raises(lambda: read_mmad_json(listed), file=listed, where="", problem="expected an object of videos")


@pytest.mark.parametrize("text, where, problem", [
    ("0003_01_0001.mp4 9\n0003_01_0002.mp4\n", "line 2", "found 1 field"),
    ("0003_01_0001.mp4 nine\n", "line 1", "not an integer"),
    ("0003_01_0001.mp4 9\n0003_06_0002.mp4 52\n", "line 2", "unknown class 52"),
    ("0003_02_0001.mp4 9\n", "line 1", "disagrees with class 9 (body group 1)"),
    ("0003_01_0001.mp4 9\n0003_01_0001.mp4 9\n", "line 2", "repeated (first on line 1)"),
])
def test_ma52_bad_lines(tmp_path, text, where, problem):
    path = _write(tmp_path / "train_list_videos.txt", text)
    _raises(lambda: read_ma52_list(path), file=path, where=where, problem=problem)
    kept = read_ma52_list(path, skip_bad=True)
    assert len(kept.problems) == 1 and len(kept) == text.count("\n") - 1


def test_ma52_split_root_and_labels(tmp_path):
    path = _write(tmp_path / "lists" / "test_list_videos.txt", "test0000.mp4 0\n0004_05_0007.mp4 0\n")
    hidden = read_ma52_list(path, root=tmp_path / "data")
    assert [r.label for r in hidden] == [None, None] and [r.body_label for r in hidden] == [None, 5]
    assert hidden[1].path == str(tmp_path / "data" / "test" / "0004_05_0007.mp4")
    shown = read_ma52_list(path, split="val", labeled=True, skip_bad=True)
    assert [r.label for r in shown] == [0] and shown[0].split == "val"
    assert "disagrees with class 0" in shown.problems[0].message
    empty = _write(tmp_path / "val_list_videos.txt", "")
    _raises(lambda: read_ma52_list(empty), file=empty, where="", problem="empty file")


IMIGUE_HEADER = "video_id,label_id,start_time,start_frame,end_time,end_frame,class,subject_id\n"


@pytest.mark.parametrize("rows, where, problem", [
    ("7,1,2.0,50,1.0,25,3,2\n", "line 2", "end time 1 not after start time 2"),
    ("7,1,1.0,25,2.0,50,40,2\n", "line 2", "unknown iMiGUE class id 40"),
    ("7,1,,25,2.0,50,3,2\n", "line 2", "bad field"),
    ("7,1,NaN,25,2.0,50,3,2\n", "line 2", "bad field"),
    ("7,1,1.0,25,2.0,50,3,2\n7,1,3.0,75,4.0,100,3,2\n", "line 3", "repeated video_id 7 label_id 1"),
])
def test_imigue_bad_rows(tmp_path, rows, where, problem):
    path = _write(tmp_path / "labels.csv", IMIGUE_HEADER + rows)
    _raises(lambda: read_imigue_csv(path), file=path, where=where, problem=problem)
    assert len(read_imigue_csv(path, skip_bad=True).problems) == 1


def test_imigue_split_and_records(tmp_path):
    rows = "7,1,1.0,25,2.0,50,99,2\n8,1,0.5,12,1.5,37,1,3\n"
    path = _write(tmp_path / "labels.csv", IMIGUE_HEADER + rows)
    train = read_imigue_csv(path, split="train")
    assert [(r.video_id, r.label, r.subject, r.t_start, r.t_end) for r in train] == [("7_1", 31, "2", 1.0, 2.0)]
    assert train[0].path == str(tmp_path / "videos" / "7.mp4")
    assert [r.label for r in read_imigue_csv(path, split="test")] == [0]
    wrong = _write(tmp_path / "wrong.csv", "video_id,class\n1,2\n")
    _raises(lambda: read_imigue_csv(wrong), file=wrong, where="line 1", problem="missing label_id")


# ----------------------------------------------------------------------------------------------
# stats and layout detection
# ----------------------------------------------------------------------------------------------


def test_stats_on_hand_made_videos():
    from mmad.datasets.stats import annotation_stats, overlapping_mask

    videos = [
        # a overlaps b; c only touches b; d stands alone
        VideoRecord("v1", 10.0, 30.0, 300, [Segment(1, 0.0, 2.0), Segment(2, 1.0, 4.0),
                                            Segment(1, 4.0, 5.0), Segment(3, 7.0, 9.0)], "train"),
        VideoRecord("v2", 6.0, 30.0, 180, [Segment(1, 1.0, 2.0)], "train"),
        VideoRecord("t", 6.0, 30.0, 180, [], "test", labeled=False),
    ]
    stats = annotation_stats(videos)
    assert (stats["videos"], stats["labeled_videos"], stats["instances"], stats["classes"]) == (3, 2, 5, 3)
    assert stats["per_class"] == {1: 3, 2: 1, 3: 1}
    assert stats["overlap_fraction"] == pytest.approx(2 / 5)
    assert stats["overlap_or_touch_fraction"] == pytest.approx(3 / 5)
    assert stats["instance_duration"] == {"min": 1.0, "mean": 1.8, "median": 2.0, "max": 3.0}
    assert stats["instances_per_video"]["max"] == 4 and stats["video_duration"]["min"] == 6.0
    assert overlapping_mask([(0.0, 1.0)]).tolist() == [False]


def test_stats_on_clips():
    from mmad.datasets.stats import annotation_stats

    clips = [ClipRecord("7_1", "/d/videos/7.mp4", 3, t_start=0.0, t_end=2.0),
             ClipRecord("7_2", "/d/videos/7.mp4", 3, t_start=1.0, t_end=3.0),
             ClipRecord("8_1", "/d/videos/8.mp4", 5, t_start=0.0, t_end=1.0)]
    stats = annotation_stats(clips)
    assert (stats["videos"], stats["instances"], stats["classes"]) == (2, 3, 2)
    assert stats["overlap_fraction"] == pytest.approx(2 / 3)
    trimmed = annotation_stats([ClipRecord("a", "/d/train/a.mp4", 1), ClipRecord("b", "/d/test/b.mp4", None)])
    assert (trimmed["videos"], trimmed["instances"], trimmed["overlap_fraction"]) == (2, 1, None)


def test_open_dataset_detects_layouts(tmp_path, shared_datasets):
    from mmad.datasets import annotation_kind, open_dataset

    assert open_dataset(shared_datasets / "ma52").layout == "ma52"
    assert open_dataset(shared_datasets / "imigue").splits == ["train", "test"]
    mma = open_dataset(shared_datasets / "mma52")
    assert mma.layout == "mma52" and mma.splits == ["train", "val", "test"]
    val = mma.read("val")
    assert val[0].path == str(shared_datasets / "mma52" / "videos" / "val0000.mp4")
    only_json = tmp_path / "json_only"
    write_mmad_json([VideoRecord("a", 3.0, 30.0, 90, [Segment(1, 0.5, 1.0)], "val")], only_json / "mmad.json")
    assert open_dataset(only_json).splits == ["val"]
    with pytest.raises(DataError, match="no known dataset layout"):
        open_dataset(_write(tmp_path / "x" / "notes.txt", "hi").parent)
    with pytest.raises(DataError, match="dataset folder not found"):
        open_dataset(tmp_path / "absent")
    _raises(lambda: annotation_kind(_write(tmp_path / "other.csv", "a,b\n1,2\n")),
            file=tmp_path / "other.csv", where="line 1", problem="wrong columns")
