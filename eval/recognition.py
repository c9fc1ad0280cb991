"""Recognition metrics of the MA-52 protocol: Top-k, macro/micro F1 at two levels, F1mean.

Rules and their source (the MA-52 / MAC challenge evaluation: mmaction2's ``top_k_accuracy`` and
scikit-learn's ``f1_score`` on the top-1 predictions):

- **Ranking.** Scores are ranked with ``argsort(scores)[:, ::-1]`` as the official code does; a
  stable sort is used, so among equal scores the higher class id ranks first.
- **Top-k.** A sample is a hit when its label is among its k best-ranked classes.
- **F1.** Computed on the top-1 predictions the way ``sklearn.metrics.f1_score`` does with its
  default ``labels=None``: the classes considered are those present in the labels *or* the
  predictions (a class absent from both does not exist for the metric). Macro F1 is the plain mean
  over those classes of ``2 TP / (2 TP + FP + FN)``; micro F1 pools the counts (for single-label
  data it equals top-1 accuracy). With that label set no class has a zero denominator, so
  sklearn's ``zero_division`` never applies.
- **Body level.** Body labels are the fine-to-coarse map of the action labels; body predictions
  are the map of the action predictions unless the model predicts bodies itself.
- **F1mean** = mean of action macro F1, action micro F1, body macro F1, body micro F1.
- **Mean class accuracy** is the mean of per-class recall over the classes present in the labels
  (per-class accuracy is NaN for a class without samples).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eval.errors import EvalInputError

# MA-52 action id -> body group id, the official range rule: 0-4, 5-10, 11-23, 24-31, 32-37, 38-47, 48-51
MA52_BODY_OF_ACTION: np.ndarray = np.repeat(np.arange(7), [5, 6, 13, 8, 6, 10, 4])
MA52_NUM_ACTIONS = 52
MA52_NUM_BODIES = 7


def rank_classes(scores: np.ndarray, *, k: int | None = None) -> np.ndarray:
    """Classes ranked best first: (N, C) scores -> (N, k) class ids (all C when k is None).

    Equal scores: the higher class id first (reverse of a stable ascending sort).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (N, C), got shape {scores.shape}")
    ranked = np.argsort(scores, axis=1, kind="stable")[:, ::-1]
    return ranked if k is None else ranked[:, :k]


def top_k_accuracy(ranked: np.ndarray, labels: np.ndarray, *, k: int) -> float:
    """Fraction of samples whose label is among the first k of ``ranked`` (N, >=k) class ids."""
    ranked = np.asarray(ranked)
    labels = np.asarray(labels)
    if ranked.shape[1] < k:
        raise ValueError(f"top-{k} accuracy needs at least {k} ranked classes, got {ranked.shape[1]}")
    return float(np.any(ranked[:, :k] == labels[:, None], axis=1).mean())


def f1_score(y_true: np.ndarray, y_pred: np.ndarray, *, average: str = "macro") -> float:
    """F1 of single-label predictions as ``sklearn.metrics.f1_score(y_true, y_pred, average=...)``.

    Args:
        y_true: (N,) integer labels.
        y_pred: (N,) integer predictions.
        average: "macro" (mean over the classes present in either array) or "micro".
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    classes, inverse = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
    true_idx, pred_idx = inverse[: y_true.size], inverse[y_true.size :]
    tp = np.bincount(true_idx[true_idx == pred_idx], minlength=classes.size).astype(np.float64)
    true_sum = np.bincount(true_idx, minlength=classes.size).astype(np.float64)
    pred_sum = np.bincount(pred_idx, minlength=classes.size).astype(np.float64)
    if average == "micro":
        tp, true_sum, pred_sum = tp.sum(keepdims=True), true_sum.sum(keepdims=True), pred_sum.sum(keepdims=True)
    elif average != "macro":
        raise ValueError(f"average must be 'macro' or 'micro', got {average!r}")
    return float(np.mean(2.0 * tp / (true_sum + pred_sum)))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, *, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts: row = true class, column = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """(C,) recall of each class from a (C, C) confusion matrix; NaN for a class without samples."""
    confusion = np.asarray(confusion, dtype=np.float64)
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(confusion) / np.where(support > 0, support, 1), np.nan)


@dataclass
class RecognitionResult:
    """MA-52 recognition metrics (fractions in [0, 1]).

    Attributes:
        action_top1, action_top5, body_top1: accuracies (``action_top5`` None when fewer than 5
            ranked classes were given).
        action_f1_macro, action_f1_micro, body_f1_macro, body_f1_micro: F1 scores.
        f1_mean: mean of the four F1 scores.
        mean_class_accuracy: mean action recall over classes with samples.
        per_class_accuracy: (C,) action recall, NaN for classes without samples.
        confusion: (C, C) action confusion counts (row true, column predicted).
        num_samples: N.
    """

    action_top1: float
    action_top5: float | None
    body_top1: float
    action_f1_macro: float
    action_f1_micro: float
    body_f1_macro: float
    body_f1_micro: float
    f1_mean: float
    mean_class_accuracy: float
    per_class_accuracy: np.ndarray
    confusion: np.ndarray
    num_samples: int

    def to_dict(self) -> dict:
        """The JSON report (confusion matrix as nested lists, NaN accuracies as null)."""
        return {
            "action_top1": self.action_top1,
            "action_top5": self.action_top5,
            "body_top1": self.body_top1,
            "action_f1_macro": self.action_f1_macro,
            "action_f1_micro": self.action_f1_micro,
            "body_f1_macro": self.body_f1_macro,
            "body_f1_micro": self.body_f1_micro,
            "f1_mean": self.f1_mean,
            "mean_class_accuracy": self.mean_class_accuracy,
            "per_class_accuracy": {
                str(c): (None if np.isnan(a) else float(a)) for c, a in enumerate(self.per_class_accuracy)
            },
            "confusion": self.confusion.tolist(),
            "num_samples": self.num_samples,
        }


def evaluate_recognition_ranked(
    action_ranked: np.ndarray,
    labels: np.ndarray,
    *,
    body_ranked: np.ndarray | None = None,
    body_of_action: np.ndarray = MA52_BODY_OF_ACTION,
    num_classes: int = MA52_NUM_ACTIONS,
) -> RecognitionResult:
    """Metrics from ranked predictions (the submission-file form).

    Args:
        action_ranked: (N, k) action ids, best first (k >= 1; Top-5 needs k >= 5).
        labels: (N,) true action ids.
        body_ranked: (N, k') body ids, best first; None maps the top action through
            ``body_of_action``.
        body_of_action: (num_classes,) body id of each action.
        num_classes: number of action classes (confusion size; ids must be below it).
    """
    action_ranked = np.asarray(action_ranked, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    body_of_action = np.asarray(body_of_action, dtype=np.int64)
    if action_ranked.ndim != 2 or action_ranked.shape[0] != labels.size or action_ranked.shape[1] == 0:
        raise EvalInputError(None, f"action predictions {action_ranked.shape} do not match {labels.size} labels")
    if labels.size == 0:
        raise EvalInputError(None, "no samples to evaluate")
    for what, ids in (("label", labels), ("action prediction", action_ranked)):
        if ids.min() < 0 or ids.max() >= num_classes:
            raise EvalInputError(None, f"{what} outside 0..{num_classes - 1}")
    action_top1 = action_ranked[:, 0]
    body_labels = body_of_action[labels]
    body_top1 = body_of_action[action_top1] if body_ranked is None else np.asarray(body_ranked)[:, 0]
    f1s = {
        "action_f1_macro": f1_score(labels, action_top1, average="macro"),
        "action_f1_micro": f1_score(labels, action_top1, average="micro"),
        "body_f1_macro": f1_score(body_labels, body_top1, average="macro"),
        "body_f1_micro": f1_score(body_labels, body_top1, average="micro"),
    }
    confusion = confusion_matrix(labels, action_top1, num_classes=num_classes)
    class_accuracy = per_class_accuracy(confusion)
    return RecognitionResult(
        action_top1=top_k_accuracy(action_ranked, labels, k=1),
        action_top5=top_k_accuracy(action_ranked, labels, k=5) if action_ranked.shape[1] >= 5 else None,
        body_top1=float(np.mean(body_top1 == body_labels)),
        **f1s,
        f1_mean=(f1s["action_f1_macro"] + f1s["action_f1_micro"] + f1s["body_f1_macro"] + f1s["body_f1_micro"])
        / 4.0,
        mean_class_accuracy=float(np.nanmean(class_accuracy)),
        per_class_accuracy=class_accuracy,
        confusion=confusion,
        num_samples=int(labels.size),
    )


def evaluate_recognition(
    action_scores: np.ndarray,
    labels: np.ndarray,
    *,
    body_scores: np.ndarray | None = None,
    body_of_action: np.ndarray = MA52_BODY_OF_ACTION,
) -> RecognitionResult:
    """Metrics from class scores.

    Args:
        action_scores: (N, C) scores or logits (any monotone transform gives the same result).
        labels: (N,) true action ids.
        body_scores: (N, B) body-group scores of a model that predicts bodies itself; None maps
            the top action to its body.
        body_of_action: (C,) body id of each action (the MA-52 range rule by default).
    """
    action_scores = np.asarray(action_scores, dtype=np.float64)
    if not np.all(np.isfinite(action_scores)):
        raise EvalInputError(None, "action scores contain NaN or infinity")
    body_ranked = None if body_scores is None else rank_classes(body_scores, k=1)
    return evaluate_recognition_ranked(
        rank_classes(action_scores, k=min(5, action_scores.shape[1])),
        labels,
        body_ranked=body_ranked,
        body_of_action=body_of_action,
        num_classes=action_scores.shape[1],
    )
