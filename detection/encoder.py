"""Micro-DualNet run along whole videos: one feature vector per step for the detection head.

A video is sampled every ``stride_frames`` frames, at frames ``stride_frames // 2 + n * stride_frames``.
Step ``n``'s window holds the T sampled frames ``n + (i - (T - 1) // 2) * window_dilation`` for
``i = 0 .. T - 1``, indices clamped to the video (edge padding); for even T the window reaches one
sampled frame further forward than back. The step's recorded time is the mean time of its window's
frames (:func:`detection.timeline.encoder_step_frames` / fps, the one step-time rule): for even T
that is half a window spacing after the anchor frame.

The window spacing ``stride_frames * window_dilation`` defaults to the recognizer's own training
spacing (``data.frame_stride``): ``window_dilation`` null means ``frame_stride / stride_frames``,
and settings whose spacing cannot equal ``frame_stride`` are refused (:func:`resolve_window_dilation`).

The work is split so that nothing is computed twice for overlapping windows:

1. **Per sampled frame, once.** The TSM backbone streams over the whole sequence
   (:class:`StreamingBackbone`, exactly as if the whole sequence went through it at once). With
   ``window_dilation`` d > 1 the sampled frames are split into d interleaved streams (frames
   ``p, p + d, p + 2d, ...``), so that the temporal shift mixes frames as far apart as the window's
   frames, the spacing the recognizer was trained on. Each frame's feature map gives its global
   feature (spatial mean, (C,)) and its K entity tokens (ROIAlign on its entity boxes + SEM, (K, D)).
   Unlike a per-window pass, the shift at a window's first and last frame sees the real neighbours
   instead of zero padding (measured in ``benchmarks/encoder_window_edges.py``).
2. **Per window.** The per-frame tables are gathered into (N, T, ...) windows; the pose stream (if
   any; its velocities are per window, as in training) and the dual-path transformers run on
   batches of windows. Step ``n``'s feature is ``[global (C, mean over the window); fused entity
   feature (D, mean over T and K)]``, optionally followed by the K per-entity tokens (K * D, mean
   over T). Pose-only recognizers have no global part.

The video is decoded and processed in chunks of ``chunk_frames`` sampled frames; only the frames
still needed by a later window are kept, so memory does not grow with the video's length (apart
from the (N, F) result itself).

:func:`extract_features` runs the encoder over the videos of a detection dataset and caches one
feature file per video (:mod:`detection.features`), tagged with the SHA-256 of the recognizer
checkpoint and every encoder setting that changes the numbers (:attr:`ClipEncoder.settings`);
finished videos are skipped on a re-run, a cache made otherwise is redone, a bad video is logged and
skipped, and under ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``) every process takes a
disjoint share of the videos on its own GPU (:func:`extraction_device`).
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from detection.config import DetectionConfig, EncoderConfig
from detection.features import (
    checkpoint_hash,
    has_features,
    read_feature_meta,
    save_features,
    settings_mismatch,
)
from detection.timeline import encoder_step_frames
from mmad.engine.precision import inference_autocast, resolve_precision
from mmad.errors import ConfigError, DataError
from recognition.backbone import TemporalShiftConv2d, TSMResNet
from recognition.model import MicroDualNet
from recognition.sem import SpatialEntityModule

log = logging.getLogger("mmad.detection")

__all__ = [
    "StreamingBackbone",
    "ClipEncoder",
    "ExtractionReport",
    "load_recognizer",
    "read_video_keypoints",
    "sampled_frame_indices",
    "shard_videos",
    "distributed_rank",
    "extraction_device",
    "resolve_window_dilation",
    "extract_features",
]

OPENPOSE_LAYOUTS = ("body25_hands", "body25", "body25_hands_face")


# ----------------------------------------------------------------------------- the backbone, streamed


class _ShiftedBlockStream:
    """One residual block that holds a temporal shift, fed its input sequence piece by piece.

    Output frame t needs input frames t - 1 and t + 1. The block keeps the last input frame it has
    finished (``context``, the backward neighbour of the next one) and the input frames it could
    not finish yet (``pending``, waiting for their forward neighbour); each push reruns only those
    one or two kept frames together with the new ones.
    """

    def __init__(self, block: nn.Module) -> None:
        self.block = block
        self.shift_layers = [m for m in block.modules() if isinstance(m, TemporalShiftConv2d)]
        self.context: torch.Tensor | None = None
        self.pending: torch.Tensor | None = None

    def push(self, x: torch.Tensor | None, *, final: bool) -> torch.Tensor | None:
        """Input frames (n, C, H, W) (or None) -> the block's output for the frames now finished."""
        kept = [p for p in (self.context, self.pending) if p is not None and p.shape[0]]
        if x is not None and x.shape[0]:
            kept.append(x)
        if not kept or (len(kept) == 1 and self.context is not None and kept[0] is self.context):
            if final:
                self.context = self.pending = None
            return None
        buffer = torch.cat(kept) if len(kept) > 1 else kept[0]
        lead = 0 if self.context is None else 1
        stop = buffer.shape[0] if final else buffer.shape[0] - 1
        if stop <= lead:
            self.pending = buffer[lead:]
            return None
        for layer in self.shift_layers:
            layer.num_segments = buffer.shape[0]
        out = self.block(buffer)[lead:stop]
        if final:
            self.context = self.pending = None
        else:
            self.context, self.pending = buffer[stop - 1 : stop], buffer[stop:]
        return out


class StreamingBackbone:
    """Feature maps of one long frame sequence from a :class:`TSMResNet`, fed in chunks.

    The result equals ``backbone(frames[None])[0]`` over the whole sequence in eval mode, while
    every frame goes through the network once: a block with a temporal shift holds back its last
    input frame until the next chunk brings that frame's forward neighbour, and reruns at most two
    kept frames per chunk. Frames leave the stream with a delay of at most one frame per shifted
    block; :meth:`push` with ``final=True`` flushes the rest (the sequence's end is zero-padded, as in
    the unstreamed model). The stream holds its own state; make a new one per video.
    """

    def __init__(self, backbone: TSMResNet) -> None:
        self.backbone = backbone
        self.stages: list = []
        for stage in (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4):
            for block in stage:
                shifted = any(isinstance(m, TemporalShiftConv2d) for m in block.modules())
                self.stages.append(_ShiftedBlockStream(block) if shifted else block)

    def _stem(self, frames: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        x = (frames - b.mean) / b.std if b.normalize_input else frames
        return b.maxpool(b.relu(b.bn1(b.conv1(x))))

    @torch.no_grad()
    def push(self, frames: torch.Tensor | None, *, final: bool = False) -> torch.Tensor | None:
        """Frames (n, 3, H, W) in [0, 1] (or None) -> feature maps (m, C, H/32, W/32) of the next m finished frames.

        Returns None when no frame could be finished yet. Frames come out in order; over a whole
        sequence (the last push with ``final=True``) every frame comes out exactly once.
        """
        x = self._stem(frames) if frames is not None and frames.shape[0] else None
        for stage in self.stages:
            if isinstance(stage, _ShiftedBlockStream):
                x = stage.push(x, final=final)
            elif x is not None:
                x = stage(x)
        return x


# ----------------------------------------------------------------------------- keypoints and boxes


def sampled_frame_indices(num_frames: int, stride_frames: int) -> np.ndarray:
    """Frames read for the steps of a ``num_frames`` video: ``stride // 2 + n * stride``, (N,) int64."""
    if stride_frames < 1:
        raise ValueError(f"stride_frames must be >= 1, got {stride_frames}")
    return np.arange(stride_frames // 2, int(num_frames), stride_frames, dtype=np.int64)


def read_video_keypoints(folder: str | os.PathLike, *, layout: str, num_frames: int,
                         frame_size: tuple[int, int]) -> np.ndarray:
    """(num_frames, J, 3) keypoints of a video from its OpenPose JSON folder, in ``layout``.

    ``frame_size`` is the video's (W, H); points outside it count as undetected.
    """
    from mmad.keypoints import get_layout, read_openpose_folder

    if layout not in OPENPOSE_LAYOUTS:
        raise ConfigError(f"OpenPose JSON folders give BODY_25 layouts {OPENPOSE_LAYOUTS}, the recognizer "
                          f"expects {layout!r}")
    num_joints = get_layout(layout).num_joints
    keypoints = read_openpose_folder(folder, with_face=layout == "body25_hands_face", frame_size=frame_size,
                                     num_frames=num_frames)
    return np.ascontiguousarray(keypoints[:, :num_joints])


def _take_frames(array: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Rows ``indices`` of ``array``; indices past its end give zero rows."""
    out = np.zeros((len(indices), *array.shape[1:]), dtype=array.dtype)
    inside = indices < array.shape[0]
    out[inside] = array[indices[inside]]
    return out


# ----------------------------------------------------------------------------- the encoder


def load_recognizer(checkpoint: str | os.PathLike, *, device: str | torch.device = "cpu",
                    use_ema: bool = True):
    """``(model, RecognitionConfig)`` of a recognition checkpoint, the model in eval mode on ``device``.

    As :func:`recognition.api.load_recognition_checkpoint`, and the model must be a Micro-DualNet.
    """
    from recognition.api import load_recognition_checkpoint

    model, cfg = load_recognition_checkpoint(checkpoint, device=device, use_ema=use_ema)
    if not isinstance(model, MicroDualNet):
        raise ConfigError(f"{checkpoint}: the clip encoder needs a Micro-DualNet recognizer, not "
                          f"model.architecture={cfg.model.architecture!r}")
    return model, cfg


class ClipEncoder(nn.Module):
    """A trained Micro-DualNet as a sliding-window clip encoder over long videos.

    Args:
        recognizer: the model (put in eval mode; its weights are not changed).
        window: T, sampled frames per window (the recognizer's clip length).
        stride_frames: video frames between consecutive steps.
        image_size: S, the square crop the recognizer sees.
        resize_short_side: frames are resized to this short side, then centre-cropped to S.
        keypoint_layout: the recognizer's skeleton layout (J of the keypoints).
        entity_names: K entity names in model order.
        entity_box_mode: "keypoints", "keypoints_no_confidence", "fixed_regions" or "center_crop".
        confidence_threshold, box_padding: the entity-box settings of Eq. (1).
        window_dilation: a window takes every this-many-th sampled frame.
        chunk_frames: sampled frames decoded and pushed through the backbone at once.
        window_batch: windows through the transformers at once.
        entity_tokens: append the K per-entity tokens (mean over the window) to each step.
        weights: which weights of the checkpoint the recognizer holds ("ema" or "model"; recorded only).
        precision: autocast of the recognizer ("auto", "fp32", "bf16", "fp16"; see
            :mod:`mmad.engine.precision`), decided for the device the encoder is on when it runs.
        channels_last: keep the backbone's weights and activations in channels-last memory format
            (same features; faster for some backbones and devices, see benchmarks/extract_speed.py).
    """

    def __init__(self, recognizer: MicroDualNet, *, window: int, stride_frames: int, image_size: int,
                 resize_short_side: int, keypoint_layout: str = "body25_hands",
                 entity_names: Sequence[str] = ("head", "face", "left_hand", "right_hand", "torso", "lower_body"),
                 entity_box_mode: str = "keypoints", confidence_threshold: float = 0.3, box_padding: float = 0.1,
                 window_dilation: int = 1, chunk_frames: int = 64, window_batch: int = 64,
                 entity_tokens: bool = False, weights: str = "model", precision: str = "fp32",
                 channels_last: bool = False) -> None:
        super().__init__()
        if not isinstance(recognizer, MicroDualNet):
            raise ConfigError("the clip encoder needs a Micro-DualNet recognizer")
        for name, value in (("window", window), ("stride_frames", stride_frames), ("chunk_frames", chunk_frames),
                            ("window_dilation", window_dilation), ("window_batch", window_batch)):
            if int(value) < 1:
                raise ConfigError(f"encoder.{name} must be >= 1, got {value}")
        if resize_short_side < image_size:
            raise ConfigError(f"resize_short_side {resize_short_side} is smaller than image_size {image_size}")
        self.recognizer = recognizer.eval()
        self.window = int(window)
        self.stride_frames = int(stride_frames)
        self.image_size = int(image_size)
        self.resize_short_side = int(resize_short_side)
        self.keypoint_layout = keypoint_layout
        self.entity_names = tuple(entity_names)
        self.entity_box_mode = entity_box_mode
        self.confidence_threshold = float(confidence_threshold)
        self.box_padding = float(box_padding)
        self.window_dilation = int(window_dilation)
        self.chunk_frames = int(chunk_frames)
        self.window_batch = int(window_batch)
        self.entity_tokens = bool(entity_tokens)
        self.weights = str(weights)
        resolve_precision(precision, "cpu")  # an unknown name is refused here, not mid-video
        self.precision = precision
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if self.recognizer.backbone is not None:
            self.recognizer.backbone.to(memory_format=self.memory_format)
        offsets = (torch.arange(self.window) - (self.window - 1) // 2) * self.window_dilation
        self.register_buffer("window_offsets", offsets, persistent=False)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike, *, encoder_cfg: EncoderConfig | None = None,
                        device: str | torch.device | None = None, use_ema: bool = True) -> ClipEncoder:
        """An encoder around a recognition checkpoint; unset ``encoder_cfg`` fields take its data settings
        (the window spacing from its ``frame_stride``, see :func:`resolve_window_dilation`)."""
        from mmad.engine import read_checkpoint

        enc = encoder_cfg or EncoderConfig()
        device = torch.device(device or enc.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model, cfg = load_recognizer(checkpoint, device=device, use_ema=use_ema)
        data = cfg.data
        has_ema = read_checkpoint(checkpoint).get("ema") is not None
        return cls(model, window=enc.window or data.num_frames, stride_frames=enc.stride_frames,
                   image_size=enc.image_size or data.image_size,
                   resize_short_side=enc.resize_short_side or data.resize_short_side,
                   keypoint_layout=cfg.model.keypoint_layout, entity_names=cfg.model.entity_names,
                   entity_box_mode=data.entity_boxes, confidence_threshold=data.confidence_threshold,
                   box_padding=data.box_padding,
                   window_dilation=resolve_window_dilation(enc, data, source=checkpoint),
                   chunk_frames=enc.chunk_frames, entity_tokens=enc.entity_tokens,
                   weights="ema" if use_ema and has_ema else "model", precision=enc.precision,
                   channels_last=enc.channels_last).to(device)

    @property
    def settings(self) -> dict:
        """Every encoder setting that changes the features (the feature cache's identity, with the checkpoint hash)."""
        return {"window": self.window, "window_dilation": self.window_dilation, "stride_frames": self.stride_frames,
                "image_size": self.image_size, "resize_short_side": self.resize_short_side,
                "entity_tokens": self.entity_tokens, "weights": self.weights}

    @property
    def autocast_precision(self) -> str:
        """The precision the recognizer runs at on its current device: "fp32", "bf16" or "fp16"."""
        return resolve_precision(self.precision, self.device)

    def step_times(self, num_steps: int, fps: float) -> np.ndarray:
        """Recorded time of each of ``num_steps`` steps: the mean time of its window's frames, (N,) seconds."""
        return encoder_step_frames(num_steps, stride_frames=self.stride_frames, window=self.window,
                                   window_dilation=self.window_dilation) / fps

    # -- sizes ------------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.recognizer.parameters()).device

    @property
    def uses_rgb(self) -> bool:
        return self.recognizer.backbone is not None

    def _entity_embedding(self) -> torch.Tensor:
        r = self.recognizer
        module = r.rgb_entities if r.rgb_entities is not None else r.pose_entities
        return module.entity_embedding

    @property
    def token_dim(self) -> int:
        """D, the entity-token width."""
        return int(self._entity_embedding().shape[-1])

    @property
    def num_entities(self) -> int:
        """K, entity tokens per frame (1 for the global-token variant)."""
        return int(self._entity_embedding().shape[0])

    @property
    def feature_dim(self) -> int:
        """F: C (with a backbone) + D, plus K * D with ``entity_tokens``."""
        dim = self.token_dim
        if self.uses_rgb:
            dim += self.recognizer.backbone.out_channels
        if self.entity_tokens:
            dim += self.num_entities * self.token_dim
        return dim

    # -- the two stages ---------------------------------------------------------------------------

    def frame_tables(self, feature_maps: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame global features (m, C) and rgb entity tokens (m, K, D) of feature maps (m, C, h, w)."""
        r = self.recognizer
        size = (self.image_size, self.image_size)
        global_features = feature_maps.mean(dim=(2, 3))
        if r.rgb_entities is None:
            return global_features, None
        maps, frame_boxes = feature_maps[None], boxes[None]
        if isinstance(r.rgb_entities, SpatialEntityModule):
            tokens = r.rgb_entities(maps, frame_boxes, frame_size=size)
        else:
            tokens = r.rgb_entities(maps)
        return global_features, tokens[0]

    def fuse(self, tokens: torch.Tensor) -> torch.Tensor:
        """The recognizer's temporal model on entity tokens: (N, T, K, D) -> fused (N, T, K, D)."""
        r = self.recognizer
        model = r.temporal_model
        if model == "dual_path":
            x_st, x_ts = r.st_path(tokens), r.ts_path(tokens)
            return r.routing(x_st, x_ts)[0] if r.routing is not None else (x_st + x_ts) / 2
        if model == "st":
            return r.st_path(tokens)
        if model == "ts":
            return r.ts_path(tokens)
        if model in ("avg_pool", "max_pool"):
            return tokens
        return r.entity_aggregator(tokens)

    def window_features(self, *, keypoints: torch.Tensor, boxes: torch.Tensor,
                        rgb_tokens: torch.Tensor | None = None,
                        global_features: torch.Tensor | None = None) -> torch.Tensor:
        """Step features of N windows.

        Args:
            keypoints: (N, T, J, 3) pixels of the S x S crop.
            boxes: (N, T, K, 4) entity boxes in the same pixels.
            rgb_tokens: (N, T, K, D) per-frame SEM tokens (rgb recognizers).
            global_features: (N, T, C) per-frame spatial means of the feature maps (rgb recognizers).

        Returns:
            (N, F) float32: [global mean over T; fused entity feature; (per-entity tokens)].
        """
        r = self.recognizer
        size = (self.image_size, self.image_size)
        parts = []
        if rgb_tokens is not None:
            parts.append(rgb_tokens)
        if r.pose_entities is not None:
            parts.append(r.pose_entities(keypoints, boxes, frame_size=size))
        if len(parts) == 1:
            tokens = parts[0]
        elif r.modality_projection is not None:
            tokens = r.modality_projection(torch.cat(parts, dim=-1))
        else:
            tokens = parts[0] + parts[1]
        fused = self.fuse(tokens)
        if r.temporal_model == "max_pool":
            entity = fused.amax(dim=1).mean(dim=1)
        else:
            entity = fused.mean(dim=(1, 2))
        out = [entity]
        if global_features is not None:
            out.insert(0, global_features.mean(dim=1))
        if self.entity_tokens:
            out.append(fused.mean(dim=1).flatten(1))
        return torch.cat(out, dim=-1).float()

    @torch.no_grad()
    def encode_chunks(self, chunks: Iterable[tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Step features of one sequence of sampled frames given in consecutive chunks, under the
        encoder's autocast (:attr:`autocast_precision`; the features come out float32)."""
        with inference_autocast(self.device, self.autocast_precision):
            return self._encode_chunks(chunks)

    def _encode_chunks(self, chunks: Iterable[tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Step features of one sequence of sampled frames given in consecutive chunks.

        Args:
            chunks: ``(frames (n, 3, S, S) in [0, 1] or None for pose-only recognizers,
                keypoints (n, J, 3), boxes (n, K, 4))`` for consecutive runs of sampled frames,
                already cropped to S x S (keypoints and boxes in the crop's pixels).

        Returns:
            (L, F) float32 on the CPU, one row per sampled frame.
        """
        device = self.device
        phases = self.window_dilation  # interleaved backbone streams, one per phase of the window spacing
        streams = [StreamingBackbone(self.recognizer.backbone) for _ in range(phases)] if self.uses_rgb else []
        finished: list[deque] = [deque() for _ in range(phases)]  # per phase: finished maps (C, h, w), in order
        half_back = int(-self.window_offsets[0])  # how far back a window reaches
        reach = int(self.window_offsets[-1])  # how far forward
        base = 0  # absolute index of the first frame kept in the tables
        keypoints: list[torch.Tensor] = []
        boxes: list[torch.Tensor] = []
        globals_: list[torch.Tensor] = []
        rgb_tokens: list[torch.Tensor] = []
        rgb_done = 0  # frames whose backbone outputs are in the tables (absolute count)
        seen = 0
        next_step = 0
        outputs: list[torch.Tensor] = []

        def cat(pieces: list[torch.Tensor]) -> list[torch.Tensor]:
            return [torch.cat(pieces)] if len(pieces) > 1 else pieces

        def add_maps(maps: torch.Tensor | None) -> None:
            nonlocal rgb_done
            if maps is None:
                return
            frame_boxes = torch.cat(boxes)[rgb_done - base : rgb_done - base + maps.shape[0]]
            g, tok = self.frame_tables(maps, frame_boxes)
            globals_.append(g)
            if tok is not None:
                rgb_tokens.append(tok)
            rgb_done += maps.shape[0]

        def push_frames(frames: torch.Tensor | None, first: int, final: bool) -> None:
            """Frames ``first, first + 1, ...`` into their phase streams; the finished prefix into the tables."""
            for phase, stream in enumerate(streams):
                part = None if frames is None else frames[(phase - first) % phases :: phases]
                out = stream.push(part if part is not None and part.shape[0] else None, final=final)
                if out is not None:
                    finished[phase].extend(out.unbind(0))
            ready = []
            while finished[(rgb_done + len(ready)) % phases]:
                ready.append(finished[(rgb_done + len(ready)) % phases].popleft())
            if ready:
                add_maps(torch.stack(ready))

        def emit(final: bool) -> None:
            nonlocal base, next_step, keypoints, boxes, globals_, rgb_tokens
            ready = rgb_done if self.uses_rgb else seen
            stop = ready if final else ready - reach
            if stop <= next_step:
                return
            keypoints, boxes = cat(keypoints), cat(boxes)
            globals_, rgb_tokens = cat(globals_), cat(rgb_tokens)
            for first in range(next_step, stop, self.window_batch):
                steps = torch.arange(first, min(first + self.window_batch, stop), device=device)
                index = (steps[:, None] + self.window_offsets[None, :]).clamp(0, ready - 1) - base
                outputs.append(self.window_features(
                    keypoints=keypoints[0][index], boxes=boxes[0][index],
                    rgb_tokens=rgb_tokens[0][index] if rgb_tokens else None,
                    global_features=globals_[0][index] if globals_ else None).cpu())
            next_step = stop
            keep_from = max(base, next_step - half_back)
            drop = keep_from - base
            if drop > 0:
                keypoints, boxes = [keypoints[0][drop:]], [boxes[0][drop:]]
                globals_ = [g[drop:] for g in globals_]
                rgb_tokens = [t[drop:] for t in rgb_tokens]
                base = keep_from

        for frames, chunk_keypoints, chunk_boxes in chunks:
            n = int(chunk_keypoints.shape[0])
            if n == 0:
                continue
            keypoints.append(chunk_keypoints.to(device, torch.float32))
            boxes.append(chunk_boxes.to(device, torch.float32))
            if streams:
                if frames is None or frames.shape[0] != n:
                    raise ValueError("an rgb recognizer needs frames (n, 3, S, S) with every chunk")
                push_frames(frames.to(device, torch.float32).contiguous(memory_format=self.memory_format), seen,
                            final=False)
            seen += n
            emit(final=False)
        if seen == 0:
            return torch.zeros(0, self.feature_dim)
        if streams:
            push_frames(None, seen, final=True)
        emit(final=True)
        return torch.cat(outputs) if outputs else torch.zeros(0, self.feature_dim)

    def encode_frames(self, frames: torch.Tensor | None, keypoints: torch.Tensor, boxes: torch.Tensor, *,
                      chunk_frames: int | None = None) -> torch.Tensor:
        """:meth:`encode_chunks` over whole arrays (L, ...) cut into chunks of ``chunk_frames``: (L, F)."""
        size = chunk_frames or self.chunk_frames
        length = int(keypoints.shape[0])

        def pieces():
            for start in range(0, length, size):
                stop = min(start + size, length)
                yield (None if frames is None else frames[start:stop]), keypoints[start:stop], boxes[start:stop]

        return self.encode_chunks(pieces())

    # -- videos -----------------------------------------------------------------------------------

    def entity_boxes(self, keypoints: np.ndarray, frame_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(L, K, 4) boxes and (L, K) confidences of a whole keypoint track (native pixels, frame (W, H))."""
        from mmad.entities import center_crop_boxes, entity_boxes, fixed_region_boxes

        if self.entity_box_mode == "fixed_regions":
            return fixed_region_boxes(keypoints.shape[0], frame_size, self.entity_names)
        if self.entity_box_mode == "center_crop":
            return center_crop_boxes(keypoints.shape[0], frame_size, len(self.entity_names))
        no_conf = self.entity_box_mode == "keypoints_no_confidence"
        boxes, conf = entity_boxes(keypoints, self.keypoint_layout, entities=self.entity_names,
                                   conf_threshold=0.0 if no_conf else self.confidence_threshold,
                                   pad=self.box_padding, frame_size=frame_size)
        return boxes, (np.ones_like(conf) if no_conf else conf)

    def _crop(self, frames: np.ndarray, keypoints: np.ndarray, boxes: np.ndarray, conf: np.ndarray,
              native: tuple[int, int]):
        from mmad.transforms import CenterCrop, ClipArrays, Compose, Resize, rescale_annotations

        clip = rescale_annotations(ClipArrays(frames=frames, keypoints=keypoints, boxes=boxes, entity_conf=conf),
                                   native)
        clip = Compose([Resize(self.resize_short_side), CenterCrop(self.image_size)])(clip)
        return clip.frames, clip.keypoints, clip.boxes

    def video_chunks(self, video_path: str | os.PathLike, keypoints: np.ndarray, *, info=None
                     ) -> Iterator[tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]]:
        """Chunks of cropped sampled frames, keypoints and boxes of a video (see :meth:`encode_chunks`).

        ``keypoints`` (num_frames, J, 3) are in the video's native pixels. Pose-only recognizers do
        not decode the video.
        """
        from mmad.video import iter_frames, probe

        info = info or probe(video_path)
        native = (info.width, info.height)
        boxes, conf = self.entity_boxes(keypoints, native)
        if self.uses_rgb:
            indices, frames = [], []
            for index, _, frame in iter_frames(video_path, stride=self.stride_frames, start=self.stride_frames // 2,
                                               size=self.resize_short_side):
                indices.append(index)
                frames.append(frame)
                if len(frames) == self.chunk_frames:
                    idx = np.asarray(indices)
                    f, k, b = self._crop(np.stack(frames), _take_frames(keypoints, idx), _take_frames(boxes, idx),
                                         _take_frames(conf, idx), native)
                    yield f, k, b
                    indices, frames = [], []
            if frames:
                idx = np.asarray(indices)
                yield self._crop(np.stack(frames), _take_frames(keypoints, idx), _take_frames(boxes, idx),
                                 _take_frames(conf, idx), native)
            return
        scale = self.resize_short_side / min(native)
        size = (max(1, round(native[1] * scale)), max(1, round(native[0] * scale)))
        all_indices = sampled_frame_indices(info.num_frames, self.stride_frames)
        for start in range(0, len(all_indices), self.chunk_frames):
            idx = all_indices[start : start + self.chunk_frames]
            blank = np.zeros((len(idx), *size, 3), dtype=np.uint8)
            _, k, b = self._crop(blank, _take_frames(keypoints, idx), _take_frames(boxes, idx),
                                 _take_frames(conf, idx), native)
            yield None, k, b

    def encode_video(self, video_path: str | os.PathLike, keypoints: np.ndarray | str | os.PathLike
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Features of a whole video.

        Args:
            video_path: the video file.
            keypoints: (num_frames, J, 3) native-pixel keypoints in the recognizer's layout, or the
                video's OpenPose JSON folder.

        Returns:
            features (N, F) float16 and times (N,) float64: each step's recorded time in seconds, the
            mean time of its window's frames (:meth:`step_times`, container clock).
        """
        from mmad.video import probe

        info = probe(video_path)
        if isinstance(keypoints, (str, os.PathLike)):
            keypoints = read_video_keypoints(keypoints, layout=self.keypoint_layout, num_frames=info.num_frames,
                                             frame_size=(info.width, info.height))
        keypoints = np.asarray(keypoints, dtype=np.float32)
        if keypoints.ndim != 3 or keypoints.shape[-1] != 3:
            raise DataError(video_path, f"keypoints must be (num_frames, J, 3), got {keypoints.shape}")
        features = self.encode_chunks(self.video_chunks(video_path, keypoints, info=info))
        if features.shape[0] == 0:
            raise DataError(video_path, "no frame could be sampled")
        return features.numpy().astype(np.float16), self.step_times(features.shape[0], info.fps)


# ----------------------------------------------------------------------------- extraction over a dataset


def distributed_rank() -> tuple[int, int]:
    """``(rank, world_size)`` from the ``RANK``/``WORLD_SIZE`` variables torchrun sets; (0, 1) without them."""
    try:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        raise ConfigError("RANK and WORLD_SIZE must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} is not in [0, WORLD_SIZE={world})")
    return rank, world


def extraction_device(requested: str | None, *, environ: dict | None = None, cuda_available: bool | None = None,
                      device_count: int | None = None) -> str:
    """The device one extraction process runs on.

    Under ``torchrun`` (``LOCAL_RANK`` set) a process asking for CUDA without an index (``None`` with
    a GPU present, or ``"cuda"``) is pinned to ``cuda:LOCAL_RANK``, so that every rank has its own GPU;
    an explicit device (``cpu``, ``cuda:1``) is kept. Without torchrun: ``requested``, else cuda when
    available, else cpu. ``environ``/``cuda_available``/``device_count`` default to the real ones.
    """
    environ = os.environ if environ is None else environ
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if requested is None:
        requested = "cuda" if cuda_available else "cpu"
    if requested != "cuda" or environ.get("LOCAL_RANK") is None:
        return requested
    try:
        local_rank = int(environ["LOCAL_RANK"])
    except ValueError:
        raise ConfigError(f"LOCAL_RANK must be an integer, got {environ['LOCAL_RANK']!r}") from None
    count = torch.cuda.device_count() if device_count is None else device_count
    if not 0 <= local_rank < max(count, 1):
        raise ConfigError(f"LOCAL_RANK={local_rank} but this machine has {count} GPU(s): start at most {count} "
                          "processes per node (torchrun --nproc-per-node)")
    return f"cuda:{local_rank}"


def resolve_window_dilation(encoder_cfg: EncoderConfig, recognizer_data, *, source: str | os.PathLike = "the recognizer") -> int:
    """Sampled frames between a window's frames, so that they are as far apart as in the recognizer's training clips.

    ``recognizer_data`` is the recognizer's data config (``frame_stride``, ``sampling``). With
    ``encoder.window_dilation`` null the dilation is ``frame_stride / stride_frames``; a stride that
    does not divide ``frame_stride``, or an explicit dilation whose spacing differs from it, cannot match
    the training clips and is a :class:`ConfigError`. Recognizers trained with TSN segment sampling have
    no fixed spacing: they need an explicit ``encoder.window_dilation``.
    """
    stride, dilation = int(encoder_cfg.stride_frames), encoder_cfg.window_dilation
    if getattr(recognizer_data, "sampling", "dense") == "segments":
        if dilation is None:
            raise ConfigError(f"{source} was trained with segment sampling (no fixed frame spacing): set "
                              "encoder.window_dilation to choose the window spacing")
        return int(dilation)
    spacing = int(recognizer_data.frame_stride)
    if dilation is None:
        if stride < 1 or spacing % stride:
            divisors = [d for d in range(1, spacing + 1) if spacing % d == 0]
            raise ConfigError(f"encoder.stride_frames={stride} cannot reproduce the frame spacing {source} was trained "
                              f"on (data.frame_stride={spacing}): use a stride_frames in {divisors}")
        return spacing // stride
    if int(dilation) * stride != spacing:
        hint = f"set it to {spacing // stride} or leave it null" if spacing % stride == 0 else "leave it null"
        raise ConfigError(f"encoder.window_dilation={dilation} with stride_frames={stride} puts a window's frames "
                          f"{int(dilation) * stride} apart, but {source} was trained on frames {spacing} apart "
                          f"(data.frame_stride): {hint}")
    return int(dilation)


def shard_videos(video_ids: Iterable[str], *, rank: int, world_size: int) -> list[str]:
    """This rank's share of the videos: every ``world_size``-th id of the sorted list, from ``rank``."""
    return sorted(set(video_ids))[rank::world_size]


@dataclass
class ExtractionReport:
    """What one process of :func:`extract_features` did.

    ``encoded``: ids written now; ``already_done``: ids whose cache was complete and current;
    ``failed``: ``(video_id, one-line reason)``, also listed in ``failed_file``; ``num_steps``:
    feature steps written; ``seconds``: wall time.
    """

    cache_dir: Path
    encoder_hash: str
    feature_dim: int
    rank: int = 0
    world_size: int = 1
    encoded: list[str] = field(default_factory=list)
    already_done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    failed_file: Path | None = None
    num_steps: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        share = f" (rank {self.rank} of {self.world_size})" if self.world_size > 1 else ""
        rate = f", {self.num_steps / self.seconds:.1f} steps/s" if self.seconds > 0 and self.num_steps else ""
        return (f"encoded {len(self.encoded)} video(s){share}, {len(self.already_done)} already cached, "
                f"{len(self.failed)} failed; {self.num_steps} steps of {self.feature_dim} features in "
                f"{self.seconds:.1f} s{rate} -> {self.cache_dir} (encoder {self.encoder_hash})")


def extract_features(cfg: DetectionConfig, recognizer: str | os.PathLike, *, subset: str | None = None,
                     device: str | None = None, rank: int | None = None, world_size: int | None = None,
                     encoder: ClipEncoder | None = None) -> ExtractionReport:
    """Encode the videos of ``cfg``'s annotation file into the feature cache ``cfg.data.feature_path``.

    Videos are ``data.root/encoder.videos_dir/<id>.mp4`` with keypoints in
    ``data.root/encoder.keypoints_dir/<id>/``. ``subset`` picks one subset (default: all videos).
    Rank and world size default to :func:`distributed_rank`; the device to :func:`extraction_device`
    (under torchrun, ``cuda:LOCAL_RANK``). A video whose cache was made by this recognizer checkpoint
    with these settings is skipped; one made otherwise (or with an older step-time rule) is redone. A video that fails
    is logged, listed in the report and in ``failed_rank<R>.txt`` of the cache folder, and skipped;
    a :class:`ConfigError` (the recognizer and the data do not fit together) stops the run.
    ``encoder`` replaces the one built from ``recognizer`` (its hash still names the features).
    """
    from mmad.datasets.mma52 import read_detection_annotations
    from mmad.video import probe

    if rank is None or world_size is None:
        rank, world_size = distributed_rank()
    from mmad.engine import read_checkpoint
    from mmad.fileio import FileLock

    read_checkpoint(recognizer, kind="recognition")  # not a checkpoint: said before any hash comparison
    encoder_hash = checkpoint_hash(recognizer)
    if cfg.data.encoder_hash and cfg.data.encoder_hash != encoder_hash:
        raise ConfigError(f"data.encoder_hash is {cfg.data.encoder_hash} but {recognizer} hashes to {encoder_hash}; "
                          "training would refuse these features (update data.encoder_hash)")
    lock = FileLock(Path(cfg.data.feature_path) / f".extract_rank{rank}.lock", purpose="mmad detection extract")
    lock.acquire()  # another process writing this cache (share) is refused, naming it
    if encoder is None:
        device = extraction_device(device or cfg.encoder.device)
        if device.startswith("cuda:"):
            torch.cuda.set_device(torch.device(device))
        encoder = ClipEncoder.from_checkpoint(recognizer, encoder_cfg=cfg.encoder, device=device)
    cache = cfg.data.feature_path
    videos = {v.video_id: v for v in read_detection_annotations(cfg.data.annotation_path, subset=subset)}
    mine = shard_videos(videos, rank=rank, world_size=world_size)
    report = ExtractionReport(cache_dir=cache, encoder_hash=encoder_hash, feature_dim=encoder.feature_dim,
                              rank=rank, world_size=world_size)
    videos_dir = cfg.data.resolve(cfg.encoder.videos_dir)
    keypoints_dir = cfg.data.resolve(cfg.encoder.keypoints_dir)
    started = time.perf_counter()
    settings = encoder.settings  # the cache's identity; the precision is recorded beside it, not compared
    log.info("extracting on %s at %s", encoder.device, encoder.autocast_precision)
    from mmad.progress import progress

    for position, video_id in enumerate(progress(mine, desc="extract", unit="video"), 1):
        if has_features(cache, video_id, expected_hash=encoder_hash, expected_settings=settings):
            report.already_done.append(video_id)
            continue
        if has_features(cache, video_id):
            meta = read_feature_meta(cache, video_id)
            why = (f"encoder {meta.encoder_hash}" if meta.encoder_hash != encoder_hash
                   else settings_mismatch(meta.encoder_settings, settings))
            log.info("%s: cache made otherwise (%s), redoing it", video_id, why)
        video_path = videos_dir / f"{video_id}.mp4"
        try:
            info = probe(video_path)
            features, times = encoder.encode_video(video_path, keypoints_dir / video_id)
            save_features(cache, video_id, features, times=times, stride_frames=encoder.stride_frames, fps=info.fps,
                          encoder_hash=encoder_hash, duration=info.duration, num_frames=info.num_frames,
                          encoder_settings={**settings, "precision": encoder.autocast_precision})
        except (KeyboardInterrupt, SystemExit, ConfigError):
            raise
        except Exception as e:  # one bad video never stops the run
            reason = str(e) if isinstance(e, DataError) else f"{video_path}: {type(e).__name__}: {e}"
            log.warning("skipping %s: %s", video_id, reason)
            report.failed.append((video_id, reason.replace("\n", " ")))
            continue
        report.encoded.append(video_id)
        report.num_steps += int(features.shape[0])
        log.debug("[%d/%d] %s: %d steps", position, len(mine), video_id, features.shape[0])
    report.seconds = time.perf_counter() - started
    lock.release()
    failed_file = Path(cache) / f"failed_rank{rank}.txt"
    if report.failed:
        failed_file.parent.mkdir(parents=True, exist_ok=True)
        failed_file.write_text("".join(f"{vid}\t{reason}\n" for vid, reason in report.failed), encoding="utf-8")
        report.failed_file = failed_file
    elif failed_file.is_file():
        failed_file.unlink()
    return report
