"""Dataset readers and writers: one module per benchmark format, all returning plain records.

- :mod:`mmad.datasets.ma52`: MA-52 recognition lists -> :class:`~mmad.types.ClipRecord`
- :mod:`mmad.datasets.mma52`: MMA-52 CSV / ``mmad.json`` -> :class:`~mmad.types.VideoRecord`
- :mod:`mmad.datasets.imigue`: iMiGUE labels CSV -> :class:`~mmad.types.ClipRecord`
- :mod:`mmad.datasets.layout`: which format a folder or file holds (:func:`open_dataset`)
- :mod:`mmad.datasets.stats`, :mod:`mmad.datasets.check`: ``mmad data stats`` / ``mmad data check``

Readers raise :class:`~mmad.errors.DataError` naming the file, the line and the problem; with
``skip_bad=True`` they leave bad rows out and list them in the result's ``.problems``.
"""

from mmad.datasets.common import Problem, Records
from mmad.datasets.imigue import IMIGUE_TRAIN_SUBJECTS, read_imigue_csv
from mmad.datasets.layout import DatasetInfo, annotation_kind, open_dataset, read_annotation_file
from mmad.datasets.ma52 import read_ma52_list, write_ma52_list
from mmad.datasets.mma52 import (
    frame_to_seconds,
    read_detection_annotations,
    read_mma52_csv,
    read_mmad_json,
    records_from_frame,
    records_to_frame,
    seconds_to_frame,
    write_mma52_csv,
    write_mmad_json,
)

__all__ = [
    "IMIGUE_TRAIN_SUBJECTS",
    "DatasetInfo",
    "Problem",
    "Records",
    "annotation_kind",
    "open_dataset",
    "read_annotation_file",
    "read_imigue_csv",
    "frame_to_seconds",
    "read_detection_annotations",
    "read_ma52_list",
    "read_mma52_csv",
    "read_mmad_json",
    "records_from_frame",
    "records_to_frame",
    "seconds_to_frame",
    "write_ma52_list",
    "write_mma52_csv",
    "write_mmad_json",
]
