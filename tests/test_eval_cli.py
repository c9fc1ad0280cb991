"""``mmad eval``: JSON/table output, official numbers on the real MMA-52 validation set, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from reference_eval import official_style_map, reference_detection_ap, to_official_frames
from sklearn.metrics import f1_score as sk_f1_score

from eval.detection import DEFAULT_TIOU_THRESHOLDS, threshold_key
from eval.io import ma52_submission_from_scores, write_detection_predictions, write_ma52_submission
from eval.recognition import MA52_BODY_OF_ACTION
from mmad.cli import main


def run_json(capsys, argv):
    """Run the CLI with --json; stdout must hold exactly one JSON object."""
    assert main([*argv, "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.endswith("}\n")
    return json.loads(out)


def official_val_ground_truth(shared_datasets) -> pd.DataFrame:
    """Ground truth exactly as the official script builds it: mmad.json, subset val, seconds."""
    annotations = json.loads((shared_datasets / "mma52" / "mmad.json").read_text())
    return pd.DataFrame(
        [(vid, s, e, c) for vid, a in annotations.items() if a["subset"] == "val" for c, s, e in a["actions"]],
        columns=["video_id", "t_start", "t_end", "label"],
    )


def noisy_predictions(gt: pd.DataFrame, rng, *, rows: int) -> pd.DataFrame:
    """Jittered copies of ground-truth segments, wrong-class copies and predictions for unknown videos."""
    pick = rng.integers(0, len(gt), rows)
    start = gt.t_start.to_numpy()[pick] + rng.normal(0, 0.4, rows)
    end = gt.t_end.to_numpy()[pick] + rng.normal(0, 0.4, rows)
    label = np.where(rng.random(rows) < 0.8, gt.label.to_numpy()[pick], rng.integers(0, 52, rows))
    video = np.where(rng.random(rows) < 0.02, "not_a_video", gt.video_id.to_numpy()[pick])
    return pd.DataFrame({"video_id": video, "t_start": np.minimum(start, end), "t_end": np.maximum(start, end),
                         "label": label, "score": np.round(rng.random(rows), 3)})


@pytest.mark.parametrize("source", ["val.csv", "mmad.json"])
def test_detection_equals_the_official_script_on_real_validation(shared_datasets, tmp_path, capsys, source):
    gt = official_val_ground_truth(shared_datasets)
    pred = noisy_predictions(gt, np.random.default_rng(1), rows=1000)
    pred_path = write_detection_predictions(tmp_path / "pred.csv", pred)
    argv = ["eval", "detection", "--gt", str(shared_datasets / "mma52" / source), "--pred", str(pred_path)]
    report = run_json(capsys, argv + (["--split", "val"] if source == "mmad.json" else []))

    official_ap = official_style_map(*to_official_frames(gt, pred), num_classes=52)
    official_map = official_ap.mean(axis=1)
    assert report["mAP"] == {threshold_key(t): m for t, m in zip(DEFAULT_TIOU_THRESHOLDS, official_map)}
    assert report["average_mAP"] == official_map.mean()
    assert report["mAP@0.5"] == official_map[4]
    assert report["per_class_AP"] == {str(c): a for c, a in enumerate(official_ap.mean(axis=0))}
    assert report["num_predictions"] == 1000 and report["num_ground_truth"] == 4735
    assert report["num_predictions_unknown_video"] == int((pred.video_id == "not_a_video").sum())
    assert report["classes_without_ground_truth"] == []


def test_detection_larger_file_and_activitynet_protocol(shared_datasets, tmp_path, capsys):
    gt = official_val_ground_truth(shared_datasets)
    pred = noisy_predictions(gt, np.random.default_rng(2), rows=8000)
    pred_path = write_detection_predictions(tmp_path / "pred.json", pred)
    thresholds = [0.3, 0.5, 0.7]
    for protocol in ("mma52", "activitynet"):
        report = run_json(capsys, ["eval", "detection", "--gt", str(shared_datasets / "mma52" / "val.csv"),
                                   "--pred", str(pred_path), "--tiou", "0.3,0.5,0.7", "--protocol", protocol])
        # the JSON file groups rows by video; ties in score are visited in that file order
        grouped = pd.concat([g for _, g in pred.groupby("video_id", sort=False)], ignore_index=True)
        ref = reference_detection_ap(gt, grouped, tiou_thresholds=thresholds, classes=range(52), protocol=protocol)
        assert list(report["mAP"].values()) == ref.mean(axis=1).tolist()
        assert report["protocol"] == protocol


def test_detection_table_output(shared_datasets, tmp_path, capsys):
    gt = official_val_ground_truth(shared_datasets)
    pred_path = write_detection_predictions(tmp_path / "p.csv", gt.assign(score=1.0, video_id=gt.video_id))
    assert main(["eval", "detection", "--gt", str(shared_datasets / "mma52" / "val.csv"), "--pred", str(pred_path)]) == 0
    out = capsys.readouterr().out
    assert "Average" in out and "100.00" in out and "mAP@0.5: 100.00" in out


def test_detection_subset_and_hidden_labels(shared_datasets, tmp_path, capsys):
    pred_path = tmp_path / "p.csv"
    pred_path.write_text(",video_id,t_start,t_end,class,score\n0,val0000,0,1,0,0.5\n")
    assert main(["eval", "detection", "--gt", str(shared_datasets / "mma52" / "mmad.json"), "--pred", str(pred_path)]) == 2
    assert "--split" in capsys.readouterr().err
    assert main(["eval", "detection", "--gt", str(shared_datasets / "mma52" / "test.csv"), "--pred", str(pred_path)]) == 2
    assert "hidden" in capsys.readouterr().err


def small_mma52_csv(tmp_path):
    path = tmp_path / "val.csv"
    path.write_text("id,video_id,start_frame,end_frame,class,total_frames,fps\n"
                    "0,v0,30,90,3,300,30.0\n1,v0,60,150,7,300,30.0\n2,v1,0,45,3,150,30.0\n")
    return path


@pytest.mark.parametrize(
    "body, where",
    [
        (",video_id,t_start,t_end,class\n0,v0,0,1,1\n", "line 1: missing column"),
        (",video_id,t_start,t_end,class,score\n0,v0,0,1,1,0.5\n1,v0,0,1,1,nan\n", "line 3: score"),
        (",video_id,t_start,t_end,class,score\n0,v0,0,1,1,-1\n", "line 2: negative score"),
        (",video_id,t_start,t_end,class,score\n0,v0,3,1,1,0.5\n", "line 2: segment ends before it starts"),
        (",video_id,t_start,t_end,class,score\n0,v0,0,1,60,0.5\n", "line 2: class 60 out of range"),
        ("", "empty file"),
    ],
)
def test_detection_bad_predictions_exit_2_with_one_line(tmp_path, capsys, body, where):
    pred_path = tmp_path / "bad.csv"
    pred_path.write_text(body)
    rc = main(["eval", "detection", "--gt", str(small_mma52_csv(tmp_path)), "--pred", str(pred_path), "--json"])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and str(pred_path) in captured.err and where in captured.err


def test_detection_on_a_small_file_counts_unknown_videos(tmp_path, capsys):
    pred_path = tmp_path / "p.csv"
    pred_path.write_text(",video_id,t_start,t_end,class,score\n0,v0,1,3,3,0.9\n1,zz,0,1,3,0.8\n2,v1,0,1.5,3,0.7\n")
    report = run_json(capsys, ["eval", "detection", "--gt", str(small_mma52_csv(tmp_path)), "--pred", str(pred_path)])
    # class 3: TP, FP (unknown video), TP -> precision 1, .5, 2/3 recall .5, .5, 1
    assert report["per_class_AP"]["3"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert report["per_class_AP"]["7"] == 0.0
    assert report["num_predictions_unknown_video"] == 1
    assert report["classes_without_ground_truth"] == [c for c in range(52) if c not in (3, 7)]


def write_list(path, labels):
    names = [f"0001_{MA52_BODY_OF_ACTION[a]:02d}_{i:04d}.mp4" for i, a in enumerate(labels)]
    path.write_text("".join(f"{n} {a}\n" for n, a in zip(names, labels)))
    return names


def test_recognition_json_matches_scikit_learn(tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 52, 200)
    names = write_list(tmp_path / "val_list_videos.txt", labels)
    scores = rng.normal(size=(200, 52))
    scores[np.arange(200), labels] += 1.5
    order = rng.permutation(200)  # submission rows in another order than the list
    sub = ma52_submission_from_scores([names[i] for i in order], scores[order])
    sub_path = write_ma52_submission(tmp_path / "prediction.csv", sub)
    report = run_json(capsys, ["eval", "recognition", "--gt", str(tmp_path / "val_list_videos.txt"),
                               "--pred", str(sub_path), "--confusion-png", str(tmp_path / "cm.png"),
                               "--confusion-csv", str(tmp_path / "cm.csv")])
    top1 = scores.argmax(axis=1)
    assert report["action_top1"] == pytest.approx(np.mean(top1 == labels))
    expected_f1 = [sk_f1_score(labels, top1, average=a) for a in ("macro", "micro")] + [
        sk_f1_score(MA52_BODY_OF_ACTION[labels], MA52_BODY_OF_ACTION[top1], average=a) for a in ("macro", "micro")]
    assert report["f1_mean"] == pytest.approx(np.mean(expected_f1), abs=1e-12)
    assert (tmp_path / "cm.png").stat().st_size > 0
    assert pd.read_csv(tmp_path / "cm.csv", index_col=0).to_numpy().sum() == 200
    assert main(["eval", "recognition", "--gt", str(tmp_path / "val_list_videos.txt"), "--pred", str(sub_path)]) == 0
    assert "F1mean" in capsys.readouterr().out


def test_recognition_incomplete_or_foreign_submission(tmp_path, capsys):
    names = write_list(tmp_path / "val_list_videos.txt", [0, 5, 30])
    sub = ma52_submission_from_scores(names[:2], np.eye(52)[:2])
    path = write_ma52_submission(tmp_path / "p.csv", sub)
    assert main(["eval", "recognition", "--gt", str(tmp_path / "val_list_videos.txt"), "--pred", str(path)]) == 2
    assert "no prediction for 1 of 3 videos" in capsys.readouterr().err
    sub = ma52_submission_from_scores([*names, "9999_00_0001.mp4"], np.eye(52)[:4])
    path = write_ma52_submission(tmp_path / "p.csv", sub)
    assert main(["eval", "recognition", "--gt", str(tmp_path / "val_list_videos.txt"), "--pred", str(path)]) == 2
    err = capsys.readouterr().err
    assert "line 5" in err and "9999_00_0001.mp4" in err


def test_recognition_on_the_real_validation_list(shared_datasets, tmp_path, capsys):
    lines = (shared_datasets / "ma52" / "val_list_videos.txt").read_text().split()
    names, labels = lines[0::2], np.array(lines[1::2], dtype=int)
    rng = np.random.default_rng(5)
    scores = rng.normal(size=(len(names), 52))
    scores[np.arange(len(names)), labels] += 2.0
    path = write_ma52_submission(tmp_path / "p.csv", ma52_submission_from_scores(names, scores))
    report = run_json(capsys, ["eval", "recognition", "--gt", str(shared_datasets / "ma52" / "val_list_videos.txt"),
                               "--pred", str(path)])
    top1 = scores.argmax(axis=1)
    assert report["num_samples"] == 5586
    assert report["action_f1_macro"] == pytest.approx(sk_f1_score(labels, top1, average="macro"), abs=1e-12)
