"""Points of the temporal pyramid and the assignment of ground-truth segments to them.

Every step of every pyramid level is a point. A point is described by one row of the point table
(P, 4): ``[position, regression_min, regression_max, stride]`` where ``position`` is in
finest-level step coordinates (level ``l`` point ``i`` sits at ``i * 2**l``) and the regression
range bounds the longer of its two distances to onset and offset, also in finest-level steps.

Assignment (per video, vectorised over points x segments):

1. centre sampling: a point is a candidate for a segment when it lies inside the segment and
   within ``centre_radius * stride`` of the segment's centre;
2. scale: the longer of its distances to the segment's onset and offset lies in the point's
   regression range;
3. guarantee: a segment that no point took (very short segments, or ranges that do not cover its
   length) is given one point: the valid point nearest its centre among those inside it whose
   range fits, else the valid finest-level point nearest its centre. Its regression targets are
   clamped at zero should that point lie just outside a sub-step segment.

With class-aware regression targets are multi-label: a point is positive for every class that has
a candidate segment at it, and each (point, class) regresses to the shortest candidate segment of
that class. With class-agnostic regression a point has one box for all its classes, so it regresses
to the shortest of its candidate segments (ties go to the segment whose centre is nearest the point)
and is positive only for the classes of the candidates as short as that one (within 1e-3 steps,
ActionFormer's rule): a longer overlapping action of another class is learned by the points where it
is the shortest, and is never decoded with the shorter action's box.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def default_regression_ranges(num_levels: int, *, finest_max: float = 4.0) -> list[tuple[float, float]]:
    """Regression ranges (finest-level steps) doubling per level: [0, 4], [4, 8], ..., [.., inf)."""
    ranges = []
    for level in range(num_levels):
        low = 0.0 if level == 0 else finest_max * 2 ** (level - 1)
        high = finest_max * 2**level if level < num_levels - 1 else float("inf")
        ranges.append((low, high))
    return ranges


def level_lengths(num_steps: int, num_levels: int) -> list[int]:
    """Number of points per level for a sequence of ``num_steps`` steps: ``ceil(N / 2**l)``."""
    return [-(-num_steps // 2**level) for level in range(num_levels)]


def pyramid_points(num_steps: int, *, regression_ranges, device=None) -> torch.Tensor:
    """Point table (P, 4) ``[position, regression_min, regression_max, stride]`` for an N-step sequence.

    ``regression_ranges`` has one ``(min, max)`` pair per level; P = sum over levels of ceil(N / 2**l).
    """
    rows = []
    for level, (length, (low, high)) in enumerate(zip(level_lengths(num_steps, len(regression_ranges)),
                                                      regression_ranges)):
        stride = float(2**level)
        position = torch.arange(length, dtype=torch.float32, device=device) * stride
        rows.append(torch.stack([position, torch.full_like(position, float(low)),
                                 torch.full_like(position, float(high)), torch.full_like(position, stride)], dim=1))
    return torch.cat(rows, dim=0)


@dataclass
class AssignedTargets:
    """Training targets for a batch.

    Shapes: ``cls_targets`` (B, P, C) in {0, 1}; ``reg_targets`` distances to onset and offset in
    units of each point's stride, (B, P, 2) or class-aware (B, P, C, 2); ``reg_positive`` bool (B, P)
    or class-aware (B, P, C): where a regression target exists.
    """

    cls_targets: torch.Tensor
    reg_targets: torch.Tensor
    reg_positive: torch.Tensor

    @property
    def positive_points(self) -> torch.Tensor:
        """(B, P) bool: points positive for at least one class."""
        return self.cls_targets.amax(dim=-1) > 0

    @property
    def num_positives(self) -> int:
        """Positive points (a point positive for two classes counts once): the loss normaliser's count."""
        return int(self.positive_points.sum())


def candidate_matrix(points: torch.Tensor, segments: torch.Tensor, valid: torch.Tensor, *,
                     centre_radius: float) -> torch.Tensor:
    """Which point may learn which segment, with the one-point guarantee applied.

    Args:
        points: (P, 4) point table.
        segments: (M, 2) onset/offset in finest-level step coordinates.
        valid: (P,) bool, False for points over padding.
        centre_radius: centre-sampling radius in units of each point's stride.

    Returns:
        (P, M) bool; every segment has at least one True (when any point is valid).
    """
    position, low, high, stride = points.unbind(dim=1)
    onset, offset = segments[:, 0], segments[:, 1]
    centre = 0.5 * (onset + offset)
    to_onset = position[:, None] - onset[None, :]
    to_offset = offset[None, :] - position[:, None]
    inside = (to_onset >= 0) & (to_offset >= 0)
    radius = centre_radius * stride[:, None]
    near_centre = (position[:, None] >= centre[None, :] - radius) & (position[:, None] <= centre[None, :] + radius)
    longest = torch.maximum(to_onset, to_offset)
    in_range = (longest >= low[:, None]) & (longest <= high[:, None])
    candidates = inside & near_centre & in_range & valid[:, None]

    orphans = torch.nonzero(~candidates.any(dim=0)).flatten()
    if orphans.numel() > 0 and bool(valid.any()):
        distance = (position[:, None] - centre[None, orphans]).abs()
        fits = inside[:, orphans] & in_range[:, orphans] & valid[:, None]
        best_fit = torch.where(fits, distance, torch.full_like(distance, float("inf"))).min(dim=0)
        finest = valid & (stride == stride.min())
        if not bool(finest.any()):
            finest = valid
        best_finest = torch.where(finest[:, None], distance, torch.full_like(distance, float("inf"))).min(dim=0)
        chosen = torch.where(torch.isfinite(best_fit.values), best_fit.indices, best_finest.indices)
        candidates[chosen, orphans] = True
    return candidates


def assign_video(points: torch.Tensor, segments: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, *,
                 num_classes: int, centre_radius: float, class_aware: bool
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Targets for one video.

    Args:
        points: (P, 4) point table; segments: (M, 2) finest-level steps; labels: (M,) class ids;
        valid: (P,) bool.

    Returns:
        ``cls_targets`` (P, C), ``reg_targets`` (P, 2) or (P, C, 2) in stride units,
        ``reg_positive`` (P,) or (P, C).
    """
    num_points = points.shape[0]
    device = points.device
    cls_targets = torch.zeros(num_points, num_classes, device=device)
    reg_shape = (num_points, num_classes, 2) if class_aware else (num_points, 2)
    reg_targets = torch.zeros(reg_shape, device=device)
    reg_positive = torch.zeros(reg_shape[:-1], dtype=torch.bool, device=device)
    if segments.numel() == 0:
        return cls_targets, reg_targets, reg_positive
    segments = segments.to(device=device, dtype=torch.float32)
    labels = labels.to(device=device, dtype=torch.long)
    candidates = candidate_matrix(points, segments, valid, centre_radius=centre_radius)

    position, stride = points[:, 0], points[:, 3]
    to_onset = (position[:, None] - segments[None, :, 0]).clamp(min=0)
    to_offset = (segments[None, :, 1] - position[:, None]).clamp(min=0)
    length = segments[:, 1] - segments[:, 0]
    off_centre = (position[:, None] - 0.5 * (segments[None, :, 0] + segments[None, :, 1])).abs()
    preference = length[None, :] + 1e-3 * off_centre  # shortest first, then most central
    infinity = torch.full_like(preference, float("inf"))
    is_class = torch.nn.functional.one_hot(labels, num_classes).bool()  # (M, C)

    distances = torch.stack([to_onset, to_offset], dim=-1) / stride[:, None, None]  # (P, M, 2)
    if class_aware:
        per_class_pref = torch.where(candidates[:, :, None] & is_class[None], preference[:, :, None],
                                     infinity[:, :, None])  # (P, M, C)
        best_pref, best_segment = per_class_pref.min(dim=1)  # (P, C)
        class_positive = torch.isfinite(best_pref)
        cls_targets[class_positive] = 1.0
        gathered = torch.gather(distances, 1, best_segment[:, :, None].expand(-1, -1, 2))  # (P, C, 2)
        reg_positive = class_positive
        reg_targets = torch.where(class_positive[:, :, None], gathered, reg_targets)
    else:
        best_any_pref, best_any = torch.where(candidates, preference, infinity).min(dim=1)  # (P,)
        reg_positive = torch.isfinite(best_any_pref)
        shortest = torch.where(candidates, length[None, :], infinity).min(dim=1).values  # (P,)
        as_short = candidates & (length[None, :] <= shortest[:, None] + 1e-3)  # (P, M)
        cls_targets = (as_short[:, :, None] & is_class[None]).any(dim=1).to(cls_targets.dtype)
        gathered = distances[torch.arange(num_points, device=device), best_any]
        reg_targets = torch.where(reg_positive[:, None], gathered, reg_targets)
    return cls_targets, reg_targets, reg_positive


def assign_targets(points: torch.Tensor, segments: list[torch.Tensor], labels: list[torch.Tensor],
                   valid: torch.Tensor, *, num_classes: int, centre_radius: float = 1.5,
                   class_aware: bool = True) -> AssignedTargets:
    """Targets for a batch: per-video :func:`assign_video`, stacked.

    Args:
        points: (P, 4) point table of the padded batch.
        segments: B tensors (M_b, 2) in finest-level step coordinates.
        labels: B tensors (M_b,) of class ids.
        valid: (B, P) bool point mask.
    """
    parts = [assign_video(points, seg, lab, valid[b], num_classes=num_classes, centre_radius=centre_radius,
                          class_aware=class_aware)
             for b, (seg, lab) in enumerate(zip(segments, labels))]
    cls_targets, reg_targets, reg_positive = (torch.stack(items) for items in zip(*parts))
    return AssignedTargets(cls_targets=cls_targets, reg_targets=reg_targets, reg_positive=reg_positive)
