"""The clip encoder: streamed backbone, windows equal to a per-window recognizer pass, caching, sharding."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from detection.config import DetectionConfig
from detection.encoder import (
    ClipEncoder,
    StreamingBackbone,
    extract_features,
    sampled_frame_indices,
    shard_videos,
)
from detection.features import load_features, read_feature_meta
from mmad.config import from_dict, to_dict
from mmad.errors import DataError
from mmad.types import ClipBatch
from recognition.config import RecognitionConfig
from recognition.model import build_model

torch.set_num_threads(1)

SIZE, J, K = 64, 67, 6


def tiny_recognizer(modality: str = "rgb+pose", num_frames: int = 4, **model) -> tuple[nn.Module, RecognitionConfig]:
    cfg = from_dict(RecognitionConfig, {
        "model": {"num_classes": 52, "dim": 16, "modality": modality, "backbone": {"arch": "resnet18"},
                  "sem": {"roi_size": 2, "pose_hidden": 16},
                  "transformer": {"num_layers": 1, "num_heads": 2, "ffn_dim": 32}, "head": {"hidden_dim": 16},
                  **model},
        "data": {"num_frames": num_frames, "frame_stride": 4, "image_size": SIZE, "resize_short_side": SIZE},
    })
    torch.manual_seed(0)
    net = build_model(cfg.model).eval()
    # non-trivial BatchNorm statistics, so that a frame mixed up with another would show
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net, cfg


def random_track(length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frames (L, 3, S, S), keypoints (L, J, 3) and boxes (L, K, 4) in the crop's pixels."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.rand(length, 3, SIZE, SIZE, generator=g)
    keypoints = torch.rand(length, J, 3, generator=g) * torch.tensor([SIZE, SIZE, 1.0])
    keypoints[torch.rand(length, J, generator=g) < 0.2] = 0.0
    corner = torch.rand(length, K, 2, generator=g) * SIZE * 0.6
    boxes = torch.cat([corner, corner + 8 + torch.rand(length, K, 2, generator=g) * SIZE * 0.3], dim=-1)
    return frames, keypoints, boxes


class _FixedMaps(nn.Module):
    """Stands in for the backbone: returns precomputed feature maps (the shift taken over the whole video)."""

    def __init__(self, maps: torch.Tensor):
        super().__init__()
        self.maps = maps

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.maps


def naive_features(net, frames, keypoints, boxes, *, window: int, dilation: int = 1) -> torch.Tensor:
    """Every step through the recognizer's own forward on its window, one window at a time."""
    length = keypoints.shape[0]
    offsets = (torch.arange(window) - (window - 1) // 2) * dilation
    maps = net.backbone(frames[None])[0] if net.backbone is not None else None
    backbone = net.backbone
    rows = []
    try:
        for step in range(length):
            index = (step + offsets).clamp(0, length - 1)
            batch = ClipBatch(frames=frames[index][None], keypoints=keypoints[index][None], boxes=boxes[index][None],
                              entity_conf=torch.ones(1, window, K), label=torch.zeros(1, dtype=torch.long),
                              body_label=torch.zeros(1, dtype=torch.long), video_id=["v"])
            if maps is not None:
                net.backbone = _FixedMaps(maps[index][None])
            aux = net(batch).aux
            parts = [aux.entity_features]
            if aux.global_features is not None:
                parts.insert(0, aux.global_features)
            rows.append(torch.cat(parts, dim=-1)[0])
    finally:
        net.backbone = backbone
    return torch.stack(rows)


def make_encoder(net, cfg, **options) -> ClipEncoder:
    return ClipEncoder(net, window=cfg.data.num_frames, stride_frames=4, image_size=SIZE, resize_short_side=SIZE,
                       keypoint_layout=cfg.model.keypoint_layout, entity_names=cfg.model.entity_names, **options)


def test_streamed_backbone_equals_whole_sequence():
    net, _ = tiny_recognizer()
    frames = random_track(13)[0]
    with torch.no_grad():
        whole = net.backbone(frames[None])[0]
    for chunk in (1, 3, 5, 13):
        stream = StreamingBackbone(net.backbone)
        outputs = [stream.push(frames[i:i + chunk]) for i in range(0, 13, chunk)]
        outputs.append(stream.push(None, final=True))
        streamed = torch.cat([o for o in outputs if o is not None])
        assert streamed.shape == whole.shape
        torch.testing.assert_close(streamed, whole, rtol=1e-4, atol=1e-4)


def test_streamed_backbone_runs_each_frame_about_once():
    """Per chunk a shifted block reruns at most its two kept frames: no window-sized recomputation."""
    net, _ = tiny_recognizer()
    counted = []
    handle = net.backbone.conv1.register_forward_hook(lambda m, i, o: counted.append(o.shape[0]))
    stream = StreamingBackbone(net.backbone)
    frames = random_track(40)[0]
    for i in range(0, 40, 10):
        stream.push(frames[i:i + 10])
    stream.push(None, final=True)
    handle.remove()
    assert sum(counted) == 40  # the stem sees every frame exactly once
    # and the widest block input is a chunk plus its two kept frames
    widest = []
    hooks = [b.register_forward_hook(lambda m, i, o: widest.append(i[0].shape[0])) for b in net.backbone.layer4]
    stream = StreamingBackbone(net.backbone)
    for i in range(0, 40, 10):
        stream.push(frames[i:i + 10])
    stream.push(None, final=True)
    for h in hooks:
        h.remove()
    assert max(widest) <= 12 and sum(widest) <= 2 * 40 + 2 * 2 * 5


@pytest.mark.parametrize("modality,model_options", [
    ("rgb+pose", {}),
    ("pose", {}),
    ("rgb", {"temporal_model": "max_pool"}),
])
def test_encoder_equals_naive_per_window(modality, model_options):
    net, cfg = tiny_recognizer(modality, num_frames=4, **model_options)
    frames, keypoints, boxes = random_track(11, seed=1)
    encoder = make_encoder(net, cfg, chunk_frames=4, window_batch=3)
    with torch.no_grad():
        expected = naive_features(net, frames, keypoints, boxes, window=4)
    got = encoder.encode_frames(frames if modality != "pose" else None, keypoints, boxes)
    assert got.shape == (11, encoder.feature_dim) == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_odd_window_with_dilation_and_entity_tokens():
    net, cfg = tiny_recognizer("rgb+pose", num_frames=3)
    frames, keypoints, boxes = random_track(9, seed=2)
    encoder = make_encoder(net, cfg, window_dilation=2, entity_tokens=True, chunk_frames=2)
    got = encoder.encode_frames(frames, keypoints, boxes)
    with torch.no_grad():
        expected = naive_features(net, frames, keypoints, boxes, window=3, dilation=2)
    assert got.shape == (9, 512 + 16 + 6 * 16) and encoder.feature_dim == got.shape[1]
    torch.testing.assert_close(got[:, : expected.shape[1]], expected, rtol=1e-4, atol=1e-4)


def test_chunked_streaming_equals_one_shot():
    net, cfg = tiny_recognizer("rgb+pose", num_frames=4)
    frames, keypoints, boxes = random_track(17, seed=3)
    encoder = make_encoder(net, cfg)
    one_shot = encoder.encode_frames(frames, keypoints, boxes, chunk_frames=17)
    for chunk in (1, 2, 5):
        torch.testing.assert_close(encoder.encode_frames(frames, keypoints, boxes, chunk_frames=chunk), one_shot,
                                   rtol=1e-4, atol=1e-4)


def test_sampled_frames_and_shards():
    assert sampled_frame_indices(10, 4).tolist() == [2, 6]
    assert sampled_frame_indices(11, 4).tolist() == [2, 6, 10]
    ids = [f"v{i:02d}" for i in range(23)]
    shards = [shard_videos(ids, rank=r, world_size=4) for r in range(4)]
    assert sorted(sum(shards, [])) == sorted(ids)
    assert all(not set(a) & set(b) for i, a in enumerate(shards) for b in shards[i + 1:])
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


# ----------------------------------------------------------------------------- extraction over a dataset


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from mmad.synth import generate_detection

    return Path(generate_detection(tmp_path_factory.mktemp("encoder") / "det", preset="tiny", seed=0))


def save_recognizer(path: Path, net, cfg) -> Path:
    torch.save({"model": net.state_dict(), "ema": None, "config": to_dict(cfg)}, path)
    return path


def detection_config(root: Path, features: Path) -> DetectionConfig:
    return from_dict(DetectionConfig, {"data": {"root": str(root), "feature_dir": str(features), "num_workers": 0},
                                       "encoder": {"stride_frames": 4, "chunk_frames": 16, "device": "cpu"}})


def test_extract_cache_rerun_stale_and_bad_video(synth_root, tmp_path):
    net, rcfg = tiny_recognizer("pose", num_frames=4)
    checkpoint = save_recognizer(tmp_path / "recognizer.pt", net, rcfg)
    features = tmp_path / "features"
    cfg = detection_config(synth_root, features)

    report = extract_features(cfg, checkpoint, subset="train", rank=0, world_size=1)
    assert sorted(report.encoded) == ["train0000", "train0001"] and not report.failed
    array, meta = load_features(features, "train0000", expected_hash=report.encoder_hash)
    assert array.dtype == np.float16 and array.shape == (45, 16)  # 180 frames every 4th
    assert meta.times[0] == pytest.approx(2 / 30) and meta.times[1] - meta.times[0] == pytest.approx(4 / 30)
    assert meta.stride_frames == 4 and meta.fps == 30.0 and meta.duration == pytest.approx(6.0)

    # a re-run skips the finished videos
    again = extract_features(cfg, checkpoint, subset="train", rank=0, world_size=1)
    assert again.encoded == [] and sorted(again.already_done) == ["train0000", "train0001"]

    # another checkpoint: the old caches are stale, refused on load and redone by extraction
    other, _ = tiny_recognizer("pose", num_frames=4)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.01)
    checkpoint2 = save_recognizer(tmp_path / "recognizer2.pt", other, rcfg)
    with pytest.raises(DataError, match="stale"):
        from detection.features import checkpoint_hash

        load_features(features, "train0000", expected_hash=checkpoint_hash(checkpoint2))
    redone = extract_features(cfg, checkpoint2, subset="train", rank=0, world_size=1)
    assert sorted(redone.encoded) == ["train0000", "train0001"]
    assert read_feature_meta(features, "train0001").encoder_hash == redone.encoder_hash != report.encoder_hash


def test_bad_video_is_skipped_and_listed(synth_root, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(synth_root, root)
    (root / "videos" / "val0000.mp4").write_bytes(b"not a video")
    net, rcfg = tiny_recognizer("rgb+pose", num_frames=2)
    checkpoint = save_recognizer(tmp_path / "recognizer.pt", net, rcfg)
    cfg = detection_config(root, tmp_path / "features")
    report = extract_features(cfg, checkpoint, rank=0, world_size=1)
    assert [vid for vid, _ in report.failed] == ["val0000"]
    assert "val0000.mp4" in report.failed[0][1]
    assert sorted(report.encoded) == ["test0000", "train0000", "train0001"]
    listed = report.failed_file.read_text().splitlines()
    assert len(listed) == 1 and listed[0].startswith("val0000\t")
    array, _ = load_features(tmp_path / "features", "test0000")
    assert array.shape[1] == 512 + 16 and np.isfinite(array.astype(np.float32)).all()


def test_ranks_share_the_videos(synth_root, tmp_path, monkeypatch):
    net, rcfg = tiny_recognizer("pose", num_frames=2)
    checkpoint = save_recognizer(tmp_path / "recognizer.pt", net, rcfg)
    cfg = detection_config(synth_root, tmp_path / "features")
    done = []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "3")
        report = extract_features(cfg, checkpoint)
        assert report.rank == rank and report.world_size == 3
        done.append(set(report.encoded))
    assert set.union(*done) == {"train0000", "train0001", "val0000", "test0000"}
    assert sum(map(len, done)) == 4
    assert sorted(p.stem for p in (tmp_path / "features").glob("*.json")) == sorted(set.union(*done))
    assert json.loads((tmp_path / "features" / "val0000.json").read_text())["stride_frames"] == 4
    assert not any(p.name.startswith("failed") for p in os.scandir(tmp_path / "features"))
