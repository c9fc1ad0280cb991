"""Micro-DualNet end to end: every YAML builds and runs, variants' outputs, losses, overfitting."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmad.config import load_config
from mmad.errors import ConfigError
from mmad.types import ClipBatch
from recognition.config import (
    BackboneConfig,
    HeadConfig,
    ModelConfig,
    RecognitionConfig,
    SEMConfig,
    TransformerConfig,
)
from recognition.model import MicroDualNet, TSMBaseline, build_model, compute_losses

torch.set_num_threads(1)
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "recognition"
YAMLS = sorted(CONFIG_DIR.rglob("*.yaml"))


def random_batch(b: int, t: int, k: int, *, size: int = 32, joints: int = 67, num_classes: int = 52, seed: int = 0):
    """Clips with plausible boxes (inside the frame, non-empty) and keypoints."""
    g = torch.Generator().manual_seed(seed)
    xy1 = torch.rand(b, t, k, 2, generator=g) * size * 0.5
    wh = torch.rand(b, t, k, 2, generator=g) * size * 0.4 + 4
    boxes = torch.cat([xy1, (xy1 + wh).clamp(max=size)], dim=-1)
    keypoints = torch.cat([torch.rand(b, t, joints, 2, generator=g) * size, torch.rand(b, t, joints, 1, generator=g)], -1)
    return ClipBatch(
        frames=torch.rand(b, t, 3, size, size, generator=g),
        keypoints=keypoints,
        boxes=boxes,
        entity_conf=torch.rand(b, t, k, generator=g),
        label=torch.randint(0, num_classes, (b,), generator=g),
        body_label=torch.randint(0, 7, (b,), generator=g),
        video_id=[f"clip{i}" for i in range(b)],
    )


def tiny_model_config(**changes) -> ModelConfig:
    cfg = ModelConfig(
        dim=32,
        num_classes=5,
        backbone=BackboneConfig(arch="resnet18"),
        sem=SEMConfig(roi_size=2),  # torchvision's CPU roi_align backward is slow; keep ROIs small
        transformer=TransformerConfig(num_layers=1, num_heads=4, ffn_dim=64),
        head=HeadConfig(hidden_dim=32),
    )
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


def test_every_recognition_yaml_loads_builds_and_runs():
    assert len(YAMLS) >= 25
    for path in YAMLS:  # ResNet-18 keeps this fast; test_paper_recipe_matches_section_iv_b builds ResNet-101
        cfg = load_config(RecognitionConfig, path, overrides=["model.backbone.arch=resnet18"])
        model = build_model(cfg.model).eval()
        k = len(cfg.model.entity_names)
        batch = random_batch(1, cfg.data.num_frames, k, size=32, num_classes=cfg.model.num_classes)
        with torch.no_grad():
            out = model(batch)
        m = cfg.model
        assert out.logits.shape == (1, m.num_classes), path.name
        if m.architecture == "tsm":
            assert isinstance(model, TSMBaseline), path.name
            continue
        aux = out.aux
        assert aux.fused.shape == (1, cfg.data.num_frames, m.num_entities, m.dim), path.name
        assert (aux.x_st is not None) == (m.temporal_model in ("dual_path", "st")), path.name
        assert (aux.x_ts is not None) == (m.temporal_model in ("dual_path", "ts")), path.name
        has_routing = m.temporal_model == "dual_path" and m.fusion == "routing"
        assert (aux.routing_weights is not None) == has_routing, path.name
        losses = compute_losses(out, batch, m)
        assert ("mac" in losses) == m.mac_active, path.name
        assert torch.isfinite(losses["loss"]), path.name


def test_paper_recipe_matches_section_iv_b():
    cfg = load_config(RecognitionConfig, CONFIG_DIR / "ma52_r101.yaml")
    assert (cfg.data.num_frames, cfg.data.frame_stride, cfg.train.batch_size, cfg.train.epochs) == (8, 8, 12, 120)
    model = build_model(cfg.model)
    assert isinstance(model, MicroDualNet)
    assert model.backbone.out_channels == 2048
    assert model.classifier[0].in_features == 512 and model.classifier[0].out_features == 256  # 512 -> 256 -> C
    assert model.routing.temperature == 1.0 and len(model.routing.routers) == 6
    layer = model.st_path.spatial.layers[0]
    assert len(model.st_path.spatial.layers) == 3 and layer.num_heads == 8 and layer.ffn[0].out_features == 1024
    imigue = load_config(RecognitionConfig, CONFIG_DIR / "imigue_r101.yaml")
    assert imigue.model.num_entities == 5 and (imigue.data.num_frames, imigue.data.frame_stride) == (16, 4)


def test_config_typos_name_the_closest_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  temporal_modle: ts\n")
    with pytest.raises(ConfigError, match="temporal_model"):
        load_config(RecognitionConfig, path)
    with pytest.raises(ConfigError, match="unknown entities"):
        ModelConfig(entity_names=["head", "tail"])


@pytest.mark.parametrize("modality,fusion", [("rgb", "sum"), ("pose", "sum"), ("rgb+pose", "sum"), ("rgb+pose", "concat")])
def test_modalities(modality, fusion):
    cfg = tiny_model_config(modality=modality, modality_fusion=fusion)
    model = build_model(cfg).eval()
    assert (model.backbone is None) == (modality == "pose")
    assert (model.modality_projection is not None) == (fusion == "concat" and modality == "rgb+pose")
    out = model(random_batch(2, 4, 6))
    assert out.logits.shape == (2, 5)
    assert out.aux.pooled.shape == (2, 32 if modality == "pose" else 64)


def test_body_head_and_ignored_labels():
    cfg = tiny_model_config(head=HeadConfig(hidden_dim=32, body_head=True))
    model = build_model(cfg).eval()
    batch = random_batch(2, 4, 6, num_classes=5)
    out = model(batch)
    assert out.body_logits.shape == (2, 7)
    losses = compute_losses(out, batch, cfg)
    expected = losses["ce"] + 0.1 * losses["mac"] + 0.5 * losses["body_ce"]
    assert torch.isclose(losses["loss"], expected)
    batch.label[0] = -1
    one = compute_losses(out, batch, cfg)["ce"]
    assert torch.isclose(one, torch.nn.functional.cross_entropy(out.logits[1:], batch.label[1:]))


def test_mac_gradient_reaches_the_path_routing_ignores():
    cfg = tiny_model_config()
    model = build_model(cfg)
    with torch.no_grad():
        model.routing.prior.copy_(torch.tensor([[50.0, -50.0]]).expand(6, 2))  # alpha_ST ~ 1 everywhere
    batch = random_batch(2, 4, 6, num_classes=5)

    def ts_grad(mac_enabled: bool) -> float:
        model.zero_grad()
        cfg.mac.enabled = mac_enabled
        out = model(batch)
        assert out.aux.routing_weights[..., 1].max() < 1e-6
        compute_losses(out, batch, cfg)["loss"].backward()
        return sum(p.grad.abs().sum().item() for p in model.ts_path.parameters() if p.grad is not None)

    assert ts_grad(False) < 1e-6  # CE alone: the TS path gets (almost) nothing
    assert ts_grad(True) > 1e-3  # MAC on raw outputs trains it anyway


def test_tiny_overfit_drives_training_loss_near_zero():
    torch.manual_seed(0)
    cfg = tiny_model_config(num_classes=4)
    cfg.transformer.dropout = 0.0
    cfg.head.dropout = 0.0
    cfg.routing.dropout = 0.0
    model = build_model(cfg)
    batch = random_batch(4, 4, 6, num_classes=4, seed=1)
    batch.label = torch.tensor([0, 1, 2, 3])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(25):
        losses = compute_losses(model(batch), batch, cfg)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        first = first if first is not None else losses["ce"].item()
    assert first > 1.0 and losses["ce"].item() < 0.05


def test_profile_splits_backbone_and_head():
    from recognition.profile import format_profile, profile_model

    cfg = tiny_model_config()
    p = profile_model(cfg, num_frames=2, image_size=32)
    model = build_model(cfg)
    assert p.total_params == sum(q.numel() for q in model.parameters())
    assert p.backbone_params == sum(q.numel() for q in model.backbone.parameters())
    # ResNet-18 trunk: 1.82 GMACs = 3.64 GFLOPs per 224 px frame, / 49 at 32 px, x 2 frames = 0.149
    assert 0.14 < p.backbone_gflops < 0.155 and p.head_gflops > 0
    text = format_profile(p)
    assert "backbone" in text and "train step" in text
