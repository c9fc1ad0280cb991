"""Label sets of the micro-action benchmarks, built in (no file needed).

- MA-52: 52 fine actions (ids 0-51, the order of the official ``label_name.txt``) grouped into
  7 body groups by the official fine-to-coarse range rule: 0-4 body, 5-10 head, 11-23 upper limb,
  24-31 lower limb, 32-37 body-hand, 38-47 head-hand, 48-51 leg-hand.
- MMA-52 uses the MA-52 classes.
- iMiGUE: 32 micro-gesture classes (0-based MiGA names); raw label ids in the annotation CSV are
  1-31 and 99, mapped as ``c - 1`` for 1-31 and ``99 -> 31`` ("illustrative").

The tests check these tables against the real label files when they are available.
"""

from __future__ import annotations

import numpy as np

from mmad.errors import DataError

MA52_ACTIONS: tuple[str, ...] = (
    "shaking body",
    "sitting straightly",
    "shrugging",
    "turning around",
    "rising up",
    "bowing head",
    "head up",
    "tilting head",
    "turning head",
    "nodding",
    "shaking head",
    "scratching arms",
    "playing objects",
    "putting hands together",
    "rubbing hands",
    "pointing oneself",
    "clenching fist",
    "stretching arms",
    "retracting arms",
    "waving",
    "spreading hands",
    "hands touching fingers",
    "other finger movements",
    "illustrative gestures",
    "shaking legs",
    "curling legs",
    "spread legs",
    "closing legs",
    "crossing legs",
    "stretching feet",
    "retracting feet",
    "tiptoe",
    "scratching or touching neck",
    "scratching or touching chest",
    "scratching or touching back",
    "scratching or touching shoulder",
    "arms akimbo",
    "crossing arms",
    "playing or tidying hair",
    "scratching or touching hindbrain",
    "scratching or touching forehead",
    "scratching or touching face",
    "rubbing eyes",
    "touching nose",
    "touching ears",
    "covering face",
    "covering mouth",
    "pushing glasses",
    "patting legs",
    "touching legs",
    "scratching legs",
    "scratching feet",
)

MA52_BODY_GROUPS: tuple[str, ...] = (
    "body",
    "head",
    "upper limb",
    "lower limb",
    "body-hand",
    "head-hand",
    "leg-hand",
)

# First action id of each body group (the official range rule); the last group ends at 51.
MA52_BODY_STARTS: tuple[int, ...] = (0, 5, 11, 24, 32, 38, 48)

NUM_MA52_ACTIONS = len(MA52_ACTIONS)
NUM_MA52_BODIES = len(MA52_BODY_GROUPS)

IMIGUE_CLASSES: tuple[str, ...] = (
    "turtle neck",
    "deep breath",
    "touch hat",
    "touch face",
    "touch forehead",
    "cover face",
    "rub eyes",
    "touch other face part",
    "touch ears",
    "bite nails",
    "touch chin",
    "touch neck",
    "play hair",
    "adjust tie",
    "touch chest",
    "scratch back",
    "fold arm",
    "tidy sleeve",
    "put arm back",
    "move torso",
    "sit straight",
    "scratch arm",
    "rub hand",
    "cross finger",
    "minaret hand",
    "play things",
    "withdraw arms",
    "head up",
    "bit lip",
    "arm akimbo",
    "shake shoulder",
    "illustrative",
)
NUM_IMIGUE_CLASSES = len(IMIGUE_CLASSES)

_FINE2COARSE = np.searchsorted(np.asarray(MA52_BODY_STARTS), np.arange(NUM_MA52_ACTIONS), side="right") - 1


def fine2coarse(action_id):
    """Body-group id of an MA-52 action id (int or integer array), by the official range rule.

    Raises ``ValueError`` for ids outside 0-51.
    """
    arr = np.asarray(action_id)
    if arr.size and (arr.min() < 0 or arr.max() >= NUM_MA52_ACTIONS):
        raise ValueError(f"MA-52 action id out of range 0..{NUM_MA52_ACTIONS - 1}: {action_id}")
    out = _FINE2COARSE[arr]
    return int(out) if np.ndim(out) == 0 else out


def fine2coarse_table() -> np.ndarray:
    """(52,) int array: body group of every MA-52 action."""
    return _FINE2COARSE.copy()


def imigue_index(raw_id: int, path: str | None = None, where: str | None = None) -> int:
    """0-based iMiGUE class index of a raw CSV label id (1-31, 99)."""
    raw = int(raw_id)
    if 1 <= raw <= 31:
        return raw - 1
    if raw == 99:
        return 31
    raise DataError(path, f"unknown iMiGUE class id {raw} (expected 1-31 or 99)", where)


def imigue_raw_id(index: int) -> int:
    """Raw CSV label id of a 0-based iMiGUE class index (inverse of :func:`imigue_index`)."""
    if not 0 <= index < NUM_IMIGUE_CLASSES:
        raise ValueError(f"iMiGUE class index out of range 0..31: {index}")
    return 99 if index == 31 else index + 1


def class_names(dataset: str) -> tuple[str, ...]:
    """Class names of a dataset: 'ma52', 'mma52' or 'imigue'."""
    key = dataset.lower().replace("-", "")
    if key in ("ma52", "mma52", "micropuppet"):
        return MA52_ACTIONS
    if key == "imigue":
        return IMIGUE_CLASSES
    raise ValueError(f"unknown dataset {dataset!r}; expected ma52, mma52 or imigue")


def label_set(num_classes: int) -> tuple[tuple[str, ...], tuple[str | None, ...]]:
    """Class names and body groups of a label set known by its size.

    52 classes: MA-52 names and body-group names; 32: iMiGUE names (no body groups); any other
    size: ``class_<i>`` names.
    """
    if num_classes == NUM_MA52_ACTIONS:
        return MA52_ACTIONS, tuple(MA52_BODY_GROUPS[g] for g in fine2coarse_table())
    if num_classes == NUM_IMIGUE_CLASSES:
        return IMIGUE_CLASSES, (None,) * num_classes
    return tuple(f"class_{i}" for i in range(num_classes)), (None,) * num_classes
