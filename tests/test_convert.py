"""`mmad data convert`: MMA-52 ⇄ ActionFormer/OpenTAD JSON and MA-52 ⇄ mmaction2 lists, class names and ids kept."""

from __future__ import annotations

import json

import pytest

from mmad.cli import main
from mmad.datasets.convert import (
    convert_annotations,
    read_activitynet_json,
    read_class_map,
    write_activitynet_json,
)
from mmad.datasets.mma52 import read_mma52_csv
from mmad.errors import DataError
from mmad.taxonomy import MA52_ACTIONS
from mmad.types import Segment, VideoRecord


def _videos():
    return [
        VideoRecord("v0", duration=10.0, fps=30.0, num_frames=300, subset="train",
                    segments=[Segment(9, 0.7667, 2.3667), Segment(40, 1.0, 9.5)]),
        VideoRecord("v1", duration=6.0, fps=29.0, num_frames=174, subset="val",
                    segments=[Segment(0, 0.0, 1.2069)]),
        VideoRecord("v2", duration=8.0, fps=30.0, num_frames=240, subset="test", labeled=False),
    ]


@pytest.mark.parametrize("style", ["actionformer", "opentad"])
def test_activitynet_json_round_trip_keeps_classes_times_and_clock(tmp_path, style):
    path = write_activitynet_json(_videos(), tmp_path / "a.json", style=style)
    data = json.loads(path.read_text())["database"]
    assert data["v0"]["subset"] == "training" and data["v2"]["subset"] == "testing"
    ann = data["v0"]["annotations"][1]
    assert ann["label"] == MA52_ACTIONS[40] and ann["segment"] == [1.0, 9.5]
    if style == "actionformer":
        assert ann["label_id"] == 40 and ann["segment(frames)"] == [30, 285] and data["v1"]["fps"] == 29.0
    else:
        assert "label_id" not in ann and data["v1"]["frame"] == 174
    back = {r.video_id: r for r in read_activitynet_json(path)}
    for rec in _videos():
        got = back[rec.video_id]
        assert got.subset == rec.subset and got.labeled == rec.labeled
        assert got.fps == pytest.approx(rec.fps) and got.num_frames == rec.num_frames
        assert [(s.label, s.t_start, s.t_end) for s in got.segments] == \
               [(s.label, s.t_start, s.t_end) for s in rec.segments]


def test_reads_foreign_variants_and_names_bad_entries(tmp_path):
    names = tmp_path / "category_idx.txt"
    names.write_text("Walk\nSit\nStandUp\n")
    bare = {"vid": {"subset": "Validation", "duration": 4.0, "fps": 25,
                    "annotations": [{"segment": [0.5, 1.5], "label": "Sit"}]}}
    path = tmp_path / "bare.json"
    path.write_text(json.dumps(bare))
    [rec] = read_activitynet_json(path, class_names=read_class_map(names))
    assert rec.subset == "val" and rec.segments == [Segment(1, 0.5, 1.5)] and rec.num_frames == 100
    assert read_activitynet_json(path, class_names=read_class_map(names), subset="train") == []
    bad = {"database": {"vid": {"subset": "training", "duration": 4.0,
                                "annotations": [{"segment": [0.5, 1.5], "label": "Jump"}]}}}
    path.write_text(json.dumps(bad))
    with pytest.raises(DataError, match=r"bare.json: video vid: annotation 0: unknown label 'Jump'"):
        read_activitynet_json(path, class_names=read_class_map(names))
    path.write_text(json.dumps({"database": {"vid": {"subset": "training", "duration": 4.0, "annotations": [
        {"segment": [2.0, 1.0], "label_id": 1}]}}}))
    with pytest.raises(DataError, match="not 0 <= start < end"):
        read_activitynet_json(path)


def test_class_map_files(tmp_path):
    plain = tmp_path / "category_idx.txt"
    plain.write_text("a\nb\n")
    assert read_class_map(plain) == ("a", "b")
    numbered = tmp_path / "label_name.txt"
    numbered.write_text("1\tb\n0\ta\n")
    assert read_class_map(numbered) == ("a", "b")
    numbered.write_text("0\ta\n2\tc\n")
    with pytest.raises(DataError, match="class ids are not"):
        read_class_map(numbered)


@pytest.mark.parametrize("style", ["actionformer", "opentad"])
def test_real_mma52_csv_survives_json_and_back(tmp_path, shared_datasets, style):
    src = shared_datasets / "mma52" / "val.csv"
    assert main(["data", "convert", str(src), str(tmp_path / "val.json"), "--to", style, "--split", "val"]) == 0
    if style == "opentad":
        assert read_class_map(tmp_path / "category_idx.txt") == MA52_ACTIONS
    assert main(["data", "convert", str(tmp_path / "val.json"), str(tmp_path / "val.csv"), "--to", "mma52-csv"]) == 0
    assert (tmp_path / "val.csv").read_text() == src.read_text()


def test_real_mmad_json_to_actionformer_keeps_every_instance(tmp_path, shared_datasets):
    src = shared_datasets / "mma52" / "mmad.json"
    out = tmp_path / "af.json"
    convert_annotations(src, out, to="actionformer", subset="val")
    original = read_mma52_csv(shared_datasets / "mma52" / "val.csv")
    converted = {r.video_id: r for r in read_activitynet_json(out)}
    assert len(converted) == len(original) == 1475
    for rec in original:
        got = converted[rec.video_id]
        assert sorted((s.label, s.t_start, s.t_end) for s in got.segments) == \
               sorted((s.label, s.t_start, s.t_end) for s in rec.segments)


def test_ma52_list_to_mmaction2_and_back(tmp_path):
    src = tmp_path / "val_list_videos.txt"
    src.write_text("0001_01_0001.mp4 5\n0002_02_0003.mp4 12\n")
    out = tmp_path / "mm.txt"
    assert main(["data", "convert", str(src), str(out), "--to", "mmaction2"]) == 0
    assert out.read_text() == "val/0001_01_0001.mp4 5\nval/0002_02_0003.mp4 12\n"
    back = tmp_path / "back_list_videos.txt"
    assert main(["data", "convert", str(out), str(back), "--to", "ma52"]) == 0
    assert back.read_text() == src.read_text()


def test_bad_conversions_are_one_line_errors(tmp_path, capsys):
    src = tmp_path / "list.txt"
    src.write_text("clips/0001_02_0001.mp4 5\n")  # body group 02 but class 5 is in group 1
    assert main(["data", "convert", str(src), str(tmp_path / "x.txt"), "--to", "ma52"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "line 1" in err and "disagrees" in err
    assert main(["data", "convert", str(src), str(tmp_path / "x.json"), "--to", "actionformer"]) == 2
    assert "cannot convert mmaction2" in capsys.readouterr().err
    assert main(["data", "convert", str(src), str(tmp_path / "x.json"), "--to", "coco"]) == 2
    assert "unknown output format 'coco'" in capsys.readouterr().err
    assert not (tmp_path / "x.txt").exists() and not (tmp_path / "x.json").exists()
