"""Micro-DualNet (paper section III) and the TSM baseline, built from a :class:`ModelConfig`.

Forward pass of :class:`MicroDualNet` on a :class:`mmad.types.ClipBatch`:

1. TSM-ResNet feature maps F (B, T, C, h, w) (rgb modalities).
2. Entity tokens X (B, T, K, D): SEM (Eq. 2) on F, the keypoint stream, or both (sum or
   concat + projection).
3. Temporal model: the ST and TS paths (Eq. 9-12) fused by entity routing (Eq. 13-15) or by
   averaging; or one path; or one of Table IV's per-entity alternatives.
4. Head: f_entity = mean of the fused tokens over T and K (Eq. 19; max over T for the max-pool
   variant), f_final = [f_CNN; f_entity] (Eq. 20), logits = MLP(f_final) (Eq. 21).

:func:`compute_losses` gives L = CE + lambda * MAC (Eq. 21), MAC on the raw path outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmad.errors import ConfigError
from mmad.types import ClipBatch
from recognition.backbone import TSMResNet, build_backbone
from recognition.config import ModelConfig
from recognition.dualpath import (
    EntityLSTM,
    EntityTemporalTransformer,
    SpatialTemporalPath,
    TemporalSpatialPath,
)
from recognition.mac import mac_loss
from recognition.routing import EntityRouting
from recognition.sem import GlobalFrameTokens, KeypointEntityEncoder, SpatialEntityModule
from recognition.transformers import SpatialTransformer, TemporalTransformer


@dataclass
class RecognitionAux:
    """Intermediate results, for the MAC loss, routing analysis and feature extraction.

    Shapes: ``x_st``/``x_ts``/``fused``/``entity_tokens`` (B, T, K, D); ``routing_weights``
    (B, T, K, 2) as (alpha_ST, alpha_TS); ``entity_features`` (B, D); ``global_features``
    (B, C) before any projection; ``pooled`` (B, F) the classifier input. Fields a variant does
    not compute are None.
    """

    pooled: torch.Tensor
    x_st: torch.Tensor | None = None
    x_ts: torch.Tensor | None = None
    routing_weights: torch.Tensor | None = None
    fused: torch.Tensor | None = None
    entity_tokens: torch.Tensor | None = None
    entity_features: torch.Tensor | None = None
    global_features: torch.Tensor | None = None


@dataclass
class RecognitionOutput:
    """``logits`` (B, C); ``body_logits`` (B, 7) when the body head is on, else None."""

    logits: torch.Tensor
    body_logits: torch.Tensor | None
    aux: RecognitionAux


def mlp_classifier(in_dim: int, num_classes: int, *, hidden_dim: int = 256, dropout: float = 0.5) -> nn.Sequential:
    """C of Eq. (21): Linear - GELU - Dropout - Linear. (B, in_dim) -> (B, num_classes)."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, num_classes))


class MicroDualNet(nn.Module):
    """Keypoint-guided dual-path micro-action recognizer.

    Sub-modules are passed in (see :func:`build_model`); those a variant does not use are None.
    ``temporal_model`` is one of "dual_path", "st", "ts", "avg_pool", "max_pool", "lstm",
    "temporal_transformer"; ``entity_aggregator`` serves the last two.
    """

    def __init__(
        self,
        *,
        classifier: nn.Module,
        temporal_model: str = "dual_path",
        backbone: TSMResNet | None = None,
        rgb_entities: SpatialEntityModule | GlobalFrameTokens | None = None,
        pose_entities: KeypointEntityEncoder | None = None,
        modality_projection: nn.Module | None = None,
        st_path: SpatialTemporalPath | None = None,
        ts_path: TemporalSpatialPath | None = None,
        entity_aggregator: nn.Module | None = None,
        routing: EntityRouting | None = None,
        global_projection: nn.Module | None = None,
        use_global_features: bool = True,
        body_classifier: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if rgb_entities is None and pose_entities is None:
            raise ValueError("MicroDualNet needs an rgb or a pose entity encoder")
        if rgb_entities is not None and backbone is None:
            raise ValueError("rgb entity tokens need a backbone")
        self.temporal_model = temporal_model
        self.backbone = backbone
        self.rgb_entities = rgb_entities
        self.pose_entities = pose_entities
        self.modality_projection = modality_projection
        self.st_path = st_path
        self.ts_path = ts_path
        self.entity_aggregator = entity_aggregator
        self.routing = routing
        self.use_global_features = use_global_features and backbone is not None
        self.global_projection = global_projection
        self.classifier = classifier
        self.body_classifier = body_classifier

    def entity_tokens(self, batch: ClipBatch, feature_maps: torch.Tensor | None) -> torch.Tensor:
        """(B, T, K, D) entity tokens X from the feature maps and/or the keypoints."""
        frame_size = tuple(batch.frames.shape[-2:])
        tokens = []
        if self.rgb_entities is not None:
            if isinstance(self.rgb_entities, GlobalFrameTokens):
                tokens.append(self.rgb_entities(feature_maps))
            else:
                tokens.append(self.rgb_entities(feature_maps, batch.boxes, frame_size=frame_size))
        if self.pose_entities is not None:
            tokens.append(self.pose_entities(batch.keypoints, batch.boxes, frame_size=frame_size))
        if len(tokens) == 1:
            return tokens[0]
        if self.modality_projection is not None:
            return self.modality_projection(torch.cat(tokens, dim=-1))
        return tokens[0] + tokens[1]

    def forward(self, batch: ClipBatch) -> RecognitionOutput:
        """Classify clips: frames (B, T, 3, H, W) in [0, 1], keypoints (B, T, J, 3), boxes (B, T, K, 4)."""
        feature_maps = self.backbone(batch.frames) if self.backbone is not None else None
        x = self.entity_tokens(batch, feature_maps)
        aux = {"entity_tokens": x}
        if self.temporal_model == "dual_path":
            x_st, x_ts = self.st_path(x), self.ts_path(x)
            if self.routing is not None:
                fused, weights = self.routing(x_st, x_ts)
                aux["routing_weights"] = weights
            else:
                fused = (x_st + x_ts) / 2
            aux.update(x_st=x_st, x_ts=x_ts)
        elif self.temporal_model == "st":
            fused = aux["x_st"] = self.st_path(x)
        elif self.temporal_model == "ts":
            fused = aux["x_ts"] = self.ts_path(x)
        elif self.temporal_model in ("avg_pool", "max_pool"):
            fused = x
        else:
            fused = self.entity_aggregator(x)
        if self.temporal_model == "max_pool":
            entity_features = fused.amax(dim=1).mean(dim=1)
        else:
            entity_features = fused.mean(dim=(1, 2))  # Eq. (19)
        parts = [entity_features]
        global_features = None
        if feature_maps is not None:
            global_features = feature_maps.mean(dim=(1, 3, 4))
            if self.use_global_features:
                g = self.global_projection(global_features) if self.global_projection is not None else global_features
                parts.insert(0, g)  # Eq. (20): [f_CNN; f_entity]
        pooled = torch.cat(parts, dim=-1)
        logits = self.classifier(pooled)
        body_logits = self.body_classifier(pooled) if self.body_classifier is not None else None
        return RecognitionOutput(
            logits=logits,
            body_logits=body_logits,
            aux=RecognitionAux(
                pooled=pooled, fused=fused, entity_features=entity_features, global_features=global_features, **aux
            ),
        )


class TSMBaseline(nn.Module):
    """Table II baseline: TSM-ResNet, average over space and time, dropout, linear classifier."""

    def __init__(
        self, backbone: TSMResNet, num_classes: int, *, dropout: float = 0.5, num_body_classes: int | None = None
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(backbone.out_channels, num_classes)
        self.body_fc = nn.Linear(backbone.out_channels, num_body_classes) if num_body_classes else None

    def forward(self, batch: ClipBatch) -> RecognitionOutput:
        """frames (B, T, 3, H, W) -> logits (B, C)."""
        pooled = self.backbone(batch.frames).mean(dim=(1, 3, 4))
        dropped = self.dropout(pooled)
        body = self.body_fc(dropped) if self.body_fc is not None else None
        return RecognitionOutput(self.fc(dropped), body, RecognitionAux(pooled=pooled, global_features=pooled))


def pose_joint_groups(cfg: ModelConfig) -> tuple[int, list[list[int]]]:
    """J of ``cfg.keypoint_layout`` and the joints the pose stream embeds for each entity."""
    from mmad.entities import entity_joint_groups
    from mmad.keypoints import get_layout

    num_joints = get_layout(cfg.keypoint_layout).num_joints
    every = list(range(num_joints))
    if cfg.sem.pose_joints == "all":
        return num_joints, [every for _ in cfg.entity_names]
    groups = entity_joint_groups(cfg.keypoint_layout, cfg.entity_names)
    return num_joints, [list(g) if g else every for g in groups]


def build_model(cfg: ModelConfig) -> MicroDualNet | TSMBaseline:
    """Build the model a :class:`ModelConfig` describes (every paper variant)."""
    body_classes = cfg.num_body_classes if cfg.head.body_head else None
    backbone = None
    if cfg.uses_rgb:
        b = cfg.backbone
        backbone = build_backbone(
            b.arch,
            temporal_shift=b.temporal_shift,
            shift_div=b.shift_div,
            shift_place=b.shift_place,
            normalize_input=b.normalize_input,
            pretrained=b.pretrained,
        )
    if cfg.architecture == "tsm":
        return TSMBaseline(backbone, cfg.num_classes, dropout=cfg.head.dropout, num_body_classes=body_classes)

    d, k = cfg.dim, cfg.num_entities
    rgb_entities = pose_entities = modality_projection = None
    if cfg.uses_rgb:
        if cfg.sem.entity_features == "global":
            rgb_entities = GlobalFrameTokens(backbone.out_channels, dim=d)
        else:
            rgb_entities = SpatialEntityModule(
                backbone.out_channels,
                num_entities=k,
                dim=d,
                roi_size=cfg.sem.roi_size,
                sampling_ratio=cfg.sem.sampling_ratio,
                aligned=cfg.sem.aligned,
            )
    if cfg.uses_pose:
        if cfg.sem.entity_features == "global":
            raise ConfigError("model.sem.entity_features: the pose stream needs entity boxes, use 'rois'")
        num_joints, groups = pose_joint_groups(cfg)
        pose_entities = KeypointEntityEncoder(
            num_entities=k, num_joints=num_joints, dim=d, hidden_dim=cfg.sem.pose_hidden, joint_groups=groups
        )
    if rgb_entities is not None and pose_entities is not None and cfg.modality_fusion == "concat":
        modality_projection = nn.Linear(2 * d, d)

    t = cfg.transformer
    entity_names = cfg.entity_names if k > 1 else ["torso"]  # one global token: a single tree node

    def spatial() -> SpatialTransformer:
        return SpatialTransformer(
            d,
            entity_names=entity_names,
            num_layers=t.num_layers,
            num_heads=t.num_heads,
            ffn_dim=t.ffn_dim,
            dropout=t.dropout,
            depth_embedding=t.spe_depth_embedding,
            tree_bias=t.spe_tree_bias,
        )

    def temporal() -> TemporalTransformer:
        return TemporalTransformer(d, num_layers=t.num_layers, num_heads=t.num_heads, ffn_dim=t.ffn_dim, dropout=t.dropout)

    tm = cfg.temporal_model
    st_path = SpatialTemporalPath(spatial(), temporal(), d) if tm in ("dual_path", "st") else None
    ts_path = TemporalSpatialPath(spatial(), temporal(), d) if tm in ("dual_path", "ts") else None
    aggregator = {"lstm": lambda: EntityLSTM(d), "temporal_transformer": lambda: EntityTemporalTransformer(temporal())}
    entity_aggregator = aggregator[tm]() if tm in aggregator else None
    routing = None
    if tm == "dual_path" and cfg.fusion == "routing":
        routing = EntityRouting(k, d, temperature=cfg.routing.temperature, dropout=cfg.routing.dropout)

    use_global = cfg.head.use_global_features and backbone is not None
    global_projection = None
    in_dim = d
    if use_global:
        if cfg.head.project_global_features:
            global_projection = nn.Linear(backbone.out_channels, d)
            in_dim += d
        else:
            in_dim += backbone.out_channels
    h = cfg.head
    return MicroDualNet(
        classifier=mlp_classifier(in_dim, cfg.num_classes, hidden_dim=h.hidden_dim, dropout=h.dropout),
        temporal_model=tm,
        backbone=backbone,
        rgb_entities=rgb_entities,
        pose_entities=pose_entities,
        modality_projection=modality_projection,
        st_path=st_path,
        ts_path=ts_path,
        entity_aggregator=entity_aggregator,
        routing=routing,
        global_projection=global_projection,
        use_global_features=use_global,
        body_classifier=(
            mlp_classifier(in_dim, cfg.num_body_classes, hidden_dim=h.hidden_dim, dropout=h.dropout) if body_classes else None
        ),
    )


def compute_losses(output: RecognitionOutput, batch: ClipBatch, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """L = CE + lambda * MAC (Eq. 21) (+ body_loss_weight * body CE when the body head is on).

    Labels of -1 are ignored. MAC uses the raw path outputs (before routing) and, when
    ``cfg.mac.confidence_weighting``, the batch's ``entity_conf`` (B, T, K) as c^t_i; an
    ``entity_conf`` of another shape is an error (never a silent fall-back to uniform weights).

    Returns:
        {"loss", "ce", and "mac" / "body_ce" when computed}: scalar tensors.
    """
    losses = {"ce": F.cross_entropy(output.logits, batch.label, ignore_index=-1)}
    total = losses["ce"]
    aux = output.aux
    if cfg.mac_active:
        if aux.x_st is None or aux.x_ts is None:
            raise ValueError("MAC is on but the model returned no raw ST/TS path outputs")
        conf = batch.entity_conf if cfg.mac.confidence_weighting else None
        if conf is not None and conf.shape != aux.x_st.shape[:3]:
            raise ValueError(f"MAC confidence weights: entity_conf is {tuple(conf.shape)} but the path outputs are "
                             f"{tuple(aux.x_st.shape[:3])} (B, T, K); the data's entities do not match the model's")
        losses["mac"] = mac_loss(aux.x_st, aux.x_ts, conf, temperature=cfg.mac.temperature, level=cfg.mac.level)
        total = total + cfg.mac.weight * losses["mac"]
    if output.body_logits is not None:
        losses["body_ce"] = F.cross_entropy(output.body_logits, batch.body_label, ignore_index=-1)
        total = total + cfg.head.body_loss_weight * losses["body_ce"]
    losses["loss"] = total
    return losses
