"""The recognition config tree: ``RecognitionConfig(model, data, train, optim, out)``.

Every variant of the paper's Tables I-IV is a setting of these fields (see
``configs/recognition/ablations/``), never a code fork. Defaults follow section III and the
implementation details of section IV-B; where the paper is ambiguous the field's comment says
which reading the default takes.

``train`` and ``optim`` are the training engine's :class:`mmad.engine.config.TrainConfig` and
:class:`mmad.engine.config.OptimConfig` (SGD, warm-up + cosine, as in IV-B).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mmad.engine.config import OptimConfig, TrainConfig
from mmad.errors import ConfigError

MA52_ENTITIES = ["head", "face", "left_hand", "right_hand", "torso", "lower_body"]
"""The K = 6 entity order of the data contract (K = 5 drops ``lower_body``)."""


@dataclass
class BackboneConfig:
    """ResNet with the Temporal Shift Module (TSM)."""

    arch: Literal["resnet18", "resnet50", "resnet101"] = "resnet101"
    temporal_shift: bool = True
    shift_div: int = 8
    # "blockres": shift on the residual branch before conv1; every other block when layer3 has >= 23
    # blocks (ResNet-101), as the official TSM code does. "every_block" forces all blocks.
    shift_place: Literal["blockres", "every_block"] = "blockres"
    pretrained: str | None = None  # local torchvision-ImageNet or TSM-Kinetics checkpoint
    # The paper's ResNet-101 starts from Kinetics-400 weights (IV-B); training it without
    # ``pretrained`` is refused unless this says it is meant.
    from_scratch: bool = False
    normalize_input: bool = True  # frames arrive in [0, 1]; ImageNet mean/std applied in the model


@dataclass
class SEMConfig:
    """Spatial Entity Module (Eq. 1-2) and the keypoint stream of the pose modality."""

    # "rois": ROIAlign per entity box (the paper). "global": one token per frame from the global
    # average of the feature map (Table II rows without SEM).
    entity_features: Literal["rois", "global"] = "rois"
    roi_size: int = 7
    sampling_ratio: int = 2
    aligned: bool = True
    pose_hidden: int = 256
    # which joints the pose stream embeds per entity: "entity" = the entity's own keypoint group
    # J_i of the layout (mmad.entities.entity_joint_groups); "all" = every joint, normalised to
    # the entity's box. An entity whose group is empty in the layout falls back to all joints.
    pose_joints: Literal["entity", "all"] = "entity"


@dataclass
class TransformerConfig:
    """Spatial-T / Temporal-T (Eq. 3-8): post-LN, GELU FFN; IV-B: 3 layers, 8 heads, 1024, 0.1."""

    num_layers: int = 3
    num_heads: int = 8
    ffn_dim: int = 1024
    dropout: float = 0.1
    # SPE of Eq. (3): an additive embedding of each entity's depth in the anatomical tree, and a
    # learned attention bias per entity pair indexed by their tree distance (either can be off).
    spe_depth_embedding: bool = True
    spe_tree_bias: bool = True


@dataclass
class RoutingConfig:
    """Entity-level adaptive routing (Eq. 13-15)."""

    # III-C says tau_r = 0.7, IV-B says 1.0; the default takes the implementation details (IV-B).
    temperature: float = 1.0
    dropout: float = 0.1


@dataclass
class MACConfig:
    """Mutual Action Consistency loss (Eq. 16-17)."""

    enabled: bool = True
    weight: float = 0.1  # lambda of Eq. (21)
    temperature: float = 0.07
    # "frame": Eq. (16) as printed, contrasting the T frames of one entity. "video" (named by the
    # paper, not printed; our reading): each entity's path outputs averaged over T, its ST summary
    # contrasted against the TS summaries of the same entity in every clip of the global batch.
    level: Literal["video", "frame"] = "video"
    confidence_weighting: bool = True  # c_i^t of Eq. (17); false: uniform weights


@dataclass
class HeadConfig:
    """Classifier of Eq. (19-21)."""

    hidden_dim: int = 256
    dropout: float = 0.5
    use_global_features: bool = True  # f_CNN of Eq. (20)
    # IV-B gives the classifier as 512 -> 256 -> C while Eq. (20) concatenates f_CNN in R^C (2048)
    # with f_entity in R^D (256). true: f_CNN is first projected to D so the input is 2D = 512.
    project_global_features: bool = True
    body_head: bool = False  # auxiliary body-group classifier
    body_loss_weight: float = 0.5


@dataclass
class ModelConfig:
    """Micro-DualNet and its variants."""

    # "micro_dualnet": the paper's model. "tsm": the Table II baseline (backbone, average pool, fc).
    architecture: Literal["micro_dualnet", "tsm"] = "micro_dualnet"
    num_classes: int = 52
    num_body_classes: int = 7
    dim: int = 256
    entity_names: list[str] = field(default_factory=lambda: list(MA52_ENTITIES))
    keypoint_layout: Literal["body25_hands", "body25", "body25_hands_face", "ma52_28", "miga_22"] = "body25_hands"
    # "rgb" (the paper): the entity token is Eq. (2) alone; keypoints give the boxes (Eq. 1) and
    # the MAC weights (Eq. 17). "pose": the keypoint stream alone (an MLP per entity over its
    # joints; Table I's pose-only row, whose encoder the paper does not describe). "rgb+pose":
    # an extension, not in the paper: Eq. (2) plus the keypoint stream, summed or concatenated.
    modality: Literal["rgb", "pose", "rgb+pose"] = "rgb"
    modality_fusion: Literal["sum", "concat"] = "sum"
    # "dual_path": ST and TS paths (Eq. 9-12). "st"/"ts": one path. The rest are Table IV's
    # aggregation alternatives applied to each entity independently.
    temporal_model: Literal["dual_path", "st", "ts", "avg_pool", "max_pool", "lstm", "temporal_transformer"] = (
        "dual_path"
    )
    fusion: Literal["routing", "average"] = "routing"  # how the two paths combine (dual_path only)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    sem: SEMConfig = field(default_factory=SEMConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    mac: MACConfig = field(default_factory=MACConfig)
    head: HeadConfig = field(default_factory=HeadConfig)

    def __post_init__(self) -> None:
        if not self.entity_names:
            raise ConfigError("model.entity_names: at least one entity is needed")
        if self.dim % self.transformer.num_heads:
            raise ConfigError(f"model.dim={self.dim} is not divisible by transformer.num_heads={self.transformer.num_heads}")
        unknown = [n for n in self.entity_names if n not in MA52_ENTITIES]
        if unknown:
            raise ConfigError(f"model.entity_names: unknown entities {unknown}; known: {MA52_ENTITIES}")
        if self.mac_active and self.mac.confidence_weighting and self.sem.entity_features == "global":
            raise ConfigError("model.mac.confidence_weighting: one global token per frame has no entity confidence; "
                              "set it to false or use sem.entity_features=rois")

    @property
    def num_entities(self) -> int:
        return 1 if self.sem.entity_features == "global" else len(self.entity_names)

    @property
    def uses_rgb(self) -> bool:
        return self.architecture == "tsm" or self.modality in ("rgb", "rgb+pose")

    @property
    def uses_pose(self) -> bool:
        return self.architecture == "micro_dualnet" and self.modality in ("pose", "rgb+pose")

    @property
    def uses_boxes(self) -> bool:
        """Whether the model reads entity boxes (ROI tokens or the keypoint stream)."""
        return self.architecture == "micro_dualnet" and (self.sem.entity_features == "rois" or self.uses_pose)

    @property
    def mac_active(self) -> bool:
        """MAC needs both raw path outputs: only the dual-path model computes it."""
        return self.architecture == "micro_dualnet" and self.temporal_model == "dual_path" and self.mac.enabled


@dataclass
class DataConfig:
    """Where the clips come from and how they are sampled and augmented (IV-B defaults, MA-52)."""

    format: Literal["ma52", "imigue"] = "ma52"
    root: str = "data/ma52"
    labels_file: str | None = None  # iMiGUE labels CSV (relative to root when not absolute)
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    # A dataset without a val split (iMiGUE) never validates on test: this fraction of the
    # training subjects (seeded by val_holdout_seed) is held out as the val split, subject-
    # disjoint, and listed in the run folder (val_holdout.txt). 0: no validation, no best.pt
    # (use the last epoch).
    val_holdout: float = 0.1
    val_holdout_seed: int = 0
    keypoint_source: Literal["openpose_json", "pickle"] = "openpose_json"
    num_frames: int = 8
    frame_stride: int = 8
    sampling: Literal["dense", "segments"] = "dense"
    image_size: int = 224
    resize_short_side: int = 256
    flip_prob: float = 0.5
    temporal_jitter: bool = True
    # Augmentation the paper does not state ("random cropping to 224x224" only): the random
    # crop's area range and aspect-ratio range (aspect jitter; [1, 1] turns it off) and the
    # brightness/contrast/saturation strength of colour jitter (0 turns it off).
    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    color_jitter: float = 0.2
    # Table III: "keypoints" (Eq. 1), "keypoints_no_confidence" (every detected joint counts,
    # entity_conf all ones), "fixed_regions" (MANet-like fractions of the frame), "center_crop".
    entity_boxes: Literal["keypoints", "keypoints_no_confidence", "fixed_regions", "center_crop"] = "keypoints"
    confidence_threshold: float = 0.3
    box_padding: float = 0.1
    num_workers: int = 4
    # keep each clip's keypoints and entity boxes in memory after the first read (small datasets;
    # with DataLoader workers each worker process holds its own copy for one epoch)
    cache_keypoints: bool = False
    # a folder written by `mmad data prepare` for this dataset (null: read only the originals):
    # its small, seekable copies of the videos and one keypoint file per video are read where
    # they are up to date, the originals elsewhere; samples come out the same
    prepared_dir: str | None = None


@dataclass
class RecognitionConfig:
    """Everything one recognition run needs; the run folder keeps it as ``config.yaml``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    # Not stated by the paper: biases, norm weights, embeddings and routing priors get no weight
    # decay (false: every parameter decays with optim.weight_decay). Gradient clipping is
    # optim.clip_grad_norm (null: off).
    no_decay_norms_biases: bool = True
    out: str = "runs/recognition"
