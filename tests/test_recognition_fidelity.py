"""Paper fidelity: what each table row changes, the order of the paths, which router serves which
entity, Eq. (1) carry-forward, Eq. (19-20) pooling and concatenation, the paper configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mmad.config import load_config, to_dict
from mmad.entities import entity_boxes
from mmad.errors import ConfigError
from mmad.types import ClipBatch
from recognition.config import RecognitionConfig
from recognition.dualpath import SpatialTemporalPath, TemporalSpatialPath
from recognition.model import MicroDualNet, RecognitionAux, RecognitionOutput, compute_losses
from recognition.routing import EntityRouting
from recognition.transformers import SpatialTransformer, TemporalTransformer, over_entities, over_time

torch.set_num_threads(1)
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "recognition"
ABLATIONS = CONFIGS / "ablations"


def resolved(path: Path) -> dict[str, object]:
    """The config a YAML resolves to (through the project's loader), flattened to dotted keys."""
    def flatten(tree, prefix=""):
        out = {}
        for key, value in tree.items():
            if isinstance(value, dict):
                out.update(flatten(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = value
        return out

    flat = flatten(to_dict(load_config(RecognitionConfig, path)))
    flat.pop("out")
    return flat


# Every ablation row, the full model of its table, and the fields the row's own change names.
ROWS = {
    "t1_pose_only": ("t1_pose_rgb", {"model.modality"}),
    "t1_rgb_only": ("t1_pose_rgb", {"data.entity_boxes"}),
    "t2_baseline_tsm": ("t2_full", {"model.architecture"}),
    "t2_ts_only": ("t2_full", {"model.sem.entity_features", "model.temporal_model", "model.mac.enabled"}),
    "t2_sem": ("t2_full", {"model.temporal_model", "model.mac.enabled"}),
    "t2_dual_path": ("t2_full", {"model.fusion", "model.mac.enabled"}),
    "t2_mac": ("t2_full", {"model.fusion"}),
    "t2_routing_no_mac": ("t2_full", {"model.mac.enabled"}),
    "t3_center_crop": ("t3_keypoints", {"data.entity_boxes"}),
    "t3_fixed_regions": ("t3_keypoints", {"data.entity_boxes"}),
    "t3_no_confidence": ("t3_keypoints", {"model.mac.confidence_weighting"}),
    "t3_4_entities": ("t3_keypoints", {"model.entity_names"}),
    "t4_frames_04": ("t4_frames_16", {"data.num_frames", "data.frame_stride"}),
    "t4_frames_08": ("t4_frames_16", {"data.num_frames", "data.frame_stride"}),
    "t4_frames_32": ("t4_frames_16", {"data.num_frames", "data.frame_stride"}),
    "t4_avg_pool": ("t4_video_mac", {"model.temporal_model"}),
    "t4_max_pool": ("t4_video_mac", {"model.temporal_model"}),
    "t4_lstm": ("t4_video_mac", {"model.temporal_model"}),
    "t4_temporal_transformer": ("t4_video_mac", {"model.temporal_model"}),
    "t4_frame_mac": ("t4_video_mac", {"model.mac.level"}),
    "x_eq20_literal": ("t2_full", {"model.head.project_global_features"}),
}
FULL_MODELS = {"t1_pose_rgb", "t2_full", "t3_keypoints", "t4_frames_16", "t4_video_mac"}


def test_every_ablation_file_is_listed():
    assert {p.stem for p in ABLATIONS.glob("*.yaml")} == set(ROWS) | FULL_MODELS


@pytest.mark.parametrize("row", sorted(ROWS))
def test_ablation_row_differs_from_its_full_model_only_in_its_own_fields(row):
    full_name, allowed = ROWS[row]
    full, variant = resolved(ABLATIONS / f"{full_name}.yaml"), resolved(ABLATIONS / f"{row}.yaml")
    differing = {k for k in full if full[k] != variant[k]}
    assert differing == allowed, f"{row} vs {full_name}: differs in {sorted(differing)}"


def test_the_full_models_of_all_tables_are_one_model():
    configs = [resolved(ABLATIONS / f"{name}.yaml") for name in sorted(FULL_MODELS)]
    assert all(c == configs[0] for c in configs)
    paper = configs[0]
    assert paper["model.modality"] == "rgb"  # Eq. (2) alone; keypoints only give boxes and MAC weights
    assert paper["data.entity_boxes"] == "keypoints" and paper["model.mac.confidence_weighting"] is True
    assert (paper["model.temporal_model"], paper["model.fusion"], paper["model.mac.enabled"]) == (
        "dual_path", "routing", True)


def test_paper_configs_follow_the_paper_and_the_keypoint_stream_is_a_separate_extension():
    ma52, imigue = resolved(CONFIGS / "ma52_r101.yaml"), resolved(CONFIGS / "imigue_r101.yaml")
    for cfg in (ma52, imigue):
        assert cfg["model.modality"] == "rgb" and cfg["model.backbone.arch"] == "resnet101"
        assert cfg["model.dim"] == 256 and cfg["model.mac.weight"] == 0.1 and cfg["model.mac.temperature"] == 0.07
        assert (cfg["optim.name"], cfg["optim.lr"], cfg["optim.weight_decay"]) == ("sgd", 0.01, 5e-4)
        assert (cfg["train.epochs"], cfg["train.batch_size"], cfg["optim.warmup_epochs"]) == (120, 12, 10)
    assert (ma52["data.num_frames"], ma52["data.frame_stride"]) == (8, 8)
    assert (imigue["data.num_frames"], imigue["data.frame_stride"]) == (16, 4)
    assert len(ma52["model.entity_names"]) == 6 and len(imigue["model.entity_names"]) == 5
    extension = resolved(CONFIGS / "ma52_r101_keypoint_stream.yaml")
    assert {k for k in ma52 if ma52[k] != extension[k]} == {"model.modality"}
    assert extension["model.modality"] == "rgb+pose"


def test_a_paper_backbone_without_pretrained_weights_is_refused():
    from recognition.task import check_pretrained

    cfg = load_config(RecognitionConfig, CONFIGS / "ma52_r101.yaml")
    with pytest.raises(ConfigError, match="from_scratch=true"):
        check_pretrained(cfg)
    cfg.model.backbone.from_scratch = True
    check_pretrained(cfg)
    cfg.model.backbone.from_scratch, cfg.model.backbone.pretrained = False, "weights.pt"
    check_pretrained(cfg)
    check_pretrained(load_config(RecognitionConfig, CONFIGS / "micropuppet.yaml"))  # no ResNet-101 there


def test_eq20_literal_row_feeds_2304_features_and_the_paper_recipe_512():
    from recognition.model import build_model

    for name, width in (("t2_full", 512), ("x_eq20_literal", 2048 + 256)):
        model = build_model(load_config(RecognitionConfig, ABLATIONS / f"{name}.yaml").model)
        assert model.classifier[0].in_features == width, name
        assert model.classifier[0].out_features == 256


# ----------------------------------------------------------------------------- path order


class Recording(nn.Module):
    """Wraps a module and writes its name into ``log`` on every call."""

    def __init__(self, inner: nn.Module, name: str, log: list[str]):
        super().__init__()
        self.inner, self.name, self.log = inner, name, log

    def forward(self, x):
        self.log.append(self.name)
        return self.inner(x)


def _transformers(dim=8):
    torch.manual_seed(0)
    spatial = SpatialTransformer(dim, entity_names=["head", "torso", "left_hand"], num_layers=1, num_heads=2,
                                 ffn_dim=16, dropout=0.0)
    temporal = TemporalTransformer(dim, num_layers=1, num_heads=2, ffn_dim=16, dropout=0.0)
    return spatial, temporal


@pytest.mark.parametrize("path_cls, order", [(SpatialTemporalPath, ["spatial", "temporal"]),
                                             (TemporalSpatialPath, ["temporal", "spatial"])])
def test_st_applies_spatial_then_temporal_and_ts_the_reverse(path_cls, order):
    spatial, temporal = _transformers()
    path = path_cls(spatial, temporal, 8).eval()
    x = torch.randn(2, 5, 3, 8)
    # Eq. (9-10) and (11-12) written out
    with torch.no_grad():
        if path_cls is SpatialTemporalPath:
            expected = over_time(temporal, over_entities(spatial, x) + path.mlp(x))
        else:
            expected = over_entities(spatial, over_time(temporal, x) + path.mlp(x))
        log: list[str] = []
        path.spatial, path.temporal = Recording(spatial, "spatial", log), Recording(temporal, "temporal", log)
        got = path(x)
    assert log == order
    torch.testing.assert_close(got, expected)


# ----------------------------------------------------------------------------- routing


def test_router_i_is_applied_to_entity_i():
    k, d = 4, 8
    routing = EntityRouting(k, d, temperature=1.0, dropout=0.0).eval()
    with torch.no_grad():
        for i, router in enumerate(routing.routers):
            last = router[-1]
            last.weight.zero_()
            last.bias.copy_(torch.tensor([float(i), -float(i)]))  # router i prefers ST by 2i
    x_st, x_ts = torch.randn(2, 3, k, d), torch.randn(2, 3, k, d)
    fused, weights = routing(x_st, x_ts)
    for i in range(k):
        expected = torch.softmax(torch.tensor([float(i), -float(i)]), dim=0)
        torch.testing.assert_close(weights[:, :, i], expected.expand(2, 3, 2))
        torch.testing.assert_close(fused[:, :, i], expected[0] * x_st[:, :, i] + expected[1] * x_ts[:, :, i])


# ----------------------------------------------------------------------------- Eq. (1)


def test_carry_forward_takes_the_most_recent_valid_box():
    """Two valid frames with different boxes, then an invalid one: the latest box is carried."""
    kp = np.zeros((5, 25, 3), dtype=np.float32)
    head = [0, 15, 16, 1]  # nose, eyes, neck of BODY_25
    base = np.array([[100, 50], [90, 45], [110, 45], [100, 90]], dtype=np.float32)
    for t, shift in enumerate([0.0, 40.0, 0.0, 80.0, 0.0]):
        kp[t, head, :2] = base + shift
        kp[t, head, 2] = 0.9
    kp[2, head, 2] = 0.1  # frame 2: nothing visible
    kp[4, head[1:], 2] = 0.0  # frame 4: one joint visible, |V| = 1 < 2
    boxes, conf = entity_boxes(kp, "body25", entities=["head"], min_size=0.0)
    assert not np.allclose(boxes[0, 0], boxes[1, 0])
    np.testing.assert_allclose(boxes[2, 0], boxes[1, 0])  # the most recent, not the first
    np.testing.assert_allclose(boxes[4, 0], boxes[3, 0])
    assert conf[2, 0] == 0.0 and conf[4, 0] == 0.0 and conf[1, 0] > 0 and conf[3, 0] > 0


# ----------------------------------------------------------------------------- Eq. (19-20)


class FixedFeatureMaps(nn.Module):
    def __init__(self, maps: torch.Tensor):
        super().__init__()
        self.maps = maps

    def forward(self, frames):
        return self.maps


class FixedTokens(nn.Module):
    def __init__(self, tokens: torch.Tensor):
        super().__init__()
        self.tokens = tokens

    def forward(self, feature_maps, boxes, *, frame_size):
        return self.tokens


def test_eq19_averages_over_t_and_k_and_eq20_puts_f_cnn_first():
    b, t, k, d, c = 2, 3, 4, 5, 7
    maps = torch.randn(b, t, c, 2, 2)
    tokens = torch.randn(b, t, k, d) + torch.arange(t * k, dtype=torch.float32).view(1, t, k, 1)
    identity_path = nn.Identity()
    model = MicroDualNet(classifier=nn.Identity(), temporal_model="dual_path", backbone=FixedFeatureMaps(maps),
                         rgb_entities=FixedTokens(tokens), st_path=identity_path, ts_path=identity_path,
                         use_global_features=True)
    batch = ClipBatch(frames=torch.zeros(b, t, 3, 8, 8), keypoints=torch.zeros(b, t, 25, 3),
                      boxes=torch.zeros(b, t, k, 4), entity_conf=torch.ones(b, t, k),
                      label=torch.zeros(b, dtype=torch.long), body_label=torch.zeros(b, dtype=torch.long),
                      video_id=["a", "b"])
    out = model(batch)
    f_cnn = maps.mean(dim=(1, 3, 4))
    f_entity = tokens.sum(dim=(1, 2)) / (t * k)
    torch.testing.assert_close(out.logits, torch.cat([f_cnn, f_entity], dim=-1))
    torch.testing.assert_close(out.aux.entity_features, f_entity)


def test_mac_confidence_of_another_shape_is_an_error_not_uniform_weights():
    cfg = load_config(RecognitionConfig, ABLATIONS / "t2_full.yaml").model
    b, t, k, d = 2, 3, 6, 4
    aux = RecognitionAux(pooled=torch.zeros(b, d), x_st=torch.randn(b, t, k, d), x_ts=torch.randn(b, t, k, d))
    out = RecognitionOutput(logits=torch.zeros(b, 5), body_logits=None, aux=aux)
    batch = ClipBatch(frames=torch.zeros(b, t, 3, 4, 4), keypoints=torch.zeros(b, t, 25, 3),
                      boxes=torch.zeros(b, t, 5, 4), entity_conf=torch.ones(b, t, 5),
                      label=torch.zeros(b, dtype=torch.long), body_label=torch.zeros(b, dtype=torch.long),
                      video_id=["a", "b"])
    with pytest.raises(ValueError, match="entity_conf"):
        compute_losses(out, batch, cfg)
