"""The Python API (Recognizer, Detector), `mmad recognize` and `mmad export` on a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmad.cli import main
from mmad.config import from_dict, to_dict
from mmad.engine.checkpoint import atomic_save
from mmad.errors import ConfigError, DataError
from recognition.config import RecognitionConfig
from recognition.model import build_model

torch.set_num_threads(1)

TINY_MODEL = {
    "num_classes": 52, "dim": 32, "modality": "rgb+pose", "backbone": {"arch": "resnet18"},
    "sem": {"roi_size": 2, "pose_hidden": 32}, "transformer": {"num_layers": 1, "num_heads": 4, "ffn_dim": 64},
    "head": {"hidden_dim": 32},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny MicroPuppet recognition folder and a randomly initialised rgb+pose checkpoint for it."""
    from mmad.datasets import open_dataset
    from mmad.synth import generate_recognition

    base = tmp_path_factory.mktemp("api")
    root = generate_recognition(base / "data", preset="tiny", seed=0)
    cfg = from_dict(RecognitionConfig, {
        "model": TINY_MODEL,
        "data": {"root": str(root), "num_frames": 4, "frame_stride": 2, "image_size": 64, "resize_short_side": 64},
        "train": {"num_workers": 0},
    })
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    checkpoint = atomic_save({"model": model.state_dict(), "ema": None, "config": to_dict(cfg)}, base / "rec.pt")
    info = open_dataset(root)
    clip = info.read("val")[0]
    return {"cfg": cfg, "checkpoint": checkpoint, "clip": clip, "keypoints": info.keypoint_folder(clip),
            "base": base}


def test_recognizer_predicts_what_the_test_pipeline_predicts(tiny):
    from recognition.api import Recognizer
    from recognition.task import predict

    rec = Recognizer.from_checkpoint(tiny["checkpoint"], device="cpu")
    table = rec.predict(tiny["clip"].path, keypoints=tiny["keypoints"], top_k=3)
    assert list(table.columns) == ["rank", "class_id", "class_name", "body_group", "score"]
    assert table["rank"].tolist() == [1, 2, 3] and table["score"].is_monotonic_decreasing
    reference = predict(tiny["cfg"], tiny["checkpoint"], split="val", device="cpu")
    row = reference.video_ids.index(tiny["clip"].video_id)
    probs = reference.scores[row]
    np.testing.assert_allclose(table["score"].to_numpy(), np.sort(probs)[::-1][:3], rtol=1e-5, atol=1e-6)
    assert table["class_id"].iloc[0] == int(np.argmax(probs))
    assert table["class_name"].iloc[0] == rec.class_names[table["class_id"].iloc[0]]


def test_recognizer_needs_keypoints_and_real_files(tiny):
    from recognition.api import Recognizer

    rec = Recognizer.from_checkpoint(tiny["checkpoint"], device="cpu")
    with pytest.raises(DataError, match="needs the clip's keypoints"):
        rec.predict(tiny["clip"].path)
    with pytest.raises(DataError, match="video not found"):
        rec.predict(tiny["base"] / "missing.mp4", keypoints=tiny["keypoints"])
    junk = tiny["base"] / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(DataError, match="junk.pt: .*text file"):
        Recognizer.from_checkpoint(junk)


def test_recognize_command_prints_top_k(tiny, capsys):
    args = ["recognize", tiny["clip"].path, "--checkpoint", str(tiny["checkpoint"]), "--keypoints",
            str(tiny["keypoints"]), "--top-k", "2", "--device", "cpu"]
    assert main(args + ["--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [p["rank"] for p in result["predictions"]] == [1, 2]
    assert main(args) == 0
    assert "class_name" in capsys.readouterr().out
    assert main(["recognize", tiny["clip"].path, "--checkpoint", str(tiny["checkpoint"])]) == 2
    err = capsys.readouterr().err.strip()
    assert "keypoints" in err and "\n" not in err


def test_torchscript_export_gives_the_eager_logits_on_a_real_clip(tiny, capsys):
    from recognition.api import Recognizer

    out = tiny["base"] / "rec.ts.pt"
    assert main(["export", "--checkpoint", str(tiny["checkpoint"]), "--out", str(out)]) == 0
    assert "torchscript" in capsys.readouterr().out
    rec = Recognizer.from_checkpoint(tiny["checkpoint"], device="cpu")
    batch = rec.clip_batch(tiny["clip"].path, keypoints=tiny["keypoints"], views=(2, 1))
    exported = torch.jit.load(str(out))
    with torch.no_grad():
        eager = rec.model(batch).logits
        got = exported(batch.frames, batch.keypoints, batch.boxes, batch.entity_conf)
    assert got.shape == eager.shape == (2, 52)
    torch.testing.assert_close(got, eager, atol=1e-4, rtol=1e-4)


def test_onnx_export_matches_eager_or_names_what_is_missing(tiny):
    from recognition.export import export_recognizer

    out = tiny["base"] / "rec.onnx"
    try:
        report = export_recognizer(tiny["checkpoint"], out)
    except ConfigError as e:
        assert not out.exists()
        if "onnxruntime" in str(e) or "onnx" in str(e).lower():
            pytest.skip(str(e))
        raise
    assert report.format == "onnx" and report.max_abs_diff <= 1e-4 and out.is_file()


def test_export_refuses_unknown_formats(tiny, capsys):
    assert main(["export", "--checkpoint", str(tiny["checkpoint"]), "--out", str(tiny["base"] / "m.tflite")]) == 2
    assert "unknown export format" in capsys.readouterr().err
