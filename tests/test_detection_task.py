import numpy as np
import pandas as pd
import pytest
import torch

from detection.config import DetectionConfig
from detection.features import save_features
from detection.task import DetectionTask, predict_subset, train_detection
from detection.timeline import Timeline
from mmad.config import from_dict
from mmad.errors import DataError
from mmad.types import Segment, VideoRecord

FPS, STRIDE, NUM_CLASSES, FEATURE_DIM = 30.0, 4, 3, 7


def make_root(root, *, num_train=12, num_val=4, seed=0):
    """mmad.json plus a feature cache whose first channels mark each class's segments."""
    from mmad.datasets.mma52 import write_mmad_json

    rng = np.random.default_rng(seed)
    records = []
    for i in range(num_train + num_val):
        num_steps = int(rng.integers(30, 45))
        timeline = Timeline.from_stride(fps=FPS, stride_frames=STRIDE, num_steps=num_steps)
        feats = 0.1 * rng.normal(size=(num_steps, FEATURE_DIM)).astype(np.float32)
        segments, onset = [], int(rng.integers(0, 5))
        for k in range(3):
            length = int(rng.integers(4, 12))
            end = min(onset + length, num_steps)
            label = (i + k) % NUM_CLASSES
            feats[onset:end, label] += 1.0
            segments.append(Segment(label, round(onset * STRIDE / FPS, 4), round(end * STRIDE / FPS, 4)))
            onset += max(2, length // 2)
        duration = num_steps * STRIDE / FPS
        video_id = f"vid{i:03d}"
        save_features(root / "features", video_id, feats, times=timeline.step_times(), stride_frames=STRIDE,
                      fps=FPS, encoder_hash="enc1", duration=duration)
        records.append(VideoRecord(video_id, duration=duration, fps=FPS, num_frames=num_steps * STRIDE,
                                   segments=segments, subset="train" if i < num_train else "val"))
    write_mmad_json(records, root / "mmad.json")
    return records


def small_config(root, out, **data):
    return from_dict(DetectionConfig, {
        "data": {"root": str(root), "feature_dir": str(root / "features"), "encoder_hash": "enc1", "val_subset": "val", "test_subset": "val",
                 "num_workers": 0, "crop_prob": 0.3, **data},
        "model": {"feature_dim": FEATURE_DIM, "num_classes": NUM_CLASSES, "embed_dim": 32, "num_levels": 3,
                  "num_stem_layers": 1, "num_heads": 4, "window_size": 9, "head_convs": 1, "dropout": 0.0},
        "loss": {"initial_num_positives": 10.0},
        "train": {"epochs": 50, "batch_size": 4, "num_workers": 0, "amp": False, "eval_every": 50,
                  "tensorboard": False, "progress_bar": False, "ema": None, "log_every": 100},
        "optim": {"name": "adamw", "lr": 0.003, "weight_decay": 0.0, "warmup_epochs": 1, "warmup_start_lr": 0.0003},
        "out": str(out),
    })


def test_train_with_engine_then_predict_subset(tmp_path):
    torch.set_num_threads(1)
    pytest.importorskip("eval.detection")
    make_root(tmp_path / "data")
    cfg = small_config(tmp_path / "data", tmp_path / "run")
    task = DetectionTask(cfg)
    batch = task.collate([task.train_dataset()[0], task.train_dataset()[1]])
    assert batch.feats.shape[2] % 4 == 0 and batch.feats.shape[1] == FEATURE_DIM

    result = train_detection(cfg, device="cpu")
    assert result.best_checkpoint is not None and result.best_checkpoint.is_file()
    final = result.history[-1]
    assert "mAP@0.5" in str(final) and result.best_metric is not None
    state = torch.load(result.last_checkpoint, weights_only=True)["model"]
    assert "num_positives_ema" in state

    predictions, evaluation = predict_subset(cfg, result.best_checkpoint, device="cpu")
    written = pd.read_csv(tmp_path / "run" / "predictions_val.csv", index_col=0)
    assert list(written.columns) == ["video_id", "t_start", "t_end", "class", "score"]
    assert len(written) == len(predictions) > 0
    assert evaluation.mAP_at(0.5) > 0.8, evaluation.to_dict()["mAP"]


def test_stale_cache_is_reported(tmp_path):
    make_root(tmp_path / "data", num_train=2, num_val=1)
    cfg = small_config(tmp_path / "data", tmp_path / "run", encoder_hash="other")
    with pytest.raises(DataError, match="stale"):
        DetectionTask(cfg).train_dataset()[0]


@pytest.mark.parametrize("name", ["mma52", "micropuppet"])
def test_shipped_configs_build_a_head(name):
    from pathlib import Path

    from detection.task import build_detector
    from mmad.config import load_config

    path = Path(__file__).resolve().parents[1] / "configs" / "detection" / f"{name}.yaml"
    cfg = load_config(DetectionConfig, path)
    if cfg.model.feature_dim is None:  # read from the feature cache at training time
        cfg = load_config(DetectionConfig, path, overrides=["model.feature_dim=64"])
    model = build_detector(cfg)
    assert len(model.regression_ranges) == cfg.model.num_levels
    steps = 113  # a 15 s video at 7.5 steps/s
    out = model.eval()(torch.zeros(1, cfg.model.feature_dim, steps), torch.ones(1, steps, dtype=torch.bool))
    assert out.cls_logits.shape[-1] == cfg.model.num_classes


def test_feature_dim_is_read_from_the_cache_when_not_set(tmp_path):
    from mmad.errors import ConfigError

    make_root(tmp_path / "data", num_train=2, num_val=1)
    cfg = small_config(tmp_path / "data", tmp_path / "run")
    cfg.model.feature_dim = None
    task = DetectionTask(cfg)
    assert task.cfg.model.feature_dim == FEATURE_DIM and cfg.model.feature_dim is None
    out = task.build_model().eval()(torch.zeros(1, FEATURE_DIM, 16), torch.ones(1, 16, dtype=torch.bool))
    assert out.cls_logits.shape[-1] == NUM_CLASSES

    empty = small_config(tmp_path / "nothing", tmp_path / "run2")
    empty.model.feature_dim = None
    from mmad.datasets.mma52 import write_mmad_json

    (tmp_path / "nothing").mkdir()
    write_mmad_json([VideoRecord("v0", duration=5.0, fps=FPS, num_frames=150, subset="train")],
                    tmp_path / "nothing" / "mmad.json")
    with pytest.raises(ConfigError, match="run `mmad detection extract` first"):
        DetectionTask(empty)


@pytest.mark.parametrize("name", ["mma52", "micropuppet"])
def test_shipped_configs_never_cut_a_segment_of_a_full_length_video(name):
    # A training window that ends inside a segment teaches a boundary the video does not have. The
    # shipped recipes train on whole videos (15 s = 113 steps fit max_seq_len), so no drawn window
    # may cut a segment; random shorter crops (crop_prob 0.3 to 50-100% of the length) cut about one
    # segment in ten and lengthened the predicted ends' errors (README, "Detection head").
    from pathlib import Path

    from detection.dataset import FeatureSequence, FeatureSequenceDataset
    from mmad.config import load_config

    path = Path(__file__).resolve().parents[1] / "configs" / "detection" / f"{name}.yaml"
    data = load_config(DetectionConfig, path).data
    dataset = FeatureSequenceDataset(".", [], training=True, max_seq_len=data.max_seq_len, crop_prob=data.crop_prob,
                                     min_crop_fraction=data.min_crop_fraction,
                                     min_segment_overlap=data.min_segment_overlap)
    steps = 113
    segments = torch.tensor([[2.0, 20.0], [15.0, 60.0], [58.0, 70.0], [80.0, 112.0]])
    item = FeatureSequence(feats=torch.zeros(1, steps), segments=segments, labels=torch.arange(4), video_id="v",
                           timeline=Timeline.from_stride(fps=FPS, stride_frames=STRIDE, num_steps=steps),
                           duration=steps * STRIDE / FPS, fps=FPS, stride_frames=STRIDE)
    torch.manual_seed(0)
    for _ in range(200):
        window = dataset.random_window(item)
        assert window.feats.shape[1] == steps and torch.equal(window.segments, segments)
