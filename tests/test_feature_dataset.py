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
