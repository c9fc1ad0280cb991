import pandas as pd
import pytest
import torch

from detection.assign import assign_targets
from detection.losses import detection_loss
from detection.model import (
    LocalSelfAttention,
    SGPLayer,
    TemporalDetector,
    TridentBoundaries,
    masked_downsample,
)
from detection.postprocess import postprocess_detections
from detection.timeline import Timeline


def small_detector(**kwargs):
    options = dict(embed_dim=32, num_levels=3, num_embed_convs=2, num_stem_layers=1, num_heads=4, window_size=5,
                   head_convs=1)
    options.update(kwargs)
    return TemporalDetector(10, 4, **options)


@pytest.mark.parametrize("class_aware", [True, False])
def test_output_shapes_and_non_negative_offsets(class_aware):
    torch.manual_seed(0)
    model = small_detector(class_aware_regression=class_aware)
    out = model(torch.randn(2, 10, 23), torch.ones(2, 23, dtype=torch.bool))
    num_points = 23 + 12 + 6
    assert out.cls_logits.shape == (2, num_points, 4)
    assert out.offsets.shape == ((2, num_points, 4, 2) if class_aware else (2, num_points, 2))
    assert out.points.shape == (num_points, 4) and out.mask.shape == (2, num_points)
    assert (out.offsets >= 0).all()
    assert out.segments().shape == out.offsets.shape


SWITCHES = [dict(), dict(level_layers="none", fpn_fusion=True), dict(level_layers="sgp"),
            dict(boundary_head="trident", num_bins=4, quality_head=True),
            dict(boundary_head="trident", num_bins=3, class_aware_regression=False, quality_head=True)]


@pytest.mark.parametrize("switches", SWITCHES)
def test_padding_does_not_change_outputs(switches):
    torch.manual_seed(0)
    model = small_detector(**switches).eval()
    lengths = [17, 29, 8]
    padded_len = 32
    feats = torch.randn(len(lengths), 10, padded_len)
    mask = torch.arange(padded_len)[None, :] < torch.tensor(lengths)[:, None]
    feats_with_junk = feats.clone()
    feats_with_junk[~mask[:, None, :].expand_as(feats)] = 1e3  # padding content must not matter
    with torch.no_grad():
        batched = model(feats_with_junk, mask)
        for b, n in enumerate(lengths):
            alone = model(feats[b:b + 1, :, :n], torch.ones(1, n, dtype=torch.bool))
            # the same points, level by level, of the padded output
            level_padded = [padded_len // 2**level for level in range(3)]
            level_alone = [-(-n // 2**level) for level in range(3)]
            start_p, start_a = 0, 0
            for lp, la in zip(level_padded, level_alone):
                torch.testing.assert_close(batched.cls_logits[b, start_p:start_p + la],
                                           alone.cls_logits[0, start_a:start_a + la], atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(batched.offsets[b, start_p:start_p + la],
                                           alone.offsets[0, start_a:start_a + la], atol=1e-5, rtol=1e-5)
                if batched.quality_logits is not None:
                    torch.testing.assert_close(batched.quality_logits[b, start_p:start_p + la],
                                               alone.quality_logits[0, start_a:start_a + la], atol=1e-5, rtol=1e-5)
                assert batched.mask[b, start_p:start_p + la].all()
                assert not batched.mask[b, start_p + la:start_p + lp].any()
                torch.testing.assert_close(batched.points[start_p:start_p + la], alone.points[start_a:start_a + la])
                start_p, start_a = start_p + lp, start_a + la


def test_local_attention_sees_only_its_window():
    torch.manual_seed(0)
    attention = LocalSelfAttention(8, num_heads=2, window_size=5).eval()
    x = torch.randn(1, 8, 20)
    mask = torch.ones(1, 20, dtype=torch.bool)
    changed = x.clone()
    changed[:, :, 15] += 5.0
    with torch.no_grad():
        diff = (attention(x, mask) - attention(changed, mask)).abs().sum(dim=1)[0]
    assert torch.all(diff[:13] == 0) and torch.all(diff[13:18] > 0) and torch.all(diff[18:] == 0)


def test_sgp_layer_sees_its_long_window_and_the_whole_video_through_its_context():
    torch.manual_seed(0)
    layer = SGPLayer(8, short_kernel=3, long_kernel=7).eval()
    with torch.no_grad():
        layer.context.bias.fill_(1.0)  # the gate open, so that its change shows
    x = torch.randn(1, 8, 30)
    mask = torch.ones(1, 30, dtype=torch.bool)
    changed = x.clone()
    changed[:, 2, 15] += 5.0  # one channel (a change of every channel alike would vanish in the norm)

    def reach() -> torch.Tensor:
        with torch.no_grad():
            return (layer(x, mask) - layer(changed, mask)).abs().sum(dim=1)[0] > 1e-4

    assert reach().all()  # the video-level context (a mean over every real step) gates every step
    with torch.no_grad():
        layer.instant.weight.zero_()
        layer.instant.bias.zero_()
    local = reach()
    assert local[12:19].all() and not local[:12].any() and not local[19:].any()  # 15 +- long_kernel // 2


def test_masked_downsample_uses_real_steps_only():
    x = torch.tensor([[[1.0, -2.0, -3.0, 9.0, 9.0]]])
    mask = torch.tensor([[True, True, True, False, False]])
    pooled, coarse = masked_downsample(x, mask)
    assert coarse.tolist() == [[True, True, False]]
    assert pooled.tolist() == [[[1.0, -2.0, 0.0]]]


def synthetic_videos(seed, *, num_videos=6, num_steps=48, num_classes=3, noise_dims=4):
    """Feature sequences that encode their ground truth: a channel per class that is 1 inside that
    class's segments, plus noise channels; segments of different classes overlap."""
    gen = torch.Generator().manual_seed(seed)
    videos = []
    for _ in range(num_videos):
        feats = 0.1 * torch.randn(num_classes + noise_dims, num_steps, generator=gen)
        segments, labels = [], []
        onset = int(torch.randint(0, 6, (1,), generator=gen))
        for k in range(3):
            length = int(torch.randint(3, 16, (1,), generator=gen))
            label = (k + int(torch.randint(0, num_classes, (1,), generator=gen))) % num_classes
            end = min(onset + length, num_steps)
            if labels and labels[-1] == label:
                label = (label + 1) % num_classes
            feats[label, onset:end] += 1.0
            segments.append((onset - 0.5, end - 0.5))
            labels.append(label)
            onset = onset + max(2, length // 2)  # the next one starts inside this one
            if onset >= num_steps - 3:
                break
        videos.append((feats, torch.tensor(segments), torch.tensor(labels)))
    return videos


def test_tiny_overfit_reaches_full_map_at_05():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    eval_detection = pytest.importorskip("eval.detection")
    videos = synthetic_videos(0)
    num_classes = 3
    feats = torch.stack([v[0] for v in videos])
    mask = torch.ones(feats.shape[0], feats.shape[2], dtype=torch.bool)
    segments = [v[1] for v in videos]
    labels = [v[2] for v in videos]
    model = TemporalDetector(feats.shape[1], num_classes, embed_dim=32, num_levels=3, num_stem_layers=1,
                             num_heads=4, window_size=9, head_convs=1, initial_num_positives=10.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    for _ in range(250):
        out = model(feats, mask)
        targets = assign_targets(out.points, segments, labels, out.mask, num_classes=num_classes)
        losses = detection_loss(out, targets, positive_ema=model.num_positives_ema, update_ema=True)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()

    model.eval()
    timeline = Timeline.from_stride(fps=30.0, stride_frames=4, num_steps=feats.shape[2])
    duration = feats.shape[2] * 4 / 30.0
    ids = [f"v{i}" for i in range(len(videos))]
    with torch.no_grad():
        predictions = postprocess_detections(model(feats, mask), timelines=[timeline] * len(videos),
                                             durations=[duration] * len(videos), video_ids=ids, max_segments=50)
    truth = pd.DataFrame([(ids[i], float(timeline.to_seconds(s[0])), float(timeline.to_seconds(s[1])), int(lab))
                          for i, (_, segs, labs) in enumerate(videos) for s, lab in zip(segs, labs)],
                         columns=["video_id", "t_start", "t_end", "label"])
    result = eval_detection.evaluate_detection(truth, predictions, tiou_thresholds=[0.5])
    assert result.mAP_at(0.5) > 0.95, result.per_class_ap


def test_trident_distance_is_the_expectation_over_boundary_positions():
    # relative scores zero, boundary scores peaked: the onset of point t is where ``start`` peaks
    # before t, the offset where ``end`` peaks after t; positions over padding never vote
    torch.manual_seed(0)
    trident = TridentBoundaries(8, num_groups=2, num_bins=5, num_convs=0)
    length = 12
    start = torch.full((2, length), -30.0)
    end = torch.full((2, length), -30.0)
    start[0, 3], end[0, 9] = 30.0, 30.0  # group 0: a segment from step 3 to step 9
    start[1, 6], end[1, 7] = 30.0, 30.0
    end[1, 11] = 60.0  # over padding below: must be ignored
    boundary = torch.stack([start, end])  # (2 = start/end, G, N)

    def fake_boundary(x, mask):
        return boundary.reshape(1, 2 * 2, length).expand(x.shape[0], -1, -1)

    def fake_relative(x, mask):
        return torch.zeros(x.shape[0], 2 * 6, length)

    trident.boundary.forward = fake_boundary
    trident.relative.forward = fake_relative
    mask = torch.ones(1, length, dtype=torch.bool)
    mask[0, 10:] = False
    dist = trident(torch.zeros(1, 8, length), mask)  # (1, N, G, 2)
    assert dist.shape == (1, length, 2, 2)
    assert dist[0, 6, 0].tolist() == pytest.approx([3.0, 3.0], abs=1e-3)  # point 6 -> [3, 9]
    assert dist[0, 4, 0].tolist() == pytest.approx([1.0, 5.0], abs=1e-3)  # point 4 -> [3, 9]
    assert dist[0, 7, 1].tolist() == pytest.approx([1.0, 0.0], abs=1e-3)  # group 1: [6, 7], not step 11
    assert (dist[0, 10:] == 0).all()


def test_quality_head_scales_scores_and_is_trained():
    torch.manual_seed(0)
    model = small_detector(quality_head=True)
    feats, mask = torch.randn(1, 10, 16), torch.ones(1, 16, dtype=torch.bool)
    out = model(feats, mask)
    assert out.quality_logits.shape == out.cls_logits.shape
    torch.testing.assert_close(out.scores(), out.cls_logits.sigmoid() * out.quality_logits.sigmoid())
    targets = assign_targets(out.points, [torch.tensor([[3.0, 9.0]])], [torch.tensor([1])], out.mask, num_classes=4)
    losses = detection_loss(out, targets, positive_ema=model.num_positives_ema, update_ema=False)
    assert losses["quality_loss"] > 0
    losses["loss"].backward()
    assert model.quality_head.out.conv.weight.grad.abs().sum() > 0
