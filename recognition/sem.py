"""Spatial Entity Module (paper Eq. 1-2) and the keypoint stream of the pose modality.

Entity boxes (Eq. 1) are computed by the data layer (:mod:`mmad.entities`) and arrive with the
batch as (B, T, K, 4) pixel boxes. Here each box is cut out of its frame's CNN feature map with
ROIAlign and refined by an entity-specific depthwise-separable convolution E_i to D features,
then the learnable entity embedding p_i is added:

    x_{i,t} = E_i(ROIAlign(F_t, B_{i,t})) + p_i                                        (2)
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import roi_align


def entity_roi_features(
    feature_maps: torch.Tensor,
    boxes: torch.Tensor,
    *,
    spatial_scale: float,
    output_size: int = 7,
    sampling_ratio: int = 2,
    aligned: bool = True,
) -> torch.Tensor:
    """ROIAlign of every entity box on its own frame's feature map.

    Args:
        feature_maps: (N, C, h, w), one map per frame.
        boxes: (N, K, 4) x1, y1, x2, y2 in input-frame pixels.
        spatial_scale: feature-map size over frame size (1/32 for a stride-32 backbone).

    Returns:
        (N, K, C, output_size, output_size).
    """
    n, k = boxes.shape[:2]
    frame_index = torch.arange(n, device=boxes.device, dtype=boxes.dtype).repeat_interleave(k)
    rois = torch.cat([frame_index[:, None], boxes.reshape(n * k, 4)], dim=1)
    # in float32: half-precision box coordinates would round to whole pixels or worse
    pooled = roi_align(
        feature_maps.float(),
        rois.float(),
        output_size=output_size,
        spatial_scale=spatial_scale,
        sampling_ratio=sampling_ratio,
        aligned=aligned,
    ).to(feature_maps.dtype)
    return pooled.view(n, k, *pooled.shape[1:])


def depthwise_separable_projection(in_channels: int, dim: int) -> nn.Sequential:
    """E_i: 3x3 depthwise conv, 1x1 pointwise conv to ``dim``, then spatial average.

    (M, C, S, S) -> (M, dim).
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, dim, 1, bias=False),
        nn.BatchNorm2d(dim),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
    )


class SpatialEntityModule(nn.Module):
    """Eq. (2): ROIAlign + per-entity depthwise-separable refinement + entity embedding."""

    def __init__(
        self,
        in_channels: int,
        *,
        num_entities: int,
        dim: int = 256,
        roi_size: int = 7,
        sampling_ratio: int = 2,
        aligned: bool = True,
    ) -> None:
        super().__init__()
        self.roi_size = roi_size
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.refiners = nn.ModuleList(depthwise_separable_projection(in_channels, dim) for _ in range(num_entities))
        self.entity_embedding = nn.Parameter(torch.randn(num_entities, dim) * 0.02)

    def forward(self, feature_maps: torch.Tensor, boxes: torch.Tensor, *, frame_size: tuple[int, int]) -> torch.Tensor:
        """Entity tokens of clips.

        Args:
            feature_maps: (B, T, C, h, w) backbone features.
            boxes: (B, T, K, 4) entity boxes in pixels of frames of ``frame_size`` = (H, W).

        Returns:
            (B, T, K, D).
        """
        b, t, c, h, w = feature_maps.shape
        k = boxes.shape[2]
        scale = h / frame_size[0]
        rois = entity_roi_features(
            feature_maps.flatten(0, 1),
            boxes.flatten(0, 1),
            spatial_scale=scale,
            output_size=self.roi_size,
            sampling_ratio=self.sampling_ratio,
            aligned=self.aligned,
        )  # (B*T, K, C, S, S)
        tokens = torch.stack([self.refiners[i](rois[:, i]) for i in range(k)], dim=1)
        return tokens.view(b, t, k, -1) + self.entity_embedding


class GlobalFrameTokens(nn.Module):
    """One token per frame from the globally averaged feature map (the no-SEM ablation rows).

    (B, T, C, h, w) -> (B, T, 1, D).
    """

    def __init__(self, in_channels: int, *, dim: int = 256) -> None:
        super().__init__()
        self.proj = nn.Linear(in_channels, dim)
        self.entity_embedding = nn.Parameter(torch.randn(1, dim) * 0.02)

    def forward(self, feature_maps: torch.Tensor) -> torch.Tensor:
        return (self.proj(feature_maps.mean(dim=(-2, -1))) + self.entity_embedding)[:, :, None]


KEYPOINT_FEATURES = 7
"""Per joint: x, y relative to the entity box; x, y relative to the frame; confidence; velocity."""


def keypoint_entity_features(keypoints: torch.Tensor, boxes: torch.Tensor, *, frame_size: tuple[int, int]) -> torch.Tensor:
    """Normalised per-entity keypoint descriptors.

    For every entity box and joint: the joint's x, y relative to the box centre in units of the
    box's half size, its x, y relative to the frame in [-1, 1], its confidence, and its
    frame-to-frame displacement in frame units (zero on the first frame). Undetected joints
    (confidence 0), and velocities touching one, are zeros.

    Args:
        keypoints: (B, T, J, 3) pixel x, y, confidence.
        boxes: (B, T, K, 4) entity boxes in pixels.
        frame_size: (H, W) of the frames the pixels refer to.

    Returns:
        (B, T, K, J, 7).
    """
    height, width = frame_size
    xy, conf = keypoints[..., :2], keypoints[..., 2:3]
    visible = (conf > 0).to(xy.dtype)
    frame_xy = torch.stack([xy[..., 0] / width, xy[..., 1] / height], dim=-1) * 2 - 1
    frame_xy = frame_xy * visible
    velocity = torch.zeros_like(frame_xy)
    velocity[:, 1:] = (frame_xy[:, 1:] - frame_xy[:, :-1]) * visible[:, 1:] * visible[:, :-1]
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2  # (B, T, K, 2)
    half = ((boxes[..., 2:] - boxes[..., :2]) / 2).clamp(min=1.0)
    box_xy = (xy[:, :, None] - centre[:, :, :, None]) / half[:, :, :, None]  # (B, T, K, J, 2)
    box_xy = box_xy.clamp(-4, 4) * visible[:, :, None]
    k = boxes.shape[2]
    per_joint = torch.cat([frame_xy, conf, velocity], dim=-1)[:, :, None].expand(-1, -1, k, -1, -1)
    return torch.cat([box_xy, per_joint], dim=-1)


class KeypointEntityEncoder(nn.Module):
    """Pose stream: per-entity MLP over the entity's keypoint descriptors, plus p_i.

    ``joint_groups[i]`` lists the joints of entity i; when empty, every entity sees all J joints
    (each normalised to its own box) and learns which matter.
    """

    def __init__(
        self,
        *,
        num_entities: int,
        num_joints: int,
        dim: int = 256,
        hidden_dim: int = 256,
        joint_groups: list[list[int]] | None = None,
    ) -> None:
        super().__init__()
        groups = joint_groups or [list(range(num_joints)) for _ in range(num_entities)]
        if len(groups) != num_entities:
            raise ValueError(f"{len(groups)} joint groups for {num_entities} entities")
        self.joint_groups = [list(g) for g in groups]
        for i, g in enumerate(self.joint_groups):
            self.register_buffer(f"joints_{i}", torch.tensor(g, dtype=torch.long), persistent=False)
        self.encoders = nn.ModuleList(
            nn.Sequential(
                nn.Linear(len(g) * KEYPOINT_FEATURES, hidden_dim),
                nn.LayerNorm(hidden_dim),
                nn.GELU(),
                nn.Linear(hidden_dim, dim),
            )
            for g in self.joint_groups
        )
        self.entity_embedding = nn.Parameter(torch.randn(num_entities, dim) * 0.02)

    def forward(self, keypoints: torch.Tensor, boxes: torch.Tensor, *, frame_size: tuple[int, int]) -> torch.Tensor:
        """(B, T, J, 3) keypoints and (B, T, K, 4) boxes -> (B, T, K, D) entity tokens."""
        feats = keypoint_entity_features(keypoints, boxes, frame_size=frame_size)  # (B, T, K, J, 7)
        tokens = [
            self.encoders[i](feats[:, :, i].index_select(2, getattr(self, f"joints_{i}")).flatten(2))
            for i in range(len(self.encoders))
        ]
        return torch.stack(tokens, dim=2) + self.entity_embedding
