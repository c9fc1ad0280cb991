"""Time, frames and features agree end to end on videos at 25, 29.97 and 60 fps, some annotated at 29 fps.

MicroPuppet's ``clocks`` preset goes through the real extraction (window spacing from the
recognizer, recorded step times, cache identity) into the feature dataset the head trains and
predicts on. An oracle encoder makes each step's feature the fraction of its window's frames in
which each class is performed (read from the frames the encoder really looked at), so a known
instance's onset can be read off the features and mapped back to seconds through the same
timeline the head's predictions use: it must land within one step of the ground truth, in the
ground truth's clock.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from detection.config import DetectionConfig
from detection.encoder import ClipEncoder, extract_features
from detection.task import DetectionTask, predict_subset, train_detection
from mmad.config import from_dict, to_dict
from mmad.datasets.mma52 import read_mma52_csv
from recognition.config import RecognitionConfig
from recognition.model import build_model

torch.set_num_threads(1)

NUM_CLASSES = 52
STRIDE = 2  # frames between steps; the recognizer was trained on frames 4 apart: window dilation 2
WINDOW = 4  # an even window: its mean time lies between sampled frames


class ActivityOracleEncoder(ClipEncoder):
    """Step feature = per class, the fraction of the window's frames in which the class is performed.

    The per-frame activity rides in the confidence channel of the first 52 keypoints (1 + active),
    which the crop keeps; everything else is the real encoder (sampling, windows, times).
    """

    activity: dict[str, np.ndarray] = {}

    @property
    def feature_dim(self) -> int:
        return NUM_CLASSES

    def window_features(self, *, keypoints, boxes, rgb_tokens=None, global_features=None):
        return keypoints[:, :, :NUM_CLASSES, 2].mean(dim=1).float() - 1.0

    def encode_video(self, video_path, keypoints):
        from mmad.video import probe

        info = probe(video_path)
        active = self.activity[Path(video_path).stem][: info.num_frames]
        oracle = np.zeros((info.num_frames, 67, 3), np.float32)
        oracle[:, :, 0], oracle[:, :, 1] = info.width / 2, info.height / 2
        oracle[:, :, 2] = 1.0
        oracle[:, :NUM_CLASSES, 2] += active
        return super().encode_video(video_path, oracle)


def frame_activity(root: Path) -> dict[str, np.ndarray]:
    """(num_frames, 52) 0/1 per video: which classes are performed in each frame (from the CSV frames)."""
    out = {}
    for subset in ("train", "val", "test"):
        for video in read_mma52_csv(root / f"{subset}.csv", subset=subset, labeled=True):
            active = np.zeros((video.num_frames, NUM_CLASSES), np.float32)
            for seg in video.segments:
                first, stop = round(seg.t_start * video.fps), round(seg.t_end * video.fps)
                active[first:stop, seg.label] = 1.0
            out[video.video_id] = active
    return out


@pytest.fixture(scope="module")
def clocks(tmp_path_factory):
    from mmad.synth import generate_detection

    base = tmp_path_factory.mktemp("clocks")
    root = Path(generate_detection(base / "data", preset="clocks", seed=0))
    rcfg = from_dict(RecognitionConfig, {
        "model": {"num_classes": 52, "dim": 16, "modality": "pose", "sem": {"pose_hidden": 16},
                  "transformer": {"num_layers": 1, "num_heads": 2, "ffn_dim": 32}, "head": {"hidden_dim": 16}},
        "data": {"num_frames": WINDOW, "frame_stride": 2 * STRIDE, "image_size": 64, "resize_short_side": 64},
    })
    torch.manual_seed(0)
    recognizer = base / "recognizer.pt"
    torch.save({"model": build_model(rcfg.model).state_dict(), "ema": None, "config": to_dict(rcfg)}, recognizer)
    cfg = from_dict(DetectionConfig, {
        "data": {"root": str(root), "annotation_file": "mmad.json", "feature_dir": str(base / "features"),
                 "max_seq_len": 256, "num_workers": 0},
        "model": {"num_classes": NUM_CLASSES, "embed_dim": 16, "num_levels": 3, "num_stem_layers": 1,
                  "num_heads": 2, "head_convs": 1},
        "train": {"epochs": 2, "batch_size": 2, "num_workers": 0, "amp": False, "eval_every": 1, "ema": None,
                  "tensorboard": False, "progress_bar": False},
        "optim": {"name": "adamw", "lr": 0.001, "warmup_epochs": 0},
        "encoder": {"stride_frames": STRIDE, "chunk_frames": 32, "device": "cpu"},
        "out": str(base / "run"),
    })
    encoder = ActivityOracleEncoder.from_checkpoint(recognizer, encoder_cfg=cfg.encoder, device="cpu")
    encoder.activity = frame_activity(root)
    report = extract_features(cfg, recognizer, rank=0, world_size=1, encoder=encoder)
    assert not report.failed and len(report.encoded) == 8
    return {"root": root, "cfg": cfg, "encoder": encoder}


def test_the_preset_has_the_clocks_it_promises(clocks):
    from mmad.video import probe

    root = clocks["root"]
    seen = set()
    for subset in ("train", "val", "test"):
        for video in read_mma52_csv(root / f"{subset}.csv", subset=subset):
            container = probe(root / "videos" / f"{video.video_id}.mp4")
            assert container.num_frames == video.num_frames
            seen.add((round(container.fps, 2), round(video.fps, 2)))
    assert seen == {(25.0, 25.0), (29.97, 29.0), (60.0, 60.0), (29.97, 29.97)}
    assert clocks["encoder"].window_dilation == 2  # spacing from the recognizer's frame_stride


def test_a_known_onset_comes_back_within_one_step_in_the_ground_truth_clock(clocks):
    task = DetectionTask(clocks["cfg"])
    checked = []
    for subset in ("train", "val", "test"):
        videos = {v.video_id: v for v in task.videos(subset)}
        dataset = task.dataset(subset, training=False)
        for index in range(len(dataset)):
            item = dataset[index]
            video = videos[item.video_id]
            step = item.timeline.step_seconds
            for seg in video.segments:
                if seg.t_start < 0.5 or any(o.label == seg.label and o.t_start < seg.t_start for o in video.segments):
                    continue  # not at the very start, and the class's first instance
                # the steps whose windows are exactly half inside the instance straddle its onset:
                # with 4 frames 4 apart they are the two steps whose window means lie within
                # 2 frames of it, so their mean step reads the onset to half a step
                feature = item.feats[seg.label].numpy()
                half = np.flatnonzero(np.abs(feature - 0.5) < 1e-3)
                run = half[: 1 + int(np.argmax(np.diff(np.append(half, -9)) != 1))]
                onset = float(item.timeline.to_seconds(run.mean()))  # decoded as predictions are
                checked.append((video.fps, seg.t_start, onset - seg.t_start, step))
    assert len(checked) >= 10
    declared_29 = [c for c in checked if c[0] == 29.0]
    assert declared_29 and max(c[1] for c in declared_29) > 2.0  # late enough for 29 vs 29.97 to drift
    worst = max(abs(error) / step for _, _, error, step in checked)
    assert worst <= 0.55, checked  # within one step with room to spare (times are rounded to 0.1 ms)


def test_extract_train_test_on_mixed_frame_rates(clocks, tmp_path):
    cfg = clocks["cfg"]
    result = train_detection(cfg, device="cpu")
    assert result.last_checkpoint.is_file()
    predictions, evaluation = predict_subset(cfg, result.last_checkpoint, subset="val",
                                             predictions_path=tmp_path / "val.csv", device="cpu")
    table = pd.read_csv(tmp_path / "val.csv", index_col=0)
    assert len(table) == len(predictions) > 0 and evaluation is not None
    durations = {v.video_id: v.duration for v in DetectionTask(cfg).videos("val")}  # annotation clock
    for video_id, group in table.groupby("video_id"):
        assert group["t_start"].min() >= 0 and group["t_end"].max() <= durations[video_id] + 1e-3
