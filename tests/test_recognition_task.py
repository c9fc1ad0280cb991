"""RecognitionTask: losses, parameter groups, view averaging, metrics, routing scalars."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from eval.recognition import evaluate_recognition
from mmad.config import from_dict
from mmad.errors import ConfigError
from mmad.types import ClipBatch
from recognition.config import RecognitionConfig
from recognition.model import RecognitionAux, RecognitionOutput
from recognition.task import (
    Predictions,
    RecognitionTask,
    collect_predictions,
    metrics_from_predictions,
    no_decay_parameter,
    parse_views,
)

torch.set_num_threads(1)


def tiny_cfg(**model) -> RecognitionConfig:
    base = {"dim": 32, "num_classes": 52, "backbone": {"arch": "resnet18"},
            "transformer": {"num_layers": 1, "num_heads": 4, "ffn_dim": 64},
            "sem": {"roi_size": 2, "pose_hidden": 32}, "head": {"hidden_dim": 32}}
    base.update(model)
    return from_dict(RecognitionConfig, {"model": base, "data": {"num_frames": 2, "image_size": 32}})


def random_batch(b=2, t=2, k=6, size=32, seed=0) -> ClipBatch:
    g = torch.Generator().manual_seed(seed)
    xy1 = torch.rand(b, t, k, 2, generator=g) * size * 0.5
    boxes = torch.cat([xy1, xy1 + 8], dim=-1)
    kp = torch.cat([torch.rand(b, t, 67, 2, generator=g) * size, torch.rand(b, t, 67, 1, generator=g)], -1)
    return ClipBatch(frames=torch.rand(b, t, 3, size, size, generator=g), keypoints=kp, boxes=boxes,
                     entity_conf=torch.rand(b, t, k, generator=g), label=torch.tensor([3, 40][:b]),
                     body_label=torch.tensor([0, 5][:b]), video_id=[f"v{i}" for i in range(b)])


def test_training_step_gives_ce_and_mac_and_gradients():
    task = RecognitionTask(tiny_cfg())
    model = task.build_model()
    losses = task.training_step(model, random_batch())
    assert {"loss", "ce", "mac"} <= set(losses)
    torch.testing.assert_close(losses["loss"], losses["ce"] + 0.1 * losses["mac"])
    losses["loss"].backward()
    assert model.classifier[0].weight.grad is not None


def test_param_groups_split_decay_and_cover_every_parameter_once():
    task = RecognitionTask(tiny_cfg())
    model = task.build_model()
    decay, no_decay = task.param_groups(model)
    assert no_decay["weight_decay"] == 0.0 and "weight_decay" not in decay
    ids = [id(p) for p in decay["params"]] + [id(p) for p in no_decay["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    no_decay_ids = {id(p) for p in no_decay["params"]}
    named = dict(model.named_parameters())
    assert id(named["classifier.0.bias"]) in no_decay_ids
    assert id(named["routing.prior"]) in no_decay_ids
    assert id(named["rgb_entities.entity_embedding"]) in no_decay_ids
    assert id(named["backbone.conv1.weight"]) not in no_decay_ids
    assert id(named["classifier.0.weight"]) not in no_decay_ids
    assert no_decay_parameter("x.weight", torch.zeros(3), nn.LayerNorm(3))
    assert no_decay_parameter("e.weight", torch.zeros(4, 3), nn.Embedding(4, 3))
    assert not no_decay_parameter("fc.weight", torch.zeros(4, 3), nn.Linear(3, 4))


class FixedModel(nn.Module):
    """Returns preset logits per video id, and routing weights (B, T, K, 2)."""

    def __init__(self, logits: dict[str, list[float]]):
        super().__init__()
        self.logits = logits

    def forward(self, batch: ClipBatch) -> RecognitionOutput:
        logits = torch.tensor([self.logits[v] for v in batch.video_id])
        b = len(batch)
        alpha = torch.full((b, 2, 3, 1), 0.25)
        alpha[0, :, 0] = 0.75
        weights = torch.cat([alpha, 1 - alpha], dim=-1)
        return RecognitionOutput(logits, None, RecognitionAux(pooled=torch.zeros(b, 1), routing_weights=weights))


def tiny_batch(ids: list[str], labels: list[int]) -> ClipBatch:
    b = len(ids)
    return ClipBatch(frames=torch.zeros(b, 1, 3, 2, 2), keypoints=torch.zeros(b, 1, 1, 3), boxes=torch.zeros(b, 1, 1, 4),
                     entity_conf=torch.zeros(b, 1, 1), label=torch.tensor(labels), body_label=torch.tensor(labels),
                     video_id=ids)


def test_collect_predictions_averages_views_of_a_record():
    logits = {"a": [2.0, 0.0, 0.0], "b": [0.0, 0.0, 3.0]}
    model = FixedModel(logits)
    # two views of "a" split across batches, one of "b"
    loader = [tiny_batch(["b", "a"], [2, 0]), tiny_batch(["a"], [0])]
    pred = collect_predictions(model, loader, device=torch.device("cpu"))
    assert pred.video_ids == ["b", "a"]  # first appearance without a dataset order
    np.testing.assert_allclose(pred.scores[1], torch.softmax(torch.tensor(logits["a"]), 0).numpy(), rtol=1e-6)
    assert pred.labels.tolist() == [2, 0]
    assert pred.routing.shape == (2, 3, 2)
    # "a" appeared first in one batch (alpha_ST 0.25 on entity 0) and first in the other (0.75): mean 0.5
    np.testing.assert_allclose(pred.routing[1, 0], [0.5, 0.5])
    np.testing.assert_allclose(pred.routing[0, 0], [0.75, 0.25])


def test_metrics_match_eval_and_skip_unlabelled():
    cfg = tiny_cfg()
    rng = np.random.default_rng(0)
    scores = rng.random((6, 52))
    labels = np.array([0, 5, 11, 30, 51, -1])
    pred = Predictions(video_ids=list("abcdef"), scores=scores, labels=labels, body_labels=labels)
    result = metrics_from_predictions(pred, cfg)
    expected = evaluate_recognition(scores[:5], labels[:5])
    assert result.num_samples == 5 and result.f1_mean == pytest.approx(expected.f1_mean)
    hidden = Predictions(video_ids=["a"], scores=scores[:1], labels=np.array([-1]), body_labels=np.array([-1]))
    assert metrics_from_predictions(hidden, cfg) is None


def test_evaluate_returns_the_metric_set_and_routing_scalars():
    cfg = tiny_cfg(num_classes=3, entity_names=["head", "face", "torso"])
    task = RecognitionTask(cfg)
    model = FixedModel({"a": [2.0, 0.0, 0.0], "b": [0.0, 0.0, 3.0], "c": [0.0, 1.0, 0.0]})
    metrics = task.evaluate(model, [tiny_batch(["a", "b", "c"], [0, 2, 0])], device=torch.device("cpu"),
                            distributed=False)
    assert task.primary_metric == "f1_mean"
    assert {"top1", "top5", "f1_mean", "body_top1", "action_f1_macro", "mean_class_accuracy"} <= set(metrics)
    assert metrics["top1"] == pytest.approx(2 / 3)
    assert np.isnan(metrics["top5"])  # fewer than five classes
    scalars = task.extra_scalars(model)
    assert set(scalars) == {"alpha_st/head", "alpha_st/face", "alpha_st/torso"}
    assert scalars["alpha_st/head"] == pytest.approx((0.75 + 0.25 + 0.25) / 3)


def test_parse_views():
    assert parse_views("1x1") == (1, 1) and parse_views("3X2") == (3, 2) and parse_views("2×3") == (2, 3)
    for bad in ("3", "0x1", "ax2"):
        with pytest.raises(ConfigError):
            parse_views(bad)


def test_bf16_test_scores_match_fp32_within_tolerance():
    """Testing under bf16 autocast: the model does run in bf16, and the softmax scores of a real
    Micro-DualNet stay within 0.02 of fp32 with the same ranking of the top class."""
    task = RecognitionTask(tiny_cfg())
    model = task.build_model().eval()
    loader = [random_batch(seed=s) for s in range(3)]
    fp32 = collect_predictions(model, loader, device=torch.device("cpu"), precision="fp32")
    seen = []
    handle = model.classifier.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    bf16 = collect_predictions(model, loader, device=torch.device("cpu"), precision="bf16")
    handle.remove()
    assert seen and all(d == torch.bfloat16 for d in seen)
    assert bf16.scores.dtype == fp32.scores.dtype
    np.testing.assert_allclose(bf16.scores, fp32.scores, atol=0.02)
    assert (bf16.scores.argmax(1) == fp32.scores.argmax(1)).all()
