"""Exponential moving average of a model's weights (used by detection; optional for recognition)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from mmad.engine.checkpoint import unwrap_model


class ModelEMA:
    """Keeps ``ema = decay * ema + (1 - decay) * current`` for every floating-point parameter and buffer.

    Integer buffers (e.g. BatchNorm's ``num_batches_tracked``) are copied. The averaged copy lives
    in ``self.module`` (eval mode, no gradients) on the same device as the model.

    Args:
        model: the model being trained (a DDP wrapper is unwrapped).
        decay: weight of the running average per update, in (0, 1), e.g. 0.999.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(unwrap_model(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend the current weights of ``model`` into the average (call after each optimizer step)."""
        current = unwrap_model(model).state_dict()
        for name, avg in self.module.state_dict().items():
            new = current[name].detach()
            if avg.dtype.is_floating_point:
                avg.mul_(self.decay).add_(new.to(avg.dtype), alpha=1.0 - self.decay)
            else:
                avg.copy_(new)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """``{"weights": state dict of the averaged model, "updates": int, "decay": float}``."""
        return {"weights": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["weights"])
        self.updates = int(state.get("updates", 0))
