"""Typed configs: dataclass trees loaded from YAML, with ``--set key=value`` overrides.

A config is a tree of dataclasses. YAML sets its fields; an unknown key is an error that names
the key and the closest valid field anywhere in the tree (whole dotted paths); every value is
checked against its field's type. Each error names the field's dotted path and where the value
came from: the YAML file that set it or the ``--set`` override.

A YAML file may start from another: ``_base_: ../micropuppet.yaml`` (a path relative to the file,
or a list of them, later ones winning) is read first and the file's own keys are written over it,
section by section. :func:`to_dict` writes the resolved tree back out with every field (the run
folder keeps that ``config.yaml``: no ``_base_`` left, nothing to merge to know what ran).

A config path that does not exist is looked up among the configs installed with the package
(``configs/recognition/micropuppet.yaml`` works without a source checkout).

Usage::

    cfg = load_config(RecognitionConfig, "configs/recognition/ma52_r101.yaml",
                      overrides=["train.epochs=5", "data.num_frames=16"])
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from mmad.errors import ConfigError

T = TypeVar("T")


def _closest(key: str, options: list[str]) -> str:
    match = difflib.get_close_matches(key, options, n=1, cutoff=0.0)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _fail(where: str, problem: str) -> ConfigError:
    """A :class:`ConfigError` "``where``: ``problem``" that remembers the field's dotted path."""
    error = ConfigError(f"{where}: {problem}" if where else problem)
    error.key = where
    return error


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if typing.get_origin(tp) is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert ``value`` to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise _fail(where, f"{value!r} is not a valid {' | '.join(_type_name(a) for a in args)}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise _fail(where, f"{value!r} is not one of {list(allowed)}{_closest(str(value), [str(a) for a in allowed])}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise _fail(where, f"expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, prefix=where)
    if origin in (list, tuple):
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise _fail(where, f"expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise _fail(where, f"expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise _fail(where, f"expected a mapping, got {value!r}")
        args = typing.get_args(tp)
        inner = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, inner, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _fail(where, f"expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise _fail(where, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(where, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):  # `out: 2024`, `--set out=2024`
            return str(value)
        if not isinstance(value, str):
            raise _fail(where, f"expected a string, got {value!r}")
        return value
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type[T], data: dict[str, Any] | None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a (nested) mapping; unknown keys are a :class:`ConfigError`."""
    data = data or {}
    if not isinstance(data, dict):
        raise _fail(prefix, f"expected a mapping, got {data!r}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        where = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            error = ConfigError(f"unknown config key '{where}'{_closest(str(key), names)}")
            error.key, error.unknown = where, True
            raise error
        kwargs[key] = _coerce(value, hints[key], where)
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise _fail(prefix, f"{e}" if prefix else f"{cls.__name__}: {e}") from None
    return obj


def field_paths(cls: type) -> list[str]:
    """Every leaf field of dataclass ``cls`` as a dotted path (``data.num_frames``, ``out``, ...)."""
    paths = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            paths.extend(f"{f.name}.{p}" for p in field_paths(tp))
        else:
            paths.append(f.name)
    return paths


def suggest_key(cls: type, key: str) -> str:
    """The valid dotted path of ``cls`` closest to the unknown ``key``, searched over every section.

    A field of the same name in another section wins (``model.num_frames`` -> ``data.num_frames``);
    otherwise the closest whole path. Empty when nothing is close.
    """
    paths = field_paths(cls)
    leaf = key.rsplit(".", 1)[-1]
    same_name = [p for p in paths if p.rsplit(".", 1)[-1] == leaf]
    if same_name:
        return difflib.get_close_matches(key, same_name, n=1, cutoff=0.0)[0]
    sections = {p.rsplit(".", i)[0] for p in paths for i in range(1, p.count(".") + 1)}
    match = difflib.get_close_matches(key, paths + sorted(sections), n=1, cutoff=0.6)
    if match:
        return match[0]
    leaves = {p.rsplit(".", 1)[-1]: p for p in paths}
    match = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.6)
    return leaves[match[0]] if match else ""


def to_dict(cfg: Any) -> Any:
    """Plain nested dict/list form of a config (YAML-serialisable)."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into its key path and YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str] | None,
                    sources: dict[str, str] | None = None) -> dict[str, Any]:
    """Set ``key.path=value`` entries in a nested mapping (in place) and return it.

    ``sources``, when given, records ``"--set KEY=VALUE"`` as the origin of each key set.
    """
    for text in overrides or []:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {text}: '{part}' is not a section")
            node = nxt
        node[path[-1]] = value
        if sources is not None:
            key = ".".join(path)
            for k in [k for k in sources if k == key or k.startswith(key + ".")]:
                del sources[k]
            sources.update(_sources_of(value, f"--set {text}", key))
    return data


def merge_into(base: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """Recursively write ``data`` over the plain-dict form of a config."""
    for k, v in data.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge_into(base[k], v)
        else:
            base[k] = v
    return base


def _sources_of(value: Any, source: str, prefix: str = "") -> dict[str, str]:
    """``{dotted key: source}`` for ``prefix`` and every key below it in ``value``."""
    out = {prefix: source} if prefix else {}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(_sources_of(v, source, f"{prefix}.{k}" if prefix else str(k)))
    return out


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping; errors name the file."""
    from mmad.errors import DataError

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise DataError(path, "config file not found") from None
    except IsADirectoryError:
        raise DataError(path, "is a folder, not a YAML config file") from None
    except PermissionError:
        raise DataError(path, "cannot read the config file (permission denied)") from None
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text (byte {e.start}); save the config as UTF-8") from None
    except yaml.YAMLError as e:
        raise DataError(path, f"not valid YAML ({str(e).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DataError(path, "config must be a YAML mapping at the top level")
    return data


def configs_dir() -> Path | None:
    """The folder of the configs shipped with the package (``mmad/configs`` installed, ``configs/`` of a checkout)."""
    package = Path(__file__).resolve().parent
    for folder in (package / "configs", package.parent / "configs"):
        if folder.is_dir():
            return folder
    return None


def find_config_file(path: str | os.PathLike) -> Path:
    """``path`` itself when it exists, else the shipped config of that name, else ``path`` unchanged.

    ``configs/recognition/micropuppet.yaml`` and ``recognition/micropuppet.yaml`` both name the
    shipped MicroPuppet recipe when no such file is under the working directory.
    """
    given = Path(path)
    if given.exists() or given.is_absolute():
        return given
    root = configs_dir()
    parts = given.parts[1:] if given.parts[:1] == ("configs",) else given.parts
    if root is not None and parts:
        shipped = root.joinpath(*parts)
        if shipped.is_file():
            return shipped
    return given


def bundled_config(name: str) -> Path:
    """A config shipped with the package, e.g. ``bundled_config("recognition/micropuppet.yaml")``."""
    root = configs_dir()
    path = root / name if root is not None else Path("configs") / name
    if not path.is_file():
        raise ConfigError(f"{name}: no such config ships with this installation (looked in {root})")
    return path


def read_config_tree(path: str | os.PathLike, _chain: tuple[Path, ...] = ()) -> tuple[dict[str, Any], dict[str, str]]:
    """The YAML mapping of ``path`` with its ``_base_`` files merged under it.

    Returns ``(tree, sources)``: the merged mapping and, for every dotted key in it, the file that
    set it. ``_base_`` is a path relative to the file (or a list; later bases win, the file wins over
    all). A missing base or a cycle is a :class:`DataError` naming the file.
    """
    from mmad.errors import DataError

    path = find_config_file(path)
    data = read_yaml(path)
    bases = data.pop("_base_", None)
    tree: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if bases is not None:
        if isinstance(bases, str):
            bases = [bases]
        if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
            raise DataError(path, f"_base_ must be a path or a list of paths, got {bases!r}")
        chain = (*_chain, path.resolve())
        for base in bases:
            base_path = Path(base) if os.path.isabs(base) else path.parent / base
            if base_path.resolve() in chain:
                raise DataError(path, f"_base_ {base!r} makes a cycle ({' -> '.join(str(p) for p in chain)})")
            if not base_path.is_file():
                raise DataError(path, f"_base_ {base!r} not found (looked for {base_path})")
            base_tree, base_sources = read_config_tree(base_path, chain)
            merge_into(tree, base_tree)
            sources.update(base_sources)
    merge_into(tree, data)
    sources.update(_sources_of(data, os.fspath(path)))
    return tree, sources


def _source_of(key: str | None, sources: dict[str, str]) -> str | None:
    """Where ``key`` (or the nearest section above it) was set."""
    while key:
        if key in sources:
            return sources[key]
        key = key.rpartition(".")[0]
    return None


def load_config(cls: type[T], path: str | os.PathLike | None = None, overrides: list[str] | None = None, *,
                base: dict[str, Any] | None = None, base_source: str | os.PathLike | None = None) -> T:
    """Load a config of dataclass type ``cls`` from YAML (optional, ``_base_`` resolved) plus ``key=value`` overrides.

    ``base`` (e.g. the config a checkpoint stores, named ``base_source`` in errors) is the starting
    tree; the YAML file is written over it, then the overrides. A bad key or value is a :class:`ConfigError` naming its source (the YAML file that set it or the
    ``--set`` override), its dotted path and the problem; an unknown key names the closest valid
    path in any section.
    """
    import copy

    tree: dict[str, Any] = copy.deepcopy(base) if base else {}
    sources = _sources_of(tree, os.fspath(base_source)) if base and base_source is not None else {}
    if path is not None:
        file_tree, file_sources = read_config_tree(path)
        merge_into(tree, file_tree)
        sources.update(file_sources)
    apply_overrides(tree, overrides, sources)
    try:
        return from_dict(cls, tree)
    except ConfigError as e:
        key = getattr(e, "key", None)
        message = str(e)
        if getattr(e, "unknown", False):
            hint = suggest_key(cls, key)
            message = f"unknown config key '{key}'" + (f" (did you mean '{hint}'?)" if hint else "")
        fallback = path if path is not None else base_source
        source = _source_of(key, sources) or (os.fspath(fallback) if fallback is not None else None)
        raise ConfigError(f"{source}: {message}" if source else message) from None


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    """Write the full config (every field) as YAML, atomically."""
    from mmad.fileio import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def config_text(cfg: Any) -> str:
    """The resolved config as YAML text (every field), as ``mmad config show`` prints it."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
