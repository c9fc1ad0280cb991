import pytest
import torch

from detection.assign import (
    assign_targets,
    assign_video,
    candidate_matrix,
    default_regression_ranges,
    level_lengths,
    pyramid_points,
)
from detection.timeline import Timeline

STEPS_PER_SECOND = 7.5  # features every 4 frames at 30 fps


def test_pyramid_points_layout():
    points = pyramid_points(10, regression_ranges=default_regression_ranges(3))
    assert level_lengths(10, 3) == [10, 5, 3]
    assert points.shape == (18, 4)
    level2 = points[15:]
    assert level2[:, 0].tolist() == [0.0, 4.0, 8.0]
    assert torch.all(level2[:, 3] == 4.0)
    assert points[0, 1] == 0 and points[0, 2] == 4 and torch.isinf(points[-1, 2])


LEVEL_SETTINGS = [
    dict(num_levels=1, ranges=None, radius=1.5),
    dict(num_levels=3, ranges=None, radius=1.5),
    dict(num_levels=5, ranges=None, radius=1.5),
    dict(num_levels=6, ranges=None, radius=0.1),
    # no range admits a short segment anywhere: only the guarantee can give it a point
    dict(num_levels=4, ranges=[(4, 8), (8, 16), (16, 32), (32, 1e4)], radius=1.5),
    dict(num_levels=3, ranges=[(50, 100), (100, 200), (200, 1e4)], radius=0.5),
]


@pytest.mark.parametrize("setting", LEVEL_SETTINGS)
@pytest.mark.parametrize("onset_seconds", [0.0, 0.51, 1.13, 3.97, 6.37])
def test_short_segment_always_gets_a_positive(setting, onset_seconds):
    num_steps = 53
    timeline = Timeline.from_stride(fps=30.0, stride_frames=4, num_steps=num_steps)
    ranges = setting["ranges"] or default_regression_ranges(setting["num_levels"])
    points = pyramid_points(num_steps, regression_ranges=ranges)
    onset = timeline.to_steps(onset_seconds)
    segment = torch.tensor([[max(onset, -0.5), timeline.to_steps(onset_seconds + 0.3)]], dtype=torch.float32)
    valid = torch.ones(points.shape[0], dtype=torch.bool)
    for class_aware in (True, False):
        cls_targets, reg_targets, reg_positive = assign_video(
            points, segment, torch.tensor([3]), valid, num_classes=5, centre_radius=setting["radius"],
            class_aware=class_aware)
        assert cls_targets[:, 3].sum() >= 1
        assert cls_targets[:, [0, 1, 2, 4]].sum() == 0
        assert reg_positive.sum() >= 1
        assert torch.all(reg_targets >= 0)
        # the decoded target reproduces the segment (the kept point lies inside it)
        p = torch.nonzero(reg_positive.reshape(points.shape[0], -1).any(dim=1)).flatten()[0]
        dist = reg_targets[p, 3] if class_aware else reg_targets[p]
        pos, stride = points[p, 0], points[p, 3]
        assert torch.allclose(torch.stack([pos - dist[0] * stride, pos + dist[1] * stride]), segment[0], atol=1e-5)


def test_guarantee_ignores_padding():
    points = pyramid_points(16, regression_ranges=[(20, 40), (40, 1e4)])
    valid = torch.zeros(points.shape[0], dtype=torch.bool)
    valid[:10] = True  # finest level, steps 0-9 real
    valid[16:21] = True  # coarse level, steps 0, 2, ..., 8 real
    segments = torch.tensor([[8.6, 9.4], [2.0, 3.0]])
    cand = candidate_matrix(points, segments, valid, centre_radius=1.5)
    assert cand.any(dim=0).all()
    assert not (cand & ~valid[:, None]).any()


def test_multi_label_and_class_aware_targets():
    # two overlapping segments of different classes: the shared points are positive for both,
    # each class regressing to its own segment
    points = pyramid_points(40, regression_ranges=default_regression_ranges(3))
    segments = torch.tensor([[10.0, 20.0], [14.0, 30.0]])
    labels = torch.tensor([1, 2])
    valid = torch.ones(points.shape[0], dtype=torch.bool)
    cls_targets, reg_targets, reg_positive = assign_video(points, segments, labels, valid, num_classes=4,
                                                          centre_radius=100.0, class_aware=True)
    both = (cls_targets[:, 1] == 1) & (cls_targets[:, 2] == 1)
    assert both.any()
    p = torch.nonzero(both).flatten()[0]
    pos, stride = points[p, 0], points[p, 3]
    assert torch.allclose(pos - reg_targets[p, 1, 0] * stride, torch.tensor(10.0))
    assert torch.allclose(pos + reg_targets[p, 1, 1] * stride, torch.tensor(20.0))
    assert torch.allclose(pos - reg_targets[p, 2, 0] * stride, torch.tensor(14.0))
    assert torch.allclose(pos + reg_targets[p, 2, 1] * stride, torch.tensor(30.0))

    # class-agnostic: one box per point, the shorter segment's, and only its class is positive there
    cls_agn, reg_agn, pos_agn = assign_video(points, segments, labels, valid, num_classes=4,
                                             centre_radius=100.0, class_aware=False)
    assert pos_agn[p]
    assert torch.allclose(pos + reg_agn[p, 1] * stride, torch.tensor(20.0))
    assert cls_agn[p].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert cls_agn[:, 2].sum() > 0  # the longer segment keeps the points where it is the shortest


def test_class_agnostic_positives_decode_to_a_segment_of_their_class():
    # overlapping segments of different classes and lengths: every positive (point, class) must
    # decode, through the point's single box, to a ground-truth segment of that class
    points = pyramid_points(64, regression_ranges=default_regression_ranges(4))
    segments = torch.tensor([[10.0, 30.0], [12.0, 29.0], [36.0, 39.0], [36.0, 39.0], [45.0, 60.0], [46.0, 59.0]])
    labels = torch.tensor([0, 1, 2, 3, 2, 0])
    valid = torch.ones(points.shape[0], dtype=torch.bool)
    cls_targets, reg_targets, reg_positive = assign_video(points, segments, labels, valid, num_classes=4,
                                                          centre_radius=1.5, class_aware=False)
    decoded = torch.stack([points[:, 0] - reg_targets[:, 0] * points[:, 3],
                           points[:, 0] + reg_targets[:, 1] * points[:, 3]], dim=1)
    for p, c in torch.nonzero(cls_targets).tolist():
        assert reg_positive[p]
        same_class = segments[labels == c]
        assert torch.isclose(decoded[p][None], same_class, atol=1e-4).all(dim=1).any(), (p, c, decoded[p])
    assert cls_targets[:, 2].sum() > 0 and cls_targets[:, 3].sum() > 0  # identical segments: both labels
    assert set(torch.nonzero(cls_targets)[:, 1].tolist()) == {0, 1, 2, 3}


def test_same_class_overlap_prefers_shorter_segment():
    points = pyramid_points(30, regression_ranges=[(0, 1e4)])
    segments = torch.tensor([[0.0, 29.0], [10.0, 14.0]])
    valid = torch.ones(points.shape[0], dtype=torch.bool)
    _, reg_targets, reg_positive = assign_video(points, segments, torch.tensor([0, 0]), valid, num_classes=1,
                                                centre_radius=100.0, class_aware=True)
    assert torch.allclose(reg_targets[12, 0], torch.tensor([2.0, 2.0]))
    assert torch.allclose(reg_targets[25, 0], torch.tensor([25.0, 4.0]))
    assert reg_positive[:, 0].all()


def test_batch_assignment_shapes_and_empty_video():
    points = pyramid_points(20, regression_ranges=default_regression_ranges(2))
    valid = torch.ones(2, points.shape[0], dtype=torch.bool)
    targets = assign_targets(points, [torch.tensor([[2.0, 8.0]]), torch.zeros(0, 2)],
                             [torch.tensor([1]), torch.zeros(0, dtype=torch.long)], valid, num_classes=3)
    assert targets.cls_targets.shape == (2, 30, 3)
    assert targets.reg_targets.shape == (2, 30, 3, 2)
    assert targets.cls_targets[1].sum() == 0 and targets.num_positives > 0


@pytest.mark.parametrize("stride_frames", [4, 16])
def test_every_real_mma52_instance_gets_a_positive(shared_datasets, stride_frames):
    # at 16 frames per step some real instances are shorter than a step and would get no point
    # from centre sampling and ranges alone
    from detection.dataset import segments_to_steps
    from mmad.datasets.mma52 import read_detection_annotations

    videos = read_detection_annotations(shared_datasets / "mma52" / "mmad.json", subset="val")
    ranges = default_regression_ranges(5)
    for video in videos:
        num_steps = max(1, int(round(video.duration * video.fps / stride_frames)))
        timeline = Timeline.from_stride(fps=video.fps, stride_frames=stride_frames, num_steps=num_steps)
        segments, _ = segments_to_steps(video, timeline)
        assert segments.shape[0] == len(video.segments)
        points = pyramid_points(num_steps, regression_ranges=ranges)
        candidates = candidate_matrix(points, segments, torch.ones(points.shape[0], dtype=torch.bool),
                                      centre_radius=1.5)
        assert candidates.any(dim=0).all(), video.video_id
