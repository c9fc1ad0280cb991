"""The anchor-free multi-label temporal localization head.

Input: a padded batch of feature sequences ``feats`` (B, F, N) with ``mask`` (B, N) bool (True on
real steps). The temporal encoder embeds them with masked 1-D convolutions, runs transformer
layers with local-window self-attention, and builds a pyramid of ``num_levels`` levels (strides
1, 2, 4, ...) by masked max-pooling followed by one more transformer layer per level. Shared
heads then score every point of every level: a sigmoid per class (no background class) and the
non-negative distances to onset and offset (softplus of a per-level learnably scaled output, in
units of the level's stride), optionally one pair per class (class-aware regression).

Switches (all off by default, each measured in the README's "Detection head" section):
``level_layers="none"`` builds the pyramid by max-pooling alone (TemporalMaxer);
``level_layers="sgp"`` replaces every attention layer (stem and levels) by TriDet's
scalable-granularity perception layer (:class:`SGPLayer`);
``fpn_fusion`` adds each coarser level, upsampled, to the finer one (top-down multi-scale fusion);
``boundary_head="trident"`` replaces the direct distances by TriDet's boundary modelling: each
distance is the expectation of a distribution over ``num_bins + 1`` candidate distances whose
logits add a per-position boundary score (start or end, at the candidate position) to a relative
score predicted at the point; ``quality_head`` predicts the IoU of each point's own box with its
target, and scores are ``sigmoid(class logit) * sigmoid(quality logit)`` at test time.

Padding never leaks into real steps: every layer multiplies by the mask and attention ignores
padded keys, so a padded sequence gives the same outputs on its real steps as the unpadded one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from detection.assign import default_regression_ranges, pyramid_points


class MaskedConv1d(nn.Module):
    """1-D convolution (stride 1, 'same' padding) that zeroes padded steps before and after.

    Shapes: ``x`` (B, C_in, N), ``mask`` (B, N) bool -> (B, C_out, N).
    """

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int = 3, bias: bool = True,
                 groups: int = 1):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias,
                              groups=groups)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask[:, None, :].to(x.dtype)
        return self.conv(x * keep) * keep


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of (B, C, N) tensors (each step normalised on its own)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class LocalSelfAttention(nn.Module):
    """Multi-head self-attention where step i attends to the real steps within ``window_size // 2`` of it.

    Keys are gathered per query with ``unfold``, so time and memory grow linearly with N.
    Shapes: ``x`` (B, C, N), ``mask`` (B, N) bool -> (B, C, N) (zero on padded steps).
    """

    def __init__(self, dim: int, *, num_heads: int, window_size: int, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if window_size < 1 or window_size % 2 != 1:
            raise ValueError(f"window_size must be a positive odd number, got {window_size}")
        self.num_heads = num_heads
        self.window_size = window_size
        self.qkv = nn.Conv1d(dim, 3 * dim, 1)
        self.proj = nn.Conv1d(dim, dim, 1)
        self.attn_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, dim, length = x.shape
        heads, head_dim, half = self.num_heads, dim // self.num_heads, self.window_size // 2
        q, k, v = self.qkv(x).view(batch, 3, heads, head_dim, length).unbind(dim=1)  # (B, H, d, N)
        k_windows = F.pad(k, (half, half)).unfold(3, self.window_size, 1)  # (B, H, d, N, W)
        v_windows = F.pad(v, (half, half)).unfold(3, self.window_size, 1)
        key_valid = F.pad(mask, (half, half), value=False).unfold(1, self.window_size, 1)  # (B, N, W)
        scores = torch.einsum("bhdn,bhdnw->bhnw", q, k_windows) / math.sqrt(head_dim)
        scores = scores.masked_fill(~key_valid[:, None], torch.finfo(scores.dtype).min)
        weights = self.attn_drop(scores.softmax(dim=-1))
        out = torch.einsum("bhnw,bhdnw->bhdn", weights, v_windows).reshape(batch, dim, length)
        return self.proj(out) * mask[:, None, :].to(x.dtype)


def pointwise_mlp(dim: int, mlp_ratio: float, dropout: float) -> nn.Sequential:
    """The per-step MLP of a pyramid layer: (B, C, N) -> (B, C, N), hidden width ``dim * mlp_ratio``."""
    hidden = int(dim * mlp_ratio)
    return nn.Sequential(nn.Conv1d(dim, hidden, 1), nn.GELU(), nn.Dropout(dropout),
                         nn.Conv1d(hidden, dim, 1), nn.Dropout(dropout))


class LocalTransformerLayer(nn.Module):
    """Pre-norm transformer layer: local-window attention then a pointwise MLP, both residual and masked.

    Shapes: ``x`` (B, C, N), ``mask`` (B, N) -> (B, C, N).
    """

    def __init__(self, dim: int, *, num_heads: int, window_size: int, mlp_ratio: float = 4.0,
                 dropout: float = 0.0):
        super().__init__()
        self.norm_attn = ChannelLayerNorm(dim)
        self.attn = LocalSelfAttention(dim, num_heads=num_heads, window_size=window_size, dropout=dropout)
        self.norm_mlp = ChannelLayerNorm(dim)
        self.mlp = pointwise_mlp(dim, mlp_ratio, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask[:, None, :].to(x.dtype)
        x = x + self.attn(self.norm_attn(x) * keep, mask)
        return x + self.mlp(self.norm_mlp(x)) * keep


class SGPLayer(nn.Module):
    """Scalable-granularity perception (TriDet): a convolutional stand-in for local self-attention.

    Self-attention over a video's steps tends to make neighbouring features alike; SGP keeps them
    distinct with two branches on the normalised input ``h``:

    - instant level: ``fc(h) * relu(context(mean of h over the real steps))``, each step's own
      projection gated by one video-level vector;
    - window level: ``(dw_short(h) + dw_long(h)) * dw_gate(h)``, depthwise convolutions over a short
      (``short_kernel``) and a long (``long_kernel``) window, gated per channel.

    Their sum is added to the input (residual), then a pointwise MLP as in the transformer layer.
    Shapes: ``x`` (B, C, N), ``mask`` (B, N) -> (B, C, N) (zero on padded steps).
    """

    def __init__(self, dim: int, *, short_kernel: int = 3, long_kernel: int = 17, mlp_ratio: float = 4.0,
                 dropout: float = 0.0):
        super().__init__()
        self.norm = ChannelLayerNorm(dim)
        self.instant = nn.Conv1d(dim, dim, 1)
        self.context = nn.Conv1d(dim, dim, 1)
        self.short = MaskedConv1d(dim, dim, kernel_size=short_kernel, groups=dim)
        self.long = MaskedConv1d(dim, dim, kernel_size=long_kernel, groups=dim)
        self.gate = MaskedConv1d(dim, dim, kernel_size=short_kernel, groups=dim)
        self.drop = nn.Dropout(dropout)
        self.norm_mlp = ChannelLayerNorm(dim)
        self.mlp = pointwise_mlp(dim, mlp_ratio, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask[:, None, :].to(x.dtype)
        h = self.norm(x) * keep
        mean = h.sum(dim=-1, keepdim=True) / keep.sum(dim=-1, keepdim=True).clamp(min=1.0)  # (B, C, 1)
        instant = self.instant(h) * F.relu(self.context(mean))
        window = (self.short(h, mask) + self.long(h, mask)) * self.gate(h, mask)
        x = x + self.drop(instant + window) * keep
        return x + self.mlp(self.norm_mlp(x)) * keep


def masked_downsample(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Halve the time axis by max-pooling (kernel 3, stride 2) over real steps only.

    Shapes: ``x`` (B, C, N), ``mask`` (B, N) -> (B, C, ceil(N/2)), (B, ceil(N/2)).
    Output step i is centred on input step 2i.
    """
    pooled = F.max_pool1d(x.masked_fill(~mask[:, None, :], float("-inf")), kernel_size=3, stride=2, padding=1)
    coarse_mask = mask[:, ::2]
    return pooled.masked_fill(~coarse_mask[:, None, :], 0.0), coarse_mask


class TemporalEncoder(nn.Module):
    """Masked conv embedding, stride-1 transformer layers, then one pooled transformer level per extra level.

    Shapes: ``feats`` (B, F, N), ``mask`` (B, N) -> ``num_levels`` tensors (B, D, ceil(N / 2**l))
    and their masks (B, ceil(N / 2**l)).
    """

    def __init__(self, feature_dim: int, *, embed_dim: int, num_levels: int, num_embed_convs: int = 2,
                 num_stem_layers: int = 2, num_heads: int = 4, window_size: int = 9, mlp_ratio: float = 4.0,
                 dropout: float = 0.0, input_dropout: float = 0.0, level_layers: str = "transformer",
                 fpn_fusion: bool = False):
        super().__init__()
        if level_layers not in ("transformer", "none", "sgp"):
            raise ValueError(f"level_layers must be 'transformer', 'none' or 'sgp', got {level_layers!r}")
        self.fpn_fusion = fpn_fusion
        self.input_drop = nn.Dropout(input_dropout)
        self.embed = nn.ModuleList(
            [MaskedConv1d(feature_dim if i == 0 else embed_dim, embed_dim, kernel_size=3, bias=False)
             for i in range(num_embed_convs)])
        self.embed_norms = nn.ModuleList([ChannelLayerNorm(embed_dim) for _ in range(num_embed_convs)])

        def layer() -> nn.Module:
            if level_layers == "sgp":  # short window 3, long window about twice the attention window
                return SGPLayer(embed_dim, short_kernel=3, long_kernel=2 * window_size - 1, mlp_ratio=mlp_ratio,
                                dropout=dropout)
            return LocalTransformerLayer(embed_dim, num_heads=num_heads, window_size=window_size,
                                         mlp_ratio=mlp_ratio, dropout=dropout)

        self.stem = nn.ModuleList([layer() for _ in range(num_stem_layers)])
        self.levels = nn.ModuleList([nn.Identity() if level_layers == "none" else layer()
                                     for _ in range(num_levels - 1)])
        self.level_norms = nn.ModuleList([ChannelLayerNorm(embed_dim) for _ in range(num_levels)])

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        keep = mask[:, None, :].to(feats.dtype)
        x = self.input_drop(feats) * keep
        for conv, norm in zip(self.embed, self.embed_norms):
            x = F.relu(norm(conv(x, mask))) * keep
        for block in self.stem:
            x = block(x, mask)
        level_feats, level_masks = [x], [mask]
        for block in self.levels:
            x, mask = masked_downsample(x, mask)
            x = x if isinstance(block, nn.Identity) else block(x, mask)
            level_feats.append(x)
            level_masks.append(mask)
        if self.fpn_fusion:
            for level in range(len(level_feats) - 2, -1, -1):
                coarse = F.interpolate(level_feats[level + 1], size=level_feats[level].shape[-1], mode="nearest")
                level_feats[level] = level_feats[level] + coarse * level_masks[level][:, None, :].to(coarse.dtype)
        outs = [norm(f) * m[:, None, :].to(f.dtype) for norm, f, m in zip(self.level_norms, level_feats, level_masks)]
        return outs, level_masks


class PointHead(nn.Module):
    """Masked conv trunk shared across levels and an output conv: (B, D, N_l) -> (B, out, N_l)."""

    def __init__(self, embed_dim: int, out_channels: int, *, num_convs: int = 2, bias_init: float = 0.0):
        super().__init__()
        self.trunk = nn.ModuleList([MaskedConv1d(embed_dim, embed_dim, kernel_size=3) for _ in range(num_convs)])
        self.norms = nn.ModuleList([ChannelLayerNorm(embed_dim) for _ in range(num_convs)])
        self.out = MaskedConv1d(embed_dim, out_channels, kernel_size=3)
        nn.init.normal_(self.out.conv.weight, std=0.01)
        nn.init.constant_(self.out.conv.bias, bias_init)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask[:, None, :].to(x.dtype)
        for conv, norm in zip(self.trunk, self.norms):
            x = F.relu(norm(conv(x, mask))) * keep
        return self.out(x, mask)


@dataclass
class DetectorOutput:
    """Raw head outputs over all pyramid points of a padded batch.

    Shapes: ``cls_logits`` (B, P, C); ``offsets`` (B, P, 2) or class-aware (B, P, C, 2): distances
    to onset and offset in units of each point's stride; ``points`` (P, 4) point table
    ``[position, regression_min, regression_max, stride]`` (see detection.assign); ``mask`` (B, P);
    ``quality_logits`` (B, P, C) class-aware or (B, P, 1), or None without a quality head.
    """

    cls_logits: torch.Tensor
    offsets: torch.Tensor
    points: torch.Tensor
    mask: torch.Tensor
    quality_logits: torch.Tensor | None = None

    def scores(self) -> torch.Tensor:
        """(B, P, C) detection scores: class probabilities, times the predicted IoU with a quality head."""
        probs = self.cls_logits.float().sigmoid()
        if self.quality_logits is not None:
            probs = probs * self.quality_logits.float().sigmoid()
        return probs

    @property
    def class_aware(self) -> bool:
        return self.offsets.dim() == 4

    def segments(self) -> torch.Tensor:
        """Decoded onset/offset in finest-level step coordinates, shape of ``offsets``."""
        position, stride = self.points[:, 0], self.points[:, 3]
        if self.class_aware:
            position, stride = position[:, None], stride[:, None]
        onset = position - self.offsets[..., 0] * stride
        offset = position + self.offsets[..., 1] * stride
        return torch.stack([onset, offset], dim=-1)


class TridentBoundaries(nn.Module):
    """TriDet-style boundary distances: an expectation over ``num_bins + 1`` candidate distances.

    For a point at position t of a level and candidate distance i (in the level's steps), the
    onset logit is ``start(t - i) + relative_onset(t, i)`` and the offset logit
    ``end(t + i) + relative_offset(t, i)``; candidates outside the real steps are excluded. The
    distance is the softmax-weighted mean of i. ``start``/``end`` come from a boundary head run on
    every position (one pair per class when class-aware), the relative scores from a head at the point.

    Shapes: ``x`` (B, D, N), ``mask`` (B, N) -> distances (B, N, G, 2) with G = C class-aware or 1.
    """

    def __init__(self, embed_dim: int, *, num_groups: int, num_bins: int, num_convs: int):
        super().__init__()
        self.num_groups, self.num_bins = num_groups, num_bins
        self.boundary = PointHead(embed_dim, 2 * num_groups, num_convs=num_convs)
        self.relative = PointHead(embed_dim, 2 * (num_bins + 1), num_convs=num_convs)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, _, length = x.shape
        bins, groups = self.num_bins + 1, self.num_groups
        boundary = self.boundary(x, mask).view(batch, 2, groups, length)  # (B, 2, G, N)
        relative = self.relative(x, mask).view(batch, 2, bins, length)  # (B, 2, K, N)
        very_negative = torch.finfo(x.dtype).min / 4
        valid = mask[:, None, :].expand(batch, groups, length)
        # start(t - i): pad on the left and read windows backwards; end(t + i): pad on the right
        start = F.pad(boundary[:, 0].masked_fill(~valid, very_negative), (self.num_bins, 0), value=very_negative)
        end = F.pad(boundary[:, 1].masked_fill(~valid, very_negative), (0, self.num_bins), value=very_negative)
        start_windows = start.unfold(2, bins, 1).flip(-1)  # (B, G, N, K): index i is position t - i
        end_windows = end.unfold(2, bins, 1)  # (B, G, N, K): index i is position t + i
        onset_logits = start_windows + relative[:, 0].transpose(1, 2)[:, None]  # (B, G, N, K)
        offset_logits = end_windows + relative[:, 1].transpose(1, 2)[:, None]
        distance = torch.arange(bins, dtype=x.dtype, device=x.device)
        onset = (onset_logits.softmax(dim=-1) * distance).sum(dim=-1)  # (B, G, N)
        offset = (offset_logits.softmax(dim=-1) * distance).sum(dim=-1)
        return torch.stack([onset, offset], dim=-1).transpose(1, 2) * mask[:, :, None, None].to(x.dtype)


class TemporalDetector(nn.Module):
    """Temporal encoder plus shared classification and regression heads over a pyramid.

    ``forward(feats (B, F, N), mask (B, N))`` -> :class:`DetectorOutput`. N need not be a multiple
    of anything. The buffer ``num_positives_ema`` is the running mean of positives per batch that
    normalises the losses; it lives here so that checkpoints keep it.
    """

    def __init__(self, feature_dim: int, num_classes: int, *, embed_dim: int = 256, num_levels: int = 5,
                 num_embed_convs: int = 2, num_stem_layers: int = 2, num_heads: int = 4, window_size: int = 9,
                 mlp_ratio: float = 4.0, dropout: float = 0.0, input_dropout: float = 0.0, head_convs: int = 2,
                 class_aware_regression: bool = True, regression_ranges=None, prior_prob: float = 0.01,
                 initial_num_positives: float = 100.0, level_layers: str = "transformer", fpn_fusion: bool = False,
                 boundary_head: str = "distance", num_bins: int = 16, quality_head: bool = False):
        super().__init__()
        if boundary_head not in ("distance", "trident"):
            raise ValueError(f"boundary_head must be 'distance' or 'trident', got {boundary_head!r}")
        self.num_classes = num_classes
        self.num_levels = num_levels
        self.class_aware_regression = class_aware_regression
        ranges = regression_ranges or default_regression_ranges(num_levels)
        if len(ranges) != num_levels:
            raise ValueError(f"{len(ranges)} regression ranges for {num_levels} levels")
        self.regression_ranges = [(float(low), float(high)) for low, high in ranges]
        self.encoder = TemporalEncoder(feature_dim, embed_dim=embed_dim, num_levels=num_levels,
                                       num_embed_convs=num_embed_convs, num_stem_layers=num_stem_layers,
                                       num_heads=num_heads, window_size=window_size, mlp_ratio=mlp_ratio,
                                       dropout=dropout, input_dropout=input_dropout, level_layers=level_layers,
                                       fpn_fusion=fpn_fusion)
        self.cls_head = PointHead(embed_dim, num_classes, num_convs=head_convs,
                                  bias_init=-math.log((1 - prior_prob) / prior_prob))
        groups = num_classes if class_aware_regression else 1
        if boundary_head == "trident":
            self.reg_head = TridentBoundaries(embed_dim, num_groups=groups, num_bins=num_bins, num_convs=head_convs)
        else:
            self.reg_head = PointHead(embed_dim, 2 * groups, num_convs=head_convs)
        self.quality_head = PointHead(embed_dim, groups, num_convs=head_convs) if quality_head else None
        self.level_scales = nn.Parameter(torch.ones(num_levels))
        self.register_buffer("num_positives_ema", torch.tensor(float(initial_num_positives)))

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> DetectorOutput:
        level_feats, level_masks = self.encoder(feats, mask)
        logits, offsets, quality = [], [], []
        for level, (x, m) in enumerate(zip(level_feats, level_masks)):
            logits.append(self.cls_head(x, m).transpose(1, 2))  # (B, N_l, C)
            if isinstance(self.reg_head, TridentBoundaries):
                dist = self.reg_head(x, m)  # (B, N_l, G, 2), in the level's steps
            else:
                raw = self.reg_head(x, m).transpose(1, 2) * self.level_scales[level]
                dist = F.softplus(raw) * m[:, :, None].to(raw.dtype)
                dist = dist.reshape(dist.shape[0], dist.shape[1], -1, 2)
            offsets.append(dist if self.class_aware_regression else dist[:, :, 0])
            if self.quality_head is not None:
                quality.append(self.quality_head(x, m).transpose(1, 2))  # (B, N_l, G)
        points = pyramid_points(feats.shape[-1], regression_ranges=self.regression_ranges, device=feats.device)
        return DetectorOutput(cls_logits=torch.cat(logits, dim=1), offsets=torch.cat(offsets, dim=1),
                              points=points, mask=torch.cat(level_masks, dim=1),
                              quality_logits=torch.cat(quality, dim=1) if quality else None)
