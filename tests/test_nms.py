import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import detection.nms as nms
from detection.nms import soft_nms
from detection.postprocess import loop_soft_nms, soft_nms_reference

# onsets and lengths on a coarse grid make exact duplicates, shared ends and score ties common
GRID = [0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
LENGTHS = [0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0]
TIED_SCORES = [0.9, 0.5, 0.5, 0.3, 0.05, 0.002]


@st.composite
def candidate_sets(draw):
    n = draw(st.integers(0, 40))
    groups = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    if draw(st.booleans()):  # grid values: duplicates and ties
        onsets = draw(st.lists(st.sampled_from(GRID), min_size=n, max_size=n))
        lengths = draw(st.lists(st.sampled_from(LENGTHS), min_size=n, max_size=n))
        scores = draw(st.lists(st.sampled_from(TIED_SCORES), min_size=n, max_size=n))
    else:
        onsets = draw(st.lists(st.floats(0, 20), min_size=n, max_size=n))
        lengths = draw(st.lists(st.floats(0.01, 8), min_size=n, max_size=n))
        scores = draw(st.lists(st.floats(0, 1), min_size=n, max_size=n))
    segments = np.stack([np.array(onsets), np.array(onsets) + np.array(lengths)], axis=-1).reshape(n, 2)
    return segments, np.array(scores, dtype=np.float64), np.array(groups, dtype=np.int64)


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(candidates=candidate_sets(), sigma=st.sampled_from([0.05, 0.3, 0.5, 1.0, 4.0]),
       min_score=st.sampled_from([0.0, 1e-3, 0.01, 0.2]), max_kept=st.sampled_from([None, 1, 2, 3, 7, 100]),
       dtype=st.sampled_from([np.float64, np.float32]))
def test_soft_nms_equals_the_loop(candidates, sigma, min_score, max_kept, dtype):
    segments, scores, groups = candidates
    segments, scores = segments.astype(dtype), scores.astype(dtype)
    index, kept = soft_nms(segments, scores, groups, sigma=sigma, min_score=min_score, max_kept=max_kept)
    loop_index, loop_kept = loop_soft_nms(segments, scores, groups, sigma=sigma, min_score=min_score,
                                          max_kept=max_kept)
    assert index.tolist() == loop_index.tolist()  # same survivors, same order
    assert kept.dtype == dtype
    np.testing.assert_allclose(kept, loop_kept, rtol=1e-5 if dtype == np.float32 else 1e-12)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(candidates=candidate_sets(), sigma=st.sampled_from([0.1, 0.5, 2.0]), min_score=st.sampled_from([0.0, 1e-3, 0.1]),
       max_kept=st.sampled_from([None, 1, 4]))
def test_each_group_equals_the_plain_python_reference(candidates, sigma, min_score, max_kept):
    segments, scores, groups = candidates
    index, kept = soft_nms(segments, scores, groups, sigma=sigma, min_score=min_score)
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        reference = soft_nms_reference(segments[members].tolist(), scores[members].tolist(), sigma=sigma,
                                       min_score=min_score, max_kept=max_kept)
        mine = [(int(np.flatnonzero(members == i)[0]), s) for i, s in zip(index, kept) if groups[i] == g]
        assert [i for i, _ in mine[:max_kept]] == [i for i, _ in sorted(reference, key=lambda r: (-r[1], r[0]))]
        np.testing.assert_allclose([s for _, s in mine[:max_kept]], sorted((s for _, s in reference), reverse=True),
                                   rtol=1e-12)


def test_duplicates_and_ties_go_to_the_lower_index():
    segments = np.array([[0.0, 2.0], [5.0, 6.0], [0.0, 2.0], [0.0, 2.0], [5.0, 6.0]])
    scores = np.array([0.5, 0.7, 0.5, 0.9, 0.7])
    index, kept = soft_nms(segments, scores, np.zeros(5, dtype=np.int64), sigma=0.5, min_score=0.0)
    decay = np.exp(-1 / 0.5)
    # 3 first; its tied copies 0 and 2 are decayed alike and 0 goes first; 1 before its tied copy 4
    assert index.tolist() == [3, 1, 4, 0, 2]
    np.testing.assert_allclose(kept, [0.9, 0.7, 0.7 * decay, 0.5 * decay, 0.5 * decay**2])


def test_groups_do_not_interact():
    segments = np.array([[0.0, 2.0], [0.0, 2.0], [0.1, 2.0]])
    index, kept = soft_nms(segments, np.array([0.8, 0.6, 0.7]), np.array([0, 1, 0]), sigma=0.5, min_score=0.0)
    assert index.tolist() == [0, 1, 2]
    assert kept[1] == 0.6 and kept[2] < 0.7


def test_max_kept_falls_back_to_all_candidates_when_the_best_do_not_settle_it(monkeypatch):
    """Near-copies crowd the top: the 2 * max_kept best do not settle the 10 best survivors."""
    rng = np.random.default_rng(0)
    copies = np.array([[0.0, 10.0]]) + rng.normal(0, 0.01, (60, 2))
    spread = np.stack([np.arange(40) * 20.0 + 30, np.arange(40) * 20.0 + 31], axis=1)
    segments = np.concatenate([copies, spread])
    scores = np.concatenate([0.9 + 0.05 * rng.random(60), 0.5 * rng.random(40)])
    groups = np.zeros(100, dtype=np.int64)
    calls = []
    rounds = nms._soft_nms_rounds
    monkeypatch.setattr(nms, "_soft_nms_rounds", lambda *a, **k: calls.append(a[1].size) or rounds(*a, **k))
    for min_score in [1e-3, 0.0]:  # fewer than 10 survivors among the best 20; 20 but decayed under the rest
        calls.clear()
        index, kept = soft_nms(segments, scores, groups, sigma=0.5, min_score=min_score, max_kept=10)
        assert calls == [20, 100]  # the best 20 first, then everything
        loop_index, loop_kept = loop_soft_nms(segments, scores, groups, sigma=0.5, min_score=min_score, max_kept=10)
        assert index.tolist() == loop_index.tolist()
        np.testing.assert_allclose(kept, loop_kept, rtol=1e-12)
        assert (index >= 60).sum() >= 9  # the spread segments beat all but the first copy

    calls.clear()
    spread_only = soft_nms(spread, scores[60:], groups[60:], sigma=0.5, min_score=1e-3, max_kept=10)
    assert calls == [20]  # disjoint segments: the best 20 settle it
    assert spread_only[0].tolist() == np.argsort(-scores[60:], kind="stable")[:10].tolist()


def test_empty_and_all_below_min_score():
    index, kept = soft_nms(np.zeros((0, 2)), np.zeros(0), np.zeros(0, dtype=np.int64))
    assert index.size == 0 and kept.size == 0
    index, kept = soft_nms(np.array([[0.0, 1.0]]), np.array([1e-4]), np.array([0]), min_score=1e-3)
    assert index.size == 0


def test_negative_group_ids_are_refused():
    with pytest.raises(ValueError, match="non-negative"):
        soft_nms(np.array([[0.0, 1.0]]), np.array([0.5]), np.array([-1]))
