"""Losses of the temporal head: sigmoid focal loss for classes, DIoU loss for boundaries.

Both are summed over the batch and divided by a running mean (EMA) of the number of positive
points per batch, kept in the model's ``num_positives_ema`` buffer so that resumed runs continue
with it. A point counts once however many classes it is positive for (ActionFormer's count): the
classification loss sums over (point, class) pairs and, with class-aware regression, the boundary
loss sums over positive (point, class) pairs, so a point inside two overlapping actions weighs
twice as much as a point inside one, as its two targets do. Counting (point, class) pairs instead
would divide by a number that grows with overlap and shrink exactly those points' share.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from detection.assign import AssignedTargets
from detection.model import DetectorOutput


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, *, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Element-wise focal loss of independent sigmoids; ``logits`` and ``targets`` of any equal shape.

    ``alpha`` weighs positives (``1 - alpha`` negatives); a negative ``alpha`` disables the weighting.
    """
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss


def diou_loss(pred: torch.Tensor, target: torch.Tensor, *, eps: float = 1e-8) -> torch.Tensor:
    """1-D distance-IoU loss between segments given as non-negative distances from one point.

    Shapes: ``pred`` and ``target`` (..., 2) = (to onset, to offset) -> (...,).
    Loss = 1 - IoU + (centre distance / enclosing length)^2.
    """
    pred_onset, pred_offset = pred.unbind(dim=-1)
    tgt_onset, tgt_offset = target.unbind(dim=-1)
    intersection = torch.minimum(pred_onset, tgt_onset) + torch.minimum(pred_offset, tgt_offset)
    union = pred_onset + pred_offset + tgt_onset + tgt_offset - intersection
    iou = intersection / union.clamp(min=eps)
    enclosing = torch.maximum(pred_onset, tgt_onset) + torch.maximum(pred_offset, tgt_offset)
    centre_gap = 0.5 * ((pred_offset - pred_onset) - (tgt_offset - tgt_onset))
    return 1.0 - iou + (centre_gap / enclosing.clamp(min=eps)) ** 2


def segment_iou_from_distances(pred: torch.Tensor, target: torch.Tensor, *, eps: float = 1e-8) -> torch.Tensor:
    """IoU of segments given as (to onset, to offset) distances from one point: (..., 2), (..., 2) -> (...,)."""
    intersection = torch.minimum(pred[..., 0], target[..., 0]) + torch.minimum(pred[..., 1], target[..., 1])
    union = pred.sum(dim=-1) + target.sum(dim=-1) - intersection
    return intersection / union.clamp(min=eps)


def update_positive_ema(buffer: torch.Tensor, num_positives: torch.Tensor, *, momentum: float) -> None:
    """In place: ``buffer <- momentum * buffer + (1 - momentum) * max(num_positives, 1)``.

    Under torch.distributed the count is first averaged over ranks so that every rank agrees.
    """
    count = num_positives.detach().to(buffer.dtype).clone()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(count)
        count /= torch.distributed.get_world_size()
    buffer.mul_(momentum).add_((1 - momentum) * count.clamp(min=1.0))


def detection_loss(output: DetectorOutput, targets: AssignedTargets, *, positive_ema: torch.Tensor,
                   update_ema: bool, ema_momentum: float = 0.9, focal_alpha: float = 0.25,
                   focal_gamma: float = 2.0, reg_weight: float = 1.0,
                   quality_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """Classification and regression losses of a batch.

    Args:
        output: head outputs (cls_logits (B, P, C), offsets (B, P, [C,] 2), mask (B, P)).
        targets: assigned targets of the same shapes.
        positive_ema: the model's ``num_positives_ema`` buffer (0-dim); updated in place when
            ``update_ema`` (training), read as the normaliser.

    With a quality head (``output.quality_logits``) a third term, weighted by ``quality_weight``,
    is the binary cross-entropy between the quality logit and the IoU of the predicted box with its
    target (gradient-free target) on every positive (point[, class]), divided by the same normaliser.

    Returns:
        dict with ``loss`` (total), ``cls_loss``, ``reg_loss``, ``quality_loss`` (0 without a quality
        head) and ``num_positives`` (positive points; 0-dim tensors).
    """
    positives = targets.reg_positive
    num_positives = (targets.positive_points & output.mask).sum()
    if update_ema:
        update_positive_ema(positive_ema, num_positives, momentum=ema_momentum)
    normaliser = positive_ema.detach().clamp(min=1.0)

    valid = output.mask
    cls_logits, offsets = output.cls_logits.float(), output.offsets.float()
    cls_all = sigmoid_focal_loss(cls_logits, targets.cls_targets, alpha=focal_alpha, gamma=focal_gamma)
    cls_loss = (cls_all * valid[:, :, None].to(cls_all.dtype)).sum() / normaliser

    if bool(positives.any()):
        reg_loss = diou_loss(offsets[positives], targets.reg_targets[positives]).sum() / normaliser
    else:
        reg_loss = offsets.sum() * 0.0
    total = cls_loss + reg_weight * reg_loss
    quality_loss = torch.zeros((), device=cls_loss.device)
    if output.quality_logits is not None:
        quality = output.quality_logits.float()
        quality = quality if output.class_aware else quality[..., 0]  # the shape of ``positives``
        if bool(positives.any()):
            iou = segment_iou_from_distances(offsets[positives].detach(), targets.reg_targets[positives])
            quality_loss = F.binary_cross_entropy_with_logits(quality[positives], iou, reduction="sum") / normaliser
        else:
            quality_loss = quality.sum() * 0.0
        total = total + quality_weight * quality_loss
    return {"loss": total, "cls_loss": cls_loss.detach(), "reg_loss": reg_loss.detach(),
            "quality_loss": quality_loss.detach(), "num_positives": num_positives.detach().float()}
