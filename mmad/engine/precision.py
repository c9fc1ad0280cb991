"""Inference precision: which autocast dtype extraction and testing run under.

``precision`` is one of

- ``"auto"``: bfloat16 on a GPU that supports it, float16 on an older GPU; on a CPU bfloat16 only
  where the CPU computes it natively (AVX-512 BF16 or AMX), else float32 (emulated bfloat16 is
  slower than float32 there);
- ``"fp32"``: no autocast;
- ``"bf16"`` / ``"fp16"``: that autocast dtype, wherever asked (on a CPU without native bfloat16
  it is correct but slow).

Outputs leave the autocast region as float32; the weights stay float32.
"""

from __future__ import annotations

import contextlib

import torch

from mmad.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bfloat16 matrix products natively (oneDNN's own check)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(requested: str | None, device: torch.device | str) -> str:
    """``"fp32"``, ``"bf16"`` or ``"fp16"``: ``requested`` with ``"auto"`` (or None) decided for ``device``."""
    requested = requested or "auto"
    if requested not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested != "auto":
        return requested
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


def inference_autocast(device: torch.device | str, precision: str):
    """The autocast context for a resolved ``precision`` on ``device`` (a no-op for ``"fp32"``)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in _DTYPES:
        raise ConfigError(f"precision must be resolved to fp32, bf16 or fp16, got {precision!r}")
    return torch.autocast(device_type=torch.device(device).type, dtype=_DTYPES[precision])
