"""Multi-process training under ``torchrun``: process group set-up, samplers and metric gathering.

``torchrun --nproc_per_node N -m mmad.cli ... train`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`setup_distributed` then joins the process group (NCCL on GPU, Gloo on CPU)
and picks ``cuda:LOCAL_RANK``. Only rank 0 logs and writes files.

Validation data is split with :class:`ShardSampler` (rank ``r`` takes items ``r, r + N, ...``)
so no item is seen twice; :func:`gather_eval_outputs` collects the per-sample outputs of all ranks.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass
class DistContext:
    """Where this process stands: its rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_process_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str | torch.device | None = None) -> DistContext:
    """Join the process group described by ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` when present.

    Without those variables (or with ``WORLD_SIZE=1``) this is a single process on ``device``
    (default: ``cuda`` when available, else ``cpu``). A process group that already exists is
    reused. One created here stays open for later calls in the same process (a ``fit`` followed
    by an ``evaluate_checkpoint``: tearing a group down and re-creating it on the same port can
    deadlock) and is destroyed when the interpreter exits, or by :func:`cleanup_distributed`.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    if world_size <= 1 and not dist.is_initialized():
        dev = torch.device(device) if device is not None else torch.device("cuda" if use_cuda else "cpu")
        return DistContext(device=dev)
    owns = False
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world_size)
        atexit.register(_destroy_at_exit)
        owns = True
    rank, world_size = dist.get_rank(), dist.get_world_size()
    dev = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev,
                       owns_process_group=owns)


def _destroy_at_exit() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def cleanup_distributed(ctx: DistContext) -> None:
    """Destroy the process group if :func:`setup_distributed` created it (after a barrier)."""
    if ctx.owns_process_group and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (just ``[obj]`` outside a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def mean_across_ranks(values: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """Average each scalar over processes (same keys on every rank)."""
    if not ctx.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    t /= ctx.world_size
    return {k: float(v) for k, v in zip(keys, t.tolist())}


def sum_across_ranks(value: float, ctx: DistContext) -> float:
    """Sum of a scalar over processes."""
    if not ctx.distributed:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return float(t.item())


def _to_cpu(value: Any) -> Any:
    return value.detach().cpu() if isinstance(value, torch.Tensor) else list(value)


def gather_eval_outputs(
    outputs: dict[str, torch.Tensor | list[Any]], *, indices: torch.Tensor | list[int] | None = None
) -> dict[str, torch.Tensor | list[Any]]:
    """Collect per-sample evaluation outputs from every rank.

    Args:
        outputs: per-sample results of this rank; each value is a tensor with N_local rows
            (e.g. ``logits`` (N_local, C)) or a list of N_local Python objects (e.g. video ids).
        indices: (N_local,) dataset index of each row. When given, the gathered rows are sorted by
            index and repeated indices (a padding sampler's duplicates) are kept once.

    Returns:
        The same keys with rows of all ranks (tensors on CPU): rank order when ``indices`` is None,
        else ascending dataset index without repeats; with indices, the key ``"index"`` holds them.
        Outside a process group this only moves tensors to CPU (and sorts by ``indices``).

    A rank whose shard gave no output (every item failed to load) still calls this, with the keys
    it has (possibly none but empty lists): keys are merged over ranks, and a key no rank filled
    is left out.
    """
    local = {k: _to_cpu(v) for k, v in outputs.items()}
    if indices is not None:
        local["index"] = torch.as_tensor(indices, dtype=torch.long).cpu()
    lengths = {len(v) for v in local.values()}
    if len(lengths) > 1:
        raise ValueError(f"gather_eval_outputs: outputs have different numbers of rows {sorted(lengths)}")
    parts = all_gather_objects(local)
    merged: dict[str, Any] = {}
    keys = list(dict.fromkeys(k for p in parts for k in p))
    for key in keys:
        values = [p[key] for p in parts if key in p and len(p[key]) > 0]
        if not values:
            if all(key in p for p in parts) and all(isinstance(p[key], list) for p in parts):
                merged[key] = []
            continue
        if isinstance(values[0], torch.Tensor):
            merged[key] = torch.cat(values)
        else:
            merged[key] = [item for v in values for item in v]
    lengths = {len(v) for v in merged.values()}
    if len(lengths) > 1:
        raise ValueError(f"gather_eval_outputs: ranks gave different keys; rows per key {sorted(lengths)}")
    if indices is None or "index" not in merged:
        return merged
    index = merged["index"]
    order = torch.argsort(index, stable=True)
    sorted_index = index[order]
    keep = torch.ones_like(sorted_index, dtype=torch.bool)
    keep[1:] = sorted_index[1:] != sorted_index[:-1]
    rows = order[keep]
    result: dict[str, Any] = {}
    for key, value in merged.items():
        if isinstance(value, torch.Tensor):
            result[key] = value[rows]
        else:
            result[key] = [value[i] for i in rows.tolist()]
    return result


class ShardSampler(Sampler[int]):
    """Sequential, unpadded split of ``range(num_items)``: rank ``r`` yields ``r, r + W, r + 2W, ...``.

    Ranks may get one item more or less than each other; every item is visited exactly once.
    """

    def __init__(self, num_items: int, *, rank: int = 0, world_size: int = 1):
        self.num_items = num_items
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_items, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.num_items, self.world_size))
