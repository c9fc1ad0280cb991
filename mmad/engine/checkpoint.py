"""Checkpoints: atomic writes, RNG state capture, and loading with ``weights_only=True``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (no pickled objects),
so ``torch.load(path, map_location=..., weights_only=True)`` reads it. Keys written by :func:`fit`:

``format`` (int), ``model`` (state dict of the unwrapped model), ``ema`` (state dict or None),
``optimizer``, ``schedule``, ``scaler``, ``epoch`` (completed epochs), ``global_step``,
``best_metric`` (float or None), ``best_epoch``, ``metric_name``, ``rng`` (see
:func:`capture_rng_state`), ``rng_per_rank`` (list, one per process), ``data_order``
(``{"seed", "epoch"}``: the sampler seed and the next epoch to iterate), ``config`` (dict or None).
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmad.fileio import atomic_open

CHECKPOINT_FORMAT = 1


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel wrappers (or ``model`` itself)."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync it, then ``os.replace`` it into place.

    A failure while writing leaves the previous ``path`` untouched and no temporary file behind.
    """
    with atomic_open(path, "wb", durable=True) as f:
        torch.save(obj, f)
    return Path(path)


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy ``src`` to ``dst`` through a temporary file and ``os.replace`` (same guarantees as above)."""
    with open(src, "rb") as fin, atomic_open(dst, "wb", durable=True) as fout:
        shutil.copyfileobj(fin, fout)
    return Path(dst)


def capture_rng_state() -> dict[str, Any]:
    """The Python, NumPy, torch-CPU and CUDA generator states, as lists and tensors only.

    Returns ``{"python": [version, [625 ints], gauss_next], "numpy": [name, [624 ints], pos,
    has_gauss, cached_gaussian], "torch": uint8 tensor, "cuda": [uint8 tensor per device]}``.
    """
    py_version, py_internal, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    return {
        "python": [py_version, list(py_internal), py_gauss],
        "numpy": [str(np_name), [int(k) for k in np_keys], int(np_pos), int(np_has_gauss), float(np_cached)],
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA states are restored only when devices match)."""
    py_version, py_internal, py_gauss = state["python"]
    random.setstate((int(py_version), tuple(int(v) for v in py_internal), py_gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_cached = state["numpy"]
    np.random.set_state((np_name, np.asarray(np_keys, dtype=np.uint32), int(np_pos), int(np_has_gauss),
                         float(np_cached)))
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


def read_checkpoint(path: str | os.PathLike, *, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True``; a missing file raises FileNotFoundError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    return torch.load(path, map_location=map_location, weights_only=True)


def _strip_module_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module | None = None,
    *,
    use_ema: bool = False,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: Any | None = None,
    ema: Any | None = None,
    map_location: Any = "cpu",
    strict: bool = True,
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`fit` and load what is asked into the given objects.

    Args:
        path: ``last.pt``, ``best.pt`` or any file with the same layout.
        model: receives the weights (the EMA weights when ``use_ema`` and the file has them).
        use_ema: prefer the moving-average weights for ``model``.
        optimizer / scaler / ema: also restore these from the file when given.
        map_location: as for ``torch.load``.
        strict: as for ``nn.Module.load_state_dict``.

    Returns:
        The checkpoint dict (see the module docstring for its keys).
    """
    ckpt = read_checkpoint(path, map_location=map_location)
    if model is not None:
        weights = ckpt["ema"] if use_ema and ckpt.get("ema") is not None else ckpt["model"]
        unwrap_model(model).load_state_dict(_strip_module_prefix(weights), strict=strict)
    if optimizer is not None and ckpt.get("optimizer") is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    if scaler is not None and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    if ema is not None and ckpt.get("ema") is not None:
        ema.load_state_dict({"weights": ckpt["ema"], "updates": ckpt.get("ema_updates", 0)})
    return ckpt
