"""Recognition metrics: hand cases, scikit-learn agreement, submission files, heatmap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score as sk_f1_score
from sklearn.metrics import top_k_accuracy_score

from eval.errors import EvalInputError
from eval.io import (
    MA52_SUBMISSION_COLUMNS,
    ma52_submission_from_scores,
    read_ma52_submission,
    write_confusion_csv,
    write_ma52_submission,
)
from eval.recognition import (
    MA52_BODY_OF_ACTION,
    confusion_matrix,
    evaluate_recognition,
    evaluate_recognition_ranked,
    f1_score,
    rank_classes,
    top_k_accuracy,
)
from eval.report import format_recognition_table, save_confusion_heatmap


def official_body(action: int) -> int:
    """The challenge scripts' if/elif rule, written out independently."""
    for body, last in enumerate((4, 10, 23, 31, 37, 47)):
        if action <= last:
            return body
    return 6


def test_body_table_is_the_official_range_rule():
    assert MA52_BODY_OF_ACTION.tolist() == [official_body(a) for a in range(52)]


def test_perfect_predictions():
    labels = np.arange(52)
    result = evaluate_recognition(np.eye(52), labels)
    assert result.action_top1 == result.action_top5 == result.body_top1 == 1.0
    assert result.f1_mean == 1.0 and result.mean_class_accuracy == 1.0
    assert np.array_equal(result.confusion, np.eye(52, dtype=np.int64))


def test_hand_computed_f1_with_absent_classes():
    # classes 0..3 exist; 3 is in neither array, so macro F1 averages over {0, 1, 2} only
    y_true = np.array([0, 0, 1, 2])
    y_pred = np.array([0, 1, 1, 1])
    # F1: class 0 = 2*1/(2+1) = 2/3, class 1 = 2*1/(1+3) = 1/2, class 2 = 0
    assert f1_score(y_true, y_pred, average="macro") == pytest.approx((2 / 3 + 0.5 + 0) / 3, abs=1e-15)
    assert f1_score(y_true, y_pred, average="micro") == 0.5
    # a class only predicted (never true) still counts, with F1 0
    assert f1_score([0, 0], [0, 5], average="macro") == pytest.approx((2 / 3 + 0) / 2)


@pytest.mark.parametrize("seed", range(4))
def test_f1_and_topk_agree_with_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    n, c = 300, 52
    labels = rng.integers(0, 20 + 10 * seed, n)  # leaves classes absent from the labels
    scores = rng.normal(size=(n, c))
    scores[np.arange(n), labels] += rng.uniform(0, 3, n)
    result = evaluate_recognition(scores, labels)
    top1 = scores.argmax(axis=1)
    for average in ("macro", "micro"):
        assert getattr(result, f"action_f1_{average}") == pytest.approx(
            sk_f1_score(labels, top1, average=average), abs=1e-12)
        body_true, body_pred = MA52_BODY_OF_ACTION[labels], MA52_BODY_OF_ACTION[top1]
        assert getattr(result, f"body_f1_{average}") == pytest.approx(
            sk_f1_score(body_true, body_pred, average=average), abs=1e-12)
    ks = np.arange(c)
    assert result.action_top1 == pytest.approx(top_k_accuracy_score(labels, scores, k=1, labels=ks))
    assert result.action_top5 == pytest.approx(top_k_accuracy_score(labels, scores, k=5, labels=ks))
    assert result.f1_mean == pytest.approx(
        (result.action_f1_macro + result.action_f1_micro + result.body_f1_macro + result.body_f1_micro) / 4)


def test_ties_rank_the_higher_class_first():
    assert rank_classes(np.array([[0.5, 0.5, 0.1]])).tolist() == [[1, 0, 2]]


def test_body_scores_override_the_mapping():
    scores = np.zeros((2, 52))
    scores[:, 0] = 1.0  # action 0 -> body 0
    body_scores = np.zeros((2, 7))
    body_scores[:, 3] = 1.0
    result = evaluate_recognition(scores, np.array([0, 30]), body_scores=body_scores)
    assert result.body_top1 == 0.5  # second sample (action 30 -> body 3) is right only via body scores
    assert evaluate_recognition(scores, np.array([0, 30])).body_top1 == 0.5


def test_confusion_and_class_accuracy():
    result = evaluate_recognition_ranked(np.array([[0], [1], [1], [2]]), np.array([0, 0, 1, 2]), num_classes=4)
    assert result.confusion.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert result.per_class_accuracy[:3].tolist() == [0.5, 1.0, 1.0] and np.isnan(result.per_class_accuracy[3])
    assert result.mean_class_accuracy == pytest.approx(2.5 / 3)
    assert result.action_top5 is None
    assert confusion_matrix([1], [0], num_classes=2).tolist() == [[0, 0], [1, 0]]


def test_bad_inputs():
    with pytest.raises(EvalInputError, match="outside"):
        evaluate_recognition_ranked(np.array([[60]]), np.array([0]))
    with pytest.raises(EvalInputError, match="NaN"):
        evaluate_recognition(np.array([[np.nan, 1.0]]), np.array([0]))
    with pytest.raises(ValueError, match="at least 5"):
        top_k_accuracy(np.array([[0, 1]]), np.array([0]), k=5)


def test_submission_round_trip_and_metrics(tmp_path):
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(20, 52))
    vids = [f"0003_01_{i:04d}.mp4" for i in range(20)]
    table = ma52_submission_from_scores(vids, scores)
    assert list(table.columns) == list(MA52_SUBMISSION_COLUMNS)
    assert np.array_equal(table.body_pred_1, MA52_BODY_OF_ACTION[scores.argmax(axis=1)])
    assert all(len(set(row)) == 5 for row in table[[f"body_pred_{k}" for k in range(1, 6)]].to_numpy())
    path = write_ma52_submission(tmp_path / "sub.csv", table)
    back = read_ma52_submission(path)
    pd.testing.assert_frame_equal(back, table, check_dtype=False)
    labels = rng.integers(0, 52, 20)
    from_file = evaluate_recognition_ranked(
        back[[f"action_pred_{k}" for k in range(1, 6)]].to_numpy(), labels,
        body_ranked=back[[f"body_pred_{k}" for k in range(1, 6)]].to_numpy())
    from_scores = evaluate_recognition(scores, labels)
    assert from_file.to_dict() == from_scores.to_dict()


def test_official_sample_submission_reads(shared_datasets):
    table = read_ma52_submission(shared_datasets / "formats" / "ma52_recognition_submission_sample.csv")
    assert len(table) > 0 and table.vid.iloc[0].endswith(".mp4")


@pytest.mark.parametrize(
    "body, message",
    [
        ("vid,action_pred_1\nx.mp4,1\n", "line 1: missing column"),
        (",".join(MA52_SUBMISSION_COLUMNS) + "\na.mp4,1,2,3,4,52,0,1,2,3,4\n", "line 2: action_pred_5 = 52"),
        (",".join(MA52_SUBMISSION_COLUMNS) + "\na.mp4,1,2,3,4,5,0,1,2,3,4\na.mp4,1,2,3,4,5,0,1,2,3,4\n",
         "line 3: duplicate vid"),
        (",".join(MA52_SUBMISSION_COLUMNS) + "\na.mp4,1,2,3,4,5,0,1,2,3,\n", "line 2: body_pred_5"),
        ("", "empty file"),
    ],
)
def test_bad_submission_rows_are_located(tmp_path, body, message):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(EvalInputError, match=message):
        read_ma52_submission(path)


def test_confusion_csv_heatmap_and_table(tmp_path):
    confusion = np.array([[3, 1], [0, 2]])
    csv_path = write_confusion_csv(tmp_path / "c.csv", confusion, class_names=["a", "b"])
    assert pd.read_csv(csv_path, index_col=0).to_numpy().tolist() == confusion.tolist()
    png = save_confusion_heatmap(tmp_path / "c.png", confusion, class_names=["a", "b"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = format_recognition_table(evaluate_recognition(np.eye(52), np.arange(52)))
    assert "F1mean" in text and "100.00" in text
