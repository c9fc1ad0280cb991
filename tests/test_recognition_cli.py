"""``mmad recognition train/test/interpret`` end to end on a tiny MicroPuppet folder with a tiny model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from eval.io import read_ma52_submission
from mmad.cli import main
from mmad.datasets import open_dataset

torch.set_num_threads(1)

TINY_MODEL = {
    "num_classes": 52,
    "dim": 32,
    "backbone": {"arch": "resnet18"},
    "sem": {"roi_size": 2, "pose_hidden": 32},
    "transformer": {"num_layers": 1, "num_heads": 4, "ffn_dim": 64},
    "head": {"hidden_dim": 32},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny data folder with one training video deleted, a config, and a one-epoch run of it."""
    from mmad.synth import generate_recognition

    base = tmp_path_factory.mktemp("recognition_cli")
    root = generate_recognition(base / "data", preset="tiny", seed=0)
    broken = open_dataset(root).read("train")[5]
    os.remove(broken.path)
    config = {
        "model": TINY_MODEL,
        "data": {"root": str(root), "num_frames": 2, "frame_stride": 4, "image_size": 64,
                 "resize_short_side": 64},
        "train": {"epochs": 1, "batch_size": 4, "num_workers": 0, "amp": False, "progress_bar": False,
                  "tensorboard": False},
        "optim": {"name": "adamw", "lr": 0.001, "warmup_epochs": 0},
        "out": str(base / "unused"),
    }
    config_path = base / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run = base / "run"
    return {"root": root, "config": config_path, "run": run, "broken": broken, "base": base}


@pytest.fixture(scope="module")
def train_output(trained):
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        rc = main(["recognition", "train", "--config", str(trained["config"]), "--out", str(trained["run"])])
    return rc, buffer.getvalue()


def test_train_one_epoch_skips_and_lists_the_missing_video(trained, train_output):
    rc, stdout = train_output
    run = trained["run"]
    assert rc == 0
    assert (run / "last.pt").is_file() and (run / "best.pt").is_file()
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 1
    assert {"val/top1", "val/f1_mean", "train/ce", "train/mac"} <= set(history[0])
    assert any(key.startswith("extra/alpha_st/") for key in history[0])
    skipped = (run / "skipped.txt").read_text()
    assert trained["broken"].video_id in skipped and "video file not found" in skipped
    assert "skipped 1 clip" in stdout and trained["broken"].video_id in stdout
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["dim"] == 32 and saved["data"]["image_size"] == 64


def test_test_writes_metrics_tables_and_submission(trained, train_output, capsys):
    run = trained["run"]
    out = trained["base"] / "report"
    submission = out / "submission.csv"
    rc = main(["recognition", "test", "--config", str(trained["config"]), "--checkpoint", str(run / "best.pt"),
               "--split", "val", "--views", "1x2", "--out", str(out), "--pred", str(submission)])
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "Action Top-1" in stdout and "F1mean" in stdout
    metrics = json.loads((out / "metrics_val.json").read_text())
    assert metrics["num_samples"] == 7 and metrics["views"] == "1x2"
    assert 0.0 <= metrics["top1"] <= metrics["top5"] <= 1.0
    per_class = pd.read_csv(out / "per_class_val.csv")
    assert list(per_class.columns) == ["class", "name", "samples", "accuracy"] and per_class["samples"].sum() == 7
    confusion = pd.read_csv(out / "confusion_val.csv", index_col=0)
    assert confusion.shape == (52, 52) and int(confusion.to_numpy().sum()) == 7
    assert (out / "confusion_val.png").stat().st_size > 1000
    # the submission: one row per val clip, vid = file name with .mp4, top-5 actions and bodies
    sheet = read_ma52_submission(submission)
    val = open_dataset(trained["root"]).read("val")
    assert sorted(sheet["vid"]) == sorted(Path(r.path).name for r in val)
    assert all(v.endswith(".mp4") for v in sheet["vid"])
    for _, row in sheet.iterrows():
        actions = [row[f"action_pred_{k}"] for k in range(1, 6)]
        assert len(set(actions)) == 5
    # the submission scores the same as the metrics file
    rc = main(["eval", "recognition", "--gt", str(trained["root"] / "val_list_videos.txt"), "--pred",
               str(submission), "--json"])
    scored = json.loads(capsys.readouterr().out)
    assert rc == 0 and scored["action_top1"] == pytest.approx(metrics["top1"])


def test_interpret_writes_routing_and_comparison(trained, train_output, capsys):
    run = trained["run"]
    out = trained["base"] / "interpret"
    rc = main(["recognition", "interpret", "--config", str(trained["config"]), "--checkpoint", str(run / "best.pt"),
               "--compare", f"copy={run / 'last.pt'}", "--out", str(out)])
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "mean alpha_ST per entity" in stdout and "position" in stdout
    routing = pd.read_csv(out / "routing_by_class_val.csv")
    assert routing["samples"].sum() == 7
    st = routing[[c for c in routing.columns if c.startswith("alpha_st/")]].to_numpy()
    ts = routing[[c for c in routing.columns if c.startswith("alpha_ts/")]].to_numpy()
    assert st.shape[1] == 6 and ((st + ts - 1).__abs__() < 1e-3).all()
    comparison = pd.read_csv(out / "per_class_comparison_val.csv")
    assert {"dual", "copy"} <= set(comparison.columns)
    assert (comparison["dual"] == comparison["copy"]).all()  # best.pt and last.pt are the same epoch
    groups = pd.read_csv(out / "group_accuracy_val.csv")
    assert set(groups["model"]) == {"dual", "copy"} and {"position", "motion", "all"} <= set(groups.columns)
    assert (out / "routing_by_class_val.png").is_file() and (out / "per_class_comparison_val.png").is_file()


def test_test_and_interpret_read_the_checkpoints_config(trained, train_output, capsys):
    """No --config: the checkpoint's stored config builds the model and finds the data; outputs go
    next to the checkpoint."""
    run = trained["run"]
    capsys.readouterr()
    assert main(["recognition", "test", "--checkpoint", str(run / "best.pt"), "--split", "val"]) == 0
    assert (run / "metrics_val.json").is_file()
    assert main(["recognition", "interpret", "--checkpoint", str(run / "best.pt"),
                 "--compare", f"copy={run / 'last.pt'}"]) == 0
    assert (run / "interpret" / "per_class_comparison_val.csv").is_file()
    capsys.readouterr()
    assert main(["recognition", "test", "--checkpoint", str(run / "best.pt"), "--split", "val",
                 "--set", "model.num_frames=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: --set model.num_frames=2: unknown config key 'model.num_frames' "
                   "(did you mean 'data.num_frames'?)")


def test_user_mistakes_exit_2_with_one_line(trained, capsys):
    rc = main(["recognition", "test", "--config", str(trained["config"]), "--checkpoint",
               str(trained["base"] / "nothing.pt")])
    assert rc == 2
    rc = main(["recognition", "train", "--config", str(trained["config"]), "--set", "data.num_frame=3"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "nothing.pt" in err and "num_frames" in err
    rc = main(["recognition", "test", "--config", str(trained["config"]), "--checkpoint", "x.pt", "--views", "2"])
    assert rc == 2


def test_profile_prints_the_parameter_and_flop_split(trained, capsys):
    rc = main(["recognition", "profile", "--config", str(trained["config"]), "--frames", "2", "--size", "32"])
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "2 frames x 32 px" in stdout
    assert "backbone" in stdout and "total" in stdout and "train step" in stdout
