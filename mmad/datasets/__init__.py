"""Dataset readers and writers: one module per benchmark format, all returning plain records.

- :mod:`mmad.datasets.ma52`: MA-52 recognition lists -> :class:`~mmad.types.ClipRecord`
- :mod:`mmad.datasets.mma52`: MMA-52 CSV / ``mmad.json`` -> :class:`~mmad.types.VideoRecord`
- :mod:`mmad.datasets.imigue`: iMiGUE labels CSV -> :class:`~mmad.types.ClipRecord`
"""

from mmad.datasets.common import Problem, Records
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
    "Problem",
    "Records",
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
