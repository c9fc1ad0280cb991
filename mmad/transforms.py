"""Clip transforms that move frames, keypoints and entity boxes together.

A transform takes and returns a :class:`ClipArrays`. The first transform turns frames given as
``(T, H, W, 3)`` uint8 (what :func:`mmad.video.read_frames` returns) into a float tensor
``(T, 3, H, W)`` in ``[0, 1]``; :class:`Normalize` (the last step) applies the ImageNet mean and
standard deviation. Every random choice is drawn once per clip, so all T frames get the same crop,
flip and colour change; randomness comes from torch's generator (seeded per DataLoader worker) or
from a ``generator`` given to the transform.

Coordinates are continuous pixels: pixel column ``i`` covers ``[i, i + 1)`` and its centre is
``i + 0.5``. Hence a crop at ``(x0, y0)`` maps ``x -> x - x0``, a resize from width W to w maps
``x -> x * w / W`` (as bilinear interpolation with ``align_corners=False`` does) and a flip maps
``x -> W - x`` for keypoints and ``(x1, x2) -> (W - x2, W - x1)`` for boxes.

Keypoints keep their coordinates even when a crop leaves them outside the frame (pose features
stay meaningful); undetected joints stay ``(0, 0, 0)`` through every transform. Boxes are
clipped to the frame after every crop, and an entity whose box is cropped away entirely gets
``entity_conf`` 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from mmad.entities import ENTITY_SETS, resolve_entities
from mmad.keypoints import SkeletonLayout, get_layout

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ClipArrays",
    "Compose",
    "Resize",
    "CenterCrop",
    "RandomResizedCrop",
    "HorizontalFlip",
    "TemporalJitter",
    "ColorJitter",
    "Normalize",
    "rescale_annotations",
    "build_train_transform",
    "build_test_transform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ClipArrays:
    """The arrays of one clip that geometric transforms must keep aligned.

    Attributes:
        frames: (T, H, W, 3) uint8 array/tensor on input; (T, 3, H, W) float32 tensor once any
            transform has run (values in [0, 1] until :class:`Normalize`).
        keypoints: (T, J, 3) pixel x, y, confidence, or None.
        boxes: (T, K, 4) x1, y1, x2, y2 pixels, or None.
        entity_conf: (T, K), or None.
    """

    frames: torch.Tensor | np.ndarray
    keypoints: torch.Tensor | np.ndarray | None = None
    boxes: torch.Tensor | np.ndarray | None = None
    entity_conf: torch.Tensor | np.ndarray | None = None

    def as_tensors(self) -> ClipArrays:
        """Frames as float (T, 3, H, W) in [0, 1] (uint8 input divided by 255), the rest float32 tensors."""
        frames = self.frames
        if not isinstance(frames, torch.Tensor):
            frames = torch.from_numpy(np.ascontiguousarray(frames))
        if frames.ndim != 4:
            raise ValueError(f"frames must be 4-D, got shape {tuple(frames.shape)}")
        if frames.dtype == torch.uint8:
            if frames.shape[-1] != 3:
                raise ValueError(f"uint8 frames must be (T, H, W, 3), got {tuple(frames.shape)}")
            # channels first while still uint8 (a quarter of the bytes to move), then to float
            frames = frames.permute(0, 3, 1, 2).contiguous().float().div_(255.0)
        elif frames.shape[1] != 3:
            raise ValueError(f"float frames must be (T, 3, H, W), got {tuple(frames.shape)}")
        else:
            frames = frames.float()
        return ClipArrays(
            frames=frames.contiguous(),
            keypoints=_float_tensor(self.keypoints),
            boxes=_float_tensor(self.boxes),
            entity_conf=_float_tensor(self.entity_conf),
        )

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def frame_size(self) -> tuple[int, int]:
        """(W, H) of the frames, in either frame format."""
        frames = self.frames
        if isinstance(frames, torch.Tensor) and frames.dtype != torch.uint8:
            return int(frames.shape[3]), int(frames.shape[2])
        return int(frames.shape[2]), int(frames.shape[1])


def _float_tensor(x) -> torch.Tensor | None:
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        return x.float()
    return torch.from_numpy(np.asarray(x, dtype=np.float32).copy())


def _rand(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * _rand(generator)


# --------------------------------------------------------------------------------------------
# Geometry helpers on tensors
# --------------------------------------------------------------------------------------------


def _undetected(keypoints: torch.Tensor) -> torch.Tensor:
    return keypoints[..., 2] <= 0


def _affine(clip: ClipArrays, *, sx: float, sy: float, dx: float, dy: float) -> ClipArrays:
    """Map keypoints and boxes by x -> sx * x + dx, y -> sy * y + dy (sx, sy > 0)."""
    keypoints, boxes = clip.keypoints, clip.boxes
    if keypoints is not None:
        missing = _undetected(keypoints)
        keypoints = keypoints.clone()
        keypoints[..., 0] = keypoints[..., 0] * sx + dx
        keypoints[..., 1] = keypoints[..., 1] * sy + dy
        keypoints[missing] = 0.0
    if boxes is not None:
        boxes = boxes.clone()
        boxes[..., 0::2] = boxes[..., 0::2] * sx + dx
        boxes[..., 1::2] = boxes[..., 1::2] * sy + dy
    return replace(clip, keypoints=keypoints, boxes=boxes)


def _clip_boxes(clip: ClipArrays, size: tuple[int, int] | None = None) -> ClipArrays:
    """Boxes clamped to the frame ((W, H) ``size``, default the frames'); a box clamped to nothing loses its confidence."""
    if clip.boxes is None:
        return clip
    width, height = size or clip.frame_size
    boxes = clip.boxes.clone()
    boxes[..., 0::2] = boxes[..., 0::2].clamp(0.0, float(width))
    boxes[..., 1::2] = boxes[..., 1::2].clamp(0.0, float(height))
    entity_conf = clip.entity_conf
    if entity_conf is not None:
        empty = (boxes[..., 2] <= boxes[..., 0]) | (boxes[..., 3] <= boxes[..., 1])
        was_box = (clip.boxes[..., 2] > clip.boxes[..., 0]) & (clip.boxes[..., 3] > clip.boxes[..., 1])
        entity_conf = torch.where(empty & was_box, torch.zeros_like(entity_conf), entity_conf)
    return replace(clip, boxes=boxes, entity_conf=entity_conf)


def _crop(clip: ClipArrays, x0: int, y0: int, width: int, height: int) -> ClipArrays:
    frames = clip.frames[:, :, y0 : y0 + height, x0 : x0 + width]
    out = _affine(replace(clip, frames=frames), sx=1.0, sy=1.0, dx=-x0, dy=-y0)
    return _clip_boxes(out)


def _resize(clip: ClipArrays, height: int, width: int) -> ClipArrays:
    old_w, old_h = clip.frame_size
    if (old_w, old_h) == (width, height):
        return clip
    frames = F.interpolate(
        clip.frames, size=(height, width), mode="bilinear", align_corners=False, antialias=True
    ).clamp_(0.0, 1.0)
    return _affine(replace(clip, frames=frames), sx=width / old_w, sy=height / old_h, dx=0.0, dy=0.0)


def _raw_uint8(frames) -> torch.Tensor | None:
    """Input frames (T, H, W, 3) uint8 as a tensor (no copy); None for anything else."""
    if isinstance(frames, np.ndarray):
        if frames.dtype != np.uint8:
            return None
        frames = torch.from_numpy(frames)
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        return None
    return frames


def _crop_resize(clip: ClipArrays, region: tuple[int, int, int, int] | None, out_h: int, out_w: int) -> ClipArrays:
    """Crop ``region`` (x0, y0, width, height; None: no crop), then resize to (out_h, out_w): what
    :func:`_crop` then :func:`_resize` do, but input uint8 frames stay uint8 until the output size
    (torch's uint8 antialiased kernel; a quarter of the bytes), so only the small result is made
    float. Pixels then differ from the float path by rounding (at most 1/255)."""
    raw = _raw_uint8(clip.frames)
    if raw is None:
        clip = clip.as_tensors()
        return _resize(clip if region is None else _crop(clip, *region), out_h, out_w)
    out = ClipArrays(frames=raw, keypoints=_float_tensor(clip.keypoints), boxes=_float_tensor(clip.boxes),
                     entity_conf=_float_tensor(clip.entity_conf))
    width, height = int(raw.shape[2]), int(raw.shape[1])
    if region is not None:
        x0, y0, width, height = region
        raw = raw[:, y0 : y0 + height, x0 : x0 + width]
        out = _clip_boxes(_affine(out, sx=1.0, sy=1.0, dx=-x0, dy=-y0), size=(width, height))
    frames = raw.permute(0, 3, 1, 2)  # (T, 3, h, w), a view
    if (height, width) != (out_h, out_w):
        frames = F.interpolate(frames, size=(out_h, out_w), mode="bilinear", align_corners=False, antialias=True)
        out = _affine(out, sx=out_w / width, sy=out_h / height, dx=0.0, dy=0.0)
    return replace(out, frames=frames.contiguous().float().div_(255.0))


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


# --------------------------------------------------------------------------------------------
# Transforms
# --------------------------------------------------------------------------------------------


class Compose:
    """Apply transforms in order: ``Compose([a, b])(clip) == b(a(clip))``."""

    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, clip: ClipArrays) -> ClipArrays:
        clip = clip.as_tensors()
        for transform in self.transforms:
            clip = transform(clip)
        return clip

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


class Resize:
    """Resize every frame; keypoints and boxes scale with it.

    Args:
        size: an int sets the short side (aspect ratio kept, long side rounded); an (H, W)
            pair sets the exact size.
    """

    def __init__(self, size: int | Sequence[int]):
        self.size = size

    def __call__(self, clip: ClipArrays) -> ClipArrays:
        width, height = clip.frame_size
        if isinstance(self.size, int):
            if width <= height:
                new_w, new_h = self.size, max(1, round(height * self.size / width))
            else:
                new_w, new_h = max(1, round(width * self.size / height)), self.size
        else:
            new_h, new_w = _pair(self.size)
        return _crop_resize(clip, None, new_h, new_w)

    def __repr__(self) -> str:
        return f"Resize({self.size})"


class CenterCrop:
    """Crop the central (H, W) region (an int gives a square); the frame must be large enough."""

    def __init__(self, size: int | Sequence[int]):
        self.size = _pair(size)

    def __call__(self, clip: ClipArrays) -> ClipArrays:
        clip = clip.as_tensors()
        width, height = clip.frame_size
        crop_h, crop_w = self.size
        if crop_h > height or crop_w > width:
            raise ValueError(f"crop {crop_h}x{crop_w} is larger than the frame {height}x{width}")
        x0 = int(round((width - crop_w) / 2.0))
        y0 = int(round((height - crop_h) / 2.0))
        return _crop(clip, x0, y0, crop_w, crop_h)

    def __repr__(self) -> str:
        return f"CenterCrop({self.size})"


class RandomResizedCrop:
    """Crop a random region (one per clip) and resize it to ``size``.

    The region covers a fraction of the frame's area drawn from ``scale`` with an aspect ratio
    (width / height) drawn log-uniformly from ``ratio``; after 10 failed draws the central crop
    of the largest allowed aspect is used. Defaults keep at least half the frame, so hands
    at the frame's edge usually stay in view.

    Args:
        size: output (H, W) or an int for a square.
        scale: range of the crop's area as a fraction of the frame's.
        ratio: range of the crop's aspect ratio.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        *,
        scale: tuple[float, float] = (0.5, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        generator: torch.Generator | None = None,
    ):
        self.size = _pair(size)
        self.scale = scale
        self.ratio = ratio
        self.generator = generator

    def sample_region(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(x0, y0, w, h) of a crop of a width x height frame."""
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * _uniform(self.scale[0], self.scale[1], self.generator)
            aspect = math.exp(_uniform(log_ratio[0], log_ratio[1], self.generator))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                x0 = int(torch.randint(0, width - w + 1, (), generator=self.generator))
                y0 = int(torch.randint(0, height - h + 1, (), generator=self.generator))
                return x0, y0, w, h
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            w, h = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            w, h = int(round(height * max(self.ratio))), height
        else:
            w, h = width, height
        return (width - w) // 2, (height - h) // 2, w, h

    def __call__(self, clip: ClipArrays) -> ClipArrays:
        width, height = clip.frame_size
        x0, y0, w, h = self.sample_region(width, height)
        return _crop_resize(clip, (x0, y0, w, h), *self.size)

    def __repr__(self) -> str:
        return f"RandomResizedCrop({self.size}, scale={self.scale}, ratio={self.ratio})"


class HorizontalFlip:
    """Mirror the clip left-right with probability ``p``.

    Frames flip along W; keypoint x becomes ``W - x`` and joints are permuted by the layout's
    ``flip_perm`` (left and right joints, and the two hands, swap); boxes become
    ``(W - x2, y1, W - x1, y2)`` and the left-hand and right-hand entity columns of boxes and
    entity_conf swap. Undetected joints stay (0, 0, 0). Flipping twice gives the input back.

    Args:
        layout: the keypoints' skeleton layout.
        p: probability of flipping a clip.
        entities: the entity set of the boxes; None infers it from K (6 -> k6, 5 -> k5, 4 -> k4).
    """

    def __init__(
        self,
        layout: str | SkeletonLayout,
        *,
        p: float = 0.5,
        entities: str | Sequence[str] | None = None,
        generator: torch.Generator | None = None,
    ):
        self.layout = get_layout(layout)
        self.p = p
        self.entities = entities
        self.generator = generator

    def _hand_columns(self, num_entities: int) -> tuple[int, int] | None:
        if self.entities is None:
            by_k = {len(names): names for names in ENTITY_SETS.values()}
            if num_entities not in by_k:
                raise ValueError(f"cannot infer the entity set of K={num_entities}; pass entities=")
            names = by_k[num_entities]
        else:
            names = resolve_entities(self.entities)
            if len(names) != num_entities:
                raise ValueError(f"boxes have K={num_entities} but entities {names} has {len(names)}")
        if "left_hand" in names and "right_hand" in names:
            return names.index("left_hand"), names.index("right_hand")
        return None

    def flip(self, clip: ClipArrays) -> ClipArrays:
        """Flip unconditionally."""
        clip = clip.as_tensors()
        width, _ = clip.frame_size
        frames = clip.frames.flip(-1)
        keypoints, boxes, entity_conf = clip.keypoints, clip.boxes, clip.entity_conf
        if keypoints is not None:
            if keypoints.shape[1] != self.layout.num_joints:
                raise ValueError(
                    f"keypoints have J={keypoints.shape[1]}, layout {self.layout.name} has {self.layout.num_joints}"
                )
            missing = _undetected(keypoints)
            keypoints = keypoints.clone()
            keypoints[..., 0] = width - keypoints[..., 0]
            keypoints[missing] = 0.0
            keypoints = keypoints[:, torch.from_numpy(self.layout.flip_perm)]
        if boxes is not None:
            boxes = torch.stack(
                [width - boxes[..., 2], boxes[..., 1], width - boxes[..., 0], boxes[..., 3]], dim=-1
            )
            hands = self._hand_columns(boxes.shape[1])
            if hands is not None:
                perm = torch.arange(boxes.shape[1])
                perm[hands[0]], perm[hands[1]] = hands[1], hands[0]
                boxes = boxes[:, perm]
                if entity_conf is not None:
                    entity_conf = entity_conf[:, perm]
        return ClipArrays(frames=frames, keypoints=keypoints, boxes=boxes, entity_conf=entity_conf)

    def __call__(self, clip: ClipArrays) -> ClipArrays:
        if self.p > 0 and _rand(self.generator) < self.p:
            return self.flip(clip)
        return clip.as_tensors()

    def __repr__(self) -> str:
        return f"HorizontalFlip({self.layout.name!r}, p={self.p})"


class TemporalJitter:
    """Perturb frame times slightly, keeping T and the order of time.

    Output frame t shows input frame ``clamp(t + d_t, 0, T - 1)`` with d_t drawn uniformly from
    ``[-max_shift, max_shift]``; the indices are then sorted so time never runs backwards.
    Keypoints, boxes and entity_conf follow the same indices. Applied with probability ``p``.
    """

    def __init__(self, *, max_shift: int = 1, p: float = 1.0, generator: torch.Generator | None = None):
        self.max_shift = int(max_shift)
        self.p = p
        self.generator = generator

    def sample_indices(self, num_frames: int) -> torch.Tensor:
        """(T,) long tensor of source frame indices, non-decreasing."""
        shift = torch.randint(-self.max_shift, self.max_shift + 1, (num_frames,), generator=self.generator)
        index = (torch.arange(num_frames) + shift).clamp_(0, num_frames - 1)
        return index.sort().values

    def __call__(self, clip: ClipArrays) -> ClipArrays:
        clip = clip.as_tensors()
        if self.max_shift <= 0 or self.p <= 0 or _rand(self.generator) >= self.p:
            return clip
        index = self.sample_indices(clip.num_frames)
        return ClipArrays(
            frames=clip.frames[index],
            keypoints=None if clip.keypoints is None else clip.keypoints[index],
            boxes=None if clip.boxes is None else clip.boxes[index],
            entity_conf=None if clip.entity_conf is None else clip.entity_conf[index],
        )

    def __repr__(self) -> str:
        return f"TemporalJitter(max_shift={self.max_shift}, p={self.p})"


def _grey(frames: torch.Tensor) -> torch.Tensor:
    """(T, 1, H, W) luma 0.299 R + 0.587 G + 0.114 B of (T, 3, H, W) frames."""
    return frames[:, 0:1] * 0.299 + frames[:, 1:2] * 0.587 + frames[:, 2:3] * 0.114


class ColorJitter:
    """Random brightness, contrast and saturation, one draw per clip; frames only.

    Each factor is drawn from ``[1 - s, 1 + s]`` for strength s and applied in a random order:
    brightness scales the pixels, contrast blends with the clip's mean grey level, saturation
    blends with each pixel's grey value. Values are clamped to [0, 1].
    """

    def __init__(
        self,
        *,
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.2,
        p: float = 0.8,
        generator: torch.Generator | None = None,
    ):
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation
        self.p = p
        self.generator = generator

    def __call__(self, clip: ClipArrays) -> ClipArrays:
        clip = clip.as_tensors()
        if self.p <= 0 or _rand(self.generator) >= self.p:
            return clip
        frames = clip.frames.clone()  # then in place: fresh large tensors are slow to fill
        for op in torch.randperm(3, generator=self.generator).tolist():
            strength = (self.brightness, self.contrast, self.saturation)[op]
            if strength <= 0:
                continue
            factor = _uniform(max(0.0, 1 - strength), 1 + strength, self.generator)
            if op == 0:
                frames.mul_(factor)
            elif op == 1:  # (x - m) * f + m, as x * f + m * (1 - f)
                grey_mean = float(_grey(frames).mean())
                frames.mul_(factor).add_(grey_mean * (1.0 - factor))
            else:
                grey = _grey(frames)
                frames.mul_(factor).add_(grey, alpha=1.0 - factor)
            frames.clamp_(0.0, 1.0)
        return replace(clip, frames=frames)

    def __repr__(self) -> str:
        return f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, saturation={self.saturation})"


class Normalize:
    """Subtract the per-channel mean and divide by the std (ImageNet statistics by default)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self._scale, self._shift = 1.0 / self.std, -self.mean / self.std  # one pass: x * scale + shift

    def __call__(self, clip: ClipArrays) -> ClipArrays:
        clip = clip.as_tensors()
        return replace(clip, frames=torch.addcmul(self._shift, clip.frames, self._scale))

    def __repr__(self) -> str:
        return "Normalize()"


def rescale_annotations(clip: ClipArrays, source_size: tuple[int, int]) -> ClipArrays:
    """Scale keypoints and boxes from a source frame size (W, H) to the clip's frame size.

    Use when frames were decoded at a reduced size (e.g. ``read_frames(..., size=256)``) while
    keypoints and boxes are in the video's native pixels. The frames are left as they are (uint8
    frames stay uint8, so that a following crop and resize work on them before they become float).
    """
    width, height = clip.frame_size
    src_w, src_h = source_size
    clip = replace(clip, keypoints=_float_tensor(clip.keypoints), boxes=_float_tensor(clip.boxes),
                   entity_conf=_float_tensor(clip.entity_conf))
    return _affine(clip, sx=width / src_w, sy=height / src_h, dx=0.0, dy=0.0)


def build_train_transform(
    size: int,
    layout: str | SkeletonLayout,
    *,
    scale: tuple[float, float] = (0.5, 1.0),
    flip_p: float = 0.5,
    max_time_shift: int = 0,
    color_jitter: float = 0.2,
    entities: str | Sequence[str] | None = None,
) -> Compose:
    """Training augmentation: temporal jitter (off by default), random resized crop to a
    ``size`` x ``size`` square, horizontal flip, colour jitter, ImageNet normalisation."""
    steps: list = []
    if max_time_shift > 0:
        steps.append(TemporalJitter(max_shift=max_time_shift))
    steps.append(RandomResizedCrop(size, scale=scale))
    if flip_p > 0:
        steps.append(HorizontalFlip(layout, p=flip_p, entities=entities))
    if color_jitter > 0:
        steps.append(ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter))
    steps.append(Normalize())
    return Compose(steps)


def build_test_transform(size: int, *, resize: int | None = None) -> Compose:
    """Evaluation transform: resize the short side to ``resize`` (default ``size * 8 / 7``,
    i.e. 256 for 224), centre crop ``size`` x ``size``, ImageNet normalisation."""
    short_side = resize if resize is not None else int(round(size * 8 / 7))
    return Compose([Resize(short_side), CenterCrop(size), Normalize()])
