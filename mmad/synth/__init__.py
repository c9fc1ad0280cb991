"""MicroPuppet: the embedded synthetic micro-action data, written in the real benchmark layouts.

``generate_recognition(out, preset=..., seed=...)`` writes MA-52-style trimmed clips;
``generate_detection(out, preset=..., seed=...)`` writes MMA-52-style untrimmed videos with
overlapping multi-label instances. ``CLASSES`` lists the MA-52 ids performed, split into
``POSITION_CLASSES`` (a held pose) and ``MOTION_CLASSES`` (a periodic movement).
"""

from mmad.synth.actions import ACTION_SPECS, CLASSES, MOTION_CLASSES, POSITION_CLASSES
from mmad.synth.generate import (
    DETECTION_PRESETS,
    RECOGNITION_PRESETS,
    generate_detection,
    generate_recognition,
)

__all__ = [
    "ACTION_SPECS",
    "CLASSES",
    "DETECTION_PRESETS",
    "MOTION_CLASSES",
    "POSITION_CLASSES",
    "RECOGNITION_PRESETS",
    "generate_detection",
    "generate_recognition",
]
