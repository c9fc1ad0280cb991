"""Parameters, FLOPs and step time of a recognition model, split into backbone and head.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass of one
clip (multiply and add counted separately, so 1 MAC = 2 FLOPs; video papers usually quote
MACs as "FLOPs"). Operators without a registered formula (ROIAlign, pooling, norms,
element-wise ops) are not counted; convolutions, linear layers and attention are. "Head" is
everything outside the backbone: SEM, the keypoint stream, both paths, routing and classifier.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from mmad.types import ClipBatch
from recognition.config import ModelConfig, RecognitionConfig
from recognition.model import build_model


@dataclass
class ModelProfile:
    """Cost of one clip of ``num_frames`` frames of ``image_size`` pixels."""

    arch: str
    num_frames: int
    image_size: int
    num_entities: int
    backbone_params: int
    head_params: int
    backbone_gflops: float
    head_gflops: float
    forward_time_s: float
    train_step_time_s: float
    batch_size: int
    device: str

    @property
    def total_params(self) -> int:
        return self.backbone_params + self.head_params

    @property
    def total_gflops(self) -> float:
        return self.backbone_gflops + self.head_gflops

    def as_dict(self) -> dict:
        return {**asdict(self), "total_params": self.total_params, "total_gflops": self.total_gflops}


def synthetic_clip_batch(
    batch_size: int, num_frames: int, num_entities: int, *, image_size: int, num_joints: int, num_classes: int
) -> ClipBatch:
    """A random :class:`ClipBatch` with valid boxes, for profiling and smoke runs.

    Shapes: frames (B, T, 3, S, S); keypoints (B, T, J, 3); boxes (B, T, K, 4); entity_conf (B, T, K).
    """
    g = torch.Generator().manual_seed(0)
    b, t, k, s = batch_size, num_frames, num_entities, image_size
    xy1 = torch.rand(b, t, k, 2, generator=g) * s * 0.6
    wh = torch.rand(b, t, k, 2, generator=g) * s * 0.3 + s * 0.05
    xy = torch.rand(b, t, num_joints, 2, generator=g) * s
    return ClipBatch(
        frames=torch.rand(b, t, 3, s, s, generator=g),
        keypoints=torch.cat([xy, torch.rand(b, t, num_joints, 1, generator=g)], dim=-1),
        boxes=torch.cat([xy1, xy1 + wh], dim=-1),
        entity_conf=torch.rand(b, t, k, generator=g),
        label=torch.randint(0, num_classes, (b,), generator=g),
        body_label=torch.zeros(b, dtype=torch.long),
        video_id=[f"profile{i}" for i in range(b)],
    )


def _timed(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / repeats


def profile_model(
    cfg: ModelConfig,
    *,
    num_frames: int = 16,
    image_size: int = 224,
    batch_size: int = 1,
    repeats: int = 1,
    device: str = "cpu",
) -> ModelProfile:
    """Measure the model ``cfg`` describes on random clips (no data or weights needed).

    FLOPs are per clip (one clip, eval mode). Times are per step of ``batch_size`` clips: the
    forward pass in eval mode without gradients, and a training step (forward, :func:`compute_losses`,
    backward) in train mode, each averaged over ``repeats`` after one warm-up.
    """
    from recognition.model import compute_losses, pose_joint_groups

    dev = torch.device(device)
    model = build_model(cfg).to(dev)
    backbone = getattr(model, "backbone", None)
    backbone_params = sum(p.numel() for p in backbone.parameters()) if backbone is not None else 0
    head_params = sum(p.numel() for p in model.parameters()) - backbone_params
    num_joints = pose_joint_groups(cfg)[0]
    k = cfg.num_entities if cfg.sem.entity_features == "rois" else len(cfg.entity_names)

    def batch_of(n: int) -> ClipBatch:
        return synthetic_clip_batch(
            n, num_frames, k, image_size=image_size, num_joints=num_joints, num_classes=cfg.num_classes
        ).to(dev)

    one = batch_of(1)
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(one)
    counts = counter.get_flop_counts()
    total = counter.get_total_flops()
    backbone_flops = sum(counts.get(f"{type(model).__name__}.backbone", {}).values())

    batch = batch_of(batch_size)

    def forward() -> None:
        with torch.no_grad():
            model(batch)

    forward_time = _timed(forward, dev, repeats)
    model.train()

    def train_step() -> None:
        model.zero_grad(set_to_none=True)
        compute_losses(model(batch), batch, cfg)["loss"].backward()

    step_time = _timed(train_step, dev, repeats)
    return ModelProfile(
        arch=cfg.backbone.arch if cfg.uses_rgb else "none (pose only)",
        num_frames=num_frames,
        image_size=image_size,
        num_entities=k,
        backbone_params=backbone_params,
        head_params=head_params,
        backbone_gflops=backbone_flops / 1e9,
        head_gflops=(total - backbone_flops) / 1e9,
        forward_time_s=forward_time,
        train_step_time_s=step_time,
        batch_size=batch_size,
        device=str(dev),
    )


def format_profile(p: ModelProfile) -> str:
    """A small text table of a :class:`ModelProfile`."""
    rows = [
        ("backbone", p.backbone_params, p.backbone_gflops),
        ("head (SEM, paths, routing, classifier)", p.head_params, p.head_gflops),
        ("total", p.total_params, p.total_gflops),
    ]
    lines = [
        f"{p.arch}, {p.num_frames} frames x {p.image_size} px, K = {p.num_entities}; FLOPs per clip (1 MAC = 2 FLOPs)",
        f"{'part':<40} {'params (M)':>11} {'GFLOPs':>9} {'GMACs':>8}",
    ]
    lines += [f"{name:<40} {params / 1e6:>11.2f} {gf:>9.1f} {gf / 2:>8.1f}" for name, params, gf in rows]
    lines.append(
        f"{p.device} time per batch of {p.batch_size}: forward {p.forward_time_s:.3f} s, "
        f"train step {p.train_step_time_s:.3f} s"
    )
    return "\n".join(lines)


def profile_report(
    cfg: RecognitionConfig,
    *,
    num_frames: int | None = None,
    image_size: int | None = None,
    batch_size: int = 1,
    repeats: int = 1,
    device: str = "cpu",
) -> str:
    """Profile ``cfg.model`` at ``num_frames`` x ``image_size`` (default: the config's data) as text."""
    profile = profile_model(
        cfg.model,
        num_frames=num_frames or cfg.data.num_frames,
        image_size=image_size or cfg.data.image_size,
        batch_size=batch_size,
        repeats=repeats,
        device=device,
    )
    return format_profile(profile)
