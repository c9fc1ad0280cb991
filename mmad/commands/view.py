"""``mmad view``: one self-contained HTML page showing a video with its detections.

    mmad view VIDEO --detections D.(json|csv) [--ground-truth G] [--keypoints DIR] --out page.html
"""

from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "view", help="an HTML page of a video with its detections, ground truth and pose (no server needed)",
        description="Write one HTML page that plays VIDEO above a timeline of its ground-truth and detected "
                    "micro-actions (one row per class; click a bar to go to its onset), with a score threshold "
                    "slider, class and body-group filters, a sortable table of the detections and, with "
                    "--keypoints, the skeleton and entity boxes drawn over the video. It opens from the file "
                    "system in any browser, without a server or the network. Example: mmad view "
                    "videos/val0000.mp4 --detections detect/val0000.json --ground-truth mmad.json "
                    "--keypoints keypoints/val0000 --out val0000.html")
    p.add_argument("video", metavar="VIDEO", help="the video file (H.264 MP4 or VP9 WebM play in every browser)")
    p.add_argument("--detections", required=True, metavar="D",
                   help="detections: mmad detect's JSON or CSV, a challenge CSV or an ActivityNet-style JSON")
    p.add_argument("--ground-truth", metavar="G", help="ground truth: mmad.json, an MMA-52 CSV, or a CSV "
                   "video_id,t_start,t_end,label")
    p.add_argument("--keypoints", metavar="DIR", help="the video's OpenPose JSON folder (skeleton and entity boxes)")
    p.add_argument("--video-id", help="the video's id in those files (default: the file name without suffix)")
    p.add_argument("--embed", choices=("auto", "always", "never"), default="auto",
                   help="put the video inside the page (auto: when at most 8 MiB) or refer to it by a path "
                        "relative to the page (never)")
    p.add_argument("--out", required=True, metavar="HTML", help="the page to write")
    p.set_defaults(func=run_view)


def run_view(args) -> int:
    from mmad.errors import DataError
    from mmad.viewer import read_detections, read_ground_truth, write_viewer_page

    if not Path(args.video).is_file():
        raise DataError(args.video, "video not found")
    video_id = args.video_id or Path(args.video).stem
    detections = read_detections(args.detections, video_id)
    truth = read_ground_truth(args.ground_truth, video_id) if args.ground_truth else None
    page = write_viewer_page(args.out, args.video, detections, ground_truth=truth, keypoints_dir=args.keypoints,
                             embed=args.embed, title=video_id)
    extra = f", {len(truth)} ground-truth instances" if truth is not None else ""
    print(f"{video_id}: {len(detections)} detections{extra} -> {page}")
    return 0
