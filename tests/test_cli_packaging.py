"""Packaging: the wheel's package list names every package of the tree, and every shipped config is
package data (a wheel installed outside the checkout finds them; the wheel itself is built and run
by hand, see the README's "Command line" section for the command)."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

REPO = Path(__file__).resolve().parents[1]


def setuptools_table() -> dict:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]


def test_every_package_of_the_tree_is_listed():
    listed = set(setuptools_table()["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for top in ("mmad", "recognition", "detection", "eval")
             for p in (REPO / top).rglob("__init__.py")}
    assert found <= listed, f"missing from pyproject.toml [tool.setuptools] packages: {sorted(found - listed)}"
    assert listed - found == {"mmad.configs"}


def test_every_config_ships_as_package_data():
    table = setuptools_table()
    assert table["package-dir"]["mmad.configs"] == "configs"
    patterns = table["package-data"]["mmad.configs"]
    configs = [p.relative_to(REPO / "configs").as_posix() for p in (REPO / "configs").rglob("*.yaml")]
    assert configs
    for name in configs:
        assert any(fnmatch.fnmatch(name, pat) and name.count("/") == pat.count("/") for pat in patterns), name


def test_torch_floor_covers_the_apis_used():
    """torch.amp.GradScaler("cuda") (the engine) exists from torch 2.3; the declared floor must not be lower."""
    with open(REPO / "pyproject.toml", "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    torch_dep = next(d for d in deps if d.startswith("torch>="))
    floor = tuple(int(x) for x in torch_dep.split(">=")[1].split(".")[:2])
    assert floor >= (2, 3)
    source = (REPO / "mmad" / "engine" / "loop.py").read_text()
    assert "GradScaler" in source
