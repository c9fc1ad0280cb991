"""How far the streamed encoder's features are from per-window recognizer features (TSM at window edges).

The clip encoder streams the TSM backbone over all sampled frames of a video (one stream per phase
of the window dilation), so the temporal shift at a window's first and last frame mixes in the real
neighbouring frames; the recognizer was trained on clips whose shift saw zero padding there. This
script runs both on the same windows of MicroPuppet detection videos and prints:

- per window position (first frame, interior frames, last frame): the relative difference
  ``||streamed - per-window|| / ||per-window||`` of the backbone's per-frame global feature (spatial
  mean of the last feature map);
- per step and feature part (global C, fused entity D): the relative difference and cosine
  similarity of the step features, mean / median / 95th percentile over steps, and for scale the
  relative change between neighbouring steps of the per-window features (how much the features move
  from one step to the next, what the head reads as change over time).

    python benchmarks/encoder_window_edges.py --data DIR [--recognizer K] [--videos 6] [--stride 4]

DIR is a MicroPuppet detection folder (``mmad data synth detection``). Without ``--recognizer`` a
randomly initialised ResNet-18 rgb+pose Micro-DualNet (64 px, T = 8) is used.

Measured (2-core CPU, ``clocks`` preset seed 0, T = 8, stride 4, dilation 1; a ResNet-18 rgb+pose
recognizer trained 2 epochs on the ``small`` recognition preset at 64 px, val Top-1 0.07, since an
rgb model to convergence is beyond this machine; random weights gave the same picture):

==========================  =========  =====================================================
backbone global, by frame   rel. diff  first 0.36, next 0.09, 0.016, centre 0.003, ..., last 0.38
step feature, global (C)    0.107      cosine >= 0.992; neighbouring steps differ by 0.006
step feature, entity (D)    0.113      cosine >= 0.985; neighbouring steps differ by 0.023
==========================  =========  =====================================================

Verdict: the streamed features are a near-constant offset from per-window ones (p95 0.115 against
a mean of 0.107, cosine >= 0.985): the edge frames differ by a third and the effect fades within
two frames of the window edges. The offset is far larger than the change from one step to the next,
but it is the same at every step and the same when the head trains and when it predicts, so it
blurs no boundary; it is a shift of the input distribution the recognizer's transformers saw in
training. A per-window backbone would remove it at T times the backbone cost (8 to 16x); it is not
worth that unless a converged rgb recognizer shows a detection gain (not measured here).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from detection.config import EncoderConfig  # noqa: E402
from detection.encoder import ClipEncoder, read_video_keypoints  # noqa: E402


def random_encoder(stride: int) -> ClipEncoder:
    from mmad.config import from_dict
    from recognition.config import RecognitionConfig
    from recognition.model import build_model

    cfg = from_dict(RecognitionConfig, {
        "model": {"modality": "rgb+pose", "backbone": {"arch": "resnet18"}, "dim": 128,
                  "sem": {"roi_size": 3, "pose_hidden": 128},
                  "transformer": {"num_layers": 1, "num_heads": 4, "ffn_dim": 256}, "head": {"hidden_dim": 128}},
        "data": {"num_frames": 8, "frame_stride": stride, "image_size": 64, "resize_short_side": 72}})
    torch.manual_seed(0)
    net = build_model(cfg.model).eval()
    return ClipEncoder(net, window=8, stride_frames=stride, image_size=64, resize_short_side=72,
                       keypoint_layout=cfg.model.keypoint_layout, entity_names=cfg.model.entity_names)


def video_arrays(encoder: ClipEncoder, video: Path, keypoint_folder: Path):
    """Cropped sampled frames (L, 3, S, S), keypoints (L, J, 3) and boxes (L, K, 4) of one video."""
    from mmad.video import probe

    info = probe(video)
    keypoints = read_video_keypoints(keypoint_folder, layout=encoder.keypoint_layout, num_frames=info.num_frames,
                                     frame_size=(info.width, info.height))
    chunks = list(encoder.video_chunks(video, keypoints, info=info))
    return tuple(torch.cat([torch.as_tensor(c[i]) for c in chunks]).float() for i in range(3))


@torch.no_grad()
def compare(encoder: ClipEncoder, frames, keypoints, boxes) -> dict[str, np.ndarray]:
    backbone = encoder.recognizer.backbone
    length, d = frames.shape[0], encoder.window_dilation
    streamed = encoder.encode_frames(frames, keypoints, boxes)  # (N, F)
    whole = torch.zeros(length, backbone.out_channels)  # per-frame global features, streamed (per phase)
    for p in range(d):
        whole[p::d] = backbone(frames[p::d][None])[0].mean(dim=(2, 3))
    offsets = encoder.window_offsets.cpu()
    window_rows, position_rows = [], []
    for step in range(length):
        index = (step + offsets).clamp(0, length - 1)
        maps = backbone(frames[index][None])[0]  # the window alone: zero padding at its edges
        global_features, tokens = encoder.frame_tables(maps, boxes[index])
        window_rows.append(encoder.window_features(keypoints=keypoints[index][None], boxes=boxes[index][None],
                                                   rgb_tokens=tokens[None], global_features=global_features[None])[0])
        if (offsets + step >= 0).all() and (offsets + step < length).all():  # unclamped windows only
            diff = (global_features - whole[index]).norm(dim=1) / whole[index].norm(dim=1).clamp(min=1e-8)
            position_rows.append(diff)
    per_window = torch.stack(window_rows)
    return {"streamed": streamed.numpy(), "per_window": per_window.numpy(),
            "positions": torch.stack(position_rows).numpy() if position_rows else np.zeros((0, len(offsets)))}


def summary(values: np.ndarray) -> str:
    return f"{values.mean():8.4f} {np.median(values):8.4f} {np.percentile(values, 95):8.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a MicroPuppet detection folder")
    parser.add_argument("--recognizer", help="a recognition checkpoint (rgb or rgb+pose); default: random weights")
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--stride", type=int, default=4, help="encoder.stride_frames")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.recognizer:
        encoder = ClipEncoder.from_checkpoint(args.recognizer, encoder_cfg=EncoderConfig(stride_frames=args.stride),
                                              device="cpu")
    else:
        encoder = random_encoder(args.stride)
    if not encoder.uses_rgb:
        sys.exit("the recognizer has no rgb backbone: there is no temporal shift to compare")
    root = Path(args.data)
    videos = sorted((root / "videos").glob("*.mp4"))[: args.videos]
    results = [compare(encoder, *video_arrays(encoder, v, root / "keypoints" / v.stem)) for v in videos]
    channels = encoder.recognizer.backbone.out_channels
    parts = {"global (C)": slice(0, channels), "entity (D)": slice(channels, channels + encoder.token_dim),
             "whole step": slice(None)}
    print(f"recognizer: {args.recognizer or 'random weights'}; {len(videos)} videos; window {encoder.window}, "
          f"dilation {encoder.window_dilation}, stride {encoder.stride_frames} frames")
    positions = np.concatenate([r["positions"] for r in results])
    print("\nbackbone per-frame global feature, relative difference streamed vs per-window, by window position")
    print(f"{'position':<12}{'mean':>8} {'median':>8} {'p95':>8}")
    for i in range(positions.shape[1]):
        name = "first" if i == 0 else "last" if i == positions.shape[1] - 1 else f"interior {i}"
        print(f"{name:<12}{summary(positions[:, i])}")
    print("\nstep features: relative difference and cosine (streamed vs per-window), and the relative change "
          "between neighbouring steps (per-window) for scale")
    print(f"{'part':<12}{'diff mean':>9} {'median':>8} {'p95':>8} | {'cosine min':>10} | {'step change mean':>16} {'median':>8}")
    for name, part in parts.items():
        diffs, cosines, changes = [], [], []
        for r in results:
            a, b = r["streamed"][:, part], r["per_window"][:, part]
            diffs.append(np.linalg.norm(a - b, axis=1) / np.maximum(np.linalg.norm(b, axis=1), 1e-8))
            cosines.append((a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-8))
            changes.append(np.linalg.norm(b[1:] - b[:-1], axis=1) / np.maximum(np.linalg.norm(b[:-1], axis=1), 1e-8))
        diff, cosine, change = np.concatenate(diffs), np.concatenate(cosines), np.concatenate(changes)
        print(f"{name:<12}{summary(diff)} | {cosine.min():10.4f} | {change.mean():16.4f} {np.median(change):8.4f}")


if __name__ == "__main__":
    main()
