"""Prediction and submission files: readers that check every row, and writers.

- MMA-52 detection CSV (the challenge format): ``,video_id,t_start,t_end,class,score``, times in
  seconds, one row per predicted segment.
- ActivityNet-style JSON: ``{"results": {video_id: [{"segment": [s, e], "label": L, "score": p}, ...]}}``;
  ``label`` an integer id or a class name (mapped through ``class_names``).
- MA-52 recognition submission CSV: ``vid,action_pred_1..5,body_pred_1..5``, best first.

Readers raise :class:`~eval.errors.EvalInputError` naming the file, the line (CSV; the header is
line 1) or JSON entry, and the problem.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from eval.errors import EvalInputError
from eval.recognition import MA52_BODY_OF_ACTION, MA52_NUM_ACTIONS, MA52_NUM_BODIES

DETECTION_CSV_COLUMNS = ("video_id", "t_start", "t_end", "class", "score")
MA52_SUBMISSION_COLUMNS = (
    ("vid",) + tuple(f"action_pred_{k}" for k in range(1, 6)) + tuple(f"body_pred_{k}" for k in range(1, 6))
)


def _read_csv(path: Path, *, string_columns: Sequence[str], allow_empty: bool = False) -> pd.DataFrame:
    """``pd.read_csv`` with one-line errors; a header without rows is an error unless ``allow_empty``."""
    if path.is_dir():
        raise EvalInputError(path, "is a folder, not a CSV file")
    try:
        table = pd.read_csv(path, dtype={c: str for c in string_columns})
    except pd.errors.EmptyDataError:
        raise EvalInputError(path, "empty file") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise EvalInputError(path, f"not a readable CSV ({str(e).splitlines()[0]})") from None
    if len(table) == 0 and not allow_empty:
        raise EvalInputError(path, "no rows after the header")
    return table


def _shown(value) -> str:
    """A cell as the user wrote it: "missing" for an empty cell."""
    return "missing" if pd.isna(value) else str(value)


def _first_bad(mask: np.ndarray) -> int | None:
    bad = np.flatnonzero(mask)
    return int(bad[0]) if bad.size else None


def _check_detection_table(
    table: pd.DataFrame, path: Path, locate, *, num_classes: int | None
) -> pd.DataFrame:
    """Validate columns video_id, t_start, t_end, label, score; ``locate(i)`` names row i."""
    out = pd.DataFrame({"video_id": table["video_id"]})
    missing_id = _first_bad(table["video_id"].isna().to_numpy() | (table["video_id"].astype(str).str.strip() == ""))
    if missing_id is not None:
        raise EvalInputError(path, "missing video_id", locate(missing_id))
    out["video_id"] = table["video_id"].astype(str)
    for name in ("t_start", "t_end", "label", "score"):
        raw = table[name]
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        row = _first_bad(~np.isfinite(values))
        if row is not None:
            problem = "missing" if pd.isna(raw.iloc[row]) else f"not a finite number ({_shown(raw.iloc[row])})"
            raise EvalInputError(path, f"{name} {problem}", locate(row))
        out[name] = values
    row = _first_bad(out["score"].to_numpy() < 0)
    if row is not None:
        raise EvalInputError(path, f"negative score {out['score'].iloc[row]}", locate(row))
    row = _first_bad(out["t_end"].to_numpy() < out["t_start"].to_numpy())
    if row is not None:
        raise EvalInputError(
            path, f"segment ends before it starts ({out['t_start'].iloc[row]} > {out['t_end'].iloc[row]})", locate(row)
        )
    label = out["label"].to_numpy()
    row = _first_bad(label != np.round(label))
    if row is not None:
        raise EvalInputError(path, f"class {label[row]} is not an integer", locate(row))
    upper = np.inf if num_classes is None else num_classes
    row = _first_bad((label < 0) | (label >= upper))
    if row is not None:
        allowed = "a non-negative id" if num_classes is None else f"0..{num_classes - 1}"
        raise EvalInputError(path, f"class {int(label[row])} out of range (expected {allowed})", locate(row))
    out["label"] = label.astype(np.int64)
    return out.reset_index(drop=True)


def read_detection_predictions(
    path: str | os.PathLike,
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read detections from the MMA-52 challenge CSV or an ActivityNet-style JSON (by suffix).

    Args:
        path: ``.csv`` (``,video_id,t_start,t_end,class,score``; ``label`` accepted for ``class``)
            or ``.json``.
        num_classes: class ids must lie in 0..num_classes-1.
        class_names: names for JSON labels given as text.
    Returns:
        DataFrame ``video_id, t_start, t_end, label, score`` (N rows, file order). A file with a
        header and no rows (JSON: no detections) is a legal, empty submission: N = 0.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        return _read_detection_json(path, num_classes=num_classes, class_names=class_names)
    table = _read_csv(path, string_columns=("video_id",), allow_empty=True)
    if "class" not in table.columns and "label" in table.columns:
        table = table.rename(columns={"label": "class"})
    missing = [c for c in DETECTION_CSV_COLUMNS if c not in table.columns]
    if missing:
        raise EvalInputError(path, f"missing column(s) {', '.join(missing)} (have {', '.join(map(str, table.columns))})",
                             "line 1")
    table = table.rename(columns={"class": "label"})
    return _check_detection_table(table, path, lambda i: f"line {i + 2}", num_classes=num_classes)


def _read_detection_json(path: Path, *, num_classes, class_names) -> pd.DataFrame:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        problem = "empty file" if e.pos == 0 and not path.read_text(encoding="utf-8").strip() else f"invalid JSON ({e.msg})"
        raise EvalInputError(path, problem, f"line {e.lineno}" if problem != "empty file" else None) from None
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict):
        raise EvalInputError(path, "expected an object with a 'results' mapping video id -> list of detections")
    name_to_id = {n: i for i, n in enumerate(class_names or ())}
    rows, where = [], []
    for vid, detections in results.items():
        if not isinstance(detections, list):
            raise EvalInputError(path, "expected a list of detections", f"results[{vid!r}]")
        for i, det in enumerate(detections):
            loc = f"results[{vid!r}][{i}]"
            if not isinstance(det, dict) or not {"segment", "label", "score"} <= det.keys():
                raise EvalInputError(path, "a detection needs 'segment', 'label' and 'score'", loc)
            segment = det["segment"]
            if not isinstance(segment, list | tuple) or len(segment) != 2:
                raise EvalInputError(path, "'segment' must be [t_start, t_end]", loc)
            label = det["label"]
            if isinstance(label, str) and not label.strip().lstrip("-").isdigit():
                if label not in name_to_id:
                    raise EvalInputError(path, f"unknown class name {label!r}", loc)
                label = name_to_id[label]
            rows.append((str(vid), segment[0], segment[1], label, det["score"]))
            where.append(loc)
    table = pd.DataFrame(rows, columns=["video_id", "t_start", "t_end", "label", "score"])
    table[["t_start", "t_end", "label", "score"]] = table[["t_start", "t_end", "label", "score"]].apply(
        pd.to_numeric, errors="coerce"
    )
    return _check_detection_table(table, path, lambda i: where[i], num_classes=num_classes)


def write_detection_predictions(path: str | os.PathLike, predictions: pd.DataFrame) -> Path:
    """Write detections as the challenge CSV (``.csv``) or ActivityNet-style JSON (``.json``).

    Args:
        predictions: ``video_id, t_start, t_end, label, score`` (seconds).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = predictions[["video_id", "t_start", "t_end", "label", "score"]].reset_index(drop=True)
    if path.suffix.lower() == ".json":
        results: dict[str, list] = {}
        for vid, s, e, label, score in table.itertuples(index=False):
            results.setdefault(str(vid), []).append(
                {"segment": [float(s), float(e)], "label": int(label), "score": float(score)}
            )
        path.write_text(json.dumps({"results": results}), encoding="utf-8")
    else:
        table.rename(columns={"label": "class"}).to_csv(path, index=True)
    return path


def read_ma52_submission(
    path: str | os.PathLike, *, num_actions: int = MA52_NUM_ACTIONS, num_bodies: int = MA52_NUM_BODIES
) -> pd.DataFrame:
    """Read an MA-52 recognition submission: ``vid,action_pred_1..5,body_pred_1..5``.

    Returns:
        DataFrame with ``vid`` (str) and the ten prediction columns as int64, file order.
    """
    path = Path(path)
    table = _read_csv(path, string_columns=("vid",))
    missing = [c for c in MA52_SUBMISSION_COLUMNS if c not in table.columns]
    if missing:
        raise EvalInputError(path, f"missing column(s) {', '.join(missing)}", "line 1")
    out = pd.DataFrame({"vid": table["vid"].astype(str)})
    row = _first_bad(table["vid"].isna().to_numpy())
    if row is not None:
        raise EvalInputError(path, "missing vid", f"line {row + 2}")
    row = _first_bad(out["vid"].duplicated().to_numpy())
    if row is not None:
        raise EvalInputError(path, f"duplicate vid {out['vid'].iloc[row]!r}", f"line {row + 2}")
    for name in MA52_SUBMISSION_COLUMNS[1:]:
        values = pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=np.float64)
        upper = num_actions if name.startswith("action") else num_bodies
        row = _first_bad(~np.isfinite(values) | (values != np.round(values)) | (values < 0) | (values >= upper))
        if row is not None:
            raise EvalInputError(
                path, f"{name} = {_shown(table[name].iloc[row])}, expected an integer in 0..{upper - 1}",
                f"line {row + 2}",
            )
        out[name] = values.astype(np.int64)
    return out


def ma52_submission_from_scores(
    video_ids: Sequence[str],
    action_scores: np.ndarray,
    *,
    body_scores: np.ndarray | None = None,
    body_of_action: np.ndarray = MA52_BODY_OF_ACTION,
) -> pd.DataFrame:
    """Build the submission table from scores.

    Args:
        video_ids: N file names (``SSSS_BB_NNNN.mp4``).
        action_scores: (N, 52) action scores.
        body_scores: (N, 7) body scores; None scores each body group by its best action, so the
            top body is the group of the top action.
    Returns:
        DataFrame with the columns of :data:`MA52_SUBMISSION_COLUMNS`.
    """
    from eval.recognition import rank_classes

    action_scores = np.asarray(action_scores, dtype=np.float64)
    if body_scores is None:
        num_bodies = int(np.max(body_of_action)) + 1
        body_scores = np.full((action_scores.shape[0], num_bodies), -np.inf)
        for b in range(num_bodies):
            body_scores[:, b] = action_scores[:, body_of_action == b].max(axis=1)
    action_top5 = rank_classes(action_scores, k=5)
    body_top5 = rank_classes(body_scores, k=5)
    table = pd.DataFrame({"vid": [str(v) for v in video_ids]})
    for k in range(5):
        table[f"action_pred_{k + 1}"] = action_top5[:, k]
    for k in range(5):
        table[f"body_pred_{k + 1}"] = body_top5[:, k]
    return table


def write_ma52_submission(path: str | os.PathLike, submission: pd.DataFrame) -> Path:
    """Write a submission table (see :func:`ma52_submission_from_scores`) as CSV, no index."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    submission[list(MA52_SUBMISSION_COLUMNS)].to_csv(path, index=False)
    return path


def write_confusion_csv(
    path: str | os.PathLike, confusion: np.ndarray, *, class_names: Sequence[str] | None = None
) -> Path:
    """Write a (C, C) confusion matrix as CSV: rows true class, columns predicted class."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    confusion = np.asarray(confusion)
    names = list(class_names) if class_names is not None else [str(c) for c in range(confusion.shape[0])]
    pd.DataFrame(confusion, index=pd.Index(names, name="true\\predicted"), columns=names).to_csv(path)
    return path
