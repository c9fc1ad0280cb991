"""Per-group Gaussian soft-NMS that keeps many segments per round (numpy, one thread).

The result is that of the one-pick-at-a-time loop (``detection.postprocess.batched_soft_nms``):
in each group the live candidate with the highest score is kept with its current score, every
other live candidate overlapping it is multiplied by ``exp(-iou**2 / sigma)``, and candidates
under ``min_score`` are dropped; ties go to the lower index. Three facts make it fast:

- A candidate whose score beats every live candidate overlapping it (score, then lower index) is
  kept with its current score whatever happens elsewhere: nothing can decay it before it is picked.
  Each round keeps all such candidates of all groups at once, so the number of rounds is set by
  the longest chain of overlapping candidates waiting for one another (tens), not by the picks.
- Only overlapping segments interact, and with the candidates sorted by onset all segments that
  may overlap one lie in one block of that order (onsets from its onset minus the group's longest
  segment to its offset). "Beats everything in its block" is two range-maximum lookups in a sparse
  table rebuilt once per round; decays are computed only between a round's picks and their blocks.
- With ``max_kept``, only the best ``max_kept`` survivors are wanted. Kept scores only fall within
  a group, so a candidate whose initial score is below the ``max_kept``-th kept score can neither
  be among them nor decay one of them before it is kept: the rounds run on the best-scoring
  candidates first, and on all of them only when that does not settle the answer.

Scores agree with the loop's within float rounding (a candidate's decays may be multiplied in
another order, and numpy's ``exp`` may differ from torch's in the last bit); the kept candidates
and their order are the same.
"""

from __future__ import annotations

import numpy as np


def _neighbour_blocks(onset: np.ndarray, offset: np.ndarray, groups: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort candidates by (group, onset) and give each one a block of the sorted order holding all
    candidates of its group that may overlap it.

    Returns ``order`` (N,) (sorted position -> input index) and, per sorted position, the block
    ``[low, high)``: onsets within ``(onset - longest segment of the group, offset]``. The block is
    a superset (it may hold touching or disjoint segments; the caller checks the intersection).
    """
    length = offset - onset
    longest = np.zeros(int(groups.max()) + 1, dtype=np.float64)
    np.maximum.at(longest, groups, length.astype(np.float64))
    lowest = min(float(onset.min()), float(offset.min())) - float(longest.max()) - 1.0
    span = max(float(onset.max()), float(offset.max())) - lowest + 1.0
    width = 2.0 ** np.ceil(np.log2(2.0 * span))  # groups never mix, even after rounding
    base = groups.astype(np.float64) * width - lowest
    start_key = base + onset.astype(np.float64)
    order = np.argsort(start_key, kind="stable")
    sorted_key = start_key[order]
    margin = 4 * np.spacing(float(sorted_key[-1]))  # the keys' rounding must lose no overlapping pair
    low = np.searchsorted(sorted_key, (start_key - longest[groups] - margin)[order], side="left")
    high = np.searchsorted(sorted_key, (base + offset.astype(np.float64) + margin)[order], side="right")
    return order, low, high


def _decays(onset: np.ndarray, offset: np.ndarray, i: np.ndarray, j: np.ndarray, sigma: float) -> np.ndarray:
    """``exp(-iou**2 / sigma)`` of segment pairs (P,), computed in the segments' dtype like the loop.

    Disjoint pairs give exactly 1. A positive intersection implies a positive union.
    """
    intersection = np.maximum(np.minimum(offset[i], offset[j]) - np.maximum(onset[i], onset[j]), 0)
    union = (offset[i] - onset[i]) + (offset[j] - onset[j]) - intersection
    iou = intersection / np.maximum(union, np.finfo(onset.dtype).tiny)
    return np.exp(-(iou * iou) / onset.dtype.type(sigma))


def _ranges(start: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ``arange(start[k], stop[k])`` (empty when stop <= start) and the k of each element."""
    sizes = np.maximum(stop - start, 0)
    owner = np.repeat(np.arange(sizes.size), sizes)
    return np.repeat(start - np.cumsum(sizes) + sizes, sizes) + np.arange(int(sizes.sum())), owner


class _WindowMax:
    """Maxima of changing ``values`` (N,) over fixed windows ``[low, high)`` (W,) of positions.

    A sparse table (the maxima over ``2**k`` consecutive positions, for every k up to the longest
    window) answers a window with two lookups, chosen once in the constructor; :meth:`build`
    fills the table for new values and :meth:`query` reads the maxima of some of the windows.
    """

    def __init__(self, n: int, low: np.ndarray, high: np.ndarray):
        size = high - low
        self.n, self.levels = n, max(int(size.max()).bit_length(), 1)
        level = np.frexp(np.maximum(size, 1))[1] - 1  # floor(log2(size))
        row = level * (n + 1)  # a last column of -inf answers empty windows
        start = np.where(size > 0, low, n)
        self.first = row + start
        self.second = row + np.maximum(high - (1 << level), start)

    def build(self, values: np.ndarray) -> None:
        table = np.empty((self.levels, self.n + 1), dtype=values.dtype)
        table[:, -1] = -np.inf
        table[0, :-1] = values
        for k in range(1, self.levels):
            half = 1 << (k - 1)
            np.maximum(table[k - 1, :-1 - half], table[k - 1, half:-1], out=table[k, :-1 - half])
            table[k, -1 - half:-1] = table[k - 1, -1 - half:-1]
        self.table = table.ravel()

    def query(self, windows: np.ndarray) -> np.ndarray:
        """Maximum over each of the given windows (indices into the constructor's ``low``/``high``)."""
        return np.maximum(self.table[self.first[windows]], self.table[self.second[windows]])


def _soft_nms_rounds(segments: np.ndarray, scores: np.ndarray, groups: np.ndarray, *, sigma: float,
                     min_score: float) -> tuple[np.ndarray, np.ndarray]:
    """Every survivor of every group: (index (M,), score when kept (M,)), in no particular order.

    Args: segments (N, 2), scores (N,) all ``>= min_score``, groups (N,) integer ids.
    """
    n = scores.size
    order, low, high = _neighbour_blocks(segments[:, 0], segments[:, 1], groups)
    onset, offset = segments[order, 0], segments[order, 1]
    position = np.arange(n)
    high = np.maximum(high, position + 1)
    # the block of a position without the position itself: windows [low, p) and [p + 1, high)
    window_max = _WindowMax(n, np.concatenate([low, position + 1]), np.concatenate([position, high]))
    current = scores[order]  # picked and dropped candidates are set to -inf
    live = np.arange(n)  # positions not yet picked or dropped
    kept_index, kept_score = [], []
    while live.size:
        # a live candidate is picked when nothing in its block beats it (a block holds every
        # candidate that may overlap it; a disjoint one in the block only delays the pick)
        window_max.build(current)
        mine = current[live]
        best_other = np.maximum(window_max.query(live), window_max.query(live + n))
        free = best_other < mine
        tied = np.flatnonzero(best_other == mine)
        if tied.size:  # ties go to the lower index: look at the tied blocks one by one
            rows = live[tied]
            others, owner = _ranges(low[rows], high[rows])
            row = rows[owner]
            beaten = (current[others] == current[row]) & (order[others] < order[row]) & (others != row)
            free[tied] = np.bincount(owner, weights=beaten, minlength=tied.size) == 0
        picks = live[free]
        if picks.size == 0:  # cannot happen: the best live candidate of a group is always free
            raise RuntimeError("soft_nms made no progress")
        kept_index.append(picks)
        kept_score.append(current[picks])
        current[picks] = -np.inf
        # decays, each candidate receiving those of this round's picks in sorted order
        targets, owner = _ranges(low[picks], high[picks])
        source = picks[owner]
        hit = current[targets] > -np.inf
        targets, source = targets[hit], source[hit]
        overlapping = np.minimum(offset[targets], offset[source]) > np.maximum(onset[targets], onset[source])
        targets, source = targets[overlapping], source[overlapping]
        np.multiply.at(current, targets, _decays(onset, offset, source, targets, sigma))
        current[targets[current[targets] < min_score]] = -np.inf
        live = live[current[live] > -np.inf]
    if not kept_index:
        return np.zeros(0, dtype=np.int64), scores[:0]
    picks = np.concatenate(kept_index)
    return order[picks], np.concatenate(kept_score)


def _best_first(index: np.ndarray, kept: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Order of survivors by score descending, then group, then index."""
    return np.lexsort((index, groups[index], -kept))


def soft_nms(segments, scores, groups, *, sigma: float = 0.5, min_score: float = 1e-3,
             max_kept: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian soft-NMS run separately in every group; the survivors of all groups best first.

    Args:
        segments: (N, 2) onset/offset (numpy or CPU tensor; float32 or float64, kept as given).
        scores: (N,) candidate scores.
        groups: (N,) non-negative integer group of each candidate (e.g. the class); groups never
            interact.
        sigma, min_score: the Gaussian decay ``exp(-iou**2 / sigma)`` and the score under which a
            candidate is dropped.
        max_kept: keep at most this many survivors in all (the best ones); None keeps all.

    Returns:
        ``index`` (M,) int64 into the inputs and ``kept_scores`` (M,): the score each survivor had
        when it was kept, ordered by score descending, ties by group then index. Each group's
        survivors are exactly those of the one-pick-at-a-time loop capped at ``max_kept`` picks.
    """
    segments, scores = np.asarray(segments), np.asarray(scores)
    groups = np.asarray(groups).astype(np.int64, copy=False)
    if groups.size and groups.min() < 0:
        raise ValueError("soft_nms: group ids must be non-negative")
    if segments.dtype != scores.dtype:
        segments = segments.astype(scores.dtype)
    candidates = np.flatnonzero(scores >= min_score)
    empty = np.zeros(0, dtype=np.int64), scores[:0].copy()
    if candidates.size == 0 or max_kept == 0:
        return empty
    if max_kept is not None and 4 * max_kept <= candidates.size:
        # try the 2 * max_kept best first: exact when the max_kept-th survivor scores >= all left out
        ranked = candidates[np.argsort(-scores[candidates], kind="stable")]
        subset = ranked[: 2 * max_kept]
        floor = scores[subset[-1]]
        subset = np.sort(ranked[scores[ranked] >= floor])
        index, kept = _soft_nms_rounds(segments[subset], scores[subset], groups[subset], sigma=sigma,
                                       min_score=min_score)
        index = subset[index]
        order = _best_first(index, kept, groups)[:max_kept]
        if order.size == max_kept and kept[order[-1]] >= floor:
            return index[order], kept[order]
    index, kept = _soft_nms_rounds(segments[candidates], scores[candidates], groups[candidates], sigma=sigma,
                                   min_score=min_score)
    index = candidates[index]
    order = _best_first(index, kept, groups)[:max_kept]
    return index[order], kept[order]
