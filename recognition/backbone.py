"""TSM-ResNet backbone: torchvision ResNet-18/50/101 with the Temporal Shift Module.

The shift moves ``1/shift_div`` of the channels one frame back in time (frame t sees t+1) and
another ``1/shift_div`` one frame forward (frame t sees t-1), filling the vacated positions at
the clip ends with zeros. It sits on the residual branch, in front of ``conv1`` of a block
("blockres" placement); when layer3 has at least 23 blocks (ResNet-101) only every other block
of each stage is shifted, as the official TSM code does.

Weights are never downloaded: :func:`load_pretrained` reads a local torchvision-ImageNet or
TSM-Kinetics checkpoint.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models

from mmad.errors import DataError

log = logging.getLogger(__name__)

FEATURE_CHANNELS = {"resnet18": 512, "resnet50": 2048, "resnet101": 2048}
FEATURE_STRIDE = 32
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def temporal_shift(x: torch.Tensor, num_segments: int, *, shift_div: int = 8) -> torch.Tensor:
    """Shift channels along time with zero padding at the sequence ends.

    Args:
        x: (N * num_segments, C, H, W) with each sequence's frames contiguous.
        num_segments: T, the frames per sequence (any length, e.g. a whole video).
        shift_div: the first ``C // shift_div`` channels take frame t+1's values, the next
            ``C // shift_div`` take frame t-1's; the rest are unchanged.

    Returns:
        (N * num_segments, C, H, W).
    """
    nt, c, h, w = x.shape
    if nt % num_segments:
        raise ValueError(f"batch of {nt} frames is not a multiple of num_segments={num_segments}")
    fold = c // shift_div
    x = x.view(nt // num_segments, num_segments, c, h, w)
    back = F.pad(x[:, 1:, :fold], (0, 0, 0, 0, 0, 0, 0, 1))  # frame t <- t+1, zeros at the end
    forward = F.pad(x[:, :-1, fold : 2 * fold], (0, 0, 0, 0, 0, 0, 1, 0))  # frame t <- t-1
    out = torch.cat([back, forward, x[:, :, 2 * fold :]], dim=2)
    return out.view(nt, c, h, w)


class TemporalShiftConv2d(nn.Conv2d):
    """A ``Conv2d`` that applies :func:`temporal_shift` to its input first.

    Its parameters keep the plain convolution's names, so torchvision checkpoints load as they
    are. ``num_segments`` is set by :class:`TSMResNet` before every forward pass.
    """

    def __init__(self, conv: nn.Conv2d, *, shift_div: int = 8) -> None:
        super().__init__(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
        )
        self.load_state_dict(conv.state_dict())
        self.shift_div = shift_div
        self.num_segments = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(temporal_shift(x, self.num_segments, shift_div=self.shift_div))


class TSMResNet(nn.Module):
    """ResNet trunk (no pooling, no fc) whose shifted blocks mix neighbouring frames.

    Attributes:
        out_channels: C of the penultimate feature map (512 for ResNet-18, 2048 otherwise).
        stride: 32, the feature map's stride relative to the input frame.
    """

    def __init__(
        self,
        arch: str = "resnet101",
        *,
        temporal_shift: bool = True,
        shift_div: int = 8,
        shift_place: str = "blockres",
        normalize_input: bool = True,
    ) -> None:
        super().__init__()
        if arch not in FEATURE_CHANNELS:
            raise ValueError(f"unknown backbone '{arch}'; choose one of {sorted(FEATURE_CHANNELS)}")
        net = getattr(models, arch)(weights=None)
        self.arch = arch
        self.out_channels = FEATURE_CHANNELS[arch]
        self.stride = FEATURE_STRIDE
        self.normalize_input = normalize_input
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        if temporal_shift:
            every = 2 if (shift_place == "blockres" and len(self.layer3) >= 23) else 1
            for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
                for i, block in enumerate(stage):
                    if i % every == 0:
                        block.conv1 = TemporalShiftConv2d(block.conv1, shift_div=shift_div)

    def shift_layers(self) -> Iterator[TemporalShiftConv2d]:
        return (m for m in self.modules() if isinstance(m, TemporalShiftConv2d))

    @property
    def temporal_radius(self) -> int:
        """How many frames away an output frame can see: one per shifted block."""
        return sum(1 for _ in self.shift_layers())

    def _trunk(self, x: torch.Tensor, num_segments: int) -> torch.Tensor:
        for layer in self.shift_layers():
            layer.num_segments = num_segments
        if self.normalize_input:
            x = (x - self.mean) / self.std
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Per-frame feature maps of clips.

        Args:
            frames: (B, T, 3, H, W); T may be any length (a clip or a whole video).

        Returns:
            (B, T, C, H/32, W/32) penultimate features.
        """
        b, t = frames.shape[:2]
        feats = self._trunk(frames.flatten(0, 1), t)
        return feats.view(b, t, *feats.shape[1:])

    forward_features = forward

    @torch.no_grad()
    def forward_stream(self, frames: torch.Tensor, *, chunk_size: int = 64) -> torch.Tensor:
        """Feature maps of one long frame sequence, computed in chunks, as if shifted as a whole.

        Each chunk is extended by :attr:`temporal_radius` frames of context on either side, so
        the result equals ``self(frames[None])[0]`` in eval mode (BatchNorm with running
        statistics) while holding at most ``chunk_size + 2 * radius`` frames at once.

        Args:
            frames: (L, 3, H, W) consecutive frames of one video.
            chunk_size: frames whose features are produced per pass.

        Returns:
            (L, C, H/32, W/32).
        """
        length = frames.shape[0]
        radius = self.temporal_radius
        outputs = []
        for start in range(0, length, chunk_size):
            stop = min(start + chunk_size, length)
            lo, hi = max(0, start - radius), min(length, stop + radius)
            feats = self._trunk(frames[lo:hi], hi - lo)
            outputs.append(feats[start - lo : stop - lo])
        return torch.cat(outputs, dim=0)


def build_backbone(
    arch: str = "resnet101",
    *,
    temporal_shift: bool = True,
    shift_div: int = 8,
    shift_place: str = "blockres",
    normalize_input: bool = True,
    pretrained: str | None = None,
) -> TSMResNet:
    """Build a :class:`TSMResNet`, optionally loading a local checkpoint (see :func:`load_pretrained`)."""
    model = TSMResNet(
        arch,
        temporal_shift=temporal_shift,
        shift_div=shift_div,
        shift_place=shift_place,
        normalize_input=normalize_input,
    )
    if pretrained:
        report = load_pretrained(model, pretrained)
        log.info("%s: %s", pretrained, report.summary())
        if report.missing or report.mismatched:
            log.warning(
                "%s: %d backbone tensors keep their random init (first: %s); checkpoint keys not placed: %s",
                pretrained,
                len(report.missing) + len(report.mismatched),
                (report.missing + report.mismatched)[0],
                ", ".join(report.unexpected[:3]) or "none",
            )
    return model


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did: backbone keys left at init, checkpoint keys not used."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"loaded {len(self.loaded)} tensors; missing {len(self.missing)}; "
            f"unexpected {len(self.unexpected)}; shape-mismatched {len(self.mismatched)}"
        )


_PREFIXES = ("module.", "base_model.", "backbone.")
_CLASSIFIER_PREFIXES = ("fc.", "new_fc.", "consensus.", "cls_head.")

# mmaction2 wraps every convolution with its norm in a ConvModule: ``<name>.conv`` / ``<name>.bn``.
_MMACTION_STEM = re.compile(r"^conv1\.(conv|bn)\.(.+)$")
_MMACTION_BLOCK = re.compile(r"^(layer\d+\.\d+)\.(conv\d|downsample)\.(conv|bn)\.(.+)$")


def remap_checkpoint_key(key: str) -> str | None:
    """Map a checkpoint key of a known ResNet layout to this backbone's name; None for classifiers.

    Layouts (each may carry ``module.``/``base_model.``/``backbone.`` prefixes):

    - torchvision: ``layer1.0.conv1.weight``, ``layer1.0.downsample.0.weight`` (this backbone's own);
    - official TSM: ``module.base_model.layer1.0.conv1.net.weight``;
    - mmaction2 (ConvModule wrappers): ``backbone.conv1.conv.weight`` / ``backbone.conv1.bn.weight``
      for the stem, ``backbone.layer1.0.conv1.conv.net.weight`` / ``...conv1.bn.weight`` in a block,
      ``backbone.layer1.0.downsample.conv.weight`` / ``...downsample.bn.weight``.

    All become ``layer1.0.conv1.weight`` etc.; ``fc``/``new_fc``/``cls_head`` keys map to None.
    """
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    if key.startswith(_CLASSIFIER_PREFIXES):
        return None
    key = key.replace(".net.", ".")
    stem = _MMACTION_STEM.match(key)
    if stem:
        return f"conv1.{stem[2]}" if stem[1] == "conv" else f"bn1.{stem[2]}"
    block = _MMACTION_BLOCK.match(key)
    if block:
        prefix, module, part, tail = block.groups()
        if module == "downsample":
            return f"{prefix}.downsample.{0 if part == 'conv' else 1}.{tail}"
        index = module[len("conv"):]
        return f"{prefix}.conv{index}.{tail}" if part == "conv" else f"{prefix}.bn{index}.{tail}"
    return key


def load_pretrained(model: TSMResNet, path: str) -> LoadReport:
    """Load a local torchvision-ImageNet or TSM-Kinetics checkpoint into ``model``.

    The file is read with ``torch.load(weights_only=True)``; a ``state_dict``/``model`` wrapper
    is unpacked; prefixes and TSM's ``.net.`` are remapped; classifier weights are skipped;
    tensors of the wrong shape are left at init and reported. A missing file, or one of which no
    tensor fits the backbone, raises :class:`DataError`.
    """
    from mmad.engine.checkpoint import read_checkpoint

    if not os.path.isfile(path) and not os.path.isdir(path):
        raise DataError(path, "pretrained checkpoint not found")
    state = read_checkpoint(path, require_weights=False)  # truncated, text, pickled code: a DataError
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    own = model.state_dict()
    report = LoadReport()
    usable = {}
    for key, value in state.items():
        name = remap_checkpoint_key(key)
        if name is None or not isinstance(value, torch.Tensor):
            continue
        if name not in own:
            report.unexpected.append(key)
        elif own[name].shape != value.shape:
            report.mismatched.append(f"{key}: {tuple(value.shape)} vs {tuple(own[name].shape)}")
        else:
            usable[name] = value
    if not usable:
        first = ", ".join((report.unexpected + report.mismatched)[:3]) or "no tensors"
        raise DataError(path, f"no tensor matches the {model.arch} backbone (is it a ResNet checkpoint?); "
                              f"could not place: {first}")
    model.load_state_dict(usable, strict=False)
    report.loaded = sorted(usable)
    report.missing = sorted(k for k in own if k not in usable and not k.endswith("num_batches_tracked"))
    return report
