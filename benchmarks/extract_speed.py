"""Clip-encoder throughput against the TSM backbone alone, on the same sampled frames.

For each setting (an architecture, a frame size and a Micro-DualNet config) the same L sampled
frames, keypoints and entity boxes (random, already cropped; decoding excluded in both columns)
go through

- **backbone alone**: the TSM-ResNet once over the whole sequence in one pass
  (``backbone(frames[None])``), nothing else;
- **extraction**: :meth:`detection.encoder.ClipEncoder.encode_frames`, the full per-step feature
  extraction (streamed backbone in chunks, ROIAlign + SEM per frame, pose stream and the dual-path
  transformers over a T-frame window centred on every frame, fused features).

Both report sampled frames per second (the best of ``--repeats`` runs, the two columns alternated,
after one warm-up run on a few frames); the ratio extraction / backbone is the figure of merit (the issue's bar: >= 0.8).
Default settings: ResNet-18 at 112 px with the MicroPuppet recipe (D = 128, one layer, T = 8) and
ResNet-50 / ResNet-101 at 224 px with the paper's recipe (D = 256, three layers, 8 heads, T = 16).

    python benchmarks/extract_speed.py                        # the three default settings
    python benchmarks/extract_speed.py --arch resnet50 --size 224 --frames 24 --threads 2
    python benchmarks/extract_speed.py --variants fp32,channels_last,bf16   # precision / memory format

With ``--variants`` the extraction column is timed once per variant (``fp32``, ``bf16``, ``fp16``:
the encoder's autocast; ``channels_last``: fp32 with the backbone in channels-last format), each
with its largest relative deviation from the fp32 features (per step, the norm of the difference
over the norm of the fp32 vector).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from detection.encoder import ClipEncoder  # noqa: E402
from mmad.config import from_dict  # noqa: E402
from recognition.config import RecognitionConfig  # noqa: E402
from recognition.model import build_model  # noqa: E402

MICROPUPPET_MODEL = {"dim": 128, "sem": {"roi_size": 3, "pose_hidden": 128},
                     "transformer": {"num_layers": 1, "num_heads": 4, "ffn_dim": 256}, "head": {"hidden_dim": 128}}
PAPER_MODEL: dict = {}  # ModelConfig defaults: D = 256, 3 layers, 8 heads, FFN 1024, ROI 7
DEFAULT_SETTINGS = (("resnet18", 112, 8, MICROPUPPET_MODEL, 64),
                    ("resnet50", 224, 16, PAPER_MODEL, 32),
                    ("resnet101", 224, 16, PAPER_MODEL, 24))


def build_encoder(arch: str, size: int, window: int, model: dict, *, chunk: int, device: torch.device,
                  precision: str = "fp32", channels_last: bool = False) -> ClipEncoder:
    cfg = from_dict(RecognitionConfig, {"model": {"modality": "rgb+pose", "backbone": {"arch": arch}, **model},
                                        "data": {"num_frames": window, "image_size": size,
                                                 "resize_short_side": size}})
    torch.manual_seed(0)
    net = build_model(cfg.model).to(device).eval()
    return ClipEncoder(net, window=window, stride_frames=4, image_size=size, resize_short_side=size,
                       keypoint_layout=cfg.model.keypoint_layout, entity_names=cfg.model.entity_names,
                       chunk_frames=chunk, window_batch=chunk, precision=precision,
                       channels_last=channels_last).to(device)


def random_inputs(length: int, size: int, *, device: torch.device):
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(length, 3, size, size, generator=g)
    keypoints = torch.rand(length, 67, 3, generator=g) * torch.tensor([size, size, 1.0])
    corner = torch.rand(length, 6, 2, generator=g) * size * 0.6
    boxes = torch.cat([corner, corner + size * (0.1 + 0.3 * torch.rand(length, 6, 2, generator=g))], dim=-1)
    return frames.to(device), keypoints.to(device), boxes.to(device)


def best_time(fn, repeats: int, device: torch.device) -> float:
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def measure(arch: str, size: int, window: int, model: dict, *, frames: int, chunk: int, repeats: int,
            device: torch.device, variant: str = "fp32", reference: torch.Tensor | None = None) -> dict:
    channels_last = variant == "channels_last"
    encoder = build_encoder(arch, size, window, model, chunk=chunk, device=device,
                            precision="fp32" if channels_last else variant, channels_last=channels_last)
    video, keypoints, boxes = random_inputs(frames, size, device=device)
    backbone = encoder.recognizer.backbone

    def backbone_alone():
        with torch.no_grad():
            backbone(video[None])

    outputs = []

    def extraction():
        outputs[:] = [encoder.encode_frames(video, keypoints, boxes)]

    with torch.no_grad():  # warm-up on a few frames
        backbone(video[None, :4])
        encoder.encode_frames(video[:4], keypoints[:4], boxes[:4])
    t_backbone = t_extract = float("inf")
    for _ in range(repeats):  # alternate the two, so that a busy spell on the machine hits both
        t_backbone = min(t_backbone, best_time(backbone_alone, 1, device))
        t_extract = min(t_extract, best_time(extraction, 1, device))
    features = outputs[0].float().cpu()
    deviation = (float(((features - reference).norm(dim=1) / reference.norm(dim=1).clamp(min=1e-12)).max())
                 if reference is not None else 0.0)
    return {"arch": arch, "size": size, "T": window, "D": encoder.token_dim, "frames": frames,
            "features": encoder.feature_dim, "backbone_fps": frames / t_backbone, "extract_fps": frames / t_extract,
            "ratio": t_backbone / t_extract, "variant": variant, "deviation": deviation, "output": features}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=("resnet18", "resnet50", "resnet101"),
                        help="one architecture (default: the three default settings)")
    parser.add_argument("--size", type=int, help="frame size in pixels (default 112 for resnet18, else 224)")
    parser.add_argument("--frames", type=int, help="sampled frames per run (default 64 / 32 / 24)")
    parser.add_argument("--window", type=int, help="T, frames per window (default 8 for resnet18, else 16)")
    parser.add_argument("--chunk", type=int, default=64, help="encoder chunk of sampled frames (default 64)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per column, alternated, best kept (default 3)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--variants", default="fp32",
                        help="comma-separated: fp32, bf16, fp16 (autocast), channels_last (default fp32)")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    unknown = set(variants) - {"fp32", "bf16", "fp16", "channels_last"}
    if unknown:
        parser.error(f"unknown variant(s): {', '.join(sorted(unknown))}")
    if variants[0] != "fp32":
        variants.insert(0, "fp32")  # the reference of the deviation column
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    settings = [s for s in DEFAULT_SETTINGS if args.arch in (None, s[0])]
    rows = []
    for arch, size, window, model, frames in settings:
        reference = None
        for variant in variants:
            row = measure(arch, args.size or size, args.window or window, model, frames=args.frames or frames,
                          chunk=args.chunk, repeats=args.repeats, device=device, variant=variant, reference=reference)
            reference = row["output"] if reference is None else reference
            rows.append(row)
    where = f"{device}" + (f", {torch.get_num_threads()} threads" if device.type == "cpu" else "")
    print(f"Clip-encoder throughput, sampled frames/s ({where}; decoding excluded in both columns)")
    header = ("arch", "size", "T", "D", "F", "frames", "variant", "backbone alone", "extraction", "ratio",
              "max deviation")
    lines = [header] + [(r["arch"], str(r["size"]), str(r["T"]), str(r["D"]), str(r["features"]), str(r["frames"]),
                         r["variant"], f"{r['backbone_fps']:.1f}", f"{r['extract_fps']:.1f}", f"{r['ratio']:.2f}",
                         f"{r['deviation']:.4f}") for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
