"""Frame-mAP: grid, labels from segments, scores from detections, AP against scikit-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from eval.errors import EvalInputError
from eval.frames import (
    detections_to_frame_scores,
    frame_average_precision,
    frame_map,
    frame_map_from_dense,
    frame_map_from_detections,
    frame_times,
    segments_to_frame_labels,
)


def test_grid_and_half_open_coverage():
    times = frame_times(2.0, rate=2.0)
    assert times.tolist() == [0.0, 0.5, 1.0, 1.5]
    segments = pd.DataFrame({"t_start": [0.5], "t_end": [1.5], "label": [1]})
    assert segments_to_frame_labels(segments, times, num_classes=2)[:, 1].tolist() == [False, True, True, False]


def test_detections_take_the_best_covering_score():
    times = frame_times(3.0, rate=1.0)
    det = pd.DataFrame({"t_start": [0.0, 0.5, 2.0], "t_end": [2.0, 3.0, 3.0], "label": [0, 0, 1],
                        "score": [0.3, 0.6, 0.9]})
    scores = detections_to_frame_scores(det, times, num_classes=2)
    assert scores.tolist() == [[0.3, 0.0], [0.6, 0.0], [0.6, 0.9]]


def test_hand_computed_ap_and_ties_keep_order():
    # ranks: pos, neg, pos -> precision at positives 1 and 2/3
    assert frame_average_precision([0.9, 0.8, 0.7], [True, False, True]) == pytest.approx((1 + 2 / 3) / 2)
    # equal scores keep frame order: the negative frame first gives 1/2
    assert frame_average_precision([0.5, 0.5], [False, True]) == 0.5
    assert np.isnan(frame_average_precision([0.5], [False]))


@pytest.mark.parametrize("seed", range(3))
def test_frame_ap_agrees_with_scikit_learn_without_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.random((500, 6))
    positives = rng.random((500, 6)) < 0.2
    positives[:, 5] = False  # a class without positives is left out
    result = frame_map(scores, positives)
    expected = [average_precision_score(positives[:, c], scores[:, c]) for c in range(5)]
    assert np.allclose(result.ap[:5], expected, atol=1e-12)
    assert result.classes_without_positives == [5]
    assert result.mAP == pytest.approx(np.mean(expected), abs=1e-12)


def test_perfect_detections_give_frame_map_one():
    gt = pd.DataFrame({"video_id": ["a", "a", "b"], "t_start": [0.0, 1.0, 2.0], "t_end": [2.0, 3.0, 4.0],
                       "label": [0, 1, 1]})
    pred = gt.assign(score=1.0)
    durations = {"a": 4.0, "b": 5.0}
    result = frame_map_from_detections(gt, pred, durations, num_classes=2, rate=4.0)
    assert result.mAP == 1.0 and result.num_frames == 36
    dense = frame_map_from_dense(gt, {}, durations, num_classes=2, rate=4.0)
    assert dense.mAP < 1.0  # all-zero scores rank frames in order, positives are not first
    with pytest.raises(EvalInputError, match="video 'a'"):
        frame_map_from_dense(gt, {"a": np.zeros((3, 2))}, durations, num_classes=2, rate=4.0)
