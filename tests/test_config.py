from dataclasses import dataclass, field
from typing import Literal

import pytest

from mmad.config import ConfigError, from_dict, load_config, save_config, to_dict


@dataclass
class Inner:
    depth: int = 3
    kind: Literal["a", "b"] = "a"
    sizes: tuple[int, ...] = (1, 2)


@dataclass
class Outer:
    name: str = "x"
    lr: float = 0.1
    path: str | None = None
    inner: Inner = field(default_factory=Inner)


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: run\ninner:\n  depth: 5\n  sizes: [4, 8]\n")
    cfg = load_config(Outer, p, overrides=["lr=1e-3", "inner.kind=b", "path=/data"])
    assert cfg.name == "run" and cfg.lr == pytest.approx(1e-3) and cfg.path == "/data"
    assert cfg.inner.depth == 5 and cfg.inner.kind == "b" and cfg.inner.sizes == (4, 8)
    assert isinstance(cfg.lr, float)


def test_unknown_key_names_the_closest(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'inner.dept'.*did you mean 'depth'"):
        from_dict(Outer, {"inner": {"dept": 4}})
    p = tmp_path / "bad.yaml"
    p.write_text("nme: 1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key 'nme'.*'name'"):
        load_config(Outer, p)


def test_type_errors():
    with pytest.raises(ConfigError, match="inner.depth: expected an integer"):
        from_dict(Outer, {"inner": {"depth": "deep"}})
    with pytest.raises(ConfigError, match="inner.kind: 'c' is not one of"):
        from_dict(Outer, {"inner": {"kind": "c"}})
    with pytest.raises(ConfigError, match="expected true/false|expected a number"):
        from_dict(Outer, {"lr": True})


def test_round_trip(tmp_path):
    cfg = from_dict(Outer, {"inner": {"depth": 7}})
    save_config(cfg, tmp_path / "out.yaml")
    again = load_config(Outer, tmp_path / "out.yaml")
    assert to_dict(again) == to_dict(cfg)
