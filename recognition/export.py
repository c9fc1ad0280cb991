"""A trained recognizer as a self-contained file: TorchScript (traced) or ONNX.

The exported model takes the four tensors of a :class:`~mmad.types.ClipBatch` and returns logits:

    frames (B, T, 3, S, S) float in [0, 1], keypoints (B, T, J, 3), boxes (B, T, K, 4),
    entity_conf (B, T, K)  ->  logits (B, C)

T and S are fixed at export (the model's positional encodings and the ROI grid are traced for
them); B may vary. ROIAlign exports to ONNX as ``RoiAlign`` (opset >= 16 for aligned corners).
Before a file is kept, the export is run on a random clip and compared with the eager model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mmad.errors import ConfigError, DataError
from mmad.fileio import atomic_path
from mmad.types import ClipBatch

ONNX_OPSET = 17
EXPORT_TOLERANCE = 1e-4


class TensorRecognizer(nn.Module):
    """``model(ClipBatch).logits`` as a function of plain tensors (what tracing and ONNX need)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor, keypoints: torch.Tensor, boxes: torch.Tensor,
                entity_conf: torch.Tensor) -> torch.Tensor:
        b = frames.shape[0]
        unknown = torch.full((b,), -1, dtype=torch.long, device=frames.device)
        batch = ClipBatch(frames=frames, keypoints=keypoints, boxes=boxes, entity_conf=entity_conf,
                          label=unknown, body_label=unknown, video_id=[""] * b)
        return self.model(batch).logits


def example_inputs(*, batch: int, num_frames: int, image_size: int, num_joints: int, num_entities: int,
                   seed: int = 0) -> tuple[torch.Tensor, ...]:
    """A random but well-formed clip batch: frames, keypoints inside the frame, valid boxes, confidences."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.rand(batch, num_frames, 3, image_size, image_size, generator=g)
    xy = torch.rand(batch, num_frames, num_joints, 2, generator=g) * (image_size - 1)
    keypoints = torch.cat([xy, torch.rand(batch, num_frames, num_joints, 1, generator=g)], dim=-1)
    corner = torch.rand(batch, num_frames, num_entities, 2, generator=g) * image_size * 0.6
    size = 8 + torch.rand(batch, num_frames, num_entities, 2, generator=g) * image_size * 0.3
    boxes = torch.cat([corner, (corner + size).clamp(max=image_size - 1)], dim=-1)
    entity_conf = torch.rand(batch, num_frames, num_entities, generator=g)
    return frames, keypoints, boxes, entity_conf


@dataclass
class ExportReport:
    path: Path
    format: str  # "torchscript" or "onnx"
    max_abs_diff: float


def _run_onnx(path: Path, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("checking an ONNX export needs onnxruntime (pip install -e '.[export]')") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    feeds = {n: t.numpy() for n, t in zip(names, inputs)}
    return torch.from_numpy(session.run(None, feeds)[0])


def export_recognizer(checkpoint: str | os.PathLike, out: str | os.PathLike, *, num_frames: int | None = None,
                      image_size: int | None = None, tolerance: float = EXPORT_TOLERANCE) -> ExportReport:
    """Export a recognition checkpoint to ``out`` (``.pt``: TorchScript, ``.onnx``: ONNX).

    The export is checked on a random clip of batch size 2 (one more than it was traced with, so a
    batch size baked into the graph is caught): a max |logit difference| above ``tolerance`` raises
    :class:`ConfigError` and leaves nothing at ``out``. Raises :class:`DataError` for an unusable
    checkpoint and ConfigError for an unknown suffix or an op the format cannot express.
    """
    from mmad.keypoints import get_layout
    from recognition.api import load_recognition_checkpoint

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".pt", ".onnx"):
        raise ConfigError(f"{out}: unknown export format {suffix or '(no suffix)'!r}; use .pt (TorchScript) or .onnx")
    if out.is_dir():
        raise DataError(out, "is a folder; give a file name")
    model, cfg = load_recognition_checkpoint(checkpoint, device="cpu")
    shape = dict(num_frames=num_frames or cfg.data.num_frames, image_size=image_size or cfg.data.image_size,
                 num_joints=get_layout(cfg.model.keypoint_layout).num_joints,
                 num_entities=len(cfg.model.entity_names))
    wrapper = TensorRecognizer(model).eval()
    traced_with = example_inputs(batch=1, **shape)
    check = example_inputs(batch=2, seed=1, **shape)
    with torch.no_grad():
        expected = wrapper(*check)
        with atomic_path(out) as tmp:
            if suffix == ".pt":
                traced = torch.jit.trace(wrapper, traced_with, check_trace=False)
                traced.save(str(tmp))
                got = torch.jit.load(str(tmp))(*check)
                fmt = "torchscript"
            else:
                try:
                    torch.onnx.export(
                        wrapper, traced_with, str(tmp), opset_version=ONNX_OPSET, dynamo=False,
                        input_names=["frames", "keypoints", "boxes", "entity_conf"], output_names=["logits"],
                        dynamic_axes={n: {0: "batch"} for n in ("frames", "keypoints", "boxes", "entity_conf",
                                                                  "logits")})
                except Exception as e:  # an operator without an ONNX form
                    raise ConfigError(f"{checkpoint}: cannot export to ONNX: {str(e).splitlines()[0]}") from None
                got = _run_onnx(Path(tmp), check)
                fmt = "onnx"
            diff = float((got.float() - expected.float()).abs().max())
            if not diff <= tolerance:
                raise ConfigError(f"{checkpoint}: the {fmt} export differs from the eager model by {diff:.3g} "
                                  f"(tolerance {tolerance:g}); nothing written")
    return ExportReport(path=out, format=fmt, max_abs_diff=diff)
