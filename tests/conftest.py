"""Shared test fixtures: the path of the real annotation files (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(os.environ.get("MMAD_SHARED_DATASETS", _REPO.parent / "shared" / "datasets"))


@pytest.fixture
def shared_datasets() -> Path:
    """``../shared/datasets`` (or $MMAD_SHARED_DATASETS); the test is skipped when it is absent."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real annotation files not found at {SHARED_DATASETS}")
    return SHARED_DATASETS
