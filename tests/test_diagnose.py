"""Detection diagnosis: characteristic bins, error types, mAP gains and boundary errors.

Hand-made cases give numbers worked out by hand; random cases are checked against a plain
per-prediction loop (written here, independent of the vectorised matching) and against
``evaluate_detection`` run on edited tables.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_eval import reference_interpolated_ap, reference_segment_iou

from eval.detection import class_average_precision, evaluate_detection, match_detections
from eval.diagnose import (
    DURATION_BINS,
    ERROR_TYPES,
    classify_predictions,
    diagnose_detection,
    instance_characteristics,
    write_diagnosis,
)

GT_COLUMNS = ["video_id", "t_start", "t_end", "label"]
PRED_COLUMNS = ["video_id", "t_start", "t_end", "label", "score"]


def _gt(rows):
    return pd.DataFrame(rows, columns=GT_COLUMNS)


def _pred(rows):
    return pd.DataFrame(rows, columns=PRED_COLUMNS)


def _bin(diagnosis, characteristic, name):
    row = diagnosis.bins[(diagnosis.bins["characteristic"] == characteristic) & (diagnosis.bins["bin"] == name)]
    assert len(row) == 1
    return row.iloc[0]


# ------------------------------------------------------------------------------------ hand-made cases


def test_duration_bins_by_hand():
    # one class, one instance per duration bin; a background false positive ranked first
    gt = _gt([("v", 0.0, 0.5, 0), ("v", 1.0, 2.5, 0), ("v", 3.0, 6.0, 0), ("v", 7.0, 13.0, 0), ("v", 14.0, 24.0, 0)])
    pred = _pred([("v", 30.0, 31.0, 0, 0.95), ("v", 0.0, 0.5, 0, 0.9), ("v", 3.0, 6.0, 0, 0.8)])
    d = diagnose_detection(gt, pred, tiou_thresholds=[0.3, 0.5, 0.7])
    assert list(d.instances["duration_bin"]) == list(DURATION_BINS)
    # "<1 s": FP then TP (the 3 s match is left out): precision 1/2 at recall 1
    assert _bin(d, "duration", "<1 s")["mAP"] == pytest.approx(0.5)
    assert _bin(d, "duration", "2-4 s")["mAP"] == pytest.approx(0.5)
    assert _bin(d, "duration", "1-2 s")["mAP"] == pytest.approx(0.0)
    assert list(d.bins[d.bins["characteristic"] == "duration"]["instances"]) == [1, 1, 1, 1, 1]
    # normalized precision with N = 5 instances / 1 class: 5 / (5 + 1)
    assert _bin(d, "duration", "<1 s")["mAP_N"] == pytest.approx(5 / 6)
    # the whole set: FP, TP, TP over 5 positives; interpolated precision 2/3 at both recall steps
    assert d.average_mAP == pytest.approx(2 / 3 * 0.2 * 2)


def test_overlap_and_same_class_characteristics_by_hand():
    gt = _gt([
        ("a", 0.0, 1.0, 0),                      # alone
        ("a", 2.0, 4.0, 1), ("a", 3.0, 5.0, 1),  # overlap each other, same class
        ("a", 6.0, 9.0, 2), ("a", 5.5, 6.5, 3), ("a", 8.5, 10.0, 4),  # 6-9 overlaps two others
        ("b", 0.5, 1.5, 0),                      # other video: never overlaps video a
        ("a", 1.0, 2.0, 5),                      # touches 0-1 and 2-4 only at their ends: no overlap
    ])
    table = instance_characteristics(gt, body_of_action=np.array([0, 0, 1, 1, 2, 2]), body_names=["x", "y", "z"])
    assert list(table["overlap_degree"]) == [0, 1, 1, 2, 1, 1, 0, 0]
    assert list(table["overlap_bin"]) == ["0", "1", "1", "2+", "1", "1", "0", "0"]
    assert list(table["same_class_overlap"]) == [False, True, True, False, False, False, False, False]
    assert list(table["body_group"]) == ["x", "x", "x", "y", "y", "z", "x", "z"]  # labels 0 1 1 2 3 4 0 5


def test_overlap_bins_ap_by_hand():
    # class 0: an isolated instance (found) and one inside a crowd (missed, a near-miss FP instead)
    gt = _gt([("v", 0.0, 2.0, 0), ("v", 10.0, 12.0, 0), ("v", 9.5, 12.5, 1), ("v", 11.0, 13.0, 2)])
    pred = _pred([("v", 0.0, 2.0, 0, 0.9), ("v", 12.0, 14.0, 0, 0.8), ("v", 9.5, 12.5, 1, 0.7)])
    d = diagnose_detection(gt, pred, tiou_thresholds=[0.5])
    # bin "0": class 0 only: TP, then the FP -> AP 1
    assert _bin(d, "overlap degree", "0")["mAP"] == pytest.approx(1.0)
    assert _bin(d, "overlap degree", "0")["instances"] == 1
    # bin "2+": every other instance (each overlaps the two others). Class 0: its TP on the isolated
    # instance is left out, the FP stays -> AP 0; class 1: found -> 1; class 2: no prediction -> 0
    assert d.instances["overlap_degree"].tolist() == [0, 2, 2, 2]
    assert _bin(d, "overlap degree", "2+")["instances"] == 3
    assert _bin(d, "overlap degree", "2+")["mAP"] == pytest.approx(1 / 3)
    assert _bin(d, "overlap degree", "1")["instances"] == 0
    assert np.isnan(_bin(d, "overlap degree", "1")["mAP"])


def test_error_types_by_hand():
    gt = _gt([("v", 0.0, 2.0, 1), ("v", 4.0, 6.0, 2)])
    pred = _pred([
        ("v", 0.0, 2.0, 1, 0.9),    # true positive
        ("v", 0.1, 2.0, 1, 0.8),    # double detection: tIoU 0.95 with the taken class-1 instance
        ("v", 4.0, 6.0, 3, 0.7),    # wrong label: tIoU 1 with the class-2 instance
        ("v", 5.0, 8.0, 2, 0.6),    # localization: tIoU 0.25 with its own class
        ("v", 1.5, 3.0, 4, 0.5),    # confusion: tIoU 0.17 with the class-1 instance (another class)
        ("v", 10.0, 11.0, 1, 0.4),  # background
        ("w", 0.0, 1.0, 1, 0.3),    # background: a video without ground truth
    ])
    d = diagnose_detection(gt, pred, tiou_thresholds=[0.5], top_k=3)
    expected = ["true_positive", "double_detection", "wrong_label", "localization", "confusion", "background",
                "background"]
    assert list(d.error_types) == expected
    # top 1G = the 2 best predictions, top 2G = 4, top 3G = all 6 of the top 6 (of 7)
    profile = d.false_positive_profile
    assert list(profile["predictions"]) == [2, 4, 6]
    assert profile.loc[0, "true_positive"] == pytest.approx(0.5)
    assert profile.loc[0, "double_detection"] == pytest.approx(0.5)
    assert profile.loc[2, "background"] == pytest.approx(1 / 6)
    assert d.error_counts.loc[0, "wrong_label"] == 1
    # at a lower threshold the localization error becomes a true positive
    types = classify_predictions(match_detections(gt, pred, tiou_thresholds=[0.2]), gt, pred)
    assert ERROR_TYPES[types[0, 3]] == "true_positive"


def test_gains_by_hand():
    gt = _gt([("v", 0.0, 2.0, 1)])
    pred = _pred([("v", 5.0, 6.0, 1, 0.9), ("v", 0.0, 2.0, 1, 0.8), ("v", 0.1, 2.0, 1, 0.7)])
    d = diagnose_detection(gt, pred, tiou_thresholds=[0.5])
    # background FP first: AP 0.5; without it AP 1; the double detection ranks after the TP: no gain
    assert d.map_gain["background"] == pytest.approx(0.5)
    assert d.map_gain["double_detection"] == pytest.approx(0.0)
    assert d.map_gain["localization"] == pytest.approx(0.0)


def test_boundary_errors_by_hand():
    gt = _gt([("v", 1.0, 3.0, 0), ("v", 5.0, 9.0, 0)])
    pred = _pred([("v", 1.2, 2.9, 0, 0.9), ("v", 4.6, 9.4, 0, 0.8), ("v", 20.0, 21.0, 0, 0.7)])
    d = diagnose_detection(gt, pred, tiou_thresholds=[0.5])
    errors = d.boundary_errors.sort_values("onset_error")
    assert errors["onset_error"].tolist() == pytest.approx([-0.4, 0.2])
    assert errors["offset_error"].tolist() == pytest.approx([0.4, -0.1])
    summary = d.boundary_summary().set_index("boundary")
    assert summary.loc["onset", "mean"] == pytest.approx(-0.1)
    assert summary.loc["offset", "median"] == pytest.approx(0.15)
    assert summary.loc["offset", "mean_abs"] == pytest.approx(0.25)
    assert summary.loc["onset", "matched"] == 2


# --------------------------------------------------------------------- random cases against references


def _random_case(seed: int, videos: int = 4, classes: int = 4):
    rng = np.random.default_rng(seed)
    gt, pred = [], []
    for v in range(videos):
        for _ in range(int(rng.integers(1, 6))):
            start = float(rng.uniform(0, 20))
            length = float(rng.choice([0.6, 1.5, 3.0, 6.0, 10.0]) * rng.uniform(0.7, 1.3))
            label = int(rng.integers(0, classes))
            gt.append((f"v{v}", start, start + length, label))
            for _ in range(int(rng.integers(0, 4))):
                a = start + rng.normal(0, 0.4 * length)
                b = max(a + 0.05, start + length + rng.normal(0, 0.4 * length))
                wrong = rng.random() < 0.3
                pred.append((f"v{v}", a, b, int(rng.integers(0, classes)) if wrong else label, float(rng.random())))
        for _ in range(int(rng.integers(0, 3))):
            a = float(rng.uniform(0, 25))
            pred.append((f"v{v}", a, a + float(rng.uniform(0.3, 4)), int(rng.integers(0, classes)), float(rng.random())))
    if not pred:
        pred.append(("v0", 0.0, 1.0, 0, 0.5))
    return _gt(gt), _pred(pred)


def _loop_matches(gt: pd.DataFrame, pred: pd.DataFrame, threshold: float) -> np.ndarray:
    """Ground-truth row matched by each prediction row (-1: none), by the official per-prediction loop."""
    gt_video, gt_label = gt["video_id"].to_numpy(), gt["label"].to_numpy()
    gt_seg = gt[["t_start", "t_end"]].to_numpy(float)
    p_video, p_label = pred["video_id"].to_numpy(), pred["label"].to_numpy()
    p_seg, score = pred[["t_start", "t_end"]].to_numpy(float), pred["score"].to_numpy()
    matched = np.full(len(pred), -1)
    taken = set()
    for p in sorted(range(len(pred)), key=lambda p: (-score[p], -p)):
        cands = np.flatnonzero((gt_video == p_video[p]) & (gt_label == p_label[p]))
        if cands.size == 0:
            continue
        tiou = reference_segment_iou(p_seg[p], gt_seg[cands], 1e-4)
        for j in tiou.argsort(kind="stable")[::-1]:
            if tiou[j] < threshold:
                break
            if cands[j] not in taken:
                taken.add(cands[j])
                matched[p] = cands[j]
                break
    return matched


def _loop_bin_map(gt, pred, in_bin, matched) -> float:
    """DETAD bin mAP: match against all ground truth, keep the bin's positives and every unmatched prediction."""
    gt_label, p_label, score = gt["label"].to_numpy(), pred["label"].to_numpy(), pred["score"].to_numpy()
    aps = []
    for c in sorted(set(gt_label[in_bin])):
        npos = int(((gt_label == c) & in_bin).sum())
        rows = [p for p in np.flatnonzero(p_label == c) if matched[p] < 0 or in_bin[matched[p]]]
        rows = sorted(rows, key=lambda p: (-score[p], -p))
        tp = np.array([matched[p] >= 0 for p in rows], dtype=float)
        if tp.size == 0:
            aps.append(0.0)
            continue
        tp_cum, fp_cum = np.cumsum(tp), np.cumsum(1 - tp)
        aps.append(reference_interpolated_ap(tp_cum / (tp_cum + fp_cum), tp_cum / npos))
    return float(np.mean(aps))


@pytest.mark.parametrize("seed", range(6))
def test_bin_map_equals_per_prediction_loop(seed):
    gt, pred = _random_case(seed)
    thresholds = [0.3, 0.5, 0.7]
    d = diagnose_detection(gt, pred, tiou_thresholds=thresholds, body_of_action=np.array([0, 0, 1, 1]),
                           body_names=["upper", "lower"])
    columns = {"duration": "duration_bin", "overlap degree": "overlap_bin", "body group": "body_group",
               "same-class overlap": "same_class_bin"}
    matches = [_loop_matches(gt, pred, t) for t in thresholds]
    checked = 0
    for row in d.bins.itertuples():
        in_bin = (d.instances[columns[row.characteristic]] == row.bin).to_numpy()
        assert row.instances == in_bin.sum()
        if not in_bin.any():
            assert np.isnan(row.mAP)
            continue
        expected = np.mean([_loop_bin_map(gt, pred, in_bin, m) for m in matches])
        assert row.mAP == pytest.approx(expected, abs=1e-12), (row.characteristic, row.bin)
        checked += 1
    assert checked >= 5


@pytest.mark.parametrize("seed", range(4))
def test_gains_equal_evaluation_of_edited_tables(seed):
    gt, pred = _random_case(seed + 100)
    thresholds = np.array([0.3, 0.5, 0.7])
    d = diagnose_detection(gt, pred, tiou_thresholds=thresholds)
    types = classify_predictions(match_detections(gt, pred, tiou_thresholds=thresholds), gt, pred)
    base = evaluate_detection(gt, pred, tiou_thresholds=thresholds).average_mAP
    assert d.average_mAP == pytest.approx(base, abs=1e-12)
    for code, name in enumerate(ERROR_TYPES[1:], start=1):
        per_threshold = []
        for ti, t in enumerate(thresholds):
            kept = pred[types[ti] != code]
            # a class may lose all its predictions: keep the class list by passing the same classes
            result = evaluate_detection(gt, kept, tiou_thresholds=[t], num_classes=int(max(gt.label.max(), pred.label.max())) + 1)
            per_threshold.append(result.mAP[0])
        assert d.map_gain[name] == pytest.approx(np.mean(per_threshold) - base, abs=1e-12), name


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), threshold=st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9]))
def test_removing_one_error_type_never_lowers_ap(seed, threshold):
    gt, pred = _random_case(seed, videos=3, classes=3)
    matching = match_detections(gt, pred, tiou_thresholds=[threshold])
    types = classify_predictions(matching, gt, pred)
    base = class_average_precision(matching)
    for code in range(1, len(ERROR_TYPES)):
        fixed = class_average_precision(matching, dropped=types == code)
        ok = ~np.isnan(base)
        assert np.all(fixed[ok] >= base[ok] - 1e-12), ERROR_TYPES[code]
    # and the types partition the false positives exactly
    assert np.array_equal(types[0] == 0, matching.matched_gt[0] >= 0)


def test_class_average_precision_equals_evaluate_detection():
    gt, pred = _random_case(7)
    result = evaluate_detection(gt, pred)
    matching = match_detections(gt, pred)
    np.testing.assert_array_equal(class_average_precision(matching), result.ap)
    # the matched ground truth has the prediction's video and class
    t, p = np.nonzero(matching.matched_gt >= 0)
    g = matching.matched_gt[t, p]
    assert (gt["video_id"].to_numpy()[g] == pred["video_id"].to_numpy()[p]).all()
    assert (gt["label"].to_numpy()[g] == pred["label"].to_numpy()[p]).all()


# ---------------------------------------------------------------------------------------- files and CLI


def test_write_diagnosis_files(tmp_path):
    gt, pred = _random_case(3)
    d = diagnose_detection(gt, pred, body_of_action=np.array([0, 0, 1, 1]), top_k=4)
    files = write_diagnosis(d, tmp_path / "diag")
    for path in files.values():
        assert path.is_file() and path.stat().st_size > 0
    summary = json.loads(files["json"].read_text())
    assert summary["top_k"] == 4 and len(summary["false_positive_profile"]) == 4
    assert set(summary["map_gain"]) == set(ERROR_TYPES[1:])
    text = files["markdown"].read_text()
    assert "overlap degree" in text and "background" in text


def test_cli_eval_detection_diagnose(tmp_path, capsys):
    from mmad.cli import main

    gt, pred = _random_case(5)
    records = {v: {"subset": "val", "duration": 40.0,
                   "actions": [[int(r.label), float(r.t_start), float(r.t_end)] for r in gt[gt.video_id == v].itertuples()]}
               for v in sorted(gt.video_id.unique())}
    gt_path = tmp_path / "mmad.json"
    gt_path.write_text(json.dumps(records))
    pred_path = tmp_path / "pred.csv"
    pred.rename(columns={"label": "class"}).to_csv(pred_path)
    rc = main(["eval", "detection", "--gt", str(gt_path), "--pred", str(pred_path), "--diagnose",
               str(tmp_path / "diag"), "--top-k", "3"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert (tmp_path / "diag" / "false_positive_profile.png").is_file()
    assert json.loads((tmp_path / "diag" / "diagnosis.json").read_text())["top_k"] == 3
    assert "overlap degree" in out


def test_characteristics_of_the_real_mma52_validation_set(shared_datasets):
    from mmad.datasets.mma52 import read_detection_annotations, records_to_frame
    from mmad.taxonomy import MA52_BODY_GROUPS, fine2coarse_table

    path = shared_datasets / "mma52" / "val.csv"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    gt = records_to_frame(read_detection_annotations(path, subset="val"))
    table = instance_characteristics(gt, body_of_action=fine2coarse_table(), body_names=MA52_BODY_GROUPS)
    assert len(table) == len(gt) == 4735
    # every instance lands in exactly one bin of each characteristic
    for column, bins in (("duration_bin", DURATION_BINS), ("overlap_bin", ("0", "1", "2+"))):
        assert table[column].isin(bins).all() and table[column].value_counts().sum() == len(gt)
    # overlap degrees against a plain pairwise loop on the first 100 videos
    for video in sorted(gt["video_id"].unique())[:100]:
        rows = table[table["video_id"] == video]
        for i, a in rows.iterrows():
            others = [b for j, b in rows.iterrows() if j != i and a.t_start < b.t_end and b.t_start < a.t_end]
            assert a.overlap_degree == len(others)
            assert a.same_class_overlap == any(b.label == a.label for b in others)
    # multi-label data: most instances share time with another one
    assert (table["overlap_degree"] > 0).mean() > 0.8
