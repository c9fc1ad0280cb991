"""The protocol a training stage implements so that :func:`mmad.engine.fit` can train it."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn
from torch.utils.data import Dataset


@runtime_checkable
class Task(Protocol):
    """What a stage (recognition, detection) gives the engine. See the package docstring for details.

    Required: the attribute ``primary_metric`` and the methods below. Optional methods, looked up
    with ``getattr``: ``param_groups(model) -> list[dict] | None`` and
    ``extra_scalars(model) -> dict[str, float]``.
    """

    primary_metric: str

    def build_model(self) -> nn.Module:
        """A freshly initialised model (on CPU; the engine moves it)."""
        ...

    def train_dataset(self) -> Dataset:
        """Map-style training dataset; items go through :meth:`collate`."""
        ...

    def val_dataset(self) -> Dataset | None:
        """Map-style validation dataset, or None to train without validation."""
        ...

    def collate(self, samples: list[Any]) -> Any:
        """Batch a list of dataset items (a ClipBatch, tensor, tuple or dict)."""
        ...

    def training_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        """Forward pass and losses of one batch: ``{"loss": scalar to minimise, other terms...}``."""
        ...

    def evaluate(self, model: nn.Module, loader: Any, *, device: torch.device,
                 distributed: bool) -> dict[str, float]:
        """Validation metrics over ``loader`` (this rank's shard when ``distributed``)."""
        ...
