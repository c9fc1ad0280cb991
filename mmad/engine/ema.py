"""Exponential moving average of a model's weights (used by detection; optional for recognition)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from mmad.engine.checkpoint import unwrap_model


class ModelEMA:
    """Keeps ``ema = d * ema + (1 - d) * current`` for every floating-point parameter and buffer.

    The per-update weight warms up: ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so
    a short run is not scored on weights that are still mostly the random initialisation (with a
    fixed 0.999 the first 1,000 steps would leave about 37% of the initial weights in the average).

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
        decay = self.current_decay()
        for name, avg in self.module.state_dict().items():
            new = current[name].detach()
            if avg.dtype.is_floating_point:
                avg.mul_(decay).add_(new.to(avg.dtype), alpha=1.0 - decay)
            else:
                avg.copy_(new)
        self.updates += 1

    def current_decay(self) -> float:
        """The weight of the average at the next update (warm-up, then ``decay``)."""
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    def state_dict(self) -> dict[str, Any]:
        """``{"weights": state dict of the averaged model, "updates": int, "decay": float}``."""
        return {"weights": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["weights"])
        self.updates = int(state.get("updates", 0))
