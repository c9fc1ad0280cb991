import pandas as pd
import pytest
import torch

from detection.assign import pyramid_points
from detection.model import DetectorOutput
from detection.postprocess import (
    PREDICTION_COLUMNS,
    batched_soft_nms,
    postprocess_detections,
    segment_iou,
    soft_nms_reference,
    vote_boundaries,
)
from detection.timeline import Timeline


def random_groups(seed, num_groups=7, width=25):
    gen = torch.Generator().manual_seed(seed)
    onset = torch.rand(num_groups, width, generator=gen, dtype=torch.float64) * 10
    length = torch.rand(num_groups, width, generator=gen, dtype=torch.float64) * 4 + 0.05
    segments = torch.stack([onset, onset + length], dim=-1)
    # clusters of near-duplicates so that decay matters
    segments[:, 1::3] = segments[:, 0::3][:, : segments[:, 1::3].shape[1]] + 0.1
    scores = torch.rand(num_groups, width, generator=gen, dtype=torch.float64)
    counts = torch.randint(0, width + 1, (num_groups,), generator=gen)
    valid = torch.arange(width)[None, :] < counts[:, None]
    return segments, scores, valid


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("sigma,min_score,max_kept", [(0.5, 1e-3, None), (0.1, 0.2, None), (0.9, 0.0, None),
                                                      (0.5, 1e-3, 4)])
def test_batched_soft_nms_equals_loop_reference(seed, sigma, min_score, max_kept):
    segments, scores, valid = random_groups(seed)
    kept, kept_scores = batched_soft_nms(segments, scores, valid, sigma=sigma, min_score=min_score,
                                         max_kept=max_kept)
    if max_kept is not None:
        assert kept.sum(dim=1).max() == max_kept
    for g in range(segments.shape[0]):
        n = int(valid[g].sum())
        reference = soft_nms_reference(segments[g, :n].tolist(), scores[g, :n].tolist(), sigma=sigma,
                                       min_score=min_score, max_kept=max_kept)
        assert sorted(i for i, _ in reference) == torch.nonzero(kept[g]).flatten().tolist()
        for i, score in reference:
            assert kept_scores[g, i].item() == pytest.approx(score, rel=1e-9, abs=1e-12)
        assert not kept[g, n:].any()


def test_soft_nms_decays_duplicates_but_keeps_distinct_segments():
    segments = torch.tensor([[[0.0, 2.0], [0.0, 2.0], [5.0, 6.0]]])
    scores = torch.tensor([[0.9, 0.8, 0.7]])
    kept, kept_scores = batched_soft_nms(segments, scores, torch.ones(1, 3, dtype=torch.bool), sigma=0.5,
                                         min_score=0.0)
    assert kept.all()
    assert kept_scores[0, 0] == pytest.approx(0.9)
    assert kept_scores[0, 2] == pytest.approx(0.7)
    assert kept_scores[0, 1] == pytest.approx(0.8 * torch.exp(torch.tensor(-2.0)).item(), rel=1e-5)


def test_segment_iou():
    iou = segment_iou(torch.tensor([0.0, 2.0]), torch.tensor([[1.0, 3.0], [2.0, 4.0], [0.0, 2.0], [1.0, 1.0]]))
    assert torch.allclose(iou, torch.tensor([1 / 3, 0.0, 1.0, 0.0]))


def make_output(num_steps, num_classes, hits, *, class_aware=True, pad_to=None):
    """Head output with background logits -8 and, per hit (point, class, logit, onset, offset), a candidate."""
    total = pad_to or num_steps
    points = pyramid_points(total, regression_ranges=[(0, 4), (4, 1e4)])
    logits = torch.full((1, points.shape[0], num_classes), -8.0)
    offsets = torch.zeros((1, points.shape[0], num_classes, 2) if class_aware else (1, points.shape[0], 2))
    for point, cls, logit, onset, offset in hits:
        logits[0, point, cls] = logit
        pos, stride = points[point, 0], points[point, 3]
        dist = torch.tensor([(pos - onset) / stride, (offset - pos) / stride])
        if class_aware:
            offsets[0, point, cls] = dist
        else:
            offsets[0, point] = dist
    mask = pyramid_points(total, regression_ranges=[(0, 4), (4, 1e4)])[:, 0] < num_steps
    return DetectorOutput(cls_logits=logits, offsets=offsets, points=points, mask=mask[None])


def test_postprocess_decodes_to_clipped_seconds():
    timeline = Timeline.from_stride(fps=30.0, stride_frames=4, num_steps=20)
    output = make_output(20, 3, [(5, 1, 3.0, 2.0, 8.0), (6, 2, 2.0, 4.0, 30.0), (12, 0, 1.0, -3.0, 14.0)])
    table = postprocess_detections(output, timelines=[timeline], durations=[2.6], video_ids=["vid"],
                                   score_threshold=0.01)
    assert list(table.columns) == PREDICTION_COLUMNS
    assert table["label"].tolist() == [1, 2, 0]
    first = table.iloc[0]
    assert first["t_start"] == pytest.approx(timeline.to_seconds(2.0), abs=1e-5)
    assert first["t_end"] == pytest.approx(timeline.to_seconds(8.0), abs=1e-5)
    assert first["score"] == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item(), rel=1e-5)
    assert table["t_end"].max() <= 2.6 and table["t_start"].min() >= 0.0
    assert table.iloc[1]["t_end"] == pytest.approx(2.6)
    assert table.iloc[2]["t_start"] == 0.0


def test_postprocess_ignores_padding_threshold_and_caps_segments():
    timeline = Timeline.from_stride(fps=30.0, stride_frames=4, num_steps=10)
    hits = [(i, i % 2, 2.0 - 0.1 * i, i - 1.0, i + 1.0) for i in range(10)] + [(12, 0, 5.0, 11.0, 13.0)]
    output = make_output(10, 2, hits, pad_to=16)  # point 12 lies over padding
    table = postprocess_detections(output, timelines=[timeline], durations=[10.0], video_ids=["v"],
                                   score_threshold=0.5, max_segments=4)
    assert len(table) == 4
    assert table["score"].is_monotonic_decreasing
    assert table["t_end"].max() <= timeline.to_seconds(10.0)
    assert table["score"].min() > 0.5


def test_postprocess_class_agnostic_and_empty():
    timeline = Timeline.from_stride(fps=30.0, stride_frames=4, num_steps=20)
    output = make_output(20, 2, [(4, 0, 4.0, 1.0, 7.0)], class_aware=False)
    table = postprocess_detections(output, timelines=[timeline], durations=[5.0], video_ids=["v"],
                                   score_threshold=0.5)
    assert len(table) == 1 and table.iloc[0]["label"] == 0
    empty = postprocess_detections(make_output(20, 2, []), timelines=[timeline], durations=[5.0],
                                   video_ids=["v"], score_threshold=0.5)
    assert empty.empty and list(empty.columns) == PREDICTION_COLUMNS


def test_capped_soft_nms_keeps_the_same_top_detections():
    torch.manual_seed(0)
    num_steps, num_classes = 24, 3
    points = pyramid_points(num_steps, regression_ranges=[(0, 4), (4, 1e4)])
    output = DetectorOutput(cls_logits=torch.randn(2, points.shape[0], num_classes),
                            offsets=torch.rand(2, points.shape[0], num_classes, 2) * 3,
                            points=points, mask=torch.ones(2, points.shape[0], dtype=torch.bool))
    timeline = Timeline.from_stride(fps=30.0, stride_frames=4, num_steps=num_steps)
    options = dict(timelines=[timeline] * 2, durations=[3.2] * 2, video_ids=["a", "b"], score_threshold=0.05)
    capped = postprocess_detections(output, max_segments=7, **options)
    full = postprocess_detections(output, max_segments=10_000, **options)
    assert len(full) > 2 * 7
    expected = full.groupby("video_id", sort=False).head(7).reset_index(drop=True)
    pd.testing.assert_frame_equal(capped, expected)


def test_postprocess_equals_the_loop_soft_nms(monkeypatch):
    """Many overlapping candidates in several videos: the same table as with the one-pick loop."""
    import detection.postprocess as postprocess

    torch.manual_seed(1)
    num_steps, num_classes = 40, 4
    points = pyramid_points(num_steps, regression_ranges=[(0, 4), (4, 8), (8, 1e4)])
    output = DetectorOutput(cls_logits=torch.randn(3, points.shape[0], num_classes) + 1,
                            offsets=torch.rand(3, points.shape[0], num_classes, 2) * 4,
                            points=points, mask=torch.ones(3, points.shape[0], dtype=torch.bool))
    timeline = Timeline.from_stride(fps=30.0, stride_frames=4, num_steps=num_steps)
    options = dict(timelines=[timeline] * 3, durations=[5.3] * 3, video_ids=["a", "b", "c"], score_threshold=0.05)
    for max_segments in [5, 60, 10_000]:
        fast = postprocess.postprocess_detections(output, max_segments=max_segments, **options)
        with monkeypatch.context() as patch:
            patch.setattr(postprocess, "soft_nms", postprocess.loop_soft_nms)
            loop = postprocess.postprocess_detections(output, max_segments=max_segments, **options)
        per_video = fast.groupby("video_id").size()
        assert len(per_video) == 3 and (per_video <= max_segments).all() and (per_video >= min(max_segments, 60)).all()
        pd.testing.assert_frame_equal(fast, loop, check_exact=False, rtol=1e-6)


def test_pre_nms_topk_is_per_pyramid_level():
    # the finest level floods class 0 with confident candidates; the coarse level holds the only
    # class-1 candidate, less confident. A per-video top-k of 20 would drop it; per level it stays.
    num_steps, num_classes = 20, 2
    points = pyramid_points(num_steps, regression_ranges=[(0, 4), (4, 1e4)])  # 20 + 10 points
    logits = torch.full((1, points.shape[0], num_classes), -20.0)
    logits[0, :num_steps, 0] = 4.0
    logits[0, num_steps + 3, 1] = 1.0
    offsets = torch.ones(1, points.shape[0], num_classes, 2)
    output = DetectorOutput(cls_logits=logits, offsets=offsets, points=points,
                            mask=torch.ones(1, points.shape[0], dtype=torch.bool))
    timeline = Timeline.from_stride(fps=30.0, stride_frames=4, num_steps=num_steps)
    table = postprocess_detections(output, timelines=[timeline], durations=[10.0], video_ids=["v"],
                                   score_threshold=0.01, pre_nms_topk=num_steps, max_segments=100)
    assert (table["label"] == 1).sum() == 1
    # and within a level the cap holds: at most 5 of the finest level's 20 candidates
    capped = postprocess_detections(output, timelines=[timeline], durations=[10.0], video_ids=["v"],
                                    score_threshold=0.01, pre_nms_topk=5, max_segments=100, nms_sigma=1e-6)
    assert (capped["label"] == 0).sum() <= 5 and (capped["label"] == 1).sum() == 1


def test_vote_boundaries_averages_overlapping_candidates_of_the_same_group():
    kept = torch.tensor([[2.0, 6.0]])
    candidates = torch.tensor([[2.0, 6.0], [3.0, 7.0], [2.2, 6.2], [10.0, 12.0], [3.0, 7.0]])
    scores = torch.tensor([0.6, 0.2, 0.2, 0.9, 0.9])
    groups = torch.tensor([0, 0, 0, 0, 1])  # the last one overlaps but belongs to another class
    voted = vote_boundaries(kept, torch.tensor([0]), candidates, scores, groups, min_iou=0.5)
    expected = (0.6 * candidates[0] + 0.2 * candidates[1] + 0.2 * candidates[2]) / 1.0
    torch.testing.assert_close(voted[0], expected)
    # a high threshold leaves only the detection itself
    alone = vote_boundaries(kept, torch.tensor([0]), candidates, scores, groups, min_iou=0.99)
    torch.testing.assert_close(alone, kept)
