from dataclasses import dataclass, field
from pathlib import Path
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


# ---------------------------------------------------------------- sources, _base_, shipped configs


@dataclass
class Data:
    num_frames: int = 8
    root: str = "data"


@dataclass
class Model:
    dim: int = 16
    widths: dict[str, int] = field(default_factory=dict)


@dataclass
class Tree:
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)
    out: str = "runs/x"


def test_a_wrong_set_key_blames_the_command_line_and_searches_every_section(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  dim: 4\n")
    with pytest.raises(ConfigError) as e:
        load_config(Tree, p, overrides=["model.num_frames=16"])
    assert str(e.value) == ("--set model.num_frames=16: unknown config key 'model.num_frames' "
                            "(did you mean 'data.num_frames'?)")
    with pytest.raises(ConfigError, match=r"^--set data\.num_frame=3: unknown .*'data\.num_frames'"):
        load_config(Tree, p, overrides=["data.num_frame=3"])
    # a field of the same name in another section beats a similar-looking path in this one
    with pytest.raises(ConfigError, match=r"did you mean 'data\.root'\?"):
        load_config(Tree, p, overrides=["model.root=/x"])
    with pytest.raises(ConfigError, match=r"unknown config key 'modle' \(did you mean 'model'\?"):
        load_config(Tree, p, overrides=["modle.dim=3"])


def test_a_wrong_yaml_value_blames_the_file_with_the_field_path(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  num_frames: many\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: data\.num_frames: expected an integer, got 'many'$"):
        load_config(Tree, p)
    # the same field fixed on the command line is fine; broken there, the command line is named
    assert load_config(Tree, p, overrides=["data.num_frames=4"]).data.num_frames == 4
    p.write_text("data:\n  num_frames: 4\n")
    with pytest.raises(ConfigError, match=r"^--set data\.num_frames=x: data\.num_frames: expected an integer"):
        load_config(Tree, p, overrides=["data.num_frames=x"])
    with pytest.raises(ConfigError, match=r"^--set model\.widths\.a=wide: model\.widths\.a: expected an integer"):
        load_config(Tree, p, overrides=["model.widths.a=wide"])
    with pytest.raises(ConfigError, match=r"^--set data=3: data: expected a mapping"):
        load_config(Tree, p, overrides=["data=3"])
    with pytest.raises(ConfigError, match=r"^--set path=\[1\]: path: \[1\] is not a valid str \| null$"):
        load_config(Outer, None, overrides=["path=[1]"])
    assert load_config(Tree, p, overrides=["out=2024"]).out == "2024"


def test_base_files_merge_under_the_file(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "root.yaml").write_text("data:\n  num_frames: 16\n  root: /d\nmodel:\n  dim: 32\nout: runs/base\n")
    (tmp_path / "base" / "wide.yaml").write_text("_base_: root.yaml\nmodel:\n  dim: 64\n")
    child = tmp_path / "child.yaml"
    child.write_text("_base_: [base/root.yaml, base/wide.yaml]\ndata:\n  num_frames: 4\nout: runs/child\n")
    cfg = load_config(Tree, child)
    assert (cfg.data.num_frames, cfg.data.root, cfg.model.dim, cfg.out) == (4, "/d", 64, "runs/child")
    # the resolved tree (what a run folder keeps) has every field and no _base_
    save_config(cfg, tmp_path / "run.yaml")
    saved = (tmp_path / "run.yaml").read_text()
    assert "_base_" not in saved and to_dict(load_config(Tree, tmp_path / "run.yaml")) == to_dict(cfg)
    # an error in a base names the base file
    (tmp_path / "base" / "root.yaml").write_text("model:\n  dims: 3\n")
    with pytest.raises(ConfigError, match=r"root\.yaml: unknown config key 'model\.dims' \(did you mean 'model\.dim'"):
        load_config(Tree, child)


def test_bad_base_files_are_one_line_errors(tmp_path):
    from mmad.errors import DataError

    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("_base_: b.yaml\n")
    b.write_text("_base_: a.yaml\n")
    with pytest.raises(DataError, match=r"_base_ 'a.yaml' makes a cycle"):
        load_config(Tree, a)
    a.write_text("_base_: missing.yaml\n")
    with pytest.raises(DataError, match=r"a\.yaml: _base_ 'missing.yaml' not found"):
        load_config(Tree, a)
    a.write_text("_base_: 3\n")
    with pytest.raises(DataError, match=r"_base_ must be a path or a list of paths"):
        load_config(Tree, a)


def test_shipped_configs_are_found_from_any_folder(tmp_path, monkeypatch):
    from mmad.config import bundled_config, find_config_file
    from recognition.config import RecognitionConfig

    monkeypatch.chdir(tmp_path)
    path = find_config_file("configs/recognition/micropuppet.yaml")
    assert path.is_file() and path == find_config_file("recognition/micropuppet.yaml")
    assert path == bundled_config("recognition/micropuppet.yaml")
    assert load_config(RecognitionConfig, "configs/recognition/micropuppet.yaml").data.root
    # a user's own file of the same name wins
    own = tmp_path / "configs" / "recognition"
    own.mkdir(parents=True)
    (own / "micropuppet.yaml").write_text("out: mine\n")
    assert load_config(RecognitionConfig, "configs/recognition/micropuppet.yaml").out == "mine"


def test_config_show_prints_the_resolved_config(tmp_path, capsys):
    import yaml

    from mmad.cli import main

    child = tmp_path / "detection" / "child.yaml"
    child.parent.mkdir()
    shipped = Path(__file__).resolve().parents[1] / "configs" / "detection" / "micropuppet.yaml"
    child.write_text(f"_base_: {shipped}\ntrain:\n  epochs: 3\n")
    assert main(["config", "show", str(child), "--set", "model.embed_dim=32"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["train"]["epochs"] == 3 and shown["model"]["embed_dim"] == 32
    assert shown["postprocess"]["max_segments"] == 50 and "_base_" not in shown
    assert main(["config", "show", str(child), "--set", "model.num_frames=3"]) == 2
    assert "--set model.num_frames=3: unknown config key" in capsys.readouterr().err
