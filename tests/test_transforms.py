"""Tests for mmad.transforms: frames, keypoints and boxes stay aligned through every transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmad.keypoints import LAYOUTS
from mmad.transforms import (
    IMAGENET_MEAN,
    CenterCrop,
    ClipArrays,
    ColorJitter,
    Compose,
    HorizontalFlip,
    Normalize,
    RandomResizedCrop,
    Resize,
    TemporalJitter,
    build_test_transform,
    build_train_transform,
    rescale_annotations,
)

torch.set_num_threads(1)

H, W = 48, 64


def _bright_pixel_clip(points: list[tuple[int, int]]) -> ClipArrays:
    """One frame per point: a 3x3 white blob centred on pixel (col, row); keypoint 0 sits at its
    continuous centre (col + 0.5, row + 0.5); other joints are undetected."""
    t = len(points)
    frames = np.zeros((t, H, W, 3), dtype=np.uint8)
    keypoints = np.zeros((t, 25, 3), dtype=np.float32)
    for i, (col, row) in enumerate(points):
        frames[i, row - 1 : row + 2, col - 1 : col + 2] = 255
        keypoints[i, 0] = (col + 0.5, row + 0.5, 0.9)
    return ClipArrays(frames=frames, keypoints=keypoints)


def _blob_centres(frames: torch.Tensor) -> np.ndarray:
    """(T, 3, h, w) -> (T, 2) intensity-weighted centre (x, y) in continuous pixel coordinates."""
    weight = frames.mean(dim=1)  # (T, h, w)
    weight = torch.where(
        weight > 0.5 * weight.amax(dim=(1, 2), keepdim=True), weight, torch.zeros_like(weight)
    )
    h, w = weight.shape[1:]
    ys = torch.arange(h, dtype=torch.float32) + 0.5
    xs = torch.arange(w, dtype=torch.float32) + 0.5
    total = weight.sum(dim=(1, 2))
    cx = (weight.sum(dim=1) * xs).sum(dim=1) / total
    cy = (weight.sum(dim=2) * ys).sum(dim=1) / total
    return torch.stack([cx, cy], dim=1).numpy()


POINTS = [(5, 5), (40, 10), (58, 40), (30, 25), (12, 38), (20, 20), (44, 30)]


@pytest.mark.parametrize(
    "transform",
    [
        Resize(24),
        Resize((30, 100)),
        CenterCrop((40, 40)),
        Compose([Resize(36), CenterCrop(32)]),
        HorizontalFlip("body25", p=1.0),
        Compose([CenterCrop((44, 62)), HorizontalFlip("body25", p=1.0), Resize((88, 124))]),
    ],
    ids=repr,
)
def test_bright_pixel_follows_keypoint(transform):
    clip = _bright_pixel_clip(POINTS)
    out = transform(clip)
    h, w = out.frames.shape[2:]
    expected = out.keypoints[:, 0, :2].numpy()
    assert (out.keypoints[:, 0, 2] > 0).all()  # the nose stays the nose, even flipped
    inside = (expected[:, 0] > 1) & (expected[:, 0] < w - 1) & (expected[:, 1] > 1) & (expected[:, 1] < h - 1)
    assert inside.sum() >= 3
    centres = _blob_centres(out.frames[torch.from_numpy(inside)])
    np.testing.assert_allclose(centres, expected[inside], atol=0.6)


def test_random_resized_crop_is_consistent():
    gen = torch.Generator().manual_seed(3)
    points = [(30, 25), (28, 20), (34, 27), (32, 22)]  # near the centre: inside every crop
    transform = RandomResizedCrop((32, 32), scale=(0.6, 1.0), generator=gen)
    for _ in range(5):
        out = transform(_bright_pixel_clip(points))
        assert out.frames.shape == (4, 3, 32, 32)
        np.testing.assert_allclose(_blob_centres(out.frames), out.keypoints[:, 0, :2].numpy(), atol=0.75)


def test_resize_short_side_keeps_aspect():
    out = Resize(24)(_bright_pixel_clip(POINTS))
    assert out.frames.shape == (7, 3, 24, 32)
    assert (
        out.frames.dtype == torch.float32
        and 0.0 <= float(out.frames.min())
        and float(out.frames.max()) <= 1.0
    )


def _full_clip(t: int = 3, k: int = 6, seed: int = 0) -> ClipArrays:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(t, H, W, 3), dtype=np.uint8)
    kp = np.zeros((t, 67, 3), dtype=np.float32)
    kp[..., 0] = rng.uniform(0, W, size=(t, 67))
    kp[..., 1] = rng.uniform(0, H, size=(t, 67))
    kp[..., 2] = rng.uniform(0.1, 1.0, size=(t, 67))
    kp[:, 30:40] = 0.0  # undetected joints
    x1 = rng.uniform(0, W / 2, size=(t, k))
    y1 = rng.uniform(0, H / 2, size=(t, k))
    boxes = np.stack([x1, y1, x1 + rng.uniform(2, W / 2, (t, k)), y1 + rng.uniform(2, H / 2, (t, k))], -1)
    conf = rng.uniform(0.2, 1.0, size=(t, k)).astype(np.float32)
    return ClipArrays(frames=frames, keypoints=kp, boxes=boxes.astype(np.float32), entity_conf=conf)


@pytest.mark.parametrize("k", [6, 5, 4])
def test_flip_twice_is_identity(k):
    clip = _full_clip(k=k).as_tensors()
    flip = HorizontalFlip("body25_hands", p=1.0)
    twice = flip(flip(clip))
    torch.testing.assert_close(twice.frames, clip.frames)
    torch.testing.assert_close(twice.keypoints, clip.keypoints, atol=1e-4, rtol=0)
    torch.testing.assert_close(twice.boxes, clip.boxes, atol=1e-4, rtol=0)
    torch.testing.assert_close(twice.entity_conf, clip.entity_conf)


def test_flip_swaps_hands_sides_and_keeps_undetected_zero():
    clip = _full_clip(k=6).as_tensors()
    out = HorizontalFlip("body25_hands", p=1.0)(clip)
    # box columns: left_hand (2) <-> right_hand (3); mirrored x
    torch.testing.assert_close(out.boxes[:, 2, 0], W - clip.boxes[:, 3, 2])
    torch.testing.assert_close(out.boxes[:, 3, 2], W - clip.boxes[:, 2, 0])
    torch.testing.assert_close(out.boxes[:, 0, 1::2], clip.boxes[:, 0, 1::2])
    torch.testing.assert_close(out.entity_conf[:, [2, 3]], clip.entity_conf[:, [3, 2]])
    torch.testing.assert_close(out.entity_conf[:, [0, 1, 4, 5]], clip.entity_conf[:, [0, 1, 4, 5]])
    # keypoints: right wrist (4) of the flipped clip is the mirrored left wrist (7); hands swap
    torch.testing.assert_close(out.keypoints[:, 4, 0], W - clip.keypoints[:, 7, 0])
    torch.testing.assert_close(out.keypoints[:, 46:67, 1], clip.keypoints[:, 25:46, 1])
    undetected = LAYOUTS["body25_hands"].flip_perm[30:40]
    assert not out.keypoints[:, undetected].any()
    # k4: hands are columns 1 and 2
    clip4 = _full_clip(k=4).as_tensors()
    out4 = HorizontalFlip("body25_hands", p=1.0)(clip4)
    torch.testing.assert_close(out4.entity_conf[:, [1, 2]], clip4.entity_conf[:, [2, 1]])


def test_flip_probability_and_generator():
    clip = _full_clip().as_tensors()
    never = HorizontalFlip("body25_hands", p=0.0)(clip)
    torch.testing.assert_close(never.frames, clip.frames)
    flip = HorizontalFlip("body25_hands", p=0.5, generator=torch.Generator().manual_seed(0))
    flipped = [not torch.equal(flip(clip).frames, clip.frames) for _ in range(40)]
    assert 5 < sum(flipped) < 35


def test_crop_clips_boxes_and_zeroes_conf_of_lost_entities():
    clip = _full_clip(t=1, k=2)
    clip.boxes = np.array([[[0, 0, 10, 10], [20, 10, 40, 30]]], dtype=np.float32)
    out = CenterCrop((40, 40))(clip)  # x0 = 12, y0 = 4
    torch.testing.assert_close(out.boxes[0, 0], torch.tensor([0.0, 0.0, 0.0, 6.0]))
    torch.testing.assert_close(out.boxes[0, 1], torch.tensor([8.0, 6.0, 28.0, 26.0]))
    assert out.entity_conf[0, 0] == 0 and out.entity_conf[0, 1] == pytest.approx(
        float(clip.entity_conf[0, 1])
    )
    # keypoints keep coordinates outside the crop; undetected ones stay zero
    kp = np.asarray(clip.keypoints)
    kp[0, 0] = (5.0, 2.0, 0.8)
    kp[0, 1] = 0.0
    out = CenterCrop((40, 40))(ClipArrays(frames=clip.frames, keypoints=kp))
    torch.testing.assert_close(out.keypoints[0, 0], torch.tensor([-7.0, -2.0, 0.8]))
    assert not out.keypoints[0, 1].any()


def test_temporal_jitter_moves_everything_together():
    clip = _full_clip(t=8).as_tensors()
    clip.keypoints[:, 0, 0] = torch.arange(8, dtype=torch.float32)  # time stamp in joint 0
    jitter = TemporalJitter(max_shift=2, generator=torch.Generator().manual_seed(1))
    out = jitter(clip)
    index = out.keypoints[:, 0, 0].long()
    assert (index.diff() >= 0).all() and (index - torch.arange(8)).abs().max() <= 2
    torch.testing.assert_close(out.frames, clip.frames[index])
    torch.testing.assert_close(out.boxes, clip.boxes[index])
    assert out.frames.shape == clip.frames.shape


def test_color_jitter_changes_frames_only():
    clip = _full_clip().as_tensors()
    out = ColorJitter(
        brightness=0.5, contrast=0.5, saturation=0.5, p=1.0, generator=torch.Generator().manual_seed(0)
    )(clip)
    assert not torch.equal(out.frames, clip.frames)
    assert 0.0 <= float(out.frames.min()) and float(out.frames.max()) <= 1.0
    torch.testing.assert_close(out.keypoints, clip.keypoints)
    torch.testing.assert_close(out.boxes, clip.boxes)


def test_normalize_and_builders():
    grey = np.full((2, H, W, 3), 255, dtype=np.uint8)
    out = Normalize()(ClipArrays(frames=grey))
    expected = (1.0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(out.frames[0, :, 0, 0], expected)
    train = build_train_transform(32, "body25_hands", max_time_shift=1)
    test = build_test_transform(32)
    for transform in (train, test):
        res = transform(_full_clip())
        assert res.frames.shape == (3, 3, 32, 32) and res.boxes.shape == (3, 6, 4)
        assert (res.boxes[..., 0::2] >= 0).all() and (res.boxes[..., 0::2] <= 32).all()


def test_rescale_annotations_to_decoded_size():
    clip = _full_clip(t=1, k=6)
    small = ClipArrays(frames=clip.frames[:, ::2, ::2], keypoints=clip.keypoints, boxes=clip.boxes)
    out = rescale_annotations(small, (W, H))
    detected = out.keypoints[..., 2] > 0
    torch.testing.assert_close(
        out.keypoints[..., :2][detected], torch.from_numpy(clip.keypoints[..., :2])[detected] / 2
    )
    torch.testing.assert_close(out.boxes, torch.from_numpy(clip.boxes) / 2)


def test_color_jitter_follows_its_formula():
    """Brightness scales; contrast blends with the clip's mean grey; saturation with each pixel's
    grey; in the drawn order, clamped after each (reference written out-of-place)."""
    frames = torch.rand(2, 3, 8, 10, generator=torch.Generator().manual_seed(3))
    strengths = (0.3, 0.4, 0.5)
    given = frames.clone()
    out = ColorJitter(brightness=0.3, contrast=0.4, saturation=0.5, p=1.0,
                      generator=torch.Generator().manual_seed(7))(ClipArrays(frames=given)).frames
    assert torch.equal(given, frames)  # the input is left as it was
    g = torch.Generator().manual_seed(7)
    assert float(torch.rand((), generator=g)) < 1.0  # the p draw
    expected, weights = frames, torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    for op in torch.randperm(3, generator=g).tolist():
        factor = 1 - strengths[op] + 2 * strengths[op] * float(torch.rand((), generator=g))
        grey = (expected * weights).sum(dim=1, keepdim=True)
        if op == 0:
            expected = expected * factor
        elif op == 1:
            expected = (expected - grey.mean()) * factor + grey.mean()
        else:
            expected = (expected - grey) * factor + grey
        expected = expected.clamp(0.0, 1.0)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("make", [
    lambda g: RandomResizedCrop(48, generator=g),
    lambda g: RandomResizedCrop((40, 56), scale=(0.2, 0.6), generator=g),
    lambda g: Resize(37),
    lambda g: Resize((30, 90)),
])
def test_uint8_crop_and_resize_equal_the_float_path_within_rounding(make):
    """uint8 frames are cropped and resized before they become float: the pixels agree with doing
    it all in float within one grey level, keypoints, boxes and confidences exactly."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(3, 64, 96, 3), dtype=np.uint8)
    keypoints = np.concatenate([rng.uniform(0, 96, (3, 5, 1)), rng.uniform(0, 64, (3, 5, 1)),
                                rng.uniform(0.1, 1, (3, 5, 1))], axis=-1).astype(np.float32)
    keypoints[0, 1] = 0.0  # undetected stays undetected
    corner = rng.uniform(0, 60, (3, 2, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(5, 40, (3, 2, 2))], axis=-1).astype(np.float32)
    conf = rng.uniform(0.5, 1.0, (3, 2)).astype(np.float32)
    raw = ClipArrays(frames=frames, keypoints=keypoints, boxes=boxes, entity_conf=conf)
    fast = make(torch.Generator().manual_seed(3))(raw)
    slow = make(torch.Generator().manual_seed(3))(raw.as_tensors())
    assert fast.frames.dtype == slow.frames.dtype == torch.float32 and fast.frames.shape == slow.frames.shape
    assert float((fast.frames - slow.frames).abs().max()) <= 1.0 / 255 + 1e-6
    for name in ("keypoints", "boxes", "entity_conf"):
        torch.testing.assert_close(getattr(fast, name), getattr(slow, name))


@pytest.mark.parametrize("as_float", [False, True])
def test_resize_scales_boxes_without_clamping_them(as_float):
    """Resize only scales: a box reaching past the frame keeps its extent (no crop, no clamp)."""
    frames = np.zeros((1, 40, 80, 3), dtype=np.uint8)
    boxes = np.array([[[70.0, 10.0, 95.0, 30.0]]], dtype=np.float32)  # beyond the 80 px width
    clip = ClipArrays(frames=frames, boxes=boxes, entity_conf=np.ones((1, 1), np.float32))
    out = Resize(20)(clip.as_tensors() if as_float else clip)
    assert out.frames.shape == (1, 3, 20, 40)
    torch.testing.assert_close(out.boxes, torch.from_numpy(boxes) / 2)
    assert float(out.entity_conf[0, 0]) == 1.0
