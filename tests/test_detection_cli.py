"""``mmad detection extract/train/test`` and ``mmad detect`` end to end on tiny MicroPuppet data."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from mmad.cli import main

torch.set_num_threads(1)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny detection data, a randomly initialised tiny rgb+pose recognizer checkpoint and a head config."""
    from mmad.config import from_dict, to_dict
    from mmad.synth import generate_detection
    from recognition.config import RecognitionConfig
    from recognition.model import build_model

    base = tmp_path_factory.mktemp("detection_cli")
    root = Path(generate_detection(base / "data", preset="tiny", seed=0))
    rcfg = from_dict(RecognitionConfig, {
        "model": {"num_classes": 52, "dim": 16, "backbone": {"arch": "resnet18"},
                  "sem": {"roi_size": 2, "pose_hidden": 16},
                  "transformer": {"num_layers": 1, "num_heads": 2, "ffn_dim": 32}, "head": {"hidden_dim": 16}},
        "data": {"num_frames": 4, "frame_stride": 4, "image_size": 64, "resize_short_side": 64},
    })
    torch.manual_seed(0)
    recognizer = base / "recognizer.pt"
    torch.save({"model": build_model(rcfg.model).state_dict(), "ema": None, "config": to_dict(rcfg)}, recognizer)
    config = {
        "data": {"root": str(root), "feature_dir": str(base / "features"), "val_subset": "val", "test_subset": "test",
                 "max_seq_len": 64, "num_workers": 0},
        "model": {"feature_dim": 512 + 16, "num_classes": 52, "embed_dim": 16, "num_levels": 3,
                  "num_stem_layers": 1, "num_heads": 2, "head_convs": 1},
        "train": {"epochs": 2, "batch_size": 2, "num_workers": 0, "amp": False, "eval_every": 1, "ema": None,
                  "tensorboard": False, "progress_bar": False},
        "optim": {"name": "adamw", "lr": 0.001, "warmup_epochs": 0},
        "encoder": {"stride_frames": 4, "chunk_frames": 16, "device": "cpu"},
        "out": str(base / "run"),
    }
    from detection.config import DetectionConfig

    from_dict(DetectionConfig, config)  # the test's own config must be valid
    config_path = base / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(config))
    return {"root": root, "base": base, "recognizer": recognizer, "config": config_path, "run": base / "run"}


@pytest.fixture(scope="module")
def trained(setup):
    rc, out, err = run_cli(["detection", "extract", "--config", setup["config"], "--checkpoint", setup["recognizer"]])
    assert rc == 0, err
    assert "encoded 4 video(s)" in out
    rc, out_again, _ = run_cli(["detection", "extract", "--config", setup["config"],
                                "--checkpoint", setup["recognizer"]])
    assert rc == 0 and "encoded 0 video(s)" in out_again and "4 already cached" in out_again
    rc, train_out, err = run_cli(["detection", "train", "--config", setup["config"]])
    assert rc == 0, err
    return {**setup, "extract_out": out, "train_out": train_out}


def test_extract_writes_a_cache_per_video(trained):
    features = trained["base"] / "features"
    assert sorted(p.stem for p in features.glob("*.npy")) == ["test0000", "train0000", "train0001", "val0000"]
    meta = json.loads((features / "val0000.json").read_text())
    assert meta["feature_dim"] == 528 and meta["stride_frames"] == 4


def test_train_then_test_prints_the_table_and_writes_the_csv(trained):
    assert "run folder:" in trained["train_out"] and (trained["run"] / "last.pt").is_file()
    predictions = trained["base"] / "val_predictions.csv"
    rc, out, err = run_cli(["detection", "test", "--config", trained["config"], "--checkpoint",
                            trained["run"] / "last.pt", "--split", "val", "--pred", predictions,
                            "--diagnose", trained["base"] / "diagnosis"])
    assert rc == 0, err
    assert "mAP@0.5" in out and "Average" in out and "0.9" in out
    assert "overlap degree" in out and (trained["base"] / "diagnosis" / "boundary_errors.png").is_file()
    table = pd.read_csv(predictions, index_col=0)
    assert list(table.columns) == ["video_id", "t_start", "t_end", "class", "score"]
    assert set(table["video_id"]) <= {"val0000"}
    metrics = json.loads((trained["base"] / "metrics_val.json").read_text())
    assert set(metrics["mAP"]) == {f"{t / 10:.1f}" for t in range(1, 10)} and "average_mAP" in metrics
    per_class = pd.read_csv(trained["base"] / "per_class_ap_val.csv")
    assert list(per_class.columns[:3]) == ["class", "name", "ground_truth"]
    assert "AP@0.5" in per_class.columns and per_class["ground_truth"].sum() == metrics["num_ground_truth"]
    assert per_class["name"].map(lambda n: isinstance(n, str) and not n.startswith("class_")).all()


def test_test_reads_the_checkpoints_config_and_writes_beside_it(trained):
    rc, out, err = run_cli(["detection", "test", "--checkpoint", trained["run"] / "last.pt", "--split", "val"])
    assert rc == 0, err
    written = trained["run"] / "predictions_val.csv"
    assert f"predictions: {written}" in out and written.is_file()


def test_extract_out_and_in_dataset(setup, tmp_path):
    """--out names the feature folder; --in-dataset writes into DATA/features; nothing else in the dataset."""
    before = {p for p in setup["root"].rglob("*")}
    rc, out, err = run_cli(["detection", "extract", "--config", setup["config"], "--checkpoint", setup["recognizer"],
                            "--split", "val", "--out", tmp_path / "feats"])
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "feats").iterdir()) == ["val0000.json", "val0000.npy"]
    assert {p for p in setup["root"].rglob("*")} == before
    rc, out, err = run_cli(["detection", "extract", "--config", setup["config"], "--checkpoint", setup["recognizer"],
                            "--split", "val", "--in-dataset"])
    assert rc == 0, err
    assert (setup["root"] / "features" / "val0000.npy").is_file()
    import shutil

    shutil.rmtree(setup["root"] / "features")


def test_detect_writes_json_csv_and_timeline(trained, tmp_path):
    root = trained["root"]
    rc, out, err = run_cli(["detect", root / "videos" / "val0000.mp4", "--keypoints", root / "keypoints" / "val0000",
                            "--recognizer", trained["recognizer"], "--detector", trained["run"] / "last.pt",
                            "--out", tmp_path / "out", "--html"])
    assert rc == 0, err
    record = json.loads((tmp_path / "out" / "val0000.json").read_text())
    page = (tmp_path / "out" / "val0000.html").read_text()
    assert f'"detections":[{{"label":{record["detections"][0]["class_id"]},' in page and '"keypoints":{"edges"' in page
    assert record["video_id"] == "val0000" and record["fps"] == 30.0 and record["duration"] > 0
    assert record["detections"], "a random head still scores above the threshold somewhere"
    first = record["detections"][0]
    assert set(first) == {"class_id", "class_name", "body_group", "t_start", "t_end", "score"}
    assert 0 <= first["t_start"] < first["t_end"] <= record["duration"]
    scores = [d["score"] for d in record["detections"]]
    assert scores == sorted(scores, reverse=True)
    from mmad.taxonomy import MA52_ACTIONS, MA52_BODY_GROUPS, fine2coarse

    assert first["class_name"] == MA52_ACTIONS[first["class_id"]]
    assert first["body_group"] == MA52_BODY_GROUPS[fine2coarse(first["class_id"])]
    table = pd.read_csv(tmp_path / "out" / "val0000.csv")
    assert list(table.columns) == ["video_id", "t_start", "t_end", "label", "class_name", "body_group", "score"]
    assert len(table) == len(record["detections"])
    png = tmp_path / "out" / "val0000_timeline.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "detection(s)" in out and "s of video" in out


@pytest.mark.skipif(importlib.util.find_spec("mediapipe") is not None, reason="the pose extra is installed")
def test_detect_without_keypoints_or_pose_extra_says_what_to_do(trained, tmp_path):
    root = trained["root"]
    rc, out, err = run_cli(["detect", root / "videos" / "val0000.mp4", "--recognizer", trained["recognizer"],
                            "--detector", trained["run"] / "last.pt", "--out", tmp_path / "out"])
    assert rc == 2
    assert len(err.strip().splitlines()) == 1
    assert "--keypoints" in err and "pose extra" in err
    assert not (tmp_path / "out").exists()


def test_missing_recognizer_is_a_one_line_error(setup, tmp_path):
    rc, _, err = run_cli(["detection", "extract", "--config", setup["config"], "--checkpoint", tmp_path / "none.pt"])
    assert rc == 2 and "none.pt" in err and len(err.strip().splitlines()) == 1


def test_detector_api_gives_what_mmad_detect_writes(trained, tmp_path):
    from detection.api import Detector

    root = trained["root"]
    video, keypoints = root / "videos" / "val0000.mp4", root / "keypoints" / "val0000"
    rc, _, err = run_cli(["detect", video, "--keypoints", keypoints, "--recognizer", trained["recognizer"],
                          "--detector", trained["run"] / "last.pt", "--out", tmp_path / "out"])
    assert rc == 0, err
    written = pd.read_csv(tmp_path / "out" / "val0000.csv")
    det = Detector.from_checkpoints(trained["recognizer"], trained["run"] / "last.pt", device="cpu")
    table = det.detect(video, keypoints=keypoints)
    assert list(table.columns) == list(written.columns) and len(table) == len(written) > 0
    assert table["label"].tolist() == written["label"].tolist()
    for column in ("t_start", "t_end", "score"):
        assert table[column].to_numpy() == pytest.approx(written[column].to_numpy(), abs=1e-4)


def test_train_test_and_detect_use_and_check_the_cache_settings(trained, tmp_path):
    """The detector records its cache's encoder settings; a config or cache that differs is refused by name."""
    from mmad.engine import read_checkpoint

    stored = read_checkpoint(trained["run"] / "last.pt")["config"]
    assert {k: stored["encoder"][k] for k in ("window", "window_dilation", "stride_frames", "image_size",
                                              "resize_short_side")} == {
        "window": 4, "window_dilation": 1, "stride_frames": 4, "image_size": 64, "resize_short_side": 64}
    assert stored["data"]["encoder_hash"]
    # training on a stale cache: the config asks for other windows than the cache holds
    rc, _, err = run_cli(["detection", "train", "--config", trained["config"], "--out", tmp_path / "run2",
                          "--set", "encoder.stride_frames=2"])
    assert rc == 2 and "encoder.stride_frames is 4 in the cache but 2 here" in err
    assert len(err.strip().splitlines()) == 1
    # testing with a config whose encoder differs from the detector's training features
    rc, _, err = run_cli(["detection", "test", "--config", trained["config"], "--checkpoint",
                          trained["run"] / "last.pt", "--split", "val", "--set", "encoder.window=8"])
    assert rc == 2 and "encoder.window" in err
