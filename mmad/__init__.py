"""mmad: micro-action understanding toolkit (foundation package).

Holds the data layer (label sets, readers, keypoints, entity boxes, video sampling,
MicroPuppet synthetic data), the typed configs, the shared training engine and the
``mmad`` command line. Nothing here imports :mod:`recognition` or :mod:`detection`
except :mod:`mmad.cli`.
"""

from mmad.errors import DataError

__all__ = ["DataError"]
__version__ = "0.1.0"
