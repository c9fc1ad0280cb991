"""The recognition clip dataset on a tiny MicroPuppet folder: shapes, boxes, flips, views, sources, errors."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from mmad.config import from_dict
from mmad.datasets import open_dataset
from mmad.datasets.layout import DatasetInfo
from mmad.errors import DataError
from mmad.keypoints import get_layout, read_openpose_folder
from mmad.types import ClipRecord
from mmad.video import probe
from recognition.config import RecognitionConfig
from recognition.data import (
    ClipDataset,
    build_dataset,
    build_datasets,
    clear_pose_cache,
    clip_frame_range,
    dense_view_indices,
    segment_view_indices,
)

torch.set_num_threads(1)
ENTITIES = ["head", "face", "left_hand", "right_hand", "torso", "lower_body"]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    from mmad.synth import generate_recognition

    return generate_recognition(tmp_path_factory.mktemp("micropuppet") / "recognition", preset="tiny", seed=0)


def make_cfg(root: Path, **data) -> RecognitionConfig:
    base = {"root": str(root), "num_frames": 4, "frame_stride": 3, "image_size": 64, "resize_short_side": 72}
    base.update(data)
    return from_dict(RecognitionConfig, {"model": {"dim": 32, "transformer": {"num_heads": 4}}, "data": base})


def test_build_datasets_shapes_and_labels(tiny_root):
    train, val = build_datasets(make_cfg(tiny_root))
    assert len(train) == 14 and len(val) == 7
    for dataset, index in ((train, 3), (val, 0)):
        s = dataset[index]
        record = dataset.records[index]
        assert s.frames.shape == (4, 3, 64, 64) and s.frames.dtype == torch.float32
        assert 0.0 <= float(s.frames.min()) and float(s.frames.max()) <= 1.0  # the model normalises
        assert s.keypoints.shape == (4, 67, 3)
        assert s.boxes.shape == (4, 6, 4) and s.entity_conf.shape == (4, 6)
        assert s.label == record.label and s.body_label == record.body_label
        assert s.video_id == record.video_id
        # boxes inside the frame and not inverted
        assert float(s.boxes.min()) >= 0.0 and float(s.boxes.max()) <= 64.0
        assert bool((s.boxes[..., 2] >= s.boxes[..., 0]).all() and (s.boxes[..., 3] >= s.boxes[..., 1]).all())
        assert float(s.entity_conf.min()) >= 0.0 and float(s.entity_conf.max()) <= 1.0
    batch = train.collate([train[0], train[1]])
    assert batch.frames.shape == (2, 4, 3, 64, 64) and batch.label.tolist() == [
        train.records[0].label, train.records[1].label]


def _joints_inside_boxes(sample, joint_ids, column, *, tol=1.0):
    """Fraction of visible joints (conf > 0.3) of ``joint_ids`` inside entity ``column``'s box."""
    kp, boxes = sample.keypoints, sample.boxes
    inside, total = 0, 0
    for t in range(kp.shape[0]):
        x1, y1, x2, y2 = boxes[t, column].tolist()
        for j in joint_ids:
            x, y, c = kp[t, j].tolist()
            if c > 0.3 and 0 <= x <= 64 and 0 <= y <= 64:
                total += 1
                inside += (x1 - tol <= x <= x2 + tol) and (y1 - tol <= y <= y2 + tol)
    return inside, total


def test_test_mode_boxes_surround_their_keypoints(tiny_root):
    val = build_dataset(make_cfg(tiny_root), "val", train=False)
    layout = get_layout("body25_hands")
    left_hand = list(layout.joints("left_wrist", "left_hand"))
    torso = list(layout.joints("neck", "left_shoulder", "right_shoulder"))
    inside = total = 0
    for i in range(len(val)):
        s = val[i]
        for joints, column in ((left_hand, 2), (torso, 4)):
            a, b = _joints_inside_boxes(s, joints, column)
            inside, total = inside + a, total + b
    assert total > 50 and inside / total > 0.95


def test_flipped_training_clips_keep_hands_in_their_boxes(tiny_root):
    """With every clip flipped, the left-hand box still holds the (person's) left-hand joints."""
    train = build_dataset(make_cfg(tiny_root, flip_prob=1.0), "train", train=True)
    layout = get_layout("body25_hands")
    torch.manual_seed(0)
    inside = total = 0
    for i in range(6):
        s = train[i]
        for side, column in (("left", 2), ("right", 3)):
            a, b = _joints_inside_boxes(s, list(layout.joints(f"{side}_wrist", f"{side}_hand")), column)
            inside, total = inside + a, total + b
    assert total > 30 and inside / total > 0.9
    # same seed, same crop: the flipped clip's left wrist is the unflipped right wrist, mirrored
    unflipped = build_dataset(make_cfg(tiny_root, flip_prob=0.0), "train", train=True)
    torch.manual_seed(1)
    a = unflipped[0]
    torch.manual_seed(1)
    b = train[0]
    lw, rw = layout.joints("left_wrist")[0], layout.joints("right_wrist")[0]
    visible = a.keypoints[:, rw, 2] > 0
    assert visible.any()
    torch.testing.assert_close(b.keypoints[visible, lw, 0], 64 - a.keypoints[visible, rw, 0])
    torch.testing.assert_close(b.boxes[:, 2, 0], 64 - a.boxes[:, 3, 2])
    torch.testing.assert_close(b.frames.mean(dim=(0, 1, 2)).flip(0), a.frames.mean(dim=(0, 1, 2)), rtol=0, atol=0.2)


def test_training_sampling_is_random_and_test_sampling_fixed(tiny_root):
    cfg = make_cfg(tiny_root)
    val = build_dataset(cfg, "val", train=False)
    assert torch.equal(val[1].frames, val[1].frames)
    train = build_dataset(cfg, "train", train=True)
    torch.manual_seed(0)
    first = train[2].frames
    torch.manual_seed(0)
    assert torch.equal(first, train[2].frames)  # reproducible from torch's generator
    torch.manual_seed(5)
    assert not torch.equal(first, train[2].frames)


def test_view_indices():
    # one view: centred; three views spread from the first to the last start
    assert dense_view_indices(30, 4, 3, view=0, num_views=1).tolist() == [10, 13, 16, 19]
    starts = [int(dense_view_indices(30, 4, 3, view=v, num_views=3)[0]) for v in range(3)]
    assert starts == [0, 10, 20]
    # a short range: the largest stride that fits, views spread, time runs forward
    assert dense_view_indices(6, 4, 3, view=0, num_views=2).tolist() == [0, 1, 2, 3]
    assert dense_view_indices(6, 4, 3, view=1, num_views=2).tolist() == [2, 3, 4, 5]
    assert dense_view_indices(3, 4, 3, view=1, num_views=2).tolist() == [0, 0, 1, 2]
    assert segment_view_indices(40, 4, view=0, num_views=1).tolist() == [5, 15, 25, 35]
    assert segment_view_indices(40, 4, view=1, num_views=2).tolist() == [7, 17, 27, 37]


def test_multi_view_dataset(tiny_root):
    cfg = make_cfg(tiny_root)
    views = build_dataset(cfg, "val", train=False, views=(2, 3))
    assert len(views) == 7 * 6
    assert [views.record_index(i) for i in (0, 5, 6, 41)] == [0, 0, 1, 6]
    items = [views[i] for i in range(6)]
    assert {s.video_id for s in items} == {views.records[0].video_id}
    # crops of one temporal clip differ in space, the temporal clips differ in time
    assert not torch.equal(items[0].frames, items[2].frames)
    assert not torch.equal(items[0].keypoints, items[3].keypoints)
    with pytest.raises(Exception, match="testing only"):
        build_dataset(cfg, "train", train=True, views=(2, 1))


def test_entity_box_options(tiny_root):
    no_conf = build_dataset(make_cfg(tiny_root, entity_boxes="keypoints_no_confidence"), "val", train=False)[0]
    assert torch.equal(no_conf.entity_conf, torch.ones(4, 6))
    fixed = build_dataset(make_cfg(tiny_root, entity_boxes="fixed_regions"), "val", train=False)
    a, b = fixed[0], fixed[1]
    assert torch.allclose(a.boxes, b.boxes) and torch.allclose(a.boxes[0], a.boxes[-1])  # independent of pose
    centre = build_dataset(make_cfg(tiny_root, entity_boxes="center_crop"), "val", train=False)[0]
    assert torch.allclose(centre.boxes, centre.boxes[:1, :1].expand_as(centre.boxes))


def test_segment_sampling(tiny_root):
    val = build_dataset(make_cfg(tiny_root, sampling="segments", num_frames=3), "val", train=False)
    assert val[0].frames.shape == (3, 3, 64, 64)


def test_missing_video_and_keypoints_raise_data_errors(tiny_root, tmp_path):
    cfg = make_cfg(tiny_root)
    info = open_dataset(tiny_root)
    record = info.read("val")[0]
    ghost = ClipRecord(video_id="9999_00_9999", path=str(tmp_path / "9999_00_9999.mp4"), label=0, body_label=0,
                       split="val")
    dataset = ClipDataset([ghost], cfg=cfg.data, layout="body25_hands", entities=ENTITIES, train=False,
                          dataset_info=info)
    with pytest.raises(DataError, match="9999_00_9999.mp4"):
        dataset[0]
    # a real video whose keypoint folder is missing
    os.symlink(record.path, tmp_path / "0000_00_0777.mp4")
    lost = ClipRecord(video_id="0000_00_0777", path=str(tmp_path / "0000_00_0777.mp4"), label=0, body_label=0,
                      split="val")
    strict = ClipDataset([lost], cfg=cfg.data, layout="body25_hands", entities=ENTITIES, train=False,
                         dataset_info=info)
    with pytest.raises(DataError, match="keypoint folder not found"):
        strict[0]
    lenient = ClipDataset([lost], cfg=cfg.data, layout="body25_hands", entities=ENTITIES, train=False,
                          dataset_info=info, need_keypoints=False)
    assert float(lenient[0].keypoints.abs().sum()) == 0.0


def test_pose_pickle_source(tiny_root, tmp_path):
    """Keypoints from ``MA52_{split}.pkl`` (28-joint layout), rescaled to the output frame."""
    root = tmp_path / "ma52"
    root.mkdir()
    info = open_dataset(tiny_root)
    records = list(info.read("val"))[:2]
    lines = []
    annotations = []
    (root / "val").mkdir()
    rng = np.random.default_rng(0)
    for r in records:
        os.symlink(r.path, root / "val" / Path(r.path).name)
        lines.append(f"{Path(r.path).name} {r.label}")
        n = probe(r.path).num_frames
        xy = rng.uniform(40, 90, size=(1, n, 28, 2)).astype(np.float32)
        annotations.append({"frame_dir": r.video_id, "keypoint": xy,
                            "keypoint_score": np.full((1, n, 28), 0.9, np.float32)})
    (root / "val_list_videos.txt").write_text("\n".join(lines) + "\n")
    with open(root / "MA52_val.pkl", "wb") as f:
        pickle.dump(annotations, f)
    clear_pose_cache()
    cfg = from_dict(RecognitionConfig, {
        "model": {"keypoint_layout": "ma52_28", "dim": 32, "transformer": {"num_heads": 4}},
        "data": {"root": str(root), "keypoint_source": "pickle", "num_frames": 4, "frame_stride": 3,
                 "image_size": 64, "resize_short_side": 64, "val_split": "val"}})
    dataset = build_dataset(cfg, "val", train=False)
    s = dataset[0]
    assert s.keypoints.shape == (4, 28, 3)
    assert torch.allclose(s.keypoints[..., 2], torch.full((4, 28), 0.9))
    native = probe(records[0].path)
    scale = 64 / min(native.width, native.height)
    x0 = (round(native.width * scale) - 64) / 2
    assert float(s.keypoints[..., 0].min()) >= 40 * scale - x0 - 1.0


def test_span_of_a_long_video(tiny_root, tmp_path):
    """iMiGUE-style records: frames and keypoints come from [t_start, t_end] only."""
    info = open_dataset(tiny_root)
    source = info.read("train")[0]
    root = tmp_path / "imigue"
    (root / "videos").mkdir(parents=True)
    (root / "keypoints").mkdir()
    os.symlink(source.path, root / "videos" / f"{source.video_id}.mp4")
    os.symlink(info.keypoint_folder(source), root / "keypoints" / source.video_id)
    video = probe(source.path)
    span = ClipRecord(video_id=f"{source.video_id}_1", path=str(root / "videos" / f"{source.video_id}.mp4"),
                      label=3, t_start=0.2, t_end=0.6)
    first, stop = clip_frame_range(span, fps=video.fps, num_frames=video.num_frames)
    assert (first, stop) == (6, 18)
    assert clip_frame_range(source, fps=video.fps, num_frames=video.num_frames) == (0, video.num_frames)
    with pytest.raises(DataError, match="starts after"):
        clip_frame_range(ClipRecord("x", "x.mp4", 0, t_start=99.0, t_end=100.0), fps=30.0, num_frames=30)
    cfg = make_cfg(root, format="imigue")
    dataset = ClipDataset([span], cfg=cfg.data, layout="body25_hands", entities=ENTITIES[:5], train=False,
                          dataset_info=DatasetInfo("imigue", root, {}))
    whole = read_openpose_folder(info.keypoint_folder(source), frame_size=(video.width, video.height))
    part = dataset._keypoints(span, first, stop, (video.width, video.height))
    np.testing.assert_array_equal(part, whole[first:stop])
    s = dataset[0]
    assert s.boxes.shape == (4, 5, 4) and s.label == 3 and s.body_label == -1


def test_pose_only_models_skip_decoding_and_keypoints_can_be_cached(tiny_root, monkeypatch):
    rgb = build_dataset(make_cfg(tiny_root), "val", train=False)
    pose_cfg = make_cfg(tiny_root, cache_keypoints=True)
    pose_cfg.model.modality = "pose"
    pose = build_dataset(pose_cfg, "val", train=False)
    assert not pose.decode_frames and rgb.decode_frames
    a, b = rgb[2], pose[2]
    assert b.frames.shape == a.frames.shape and float(b.frames.abs().sum()) == 0.0
    torch.testing.assert_close(b.keypoints, a.keypoints)
    torch.testing.assert_close(b.boxes, a.boxes)

    def unavailable(*args, **kwargs):
        raise DataError("keypoints", "read again")

    monkeypatch.setattr("recognition.data.read_openpose_folder", unavailable)
    torch.testing.assert_close(pose[2].keypoints, b.keypoints)  # served from memory
    with pytest.raises(DataError, match="read again"):
        pose[3]


def test_micropuppet_test_split_keeps_its_labels(tiny_root):
    test = build_dataset(make_cfg(tiny_root), "test", train=False)
    assert len(test) == 7 and (test.labels >= 0).all()
    assert test[0].label == test.records[0].label >= 0


def _without_val(tiny_root: Path, tmp_path: Path) -> Path:
    """The tiny MicroPuppet folder with its val list removed (like iMiGUE: train and test only)."""
    root = tmp_path / "no_val"
    root.mkdir()
    for entry in tiny_root.iterdir():
        if entry.name != "val_list_videos.txt":
            os.symlink(entry, root / entry.name)
    return root


def test_a_dataset_without_val_holds_out_training_subjects_never_test(tiny_root, tmp_path):
    root = _without_val(tiny_root, tmp_path)
    cfg = make_cfg(root)
    cfg.out = str(tmp_path / "run")
    info = open_dataset(root)
    assert "val" not in info.splits
    all_train = {r.video_id: r for r in info.read("train")}
    test_ids = {r.video_id for r in info.read("test")}
    train, val = build_datasets(cfg)
    train_ids = {r.video_id for r in train.records}
    val_ids = {r.video_id for r in val.records}
    assert val_ids and not val_ids & test_ids  # never the test split
    assert val_ids | train_ids == set(all_train) and not val_ids & train_ids
    val_subjects = {all_train[v].subject for v in val_ids}
    assert not val_subjects & {all_train[v].subject for v in train_ids}  # subject-disjoint
    written = (tmp_path / "run" / "val_holdout.txt").read_text().splitlines()
    assert written[1] == "subjects: " + " ".join(sorted(val_subjects, key=lambda v: (len(v), v)))
    assert set(written[2:]) == val_ids
    # seeded: the same split again (a later `test --split val` sees the same clips)
    assert {r.video_id for r in build_dataset(cfg, "val", train=False).records} == val_ids
    # no hold-out: no validation at all (the last epoch is kept), and still never the test split
    cfg.data.val_holdout = 0.0
    train0, val0 = build_datasets(cfg)
    assert val0 is None and {r.video_id for r in train0.records} == set(all_train)


def test_models_without_boxes_do_not_need_keypoint_files(tiny_root, tmp_path):
    root = tmp_path / "no_keypoints"
    root.mkdir()
    for entry in tiny_root.iterdir():
        if entry.name != "keypoints":
            os.symlink(entry, root / entry.name)
    tsm = make_cfg(root)
    tsm.model.architecture = "tsm"
    assert build_dataset(tsm, "val", train=False)[0].frames.shape == (4, 3, 64, 64)
    global_tokens = make_cfg(root)
    global_tokens.model.modality = "rgb"
    global_tokens.model.sem.entity_features = "global"
    global_tokens.model.mac.enabled = False
    build_dataset(global_tokens, "val", train=False)[0]
    with pytest.raises(DataError):
        build_dataset(make_cfg(root), "val", train=False)[0]  # ROI tokens need keypoint boxes
