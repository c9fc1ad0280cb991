"""Checkpoints: atomic writes, RNG state capture, and loading with ``weights_only=True``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (no pickled objects),
so ``torch.load(path, map_location=..., weights_only=True)`` reads it. Keys written by :func:`fit`:

``format`` (int), ``kind`` (``"recognition"``, ``"detection"``, ...: what the weights are), ``model`` (state dict of the unwrapped model), ``ema`` (state dict or None),
``optimizer``, ``schedule``, ``scaler``, ``epoch`` (completed epochs), ``global_step``,
``best_metric`` (float or None), ``best_epoch``, ``metric_name``, ``rng`` (see
:func:`capture_rng_state`), ``rng_per_rank`` (list, one per process), ``data_order``
(``{"seed", "epoch"}``: the sampler seed and the next epoch to iterate), ``config`` (dict or None),
``step_in_epoch`` (iterations of epoch ``epoch + 1`` already done: non-zero only in a checkpoint
written when a signal interrupted training mid-epoch) and ``partial_epoch`` (that epoch's loss sums).

Every reader goes through :func:`read_checkpoint`: a file that is missing, a folder, empty, truncated,
text, random bytes, a foreign (non-mmad) file or a checkpoint of another kind raises
:class:`~mmad.errors.DataError` naming the file and the problem (the CLI prints one line, status 2).
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmad.errors import DataError
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


# Top-level config sections that tell the kind of a checkpoint written before ``kind`` was stored.
_KIND_BY_CONFIG_SECTIONS = (("detection", {"postprocess", "encoder", "loss"}), ("recognition", {"model", "data"}))


def checkpoint_kind(ckpt: dict[str, Any]) -> str | None:
    """What a checkpoint holds: its ``kind`` field, else guessed from its stored config's sections."""
    kind = ckpt.get("kind")
    if isinstance(kind, str):
        return kind
    config = ckpt.get("config")
    if isinstance(config, dict):
        for name, sections in _KIND_BY_CONFIG_SECTIONS:
            if sections <= config.keys():
                return name
    return None


def _describe_unreadable(path: Path, error: Exception) -> str:
    """Why ``torch.load`` could not read ``path``, in a few words a user understands."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith(b"PK\x03\x04"):
        return f"truncated or damaged checkpoint ({str(error).splitlines()[0][:80]})"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
        return "a text file, not a checkpoint"
    if "Weights only load failed" in str(error) and head[:1] == b"\x80":
        return "a Python pickle that weights-only loading refuses (not a checkpoint written by mmad)"
    return "not a checkpoint (unrecognised bytes)"


def read_checkpoint(path: str | os.PathLike, *, map_location: Any = "cpu", kind: str | None = None,
                    require_weights: bool = True) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``, refusing with a :class:`DataError` what is not a fitting checkpoint.

    Args:
        path: the checkpoint file.
        map_location: as for ``torch.load``.
        kind: the kind the caller needs (``"recognition"``, ``"detection"``); a checkpoint of another
            kind is refused with both named. None accepts any kind.
        require_weights: the file must be a checkpoint written by :func:`mmad.engine.fit` (a dict with
            ``model``); False accepts any weights-only dict (e.g. pretrained backbone weights).

    Raises:
        DataError: missing, a folder, unreadable, empty, truncated, text, random bytes, a pickle
            with code, a foreign file, or the wrong kind; the message names ``path``.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(path, "is a folder, not a checkpoint file (give e.g. the folder's best.pt or last.pt)")
    if not path.is_file():
        raise DataError(path, "checkpoint not found")
    try:
        size = path.stat().st_size
        with open(path, "rb"):
            pass
    except PermissionError:
        raise DataError(path, "cannot read the checkpoint (permission denied)") from None
    if size == 0:
        raise DataError(path, "empty file (0 bytes), not a checkpoint")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM):
            raise DataError(path, "cannot read the checkpoint (permission denied)") from None
        raise DataError(path, f"cannot read the checkpoint ({e.strerror or e})") from None
    except Exception as e:  # truncated zip, text, random bytes, pickled code: torch raises many types
        raise DataError(path, _describe_unreadable(path, e)) from None
    if not isinstance(ckpt, dict):
        raise DataError(path, f"holds a {type(ckpt).__name__}, not a checkpoint")
    if not require_weights:
        return ckpt
    if not isinstance(ckpt.get("model"), dict):
        if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            problem = (f"a bare state dict of {len(ckpt)} tensors, not a checkpoint written by mmad "
                       "(pretrained backbone weights go in model.backbone.pretrained)")
        else:
            problem = "not a checkpoint written by mmad (no 'model' weights)"
        raise DataError(path, problem)
    found = checkpoint_kind(ckpt)
    if kind is not None and found is not None and found != kind:
        raise DataError(path, f"is a {found} checkpoint, but a {kind} checkpoint is needed here")
    return ckpt


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
    kind: str | None = None,
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`fit` and load what is asked into the given objects.

    Args:
        path: ``last.pt``, ``best.pt`` or any file with the same layout.
        model: receives the weights (the EMA weights when ``use_ema`` and the file has them).
        use_ema: prefer the moving-average weights for ``model``.
        optimizer / scaler / ema: also restore these from the file when given.
        map_location: as for ``torch.load``.
        strict: as for ``nn.Module.load_state_dict``.
        kind: the kind of checkpoint needed (see :func:`read_checkpoint`).

    Weights that do not fit ``model`` (another architecture or size) raise :class:`DataError`
    naming the file and the first differing tensors.

    Returns:
        The checkpoint dict (see the module docstring for its keys).
    """
    ckpt = read_checkpoint(path, map_location=map_location, kind=kind)
    restore_checkpoint(ckpt, path, model, use_ema=use_ema, optimizer=optimizer, scaler=scaler, ema=ema,
                       strict=strict)
    return ckpt


def restore_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike, model: nn.Module | None = None, *,
                       use_ema: bool = False, optimizer: torch.optim.Optimizer | None = None,
                       scaler: Any | None = None, ema: Any | None = None, strict: bool = True) -> None:
    """The second half of :func:`load_checkpoint`: put an already read ``ckpt`` (from ``path``) into the objects."""
    if model is not None:
        use_ema_weights = use_ema and ckpt.get("ema") is not None
        weights = ckpt["ema"] if use_ema_weights else ckpt["model"]
        _load_weights(path, unwrap_model(model), weights, strict=strict, what="EMA weights" if use_ema_weights
                      else "weights")
    try:
        if optimizer is not None and ckpt.get("optimizer") is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise DataError(path, f"its optimizer state does not fit this run ({str(e).splitlines()[0][:120]})") from None
    if ema is not None and ckpt.get("ema") is not None:
        _load_weights(path, ema.module, ckpt["ema"], strict=strict, what="EMA weights")
        ema.updates = int(ckpt.get("ema_updates", 0))


def _load_weights(path: str | os.PathLike, model: nn.Module, weights: Any, *, strict: bool, what: str) -> None:
    """``model.load_state_dict(weights)``; a mismatch is a :class:`DataError` naming the file and tensors."""
    if not isinstance(weights, dict):
        raise DataError(path, f"its {what} are a {type(weights).__name__}, not a state dict")
    weights = _strip_module_prefix(weights)
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [k for k in own if k in weights and isinstance(weights[k], torch.Tensor)
              and weights[k].shape != own[k].shape]
    problems = []
    if strict and missing:
        problems.append(f"{len(missing)} missing (first {missing[0]})")
    if strict and unexpected:
        problems.append(f"{len(unexpected)} unexpected (first {unexpected[0]})")
    if shapes:
        k = shapes[0]
        problems.append(f"{len(shapes)} of another shape (first {k}: {tuple(weights[k].shape)} "
                        f"vs {tuple(own[k].shape)})")
    if problems:
        raise DataError(path, f"its {what} do not fit this model: tensors " + "; ".join(problems))
    model.load_state_dict(weights, strict=strict)
