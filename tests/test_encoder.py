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
    extraction_device,
    resolve_window_dilation,
    sampled_frame_indices,
    shard_videos,
)
from detection.features import has_features, load_features, read_feature_meta
from detection.timeline import Timeline
from mmad.config import from_dict, to_dict
from mmad.engine.precision import resolve_precision
from mmad.errors import ConfigError, DataError
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
    """Every step through the recognizer's own forward on its window, one window at a time.

    The backbone's temporal shift sees the whole sequence of frames at the window's spacing (the
    sampled frames of one phase of the dilation), as the streamed encoder does.
    """
    length = keypoints.shape[0]
    offsets = (torch.arange(window) - (window - 1) // 2) * dilation
    maps = None
    if net.backbone is not None:
        phases = [net.backbone(frames[p::dilation][None])[0] for p in range(dilation)]
        maps = torch.zeros(length, *phases[0].shape[1:])
        for p, phase_maps in enumerate(phases):
            maps[p::dilation] = phase_maps
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


def test_dilated_windows_shift_between_frames_at_the_window_spacing():
    """With dilation 2 the backbone's shift mixes frames 2 sampled frames apart (the training spacing), not 1."""
    net, cfg = tiny_recognizer("rgb+pose", num_frames=4)
    frames, keypoints, boxes = random_track(14, seed=4)
    encoder = make_encoder(net, cfg, window_dilation=2, chunk_frames=3, window_batch=5)
    got = encoder.encode_frames(frames, keypoints, boxes)
    with torch.no_grad():
        expected = naive_features(net, frames, keypoints, boxes, window=4, dilation=2)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


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
    # step 0 samples frame 2; its 4-frame window holds frames -2, 2, 6, 10 (mean 4)
    assert meta.times[0] == pytest.approx(4 / 30) and meta.times[1] - meta.times[0] == pytest.approx(4 / 30)
    assert meta.stride_frames == 4 and meta.fps == 30.0 and meta.duration == pytest.approx(6.0)
    assert meta.num_frames == 180 and meta.encoder_settings["window"] == 4

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


# ----------------------------------------------------------------------------- the seams: time, identity, spacing, devices


class FrameIndexEncoder(ClipEncoder):
    """An oracle: each step's feature is the mean of the frame indices its window really holds.

    The frame index (plus one) rides in the keypoints' confidence channel, which the crop keeps.
    """

    def window_features(self, *, keypoints, boxes, rgb_tokens=None, global_features=None):
        return keypoints[:, :, 0, 2].mean(dim=1, keepdim=True).double() - 1.0


def frame_index_keypoints(num_frames: int, frame_size: tuple[int, int]) -> np.ndarray:
    keypoints = np.zeros((num_frames, J, 3), np.float32)
    keypoints[:, :, 0], keypoints[:, :, 1] = frame_size[0] / 2, frame_size[1] / 2
    keypoints[:, :, 2] = np.arange(num_frames, dtype=np.float32)[:, None] + 1
    return keypoints


@pytest.mark.parametrize("window,dilation,stride", [(3, 1, 4), (4, 1, 4), (4, 2, 4), (8, 2, 3), (5, 3, 2)])
def test_recorded_time_is_the_mean_time_of_the_window_frames(synth_root, window, dilation, stride):
    """Each cached time, times fps, is the mean of the frame indices the encoder put in that step's window."""
    from mmad.video import probe

    net, cfg = tiny_recognizer("pose", num_frames=window)
    encoder = FrameIndexEncoder(net, window=window, stride_frames=stride, image_size=SIZE, resize_short_side=SIZE,
                                keypoint_layout=cfg.model.keypoint_layout, entity_names=cfg.model.entity_names,
                                window_dilation=dilation, chunk_frames=7)
    video = synth_root / "videos" / "train0000.mp4"
    info = probe(video)
    features, times = encoder.encode_video(video, frame_index_keypoints(info.num_frames, (info.width, info.height)))
    used = features[:, 0].astype(np.float64)  # float16 holds integers and halves below 2048 exactly
    reach = (window - 1) * dilation
    interior = slice(reach, len(times) - reach)  # windows not clamped at the video's ends
    assert len(used[interior]) > 5
    np.testing.assert_allclose(times[interior] * info.fps, used[interior], atol=1e-6)
    # the timeline that the dataset, the tests and the head use follows the same rule
    timeline = Timeline.from_stride(fps=info.fps, stride_frames=stride, num_steps=len(times), window=window,
                                    window_dilation=dilation)
    np.testing.assert_allclose(timeline.step_times(), times, atol=1e-9)


def test_cache_identity_holds_every_setting_and_refuses_a_mismatch(synth_root, tmp_path):
    net, rcfg = tiny_recognizer("pose", num_frames=4)
    checkpoint = save_recognizer(tmp_path / "recognizer.pt", net, rcfg)
    features = tmp_path / "features"
    cfg = detection_config(synth_root, features)
    first = extract_features(cfg, checkpoint, subset="val", rank=0, world_size=1)
    assert first.encoded == ["val0000"]
    settings = read_feature_meta(features, "val0000").encoder_settings
    assert settings == {"window": 4, "window_dilation": 1, "stride_frames": 4, "image_size": SIZE,
                        "resize_short_side": SIZE, "entity_tokens": False, "weights": "model",
                        "precision": resolve_precision("auto", "cpu")}  # recorded, not part of the identity
    for key, value in [("window", 6), ("window_dilation", 2), ("stride_frames", 2), ("image_size", 48),
                       ("resize_short_side", 96), ("entity_tokens", True)]:
        changed = {**settings, key: value}
        assert not has_features(features, "val0000", expected_settings=changed)
        with pytest.raises(DataError, match=f"encoder.{key} is"):
            load_features(features, "val0000", expected_settings=changed)
    # changing a setting in the config re-extracts instead of reusing the stale features
    cfg.encoder.window = 6
    rcfg.data.num_frames = 6
    redone = extract_features(cfg, checkpoint, subset="val", rank=0, world_size=1)
    assert redone.encoded == ["val0000"] and read_feature_meta(features, "val0000").encoder_settings["window"] == 6


def test_caches_with_the_old_step_time_rule_are_refused_and_redone(synth_root, tmp_path):
    net, rcfg = tiny_recognizer("pose", num_frames=4)
    checkpoint = save_recognizer(tmp_path / "recognizer.pt", net, rcfg)
    features = tmp_path / "features"
    cfg = detection_config(synth_root, features)
    extract_features(cfg, checkpoint, subset="val", rank=0, world_size=1)
    path = features / "val0000.json"
    old = json.loads(path.read_text())
    for key in ("step_time_rule", "encoder_settings", "num_frames"):
        old.pop(key)
    path.write_text(json.dumps(old))
    with pytest.raises(DataError, match="older mmad"):
        load_features(features, "val0000")
    assert not has_features(features, "val0000")
    assert extract_features(cfg, checkpoint, subset="val", rank=0, world_size=1).encoded == ["val0000"]
    assert load_features(features, "val0000")[1].encoder_settings["window"] == 4


def test_window_spacing_defaults_to_the_recognizer_frame_stride(tmp_path):
    from detection.config import EncoderConfig
    from recognition.config import DataConfig

    ma52 = DataConfig(num_frames=8, frame_stride=8)
    assert resolve_window_dilation(EncoderConfig(stride_frames=4), ma52) == 2
    assert resolve_window_dilation(EncoderConfig(stride_frames=8), ma52) == 1
    assert resolve_window_dilation(EncoderConfig(stride_frames=4, window_dilation=2), ma52) == 2
    with pytest.raises(ConfigError, match="frame_stride=8"):
        resolve_window_dilation(EncoderConfig(stride_frames=3), ma52)
    with pytest.raises(ConfigError, match="4 apart.*8 apart"):
        resolve_window_dilation(EncoderConfig(stride_frames=4, window_dilation=1), ma52)
    with pytest.raises(ConfigError, match="segment sampling"):
        resolve_window_dilation(EncoderConfig(stride_frames=4), DataConfig(sampling="segments"))
    # an encoder built from a checkpoint trained on frames 8 apart spaces its windows the same
    net, rcfg = tiny_recognizer("pose", num_frames=8)
    rcfg.data.frame_stride = 8
    checkpoint = save_recognizer(tmp_path / "recognizer.pt", net, rcfg)
    encoder = ClipEncoder.from_checkpoint(checkpoint, encoder_cfg=EncoderConfig(stride_frames=4, device="cpu"))
    assert encoder.window_dilation == 2 and encoder.window == 8
    assert int(encoder.window_offsets[-1] - encoder.window_offsets[0]) * 4 == 7 * 8  # 8 frames, 8 apart


def test_each_torchrun_process_gets_its_own_gpu():
    torchrun = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}
    assert extraction_device(None, environ=torchrun, cuda_available=True, device_count=2) == "cuda:1"
    assert extraction_device("cuda", environ=torchrun, cuda_available=True, device_count=2) == "cuda:1"
    assert extraction_device("cuda:0", environ=torchrun, cuda_available=True, device_count=2) == "cuda:0"
    assert extraction_device("cpu", environ=torchrun, cuda_available=True, device_count=2) == "cpu"
    assert extraction_device(None, environ=torchrun, cuda_available=False, device_count=0) == "cpu"
    assert extraction_device(None, environ={}, cuda_available=True, device_count=2) == "cuda"
    with pytest.raises(ConfigError, match="LOCAL_RANK=2 but this machine has 2 GPU"):
        extraction_device(None, environ={**torchrun, "LOCAL_RANK": "2"}, cuda_available=True, device_count=2)


@pytest.mark.parametrize("modality", ["rgb+pose", "pose"])
def test_bf16_extraction_matches_fp32_within_tolerance(modality):
    """bf16 autocast changes features by bf16 rounding only (8 mantissa bits): every step's feature
    vector within 2% of its fp32 norm, cosine similarity above 0.999 (and not equal: it did run in bf16)."""
    net, cfg = tiny_recognizer(modality, num_frames=4)
    frames, keypoints, boxes = random_track(11, seed=2)
    frames = frames if modality != "pose" else None
    fp32 = make_encoder(net, cfg, chunk_frames=4, precision="fp32").encode_frames(frames, keypoints, boxes)
    bf16_encoder = make_encoder(net, cfg, chunk_frames=4, precision="bf16")
    assert bf16_encoder.autocast_precision == "bf16"
    bf16 = bf16_encoder.encode_frames(frames, keypoints, boxes)
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    assert not torch.equal(bf16, fp32)  # autocast did apply
    error = (bf16 - fp32).norm(dim=1) / fp32.norm(dim=1)
    assert float(error.max()) < 0.02
    assert float(torch.nn.functional.cosine_similarity(bf16, fp32, dim=1).min()) > 0.999


def test_precision_auto_is_fp32_on_a_cpu_without_native_bf16(monkeypatch):
    from mmad.engine import precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.resolve_precision("auto", "cpu") == "bf16"
    assert precision.resolve_precision("fp16", "cpu") == "fp16"
    with pytest.raises(ConfigError, match="precision must be one of"):
        precision.resolve_precision("half", "cpu")
    net, cfg = tiny_recognizer("pose")
    with pytest.raises(ConfigError, match="precision"):
        make_encoder(net, cfg, precision="int8")


def test_channels_last_backbone_gives_the_same_features():
    net, cfg = tiny_recognizer("rgb+pose", num_frames=4)
    frames, keypoints, boxes = random_track(11, seed=3)
    expected = make_encoder(net, cfg, chunk_frames=4).encode_frames(frames, keypoints, boxes)
    encoder = make_encoder(net, cfg, chunk_frames=4, channels_last=True)
    assert net.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(encoder.encode_frames(frames, keypoints, boxes), expected, rtol=1e-4, atol=1e-4)
