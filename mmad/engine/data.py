"""Data loading for the engine: reproducible order, bad-item skipping, device moves.

Order. The training sampler is a ``DistributedSampler`` (also with one process) seeded with
``TrainConfig.seed`` and told the epoch, so the permutation of an epoch depends only on
(seed, epoch). The DataLoader's own generator is re-seeded from (seed, epoch, rank) before every
epoch; torch derives each worker's Python/NumPy/torch seeds from it, so random augmentations in
worker processes repeat too. With ``num_workers=0`` augmentations draw from the main process's
generators, whose states the checkpoints carry.

Bad items. :class:`SkipBadItems` wraps a dataset: an item whose loading raises
:class:`~mmad.errors.DataError` becomes ``None`` and one line ``index<TAB>message`` is appended to
``RUN_DIR/skipped.txt`` (append writes, safe from several workers). :class:`SkipBadCollate` drops
the ``None`` items before calling the task's collate, and returns ``None`` for a batch with no good
item, which the loops pass over. Any other exception is a bug and stops the run.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mmad.engine.distributed import ShardSampler
from mmad.errors import DataError

log = logging.getLogger("mmad.engine")


class SkipBadItems(Dataset):
    """``dataset[i]``, or ``None`` (logged to ``skip_log``) when loading raises :class:`DataError`.

    Args:
        dataset: any map-style dataset.
        skip_log: text file that receives one ``index<TAB>message`` line per skipped item;
            None only logs a warning.
    """

    def __init__(self, dataset: Dataset, *, skip_log: str | os.PathLike | None = None):
        self.dataset = dataset
        self.skip_log = None if skip_log is None else os.fspath(skip_log)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except DataError as err:
            message = str(err).replace("\n", " ")
            log.warning("skipping item %d: %s", index, message)
            if self.skip_log is not None:
                with open(self.skip_log, "a", encoding="utf-8") as f:
                    f.write(f"{index}\t{message}\n")
            return None


class SkipBadCollate:
    """Call ``collate`` on the non-``None`` samples; ``None`` when none is left."""

    def __init__(self, collate: Callable[[list[Any]], Any]):
        self.collate = collate

    def __call__(self, samples: list[Any]) -> Any:
        good = [s for s in samples if s is not None]
        return self.collate(good) if good else None


def read_skipped(run_dir: str | os.PathLike) -> list[tuple[int, str]]:
    """The ``(index, message)`` pairs listed in ``RUN_DIR/skipped.txt`` (empty when none)."""
    path = Path(run_dir) / "skipped.txt"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            index, _, message = line.partition("\t")
            rows.append((int(index), message))
    return rows


def data_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A 63-bit seed that depends only on (seed, epoch, rank)."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_009 + rank)
    return int(torch.randint(0, 2**62, (1,), generator=g).item())


def build_train_loader(
    dataset: Dataset,
    collate: Callable[[list[Any]], Any],
    *,
    batch_size: int,
    num_workers: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = True,
    pin_memory: bool = False,
    skip_log: str | os.PathLike | None = None,
) -> DataLoader:
    """Shuffled training loader; call :func:`set_loader_epoch` before iterating each epoch."""
    sampler = ResumableSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    drop_last = drop_last and len(sampler) >= batch_size
    return DataLoader(
        SkipBadItems(dataset, skip_log=skip_log), batch_size=batch_size, sampler=sampler,
        num_workers=num_workers, collate_fn=SkipBadCollate(collate), pin_memory=pin_memory,
        drop_last=drop_last, generator=torch.Generator(),
    )


class ResumableSampler(DistributedSampler):
    """A DistributedSampler that can leave out the first ``skip_items`` of an epoch (a resumed epoch)."""

    skip_items = 0

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.skip_items, None)

    def __len__(self) -> int:
        return max(super().__len__() - self.skip_items, 0)


def set_loader_epoch(loader: DataLoader, *, epoch: int, seed: int, rank: int = 0, skip_batches: int = 0) -> None:
    """Fix the data order and worker seeds of ``loader`` for ``epoch`` (a function of seed/epoch/rank).

    ``skip_batches``: the first batches of the epoch, already trained on before an interruption, are left out.
    """
    if isinstance(loader.sampler, ResumableSampler):
        loader.sampler.skip_items = skip_batches * (loader.batch_size or 1)
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    if loader.generator is not None:
        loader.generator.manual_seed(data_seed(seed, epoch, rank))


def build_eval_loader(
    dataset: Dataset,
    collate: Callable[[list[Any]], Any],
    *,
    batch_size: int,
    num_workers: int,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
    skip_log: str | os.PathLike | None = None,
) -> SkippingLoader:
    """Sequential loader over this rank's unpadded shard, yielding only non-empty batches."""
    loader = DataLoader(
        SkipBadItems(dataset, skip_log=skip_log), batch_size=batch_size,
        sampler=ShardSampler(len(dataset), rank=rank, world_size=world_size),  # type: ignore[arg-type]
        num_workers=num_workers, collate_fn=SkipBadCollate(collate), pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(0),
    )
    return SkippingLoader(loader)


class SkippingLoader:
    """Iterates a DataLoader built with :class:`SkipBadCollate`, passing over ``None`` batches.

    ``dataset`` is the task's dataset (unwrapped) and ``sampler`` yields this rank's dataset indices.
    """

    def __init__(self, loader: DataLoader):
        self.loader = loader

    @property
    def dataset(self) -> Dataset:
        return self.loader.dataset.dataset  # type: ignore[attr-defined]

    @property
    def sampler(self) -> Any:
        return self.loader.sampler

    @property
    def batch_size(self) -> int | None:
        return self.loader.batch_size

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        return (batch for batch in self.loader if batch is not None)


def move_to_device(batch: Any, device: torch.device, *, non_blocking: bool = False) -> Any:
    """Move a batch to ``device``: objects with ``.to`` (tensors, ClipBatch), tuples, lists, dicts."""
    if hasattr(batch, "to") and callable(batch.to):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {k: move_to_device(v, device, non_blocking=non_blocking) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [move_to_device(v, device, non_blocking=non_blocking) for v in batch]
        return type(batch)(moved) if not hasattr(batch, "_fields") else type(batch)(*moved)
    return batch


def batch_size_of(batch: Any) -> int:
    """Number of samples in a batch: ``len()`` of a batch object, else the leading size of its first tensor."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, dict):
        return batch_size_of(next(iter(batch.values()))) if batch else 0
    if isinstance(batch, (list, tuple)):
        return batch_size_of(batch[0]) if batch else 0
    if hasattr(batch, "__len__"):
        return len(batch)
    return 1
