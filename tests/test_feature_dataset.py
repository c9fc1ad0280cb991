import json

import numpy as np
import pytest
import torch

from detection.dataset import FeatureSequenceDataset, collate_features, crop_sequence, segments_to_steps
from detection.features import checkpoint_hash, has_features, load_features, save_features
from detection.timeline import Timeline
from mmad.errors import DataError
from mmad.types import Segment, VideoRecord


def write_video(cache, video_id, num_steps, *, feature_dim=6, fps=30.0, stride=4, encoder_hash="abc", seed=0):
    rng = np.random.default_rng(seed)
    timeline = Timeline.from_stride(fps=fps, stride_frames=stride, num_steps=num_steps)
    feats = rng.normal(size=(num_steps, feature_dim)).astype(np.float32)
    save_features(cache, video_id, feats, times=timeline.step_times(), stride_frames=stride, fps=fps,
                  encoder_hash=encoder_hash, duration=num_steps * stride / fps)
    return feats


def test_timeline_round_trip():
    for fps, stride in [(30.0, 4), (29.0, 4), (25.0, 8), (29.97, 1)]:
        timeline = Timeline.from_stride(fps=fps, stride_frames=stride, num_steps=100)
        seconds = np.array([0.0, 0.27, 1.0, 4.1, 14.97])
        assert np.allclose(timeline.to_seconds(timeline.to_steps(seconds)), seconds)
        steps = torch.tensor([-0.5, 0.0, 3.25, 99.5])
        assert torch.allclose(timeline.to_steps(timeline.to_seconds(steps)), steps)
        # step i is centred at its time, and a rebuilt timeline from those times is the same map
        rebuilt = Timeline.from_times(timeline.step_times(), fps=fps, stride_frames=stride)
        assert rebuilt.to_steps(timeline.step_times()[7]) == pytest.approx(7.0)
        assert rebuilt.step_seconds == pytest.approx(stride / fps)
    cropped = Timeline.from_stride(fps=30.0, stride_frames=4, num_steps=50).cropped(10, 20)
    assert cropped.to_seconds(0.0) == pytest.approx((10 + 0.5) * 4 / 30)


def test_timeline_rejects_uneven_times():
    with pytest.raises(DataError, match="evenly spaced"):
        Timeline.from_times([0.1, 0.2, 0.9], fps=30.0, stride_frames=3, source="x.json")


def test_feature_cache_round_trip_and_stale_hash(tmp_path):
    feats = write_video(tmp_path, "v1", 12, encoder_hash="hash-a")
    array, meta = load_features(tmp_path, "v1", expected_hash="hash-a")
    assert array.dtype == np.float16 and array.shape == (12, 6)
    assert np.allclose(array, feats, atol=1e-2)
    assert meta.num_steps == 12 and meta.stride_frames == 4 and meta.fps == 30.0
    assert has_features(tmp_path, "v1", expected_hash="hash-a")
    assert not has_features(tmp_path, "v1", expected_hash="hash-b")
    assert not has_features(tmp_path, "v2")
    with pytest.raises(DataError, match="stale feature cache"):
        load_features(tmp_path, "v1", expected_hash="hash-b")
    with pytest.raises(DataError, match="no cached features"):
        load_features(tmp_path, "v2")


def test_feature_cache_detects_bad_files(tmp_path):
    write_video(tmp_path, "v1", 12)
    meta = json.loads((tmp_path / "v1.json").read_text())
    meta["times"] = meta["times"][:-1]
    (tmp_path / "v1.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="disagrees with the JSON"):
        load_features(tmp_path, "v1")
    del meta["fps"]
    (tmp_path / "v1.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="key 'fps'"):
        load_features(tmp_path, "v1")


def test_checkpoint_hash_changes_with_content(tmp_path):
    (tmp_path / "a.pt").write_bytes(b"one")
    (tmp_path / "b.pt").write_bytes(b"two")
    assert checkpoint_hash(tmp_path / "a.pt") != checkpoint_hash(tmp_path / "b.pt")
    assert len(checkpoint_hash(tmp_path / "a.pt")) == 16


def test_segments_to_steps_clips_to_the_features():
    timeline = Timeline.from_stride(fps=30.0, stride_frames=4, num_steps=20)
    video = VideoRecord("v", duration=2.7, fps=30.0, num_frames=81,
                        segments=[Segment(1, 0.0, 1.0), Segment(2, 2.0, 9.0), Segment(0, 5.0, 6.0)])
    segments, labels = segments_to_steps(video, timeline)
    assert labels.tolist() == [1, 2]
    assert segments[0, 0] == pytest.approx(-0.5)
    assert segments[0, 1] == pytest.approx(timeline.to_steps(1.0))
    assert segments[1, 1] == pytest.approx(19.5)
    video.labeled = False  # e.g. MMA-52 test: its single dummy action is not ground truth
    assert segments_to_steps(video, timeline)[0].shape == (0, 2)


def test_dataset_items_crops_and_collate(tmp_path):
    videos = []
    for i, n in enumerate([30, 45]):
        write_video(tmp_path, f"v{i}", n, seed=i)
        videos.append(VideoRecord(f"v{i}", duration=n * 4 / 30, fps=30.0, num_frames=n * 4,
                                  segments=[Segment(1, 0.5, 2.0), Segment(3, 1.0, 3.5)]))
    dataset = FeatureSequenceDataset(tmp_path, videos, feature_dim=6)
    item = dataset[1]
    assert item.feats.shape == (6, 45) and item.feats.dtype == torch.float32
    assert item.labels.tolist() == [1, 3]
    assert torch.allclose(item.segments[0], torch.tensor([item.timeline.to_steps(0.5), item.timeline.to_steps(2.0)]))

    batch = collate_features([dataset[0], dataset[1]], pad_multiple=8)
    assert batch.feats.shape == (2, 6, 48)
    assert batch.mask.sum(dim=1).tolist() == [30, 45]
    assert torch.all(batch.feats[0, :, 30:] == 0)
    assert batch.video_ids == ["v0", "v1"]

    # a training window keeps a segment's seconds: same times before and after the crop
    window = crop_sequence(item, 5, 20, min_segment_overlap=0.5)
    assert window.feats.shape == (6, 20)
    assert torch.equal(window.feats, item.feats[:, 5:25])
    for seg, label in zip(window.segments, window.labels):
        original = item.segments[item.labels.tolist().index(int(label))]
        assert window.timeline.to_seconds(float(seg[0])) >= item.timeline.to_seconds(float(original[0])) - 1e-6
        assert window.timeline.to_seconds(float(seg[1])) <= item.timeline.to_seconds(float(original[1])) + 1e-6
    # a window that holds a sliver of a segment drops it
    assert crop_sequence(item, 25, 20, min_segment_overlap=0.5).labels.numel() == 0

    training = FeatureSequenceDataset(tmp_path, videos, training=True, max_seq_len=32, crop_prob=1.0,
                                      min_crop_fraction=0.5)
    torch.manual_seed(3)
    for _ in range(10):
        cropped = training[1]
        assert 16 <= cropped.feats.shape[1] <= 32
        assert cropped.labels.numel() >= 1


def test_dataset_reports_missing_and_stale_features(tmp_path):
    write_video(tmp_path, "v0", 10, encoder_hash="old")
    video = VideoRecord("v0", duration=1.3, fps=30.0, num_frames=40)
    with pytest.raises(DataError, match="no cached features"):
        FeatureSequenceDataset(tmp_path, [video, VideoRecord("v9", 1.0, 30.0, 30)])
    with pytest.raises(DataError, match="stale"):
        FeatureSequenceDataset(tmp_path, [video], expected_hash="new")[0]
    with pytest.raises(DataError, match="feature dim"):
        FeatureSequenceDataset(tmp_path, [video], feature_dim=7)[0]


# ----------------------------------------------------------------------------- two clocks, foreign features


def test_annotation_clock_is_chosen_through_frame_counts():
    from detection.timeline import annotation_clock_fps

    ntsc = 30000 / 1001
    # MMA-52: the CSV says 29 fps for a video that decodes at 29.97; both count 450 frames
    assert annotation_clock_fps(annotation_fps=29.0, annotation_frames=450, container_fps=ntsc,
                                container_frames=450) == 29.0
    # the same fps: one clock
    assert annotation_clock_fps(annotation_fps=30.0, annotation_frames=450, container_fps=30.0,
                                container_frames=449) == 30.0
    # an fps that describes no frame grid of this video (a guess for mmad.json): the video's own clock
    assert annotation_clock_fps(annotation_fps=30.0, annotation_frames=300, container_fps=25.0,
                                container_frames=250) == 25.0
    assert annotation_clock_fps(annotation_fps=29.0, annotation_frames=450, container_fps=ntsc,
                                container_frames=None) == ntsc


def test_labels_and_predictions_stay_in_the_annotation_clock(tmp_path):
    """29 fps annotation, 29.97 fps video: an instance at frames 300-330 meets the steps of frames 300-330."""
    from detection.timeline import Timeline

    ntsc = 30000 / 1001
    stride, window, num_steps = 4, 8, 112
    timeline = Timeline.from_stride(fps=ntsc, stride_frames=stride, num_steps=num_steps, window=window)
    save_features(tmp_path, "v", np.zeros((num_steps, 3), np.float32), times=timeline.step_times(),
                  stride_frames=stride, fps=ntsc, encoder_hash="h", duration=450 / ntsc, num_frames=450)
    video = VideoRecord("v", duration=450 / 29.0, fps=29.0, num_frames=450, segments=[Segment(5, 300 / 29, 330 / 29)])
    item = FeatureSequenceDataset(tmp_path, [video])[0]
    step_frames = timeline.step_times() * ntsc  # mean frame of each step's window
    expected = (np.array([300.0, 330.0]) - step_frames[0]) / stride
    np.testing.assert_allclose(item.segments[0].numpy(), expected, atol=1e-4)
    # a prediction at those steps is written in the ground truth's seconds
    np.testing.assert_allclose(item.timeline.to_seconds(expected), [300 / 29, 330 / 29], atol=1e-6)
    assert item.fps == 29.0


def write_foreign(folder, video_id, num_steps, feature_dim=5, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(seed).normal(size=(num_steps, feature_dim)).astype(np.float32)
    np.save(folder / f"{video_id}.npy", array)
    return array


def test_foreign_features_are_timed_by_their_stride_window_and_fps(tmp_path):
    from detection.features import ForeignFeatures

    array = write_foreign(tmp_path, "v", 40)
    video = VideoRecord("v", duration=5.4, fps=30.0, num_frames=162, segments=[Segment(2, 1.0, 2.0)])
    spec = ForeignFeatures(stride_frames=4, window=16, fps=30.0)
    item = FeatureSequenceDataset(tmp_path, [video], foreign=spec)[0]
    assert item.feats.shape == (5, 40) and np.allclose(item.feats.numpy().T, array)
    # step n covers frames 4n .. 4n + 15: its time is the mean frame 4n + 7.5 over 30 fps
    assert item.timeline.start == pytest.approx(7.5 / 30) and item.timeline.step_seconds == pytest.approx(4 / 30)
    assert item.segments[0, 0] == pytest.approx((30.0 - 7.5) / 4)
    with pytest.raises(DataError, match="no cached features"):
        FeatureSequenceDataset(tmp_path, [VideoRecord("w", 1.0, 30.0, 30)], foreign=spec)


def test_detection_train_accepts_foreign_npy_features(tmp_path):
    """`mmad detection train` on ActionFormer-style .npy files (no JSON) with stride, window and fps in the config."""
    import yaml

    from mmad.cli import main
    from mmad.datasets.mma52 import write_mmad_json

    root = tmp_path / "data"
    root.mkdir()
    videos = []
    for i, subset in enumerate(["train", "train", "val"]):
        write_foreign(root / "npy", f"v{i}", 36, feature_dim=6, seed=i)
        videos.append(VideoRecord(f"v{i}", duration=5.0, fps=30.0, num_frames=150, subset=subset,
                                  segments=[Segment(1, 0.5, 2.0), Segment(3, 2.5, 4.5)]))
    write_mmad_json(videos, root / "mmad.json")
    config = {"data": {"root": str(root), "feature_dir": str(root / "npy"), "feature_stride_frames": 4, "feature_window": 16,
                       "feature_fps": 30.0, "num_workers": 0, "val_subset": "val", "test_subset": "val"},
              "model": {"num_classes": 52, "embed_dim": 16, "num_levels": 2, "num_stem_layers": 1, "num_heads": 2,
                        "head_convs": 1},
              "train": {"epochs": 1, "batch_size": 2, "num_workers": 0, "amp": False, "ema": None,
                        "eval_every": 1, "tensorboard": False, "progress_bar": False},
              "optim": {"name": "adamw", "lr": 0.001, "warmup_epochs": 0}, "out": str(tmp_path / "run")}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["detection", "train", "--config", str(tmp_path / "c.yaml")]) == 0
    assert (tmp_path / "run" / "last.pt").is_file()
    assert main(["detection", "train", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run2"),
                 "--set", "data.feature_window=null"]) == 2  # the window is needed to time the steps
