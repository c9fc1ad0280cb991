"""Seeding and determinism."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device); optionally force determinism.

    With ``deterministic=True``: ``torch.use_deterministic_algorithms(True)`` (an op without a
    deterministic implementation raises), cuDNN deterministic and without benchmark autotuning, and
    ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` for deterministic cuBLAS. Otherwise cuDNN benchmark is on.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = True
