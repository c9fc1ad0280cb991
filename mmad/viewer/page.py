"""Write the viewer page: the template of this package with one video's data injected as JSON.

The page (``template.html``) needs no server and no network: open it from the file system. The
data object it receives::

    {"title", "video": URL relative to the page or a data: URL, "fps", "duration", "num_frames",
     "width", "height",
     "classes": {label: {"name", "group"}},
     "detections": [{"label", "t_start", "t_end", "score"}, ...],          # best first
     "ground_truth": [{"label", "t_start", "t_end"}, ...] or [],
     "keypoints": {"edges": [[a, b], ...], "frames": [[[x, y, conf], ...], ...]} or null,
     "boxes": {"names": [...], "frames": [[[x1, y1, x2, y2] or null, ...], ...]} or null}

Times are seconds; keypoints and boxes are pixels of the video frame. Keypoint frame ``f`` is
shown for ``f / fps <= t < (f + 1) / fps``.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from mmad.errors import DataError

TEMPLATE = Path(__file__).with_name("template.html")
DATA_MARKER = "/*MMAD_DATA*/null"
EMBED_LIMIT_BYTES = 8 * 1024 * 1024
VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm", ".ogv": "video/ogg", ".mov": "video/mp4"}

# OpenPose BODY_25 limbs (joint indices of mmad.keypoints' "body25" layout).
BODY25_EDGES: tuple[tuple[int, int], ...] = (
    (1, 0), (0, 15), (15, 17), (0, 16), (16, 18), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8),
    (8, 9), (9, 10), (10, 11), (11, 22), (22, 23), (11, 24), (8, 12), (12, 13), (13, 14), (14, 19), (19, 20),
    (14, 21),
)
LAYOUT_BY_JOINTS = {25: "body25", 67: "body25_hands", 137: "body25_hands_face"}


def label_set(labels) -> dict[int, dict[str, str | None]]:
    """Names and body groups of class ids: MA-52's when every id is below 52, else ``class <i>``."""
    from mmad.taxonomy import MA52_ACTIONS, MA52_BODY_GROUPS, fine2coarse_table

    labels = sorted({int(x) for x in labels})
    if all(0 <= x < len(MA52_ACTIONS) for x in labels):
        groups = fine2coarse_table()
        return {x: {"name": MA52_ACTIONS[x], "group": MA52_BODY_GROUPS[int(groups[x])]} for x in labels}
    return {x: {"name": f"class {x}", "group": None} for x in labels}


def read_detections(path: str | os.PathLike, video_id: str) -> pd.DataFrame:
    """Detections of one video from ``mmad detect``'s JSON or CSV, a challenge CSV or ActivityNet JSON.

    Returns columns ``label, t_start, t_end, score`` (best first). A file that holds other videos but
    not ``video_id`` is an error naming the file.
    """
    from eval.errors import EvalInputError
    from eval.io import read_detection_predictions

    path = Path(path)
    if path.suffix.lower() == ".json":
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DataError(path, f"not a readable JSON file ({e})") from None
        if isinstance(record, dict) and "detections" in record:  # mmad detect's own file
            rows = record["detections"]
            table = pd.DataFrame({"video_id": str(record.get("video_id", video_id)),
                                  "label": [r.get("class_id", r.get("label")) for r in rows],
                                  "t_start": [r.get("t_start") for r in rows], "t_end": [r.get("t_end") for r in rows],
                                  "score": [r.get("score") for r in rows]})
            if table[["label", "t_start", "t_end", "score"]].isna().any().any():
                raise DataError(path, "a detection lacks class_id, t_start, t_end or score")
        else:
            table = None
    else:
        table = None
    if table is None:
        try:
            table = read_detection_predictions(path)
        except EvalInputError as e:
            raise DataError(e.path, e.problem, e.where) from None
    ids = table["video_id"].astype(str)
    if len(table) and not (ids == video_id).any():
        if ids.nunique() == 1:
            raise DataError(path, f"holds the detections of video {ids.iloc[0]!r}, not {video_id!r} (see --video-id)")
        raise DataError(path, f"no detections of video {video_id!r}")
    table = table[ids == video_id]
    table = table.astype({"label": int, "t_start": float, "t_end": float, "score": float})
    return table.sort_values("score", ascending=False, kind="stable")[["label", "t_start", "t_end", "score"]]


def read_ground_truth(path: str | os.PathLike, video_id: str) -> pd.DataFrame:
    """Ground truth of one video from mmad.json / an MMA-52 CSV, or a CSV ``video_id,t_start,t_end,label``."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        header = pd.read_csv(path, nrows=0).columns
        if {"t_start", "t_end", "label"} <= set(header):  # e.g. mmad demo's <video>_ground_truth.csv
            table = pd.read_csv(path, dtype={"video_id": str})
            if "video_id" in table:
                table = table[table["video_id"].astype(str) == video_id]
            return table[["label", "t_start", "t_end"]].astype({"label": int, "t_start": float, "t_end": float})
    from mmad.datasets.mma52 import read_detection_annotations

    for record in read_detection_annotations(path):
        if record.video_id == video_id:
            return pd.DataFrame([(s.label, s.t_start, s.t_end) for s in record.segments],
                                columns=["label", "t_start", "t_end"])
    raise DataError(path, f"no video {video_id!r} in this annotation file")


def pose_overlay(keypoints_dir: str | os.PathLike, *, frame_size: tuple[int, int], num_frames: int,
                 entities: str = "k6") -> tuple[dict, dict]:
    """The keypoint and entity-box overlays of an OpenPose JSON folder (see the module text)."""
    from mmad.entities import entity_boxes, resolve_entities
    from mmad.keypoints import read_openpose_folder

    keypoints = read_openpose_folder(keypoints_dir, frame_size=frame_size, num_frames=num_frames)  # (T, J, 3)
    layout = LAYOUT_BY_JOINTS.get(keypoints.shape[1])
    if layout is None:
        raise DataError(keypoints_dir, f"{keypoints.shape[1]} joints per frame: not an OpenPose BODY_25 layout")
    frames = np.round(keypoints, 2).tolist()
    boxes, confidence = entity_boxes(keypoints, layout, entities=entities, frame_size=frame_size)  # (T, K, 4), (T, K)
    box_frames = [[np.round(b, 1).tolist() if c > 0 else None for b, c in zip(frame_boxes, frame_conf)]
                  for frame_boxes, frame_conf in zip(boxes, confidence)]
    return ({"edges": [list(e) for e in BODY25_EDGES], "frames": frames},
            {"names": list(resolve_entities(entities)), "frames": box_frames})


def video_source(video: Path, page: Path, embed: str) -> str:
    """The page's ``src`` for ``video``: a data: URL (embed ``always``, or ``auto`` under 8 MiB) or a relative path."""
    size = video.stat().st_size
    if embed == "always" or (embed == "auto" and size <= EMBED_LIMIT_BYTES):
        kind = VIDEO_TYPES.get(video.suffix.lower(), "video/mp4")
        return f"data:{kind};base64," + base64.b64encode(video.read_bytes()).decode("ascii")
    relative = os.path.relpath(video.resolve(), page.resolve().parent)
    return quote(Path(relative).as_posix())


def render_page(data: dict) -> str:
    """The template with ``data`` injected (``</`` escaped so no string can close the script)."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    template = TEMPLATE.read_text(encoding="utf-8")
    if DATA_MARKER not in template:
        raise RuntimeError(f"{TEMPLATE} lacks the data marker {DATA_MARKER!r}")
    return template.replace(DATA_MARKER, text, 1)


def write_viewer_page(
    out: str | os.PathLike,
    video: str | os.PathLike,
    detections: pd.DataFrame,
    *,
    ground_truth: pd.DataFrame | None = None,
    keypoints_dir: str | os.PathLike | None = None,
    embed: str = "auto",
    title: str | None = None,
) -> Path:
    """Write the viewer page of one video to ``out`` (atomically) and return its path.

    Args:
        out: the HTML file to write.
        video: the video file (H.264 MP4 and VP9 WebM play in Chromium and Firefox).
        detections: table ``label, t_start, t_end, score`` in seconds (extra columns ignored).
        ground_truth: table ``label, t_start, t_end``, or None.
        keypoints_dir: the video's OpenPose JSON folder for the skeleton and entity-box overlays.
        embed: ``auto`` (embed a video up to 8 MiB), ``always`` or ``never`` (a path relative to the page).
        title: the page title (default: the video's file stem).
    """
    from mmad.fileio import atomic_write_text
    from mmad.video import probe

    if embed not in ("auto", "always", "never"):
        raise ValueError(f"embed must be auto, always or never, got {embed!r}")
    out, video = Path(out), Path(video)
    if not video.is_file():
        raise DataError(video, "video not found")
    info = probe(video)
    truth = ground_truth if ground_truth is not None else pd.DataFrame(columns=["label", "t_start", "t_end"])
    labels = list(detections["label"]) + list(truth["label"])
    data = {
        "title": title or video.stem,
        "video": video_source(video, out, embed),
        "fps": info.fps, "duration": info.duration, "num_frames": info.num_frames,
        "width": info.width, "height": info.height,
        "classes": {str(k): v for k, v in label_set(labels).items()},
        "detections": [{"label": int(r.label), "t_start": round(float(r.t_start), 4), "t_end": round(float(r.t_end), 4),
                        "score": round(float(r.score), 6)} for r in detections.itertuples(index=False)],
        "ground_truth": [{"label": int(r.label), "t_start": round(float(r.t_start), 4),
                          "t_end": round(float(r.t_end), 4)} for r in truth.itertuples(index=False)],
        "keypoints": None, "boxes": None,
    }
    if keypoints_dir is not None:
        data["keypoints"], data["boxes"] = pose_overlay(keypoints_dir, frame_size=(info.width, info.height),
                                                        num_frames=info.num_frames)
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(out, render_page(data))
