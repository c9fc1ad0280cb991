"""``mmad demo --quick`` end to end, its resuming, and the report drawn from files."""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from mmad.cli import main

torch.set_num_threads(1)

STAGES = ["data", "recognition-train", "recognition-test", "features", "detection-train", "detection-test",
          "detect", "report"]


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def image_links(report: Path) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    started = time.perf_counter()
    rc, stdout, stderr = run_cli(["demo", "--quick", "--out", out, "--device", "cpu"])
    seconds = time.perf_counter() - started
    assert rc == 0, stderr
    return {"out": out, "stdout": stdout, "stderr": stderr, "seconds": seconds}


def test_every_stage_produced_its_outputs(quick_demo):
    out = quick_demo["out"]
    for stage in STAGES:
        marker = json.loads((out / "stages" / f"{stage}.json").read_text())
        assert marker["status"] == "complete", stage
    assert json.loads((out / "data" / "recognition" / "micropuppet.json").read_text())["preset"] == "tiny"
    assert (out / "data" / "detection" / "mmad.json").is_file()
    for run in ("recognition", "detection"):
        assert (out / run / "last.pt").is_file()
        history = [json.loads(line) for line in (out / run / "metrics.jsonl").read_text().splitlines()]
        assert [h["epoch"] for h in history] == [1, 2]
        assert any((out / run / "tb").iterdir()), "TensorBoard event files"
    rec = json.loads((out / "recognition" / "eval" / "metrics_val.json").read_text())
    assert {"top1", "top5", "f1_mean"} <= set(rec) and rec["split"] == "val"
    routing = pd.read_csv(out / "recognition" / "eval" / "routing_by_class_val.csv")
    assert "alpha_st/left_hand" in routing.columns and len(routing) > 0
    features = sorted(p.stem for p in (out / "features").glob("*.npy"))
    assert features == ["test0000", "train0000", "train0001", "val0000"]
    det = json.loads((out / "detection" / "eval" / "metrics_val.json").read_text())
    assert len(det["mAP"]) == 9 and "mAP@0.5" in det and "average_mAP" in det
    ap = pd.read_csv(out / "detection" / "eval" / "per_class_ap_val.csv")
    assert {"class", "name", "ground_truth", "AP@0.5", "AP"} <= set(ap.columns)
    detect = json.loads((out / "stages" / "detect.json").read_text())["details"]
    video = detect["video_id"]
    assert (out / "detect" / f"{video}.json").is_file() and (out / "detect" / f"{video}_timeline.png").is_file()
    truth = pd.read_csv(out / "detect" / f"{video}_ground_truth.csv")
    assert len(truth) == detect["ground_truth"] > 0


def test_progress_shows_each_stage_with_its_time(quick_demo):
    lines = quick_demo["stdout"].splitlines()
    for i in range(1, len(STAGES) + 1):
        assert any(re.match(rf"\[{i}/{len(STAGES)}\] .*: done in [0-9.:]+( s)?", line) for line in lines), i
    assert "epoch 2/2" in quick_demo["stderr"], "training epochs are shown"
    assert "report:" in quick_demo["stdout"] and "val top1" in quick_demo["stdout"]


def test_report_references_existing_plots(quick_demo):
    out = quick_demo["out"]
    report = out / "report.md"
    text = report.read_text()
    links = image_links(report)
    assert len(links) == 8  # 5 plots + the diagnosis' AP by characteristic, false-positive profile, boundary errors
    for link in links:
        png = out / link
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", link
    assert "mmad recognition train" in text and "mmad detect " in text
    assert "configs/recognition/micropuppet.yaml" in text and "configs/detection/micropuppet.yaml" in text
    assert "| Top-1 |" in text and "mAP@0.5" in text and "tensorboard --logdir" in text
    assert "## Detection diagnosis (val)" in text and "| overlap degree | 2+ |" in text and "double detection" in text


def test_quick_demo_is_quick(quick_demo):
    # the bar is 3 minutes on the 2-core machine; tests share the CPU, so allow some slack
    assert quick_demo["seconds"] < 300


def test_second_run_skips_finished_stages(quick_demo):
    out = quick_demo["out"]
    before = (out / "recognition" / "last.pt").stat().st_mtime_ns
    started = time.perf_counter()
    rc, stdout, stderr = run_cli(["demo", "--quick", "--out", out, "--device", "cpu"])
    assert rc == 0, stderr
    assert time.perf_counter() - started < 15
    assert stdout.count("done before, skipped") == len(STAGES)
    assert (out / "recognition" / "last.pt").stat().st_mtime_ns == before


def test_interrupted_detection_training_resumes_and_later_stages_rerun(quick_demo):
    out = quick_demo["out"]
    # an interruption: the stage never completed, and the run folder holds only the first epoch
    (out / "stages" / "detection-train.json").unlink()
    metrics = out / "detection" / "metrics.jsonl"
    metrics.write_text(metrics.read_text().splitlines()[0] + "\n")
    recognizer = (out / "recognition" / "last.pt").stat().st_mtime_ns
    rc, stdout, stderr = run_cli(["demo", "--quick", "--out", out, "--device", "cpu"])
    assert rc == 0, stderr
    skipped = [line.split("]")[0] for line in stdout.splitlines() if "done before, skipped" in line]
    assert skipped == ["[1/8", "[2/8", "[3/8", "[4/8"]
    assert "[5/8] train the detection head: done in" in stdout
    assert "[8/8] write the report: done in" in stdout
    assert (out / "recognition" / "last.pt").stat().st_mtime_ns == recognizer
    assert "resumed from" in stderr


def test_report_notes_missing_inputs(tmp_path):
    from mmad.report import write_demo_report

    run = tmp_path / "recognition"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": e, "train/loss": 2.0 / e, "val/top1": 0.3 * e}) + "\n" for e in (1, 2, 3)))
    report = write_demo_report(tmp_path)
    text = report.read_text()
    assert image_links(report) == ["plots/training_curves.png"]
    assert "No confusion matrix" in text and "No detection timeline" in text


def test_confusion_plot_keeps_only_the_classes_that_occur(tmp_path):
    from mmad.report import plot_confusion

    names = [f"c{i}" for i in range(52)]
    counts = pd.DataFrame(0, index=names, columns=names)
    counts.loc["c3", "c3"] = 4
    counts.loc["c3", "c9"] = 1
    counts.loc["c7", "c7"] = 2
    png = plot_confusion(tmp_path / "c.png", counts)
    import matplotlib.image

    height, width = matplotlib.image.imread(png).shape[:2]
    assert width < 900 and height < 900  # three classes drawn, not 52


def test_changed_config_restarts_its_stage_from_an_empty_folder(quick_demo, tmp_path):
    import yaml

    from mmad.commands.demo import bundled_config

    out = quick_demo["out"]
    source = bundled_config("recognition")
    changed = yaml.safe_load(source.read_text())
    changed["optim"]["lr"] = 0.0005
    config = tmp_path / "recognition.yaml"
    config.write_text(yaml.safe_dump(changed))
    (out / "recognition" / "stale.txt").write_text("from the earlier config")
    rc, stdout, stderr = run_cli(["demo", "--quick", "--out", out, "--device", "cpu", "--recognition-config", config])
    assert rc == 0, stderr
    assert "[1/8] generate MicroPuppet data: done before, skipped" in stdout
    assert "[2/8] train Micro-DualNet: done in" in stdout
    assert not (out / "recognition" / "stale.txt").exists()
    assert "resumed from" not in stderr
    saved = yaml.safe_load((out / "recognition" / "config.yaml").read_text())
    assert saved["optim"]["lr"] == 0.0005
