"""Detection AP: hand-computed cases, the loop reference on random inputs, files, real ground truth."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from reference_eval import official_style_map, reference_detection_ap, to_official_frames

from eval.detection import (
    DEFAULT_TIOU_THRESHOLDS,
    evaluate_detection,
    interpolated_average_precision,
    parse_tiou_range,
    segment_tiou,
)
from eval.errors import EvalInputError
from eval.io import read_detection_predictions, write_detection_predictions


def gt_table(rows):
    return pd.DataFrame(rows, columns=["video_id", "t_start", "t_end", "label"])


def pred_table(rows):
    return pd.DataFrame(rows, columns=["video_id", "t_start", "t_end", "label", "score"])


def random_case(rng, *, videos=12, gt_rows=40, pred_rows=400, classes=4, coarse=True):
    """Random ground truth and predictions; coarse rounding creates score and tIoU ties."""
    ids = [f"v{i}" for i in range(videos)]
    s, d = rng.uniform(0, 10, gt_rows), rng.uniform(0.2, 5, gt_rows)
    digits = 1 if coarse else 6
    gt = gt_table({"video_id": rng.choice(ids, gt_rows), "t_start": np.round(s, digits),
                   "t_end": np.round(s + d, digits), "label": rng.integers(0, classes, gt_rows)})
    s, d = rng.uniform(0, 10, pred_rows), rng.uniform(0.2, 5, pred_rows)
    pred = pred_table({"video_id": rng.choice(ids + ["unseen"], pred_rows), "t_start": np.round(s, digits),
                       "t_end": np.round(s + d, digits), "label": rng.integers(0, classes, pred_rows),
                       "score": np.round(rng.uniform(0, 1, pred_rows), 2 if coarse else 12)})
    return gt, pred


def test_default_thresholds_are_the_official_floats():
    assert np.array_equal(DEFAULT_TIOU_THRESHOLDS, np.arange(0.1, 1.0, 0.1))
    assert np.array_equal(parse_tiou_range("0.1:0.9:0.1"), np.arange(0.1, 1.0, 0.1))
    assert np.array_equal(parse_tiou_range("0.3,0.5,0.7"), [0.3, 0.5, 0.7])
    with pytest.raises(ValueError):
        parse_tiou_range("0.1:1.5:0.1")


def test_segment_tiou_epsilon_and_plain():
    pred, gt = np.array([[0.0, 1.0]]), np.array([[0.0, 2.0], [3.0, 4.0]])
    assert segment_tiou(pred, gt, protocol="activitynet")[0].tolist() == [0.5, 0.0]
    assert segment_tiou(pred, gt, protocol="mma52")[0, 0] == 1.0 / (2.0 + 1e-4)
    assert segment_tiou([[1.0, 1.0]], [[1.0, 1.0]], protocol="activitynet")[0, 0] == 0.0


def test_perfect_predictions_score_one():
    gt = gt_table([("a", 0.0, 2.0, 0), ("a", 1.0, 5.0, 1), ("b", 3.0, 4.0, 0)])
    pred = pred_table([(v, s, e, c, 0.9) for v, s, e, c in gt.itertuples(index=False)])
    result = evaluate_detection(gt, pred)
    assert np.all(result.ap == 1.0)
    assert result.average_mAP == 1.0 and result.mAP_at(0.5) == 1.0


def test_empty_predictions_and_all_false_positives_score_zero():
    gt = gt_table([("a", 0.0, 2.0, 0), ("b", 3.0, 4.0, 1)])
    empty = evaluate_detection(gt, pred_table([]))
    assert np.all(empty.ap == 0.0) and empty.num_predictions == 0
    wrong = pred_table([("a", 5.0, 6.0, 0, 0.9), ("zzz", 3.0, 4.0, 1, 0.8), ("a", 0.0, 2.0, 1, 0.7)])
    result = evaluate_detection(gt, wrong)
    assert np.all(result.ap == 0.0)
    assert result.num_predictions_unknown_video == 1


def test_duplicates_are_false_positives_and_precision_is_made_monotone():
    gt = gt_table([("a", 0.0, 2.0, 0), ("a", 4.0, 6.0, 0)])
    pred = pred_table([("a", 0.0, 2.0, 0, 0.9), ("a", 0.0, 2.0, 0, 0.8), ("a", 4.0, 6.0, 0, 0.7)])
    result = evaluate_detection(gt, pred, tiou_thresholds=[0.5])
    # tp 1,0,1 -> recall .5,.5,1 precision 1,.5,2/3 -> envelope 1,2/3,2/3 -> .5*1 + .5*2/3
    assert result.ap[0, 0] == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-15)
    assert interpolated_average_precision([1.0, 0.5, 2 / 3], [0.5, 0.5, 1.0]) == pytest.approx(5 / 6)


def test_equal_scores_visit_the_later_row_first():
    gt = gt_table([("a", 0.0, 2.0, 0)])
    false_then_true = pred_table([("a", 5.0, 6.0, 0, 0.5), ("a", 0.0, 2.0, 0, 0.5)])
    true_then_false = false_then_true.iloc[::-1].reset_index(drop=True)
    assert evaluate_detection(gt, false_then_true, tiou_thresholds=[0.5]).ap[0, 0] == 1.0
    assert evaluate_detection(gt, true_then_false, tiou_thresholds=[0.5]).ap[0, 0] == 0.5


def test_equal_tiou_takes_the_later_ground_truth_segment():
    gt = gt_table([("a", 0.0, 2.0, 0), ("a", 2.0, 4.0, 0)])
    pred = pred_table([("a", 1.0, 3.0, 0, 0.9), ("a", 0.0, 2.0, 0, 0.8)])
    # the first prediction overlaps both segments by 1/3 and takes the second one,
    # which leaves the first segment for the exact second prediction
    result = evaluate_detection(gt, pred, tiou_thresholds=[0.3])
    assert result.ap[0, 0] == 1.0
    ref = reference_detection_ap(gt, pred, tiou_thresholds=[0.3], classes=[0])
    assert ref[0, 0] == 1.0


def test_epsilon_decides_a_boundary_match():
    gt = gt_table([("a", 0.0, 2.0, 0)])
    pred = pred_table([("a", 0.0, 1.0, 0, 0.9)])
    assert evaluate_detection(gt, pred, tiou_thresholds=[0.5], protocol="activitynet").ap[0, 0] == 1.0
    assert evaluate_detection(gt, pred, tiou_thresholds=[0.5], protocol="mma52").ap[0, 0] == 0.0


def test_class_without_ground_truth_is_listed_and_left_out():
    gt = gt_table([("a", 0.0, 2.0, 0)])
    pred = pred_table([("a", 0.0, 2.0, 0, 0.9), ("a", 0.0, 2.0, 2, 0.9)])
    result = evaluate_detection(gt, pred, num_classes=3)
    assert result.classes_without_ground_truth == [1, 2]
    assert np.isnan(result.ap[:, 1:]).all()
    assert result.average_mAP == 1.0
    report = result.to_dict()
    assert list(report["per_class_AP"]) == ["0"] and report["mAP"]["0.3"] == 1.0
    json.dumps(report)


def test_label_outside_num_classes_is_an_error():
    gt = gt_table([("a", 0.0, 2.0, 0)])
    with pytest.raises(EvalInputError, match="outside 0..1"):
        evaluate_detection(gt, pred_table([("a", 0.0, 2.0, 5, 0.9)]), num_classes=2)


@pytest.mark.parametrize("protocol", ["mma52", "activitynet"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_equals_the_loop_reference_on_random_inputs(seed, protocol):
    rng = np.random.default_rng(seed)
    gt, pred = random_case(rng, coarse=seed != 2)
    result = evaluate_detection(gt, pred, protocol=protocol, num_classes=5)
    ref = reference_detection_ap(gt, pred, tiou_thresholds=result.tiou_thresholds,
                                 classes=result.classes, protocol=protocol)
    assert np.array_equal(np.isnan(result.ap), np.isnan(ref))
    assert np.nanmax(np.abs(result.ap - ref)) <= 1e-12


def test_loop_reference_equals_the_official_pandas_flow():
    rng = np.random.default_rng(7)
    gt, pred = random_case(rng, pred_rows=150, classes=3)
    official = official_style_map(*to_official_frames(gt, pred), num_classes=3)
    ref = reference_detection_ap(gt, pred, tiou_thresholds=DEFAULT_TIOU_THRESHOLDS, classes=[0, 1, 2])
    assert np.array_equal(official, ref)


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_prediction_files_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(3)
    _, pred = random_case(rng, pred_rows=30, coarse=False)
    path = write_detection_predictions(tmp_path / f"pred{suffix}", pred)
    back = read_detection_predictions(path, num_classes=5)
    if suffix == ".json":  # grouped by video
        pred = pd.concat([g for _, g in pred.groupby("video_id", sort=False)]).reset_index(drop=True)
    pd.testing.assert_frame_equal(back, pred, check_dtype=False)


def test_challenge_csv_header_and_json_class_names(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text(",video_id,t_start,t_end,class,score\n0,val0000,0.5,2.5,5,0.25\n")
    table = read_detection_predictions(path, num_classes=52)
    assert table.iloc[0].tolist() == ["val0000", 0.5, 2.5, 5, 0.25]
    jpath = tmp_path / "p.json"
    jpath.write_text(json.dumps({"results": {"v": [{"segment": [0, 1], "label": "nodding", "score": 0.5}]}}))
    assert read_detection_predictions(jpath, class_names=["x", "nodding"]).label.tolist() == [1]


@pytest.mark.parametrize(
    "body, message",
    [
        (",video_id,t_start,t_end,class\n0,a,0,1,1\n", "line 1: missing column"),
        (",video_id,t_start,t_end,class,score\n0,a,0,1,1,0.5\n1,a,0,1,1,\n", "line 3: score missing"),
        (",video_id,t_start,t_end,class,score\n0,a,0,1,1,-0.5\n", "line 2: negative score"),
        (",video_id,t_start,t_end,class,score\n0,a,0,1,1,0.5\n1,a,2,1,1,0.5\n", "line 3: segment ends before"),
        (",video_id,t_start,t_end,class,score\n0,a,0,1,52,0.5\n", "line 2: class 52 out of range"),
        (",video_id,t_start,t_end,class,score\n0,a,0,1,1.5,0.5\n", "line 2: class 1.5 is not an integer"),
        ("", "empty file"),
    ],
)
def test_bad_prediction_rows_are_located(tmp_path, body, message):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(EvalInputError, match=message) as info:
        read_detection_predictions(path, num_classes=52)
    assert str(info.value).startswith(str(path))


def jittered_predictions(gt: pd.DataFrame, rng, *, false_positives_per_video=3) -> pd.DataFrame:
    """Ground truth with jittered boundaries and random scores, plus random false positives."""
    length = (gt.t_end - gt.t_start).to_numpy()
    start = gt.t_start.to_numpy() + rng.normal(0, 0.15, len(gt)) * length
    end = gt.t_end.to_numpy() + rng.normal(0, 0.15, len(gt)) * length
    hits = pred_table({"video_id": gt.video_id.to_numpy(), "t_start": np.minimum(start, end),
                       "t_end": np.maximum(start, end), "label": gt.label.to_numpy(),
                       "score": rng.uniform(0.2, 1.0, len(gt))})
    videos = np.repeat(gt.video_id.unique(), false_positives_per_video)
    s = rng.uniform(0, 8, videos.size)
    noise = pred_table({"video_id": videos, "t_start": s, "t_end": s + rng.uniform(0.3, 4, videos.size),
                        "label": rng.integers(0, 52, videos.size), "score": rng.uniform(0, 0.8, videos.size)})
    return pd.concat([hits, noise], ignore_index=True)


def test_real_validation_ground_truth_matches_the_reference(shared_datasets):
    val = pd.read_csv(shared_datasets / "mma52" / "val.csv")
    from_csv = gt_table({"video_id": val.video_id, "t_start": val.start_frame / val.fps,
                         "t_end": val.end_frame / val.fps, "label": val["class"]})
    annotations = json.loads((shared_datasets / "mma52" / "mmad.json").read_text())
    from_json = gt_table([(vid, s, e, c) for vid, a in annotations.items() if a["subset"] == "val"
                          for c, s, e in a["actions"]])
    assert len(from_csv) == len(from_json) == 4735
    pred = jittered_predictions(from_json, np.random.default_rng(0))
    for gt in (from_csv, from_json):
        result = evaluate_detection(gt, pred, num_classes=52)
        ref = reference_detection_ap(gt, pred, tiou_thresholds=DEFAULT_TIOU_THRESHOLDS, classes=range(52))
        assert not result.classes_without_ground_truth
        assert np.array_equal(result.ap, ref)
        assert result.average_mAP == ref.mean(axis=1).mean()
        assert 0.2 < result.average_mAP < 0.95


def test_eval_imports_neither_torch_nor_mmad_nor_matplotlib():
    import subprocess
    import sys

    code = ("import sys, eval, eval.report, eval.frames, eval.io; "
            "print(sorted(m for m in ('torch', 'mmad', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
