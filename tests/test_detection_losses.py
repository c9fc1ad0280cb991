import pytest
import torch
from torch.nn import functional as F

from detection.assign import assign_targets
from detection.losses import detection_loss, diou_loss, sigmoid_focal_loss, update_positive_ema
from detection.model import TemporalDetector


def test_focal_loss_reduces_to_bce_and_down_weights_easy_examples():
    logits = torch.tensor([-3.0, -0.5, 0.2, 4.0])
    targets = torch.tensor([0.0, 1.0, 0.0, 1.0])
    plain = sigmoid_focal_loss(logits, targets, alpha=-1, gamma=0.0)
    assert torch.allclose(plain, F.binary_cross_entropy_with_logits(logits, targets, reduction="none"))
    focal = sigmoid_focal_loss(logits, targets, alpha=-1, gamma=2.0)
    ratio = focal / plain
    assert ratio[0] < 0.01 and ratio[3] < 0.01  # easy, confident ones
    assert ratio[1] > 0.3  # hard one
    weighted = sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0)
    assert torch.allclose(weighted, focal * torch.tensor([0.75, 0.25, 0.75, 0.25]))


def test_diou_loss_values():
    target = torch.tensor([[2.0, 3.0]])
    assert diou_loss(target, target).item() == pytest.approx(0.0, abs=1e-6)
    # same length, shifted by 1: IoU 4/6, centre gap 1, enclosing 6
    shifted = diou_loss(torch.tensor([[3.0, 2.0]]), target).item()
    assert shifted == pytest.approx(1 - 4 / 6 + (1 / 6) ** 2)
    # a collapsed prediction at the point is still penalised and has gradient
    pred = torch.tensor([[0.0, 0.0]], requires_grad=True)
    loss = diou_loss(pred, target)
    loss.sum().backward()
    assert loss.item() > 1.0 - 1e-6 and pred.grad.abs().sum() > 0


def test_positive_ema_buffer_updates_and_is_checkpointed():
    torch.manual_seed(0)
    model = TemporalDetector(8, 3, embed_dim=16, num_levels=2, num_heads=2, window_size=3,
                             initial_num_positives=10.0)
    assert "num_positives_ema" in model.state_dict()
    feats, mask = torch.randn(2, 8, 24), torch.ones(2, 24, dtype=torch.bool)
    out = model(feats, mask)
    targets = assign_targets(out.points, [torch.tensor([[2.0, 9.0]]), torch.tensor([[5.0, 20.0], [6.0, 8.0]])],
                             [torch.tensor([0]), torch.tensor([1, 2])], out.mask, num_classes=3)
    n = targets.num_positives
    losses = detection_loss(out, targets, positive_ema=model.num_positives_ema, update_ema=True, ema_momentum=0.9)
    assert model.num_positives_ema.item() == pytest.approx(0.9 * 10 + 0.1 * n)
    assert losses["num_positives"].item() == n
    assert torch.isfinite(losses["loss"]) and losses["loss"] > 0
    losses["loss"].backward()
    assert model.level_scales.grad is not None
    # evaluation does not move the normaliser
    before = model.num_positives_ema.clone()
    detection_loss(out, targets, positive_ema=model.num_positives_ema, update_ema=False)
    assert torch.equal(before, model.num_positives_ema)
    reloaded = TemporalDetector(8, 3, embed_dim=16, num_levels=2, num_heads=2, window_size=3)
    reloaded.load_state_dict(model.state_dict())
    assert reloaded.num_positives_ema.item() == pytest.approx(model.num_positives_ema.item())

    buffer = torch.tensor(5.0)
    update_positive_ema(buffer, torch.tensor(0), momentum=0.5)
    assert buffer.item() == pytest.approx(3.0)  # a batch without positives counts as one


def test_loss_without_any_positive_is_finite():
    model = TemporalDetector(4, 2, embed_dim=8, num_levels=2, num_heads=2, window_size=3)
    out = model(torch.randn(1, 4, 10), torch.ones(1, 10, dtype=torch.bool))
    targets = assign_targets(out.points, [torch.zeros(0, 2)], [torch.zeros(0, dtype=torch.long)], out.mask,
                             num_classes=2)
    losses = detection_loss(out, targets, positive_ema=model.num_positives_ema, update_ema=True)
    assert losses["reg_loss"].item() == 0.0 and torch.isfinite(losses["loss"])
    losses["loss"].backward()


def test_normaliser_counts_positive_points_not_point_class_pairs():
    # two classes on the same segment: every positive point carries two (point, class) targets,
    # but the normaliser counts it once
    model = TemporalDetector(4, 3, embed_dim=8, num_levels=2, num_heads=2, window_size=3, initial_num_positives=1.0)
    out = model(torch.randn(1, 4, 16), torch.ones(1, 16, dtype=torch.bool))
    targets = assign_targets(out.points, [torch.tensor([[3.0, 9.0], [3.0, 9.0]])], [torch.tensor([0, 2])], out.mask,
                             num_classes=3)
    pairs = int(targets.reg_positive.sum())
    points = int((targets.cls_targets.sum(dim=-1) > 0).sum())
    assert pairs == 2 * points > 0
    losses = detection_loss(out, targets, positive_ema=model.num_positives_ema, update_ema=True, ema_momentum=0.0)
    assert losses["num_positives"].item() == points
    assert model.num_positives_ema.item() == pytest.approx(points)
