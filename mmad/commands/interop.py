"""``mmad recognize``: classify one clip; ``mmad export``: a recognizer as TorchScript or ONNX.

    mmad recognize VIDEO --checkpoint K [--keypoints DIR] [--top-k 5] [--views 1x1] [--json]
    mmad export --checkpoint K --out FILE.pt|FILE.onnx [--frames T] [--size S]

The stage code (torch, the models) is imported inside the handlers.
"""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "recognize", help="classify one clip with a trained recognizer (top-k classes)",
        description="Classify one clip with a recognition checkpoint, through the same test-time pipeline as "
                    "'mmad recognition test', and print its top-k classes with their probabilities. "
                    "Example: mmad recognize clip.mp4 --checkpoint runs/rec/best.pt --keypoints clip_openpose/")
    p.add_argument("video", metavar="VIDEO", help="the clip's video file")
    p.add_argument("--checkpoint", required=True, metavar="K", help="a checkpoint of 'mmad recognition train'")
    p.add_argument("--keypoints", metavar="DIR", help="the clip's OpenPose JSON folder (pose models need it)")
    p.add_argument("--top-k", type=int, default=5, help="how many classes to print (default 5)")
    p.add_argument("--views", default="1x1", help="test views CLIPSxCROPS (default 1x1)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.set_defaults(func=run_recognize)

    p = subparsers.add_parser(
        "export", help="export a recognizer to TorchScript (.pt) or ONNX (.onnx)",
        description="Export a recognition checkpoint as a self-contained model taking (frames, keypoints, boxes, "
                    "entity_conf) tensors and returning class logits. The file type follows --out's suffix: "
                    ".pt TorchScript (traced), .onnx ONNX. The export is checked against the eager model on a "
                    "random clip before it is kept. "
                    "Example: mmad export --checkpoint runs/rec/best.pt --out rec.ts.pt")
    p.add_argument("--checkpoint", required=True, metavar="K", help="a checkpoint of 'mmad recognition train'")
    p.add_argument("--out", required=True, metavar="FILE", help="output file (.pt TorchScript, .onnx ONNX)")
    p.add_argument("--frames", type=int, help="T of the exported input (default: the config's data.num_frames)")
    p.add_argument("--size", type=int, help="S of the exported input (default: the config's data.image_size)")
    p.set_defaults(func=run_export)


def run_recognize(args) -> int:
    import json

    from recognition.api import Recognizer
    from recognition.task import parse_views

    rec = Recognizer.from_checkpoint(args.checkpoint, device=args.device)
    table = rec.predict(args.video, keypoints=args.keypoints, top_k=args.top_k, views=parse_views(args.views))
    if args.json:
        print(json.dumps({"video": str(args.video), "checkpoint": str(args.checkpoint),
                          "predictions": table.to_dict(orient="records")}))
    else:
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def run_export(args) -> int:
    from recognition.export import export_recognizer

    report = export_recognizer(args.checkpoint, args.out, num_frames=args.frames, image_size=args.size)
    print(f"wrote {report.path} ({report.format}); max |logit difference| vs eager = {report.max_abs_diff:.2e}")
    return 0
