"""SEM: ROI features come from the box's region; per-entity refinement; the keypoint stream."""

from __future__ import annotations

import torch

from recognition.sem import (
    GlobalFrameTokens,
    KeypointEntityEncoder,
    SpatialEntityModule,
    entity_roi_features,
    keypoint_entity_features,
)

torch.set_num_threads(1)


def coordinate_map(h: int, w: int) -> torch.Tensor:
    """(1, 2, h, w): channel 0 holds each cell's centre x, channel 1 its centre y."""
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    return torch.stack([xs, ys])[None].float()


def test_roi_features_sample_inside_the_box():
    fmap = coordinate_map(8, 8)  # stride 32 -> a 256 x 256 frame
    boxes = torch.tensor([[[64.0, 96.0, 128.0, 224.0], [0.0, 0.0, 256.0, 256.0]]])
    rois = entity_roi_features(fmap, boxes, spatial_scale=1 / 32, output_size=4, sampling_ratio=2)
    assert rois.shape == (1, 2, 2, 4, 4)
    first = rois[0, 0]
    # every sample lies inside the box (in feature units) and the mean is the box centre
    assert first[0].min() >= 2.0 and first[0].max() <= 4.0
    assert first[1].min() >= 3.0 and first[1].max() <= 7.0
    assert torch.allclose(first[0].mean(), torch.tensor(3.0), atol=1e-4)
    assert torch.allclose(first[1].mean(), torch.tensor(5.0), atol=1e-4)
    # bins are ordered left-to-right and top-to-bottom
    assert torch.all(first[0][:, 1:] > first[0][:, :-1]) and torch.all(first[1][1:] > first[1][:-1])


def test_roi_features_see_only_their_region():
    fmap = torch.zeros(2, 1, 8, 8)
    fmap[0, 0, 0:2, 6:8] = 1.0  # top-right corner of frame 0
    fmap[1, 0, 6:8, 0:2] = 1.0  # bottom-left corner of frame 1
    top_right = [192.0, 0.0, 256.0, 64.0]
    bottom_left = [0.0, 192.0, 64.0, 256.0]
    boxes = torch.tensor([[top_right, bottom_left], [top_right, bottom_left]])
    rois = entity_roi_features(fmap, boxes, spatial_scale=1 / 32, output_size=2).mean(dim=(2, 3, 4))
    assert rois[0, 0] > 0.75 and rois[0, 1] == 0  # edge samples blend with the zero border
    assert rois[1, 0] == 0 and rois[1, 1] > 0.75  # each frame's boxes read that frame's map


def test_sem_tokens_shape_and_entity_identity():
    sem = SpatialEntityModule(16, num_entities=3, dim=8, roi_size=3).eval()
    fmaps = torch.randn(2, 4, 16, 4, 4)
    box = torch.tensor([0.0, 0.0, 64.0, 64.0])
    boxes = box.expand(2, 4, 3, 4)
    tokens = sem(fmaps, boxes, frame_size=(128, 128))
    assert tokens.shape == (2, 4, 3, 8)
    # same box for every entity, yet E_i and p_i differ per entity
    assert not torch.allclose(tokens[:, :, 0], tokens[:, :, 1])
    params = sum(p.numel() for p in sem.refiners[0].parameters())
    assert params == 16 * 9 + 2 * 16 + 16 * 8 + 2 * 8  # depthwise, BN, pointwise, BN


def test_global_tokens_average_the_map():
    g = GlobalFrameTokens(6, dim=4)
    fmaps = torch.randn(2, 3, 6, 2, 2)
    out = g(fmaps)
    assert out.shape == (2, 3, 1, 4)
    expected = g.proj(fmaps.mean(dim=(-2, -1))) + g.entity_embedding
    assert torch.allclose(out[:, :, 0], expected)


def test_keypoint_features_are_box_and_frame_normalised():
    keypoints = torch.zeros(1, 2, 2, 3)
    keypoints[0, 0, 0] = torch.tensor([60.0, 40.0, 0.9])
    keypoints[0, 1, 0] = torch.tensor([70.0, 40.0, 0.8])
    keypoints[0, :, 1] = torch.tensor([30.0, 30.0, 0.0])  # undetected
    boxes = torch.tensor([40.0, 20.0, 80.0, 60.0]).expand(1, 2, 1, 4)
    feats = keypoint_entity_features(keypoints, boxes, frame_size=(100, 200))
    assert feats.shape == (1, 2, 1, 2, 7)
    f0 = feats[0, 0, 0, 0]
    assert torch.allclose(f0[:2], torch.tensor([0.0, 0.0]))  # box centre
    assert torch.allclose(f0[2:4], torch.tensor([60 / 200 * 2 - 1, 40 / 100 * 2 - 1]))
    assert torch.isclose(f0[4], torch.tensor(0.9))
    assert torch.all(f0[5:] == 0)  # no velocity on the first frame
    f1 = feats[0, 1, 0, 0]
    assert torch.allclose(f1[:2], torch.tensor([0.5, 0.0]))
    assert torch.allclose(f1[5:], torch.tensor([10 / 200 * 2, 0.0]))
    assert torch.all(feats[0, :, 0, 1] == 0)  # undetected joint contributes zeros


def test_keypoint_encoder_uses_only_its_joint_group():
    enc = KeypointEntityEncoder(num_entities=2, num_joints=4, dim=8, hidden_dim=8, joint_groups=[[0, 1], [2, 3]])
    keypoints = torch.rand(1, 3, 4, 3) * 50
    boxes = torch.tensor([0.0, 0.0, 50.0, 50.0]).expand(1, 3, 2, 4)
    base = enc(keypoints, boxes, frame_size=(50, 50))
    moved = keypoints.clone()
    moved[..., 3, :2] += 5.0
    out = enc(moved, boxes, frame_size=(50, 50))
    assert base.shape == (1, 3, 2, 8)
    assert torch.allclose(out[:, :, 0], base[:, :, 0])
    assert not torch.allclose(out[:, :, 1], base[:, :, 1])
