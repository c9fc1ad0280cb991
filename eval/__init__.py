"""Official-protocol metrics: recognition (Top-k, F1mean), detection (AP at tIoU), frame-mAP.

numpy/pandas only (matplotlib for the heatmap, imported when drawing); neither torch nor the
``mmad`` package is imported, so scores and tables from anywhere can be evaluated.
"""

from eval.detection import (
    DEFAULT_TIOU_THRESHOLDS,
    DetectionResult,
    evaluate_detection,
    interpolated_average_precision,
    parse_tiou_range,
    segment_tiou,
)
from eval.errors import EvalInputError
from eval.frames import FrameMapResult, frame_map, frame_map_from_dense, frame_map_from_detections
from eval.io import (
    ma52_submission_from_scores,
    read_detection_predictions,
    read_ma52_submission,
    write_confusion_csv,
    write_detection_predictions,
    write_ma52_submission,
)
from eval.recognition import (
    MA52_BODY_OF_ACTION,
    RecognitionResult,
    confusion_matrix,
    evaluate_recognition,
    evaluate_recognition_ranked,
    f1_score,
    rank_classes,
    top_k_accuracy,
)

__all__ = [
    "DEFAULT_TIOU_THRESHOLDS",
    "MA52_BODY_OF_ACTION",
    "DetectionResult",
    "EvalInputError",
    "FrameMapResult",
    "RecognitionResult",
    "confusion_matrix",
    "evaluate_detection",
    "evaluate_recognition",
    "evaluate_recognition_ranked",
    "f1_score",
    "frame_map",
    "frame_map_from_dense",
    "frame_map_from_detections",
    "interpolated_average_precision",
    "ma52_submission_from_scores",
    "parse_tiou_range",
    "rank_classes",
    "read_detection_predictions",
    "read_ma52_submission",
    "segment_tiou",
    "top_k_accuracy",
    "write_confusion_csv",
    "write_detection_predictions",
    "write_ma52_submission",
]
