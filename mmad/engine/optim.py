"""Optimizer construction and the per-iteration learning-rate schedule."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from mmad.engine.config import OptimConfig


def build_optimizer(
    model: nn.Module, cfg: OptimConfig, *, param_groups: list[dict[str, Any]] | None = None
) -> torch.optim.Optimizer:
    """SGD or AdamW over ``param_groups`` (or every trainable parameter of ``model``).

    A group may set its own ``weight_decay`` and an ``lr_scale`` that multiplies the scheduled
    learning rate; groups without them take ``cfg.weight_decay`` and scale 1. Parameters with
    ``requires_grad=False`` are left out.
    """
    if param_groups is None:
        param_groups = [{"params": list(model.parameters())}]
    groups = []
    for group in param_groups:
        params = [p for p in group["params"] if p.requires_grad]
        if not params:
            continue
        g = dict(group, params=params)
        g.setdefault("weight_decay", cfg.weight_decay)
        g.setdefault("lr_scale", 1.0)
        g["lr"] = cfg.warmup_start_lr * g["lr_scale"] if cfg.warmup_epochs > 0 else cfg.lr * g["lr_scale"]
        groups.append(g)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                 weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.name!r}")


class LRSchedule:
    """Learning rate as a pure function of the global iteration (warm-up, then cosine/step/constant).

    ``lr_at(step)`` is the rate used by the optimizer step number ``step`` (0-based). Because it
    depends on nothing but the step, resuming needs only the global step count.

    Warm-up runs linearly from ``warmup_start_lr`` at step 0 to ``lr`` at step
    ``W = round(warmup_epochs * steps_per_epoch)``. The cosine phase then goes from ``lr`` at step W
    to ``min_lr`` at the last step ``total_steps - 1``.
    """

    def __init__(self, cfg: OptimConfig, *, steps_per_epoch: int, epochs: int):
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.cfg = cfg
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = steps_per_epoch * epochs
        self.warmup_steps = min(round(cfg.warmup_epochs * steps_per_epoch), self.total_steps)

    def lr_at(self, step: int) -> float:
        """Learning rate (before any group ``lr_scale``) for optimizer step ``step``."""
        cfg = self.cfg
        if step < self.warmup_steps:
            return cfg.warmup_start_lr + (cfg.lr - cfg.warmup_start_lr) * step / self.warmup_steps
        if cfg.schedule == "constant":
            return cfg.lr
        if cfg.schedule == "step":
            epoch = step // self.steps_per_epoch
            return cfg.lr * cfg.step_gamma ** sum(epoch >= m for m in cfg.step_milestones)
        decay_steps = self.total_steps - 1 - self.warmup_steps
        if decay_steps <= 0:
            return cfg.lr
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * progress))

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every group's lr for ``step`` (scaled by the group's ``lr_scale``); returns the base lr."""
        lr = self.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {"steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps}
