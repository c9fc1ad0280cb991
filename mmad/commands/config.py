"""``mmad config``: the resolved config of a YAML file (``_base_`` merged, ``--set`` applied).

    mmad config show CONFIG [--kind recognition|detection] [--set K=V ...]
    mmad config list

What ``show`` prints is what a run folder keeps as ``config.yaml``: every field, no ``_base_``.
"""

from __future__ import annotations

from mmad.commands import ExampleFormatter, add_group
from mmad.errors import ConfigError

KINDS = ("recognition", "detection")


def register(subparsers) -> None:
    sub = add_group(subparsers, "config", "show resolved configs and list the shipped ones")

    p = sub.add_parser(
        "show", help="print the resolved config (every field) of a YAML file",
        description="Read CONFIG (a path, or the name of a shipped config), merge its _base_ files, apply "
                    "--set, check every field and print the whole config as YAML: what a run folder keeps "
                    "as config.yaml. A checkpoint prints the config stored in it.",
        epilog="example: mmad config show configs/recognition/micropuppet.yaml --set data.num_frames=16",
        formatter_class=ExampleFormatter)
    p.add_argument("config", metavar="CONFIG", help="YAML config file, or a checkpoint (.pt)")
    p.add_argument("--kind", choices=KINDS,
                   help="which config tree (default: from the file's sections, else its folder)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="set any config field by its dotted path, e.g. --set train.epochs=5 (repeatable)")
    p.set_defaults(func=run_show)

    p = sub.add_parser("list", help="list the configs shipped with the package",
                       description="The configs that ship with the package; any of them can be given by "
                                   "this name to --config from any folder.",
                       epilog="example: mmad config list", formatter_class=ExampleFormatter)
    p.set_defaults(func=run_list)


def config_class(kind: str):
    if kind == "recognition":
        from recognition.config import RecognitionConfig

        return RecognitionConfig
    from detection.config import DetectionConfig

    return DetectionConfig


def guess_kind(tree: dict, path: str) -> str:
    """``detection`` when the tree has a section only detection configs have (or the path says so)."""
    if {"encoder", "postprocess", "loss"} & set(tree):
        return "detection"
    model = tree.get("model") if isinstance(tree.get("model"), dict) else {}
    if {"embed_dim", "num_levels", "feature_dim", "regression_ranges"} & set(model):
        return "detection"
    if "detection" in path.replace("\\", "/").split("/"):
        return "detection"
    return "recognition"


def run_show(args) -> int:
    import sys

    from mmad.commands import stored_config
    from mmad.config import config_text, find_config_file, load_config, read_config_tree

    path = str(args.config)
    if path.endswith((".pt", ".pth")):
        base, source, file = stored_config(path), path, None
    else:
        base, source, file = None, None, find_config_file(path)
    tree = base if base is not None else read_config_tree(file)[0]
    kind = args.kind or guess_kind(tree, path)
    try:
        cfg = load_config(config_class(kind), file, args.overrides, base=base, base_source=source)
    except ConfigError as e:
        if args.kind or "unknown config key" not in str(e):
            raise
        raise ConfigError(f"{e} (read as a {kind} config; --kind chooses)") from None
    sys.stdout.write(f"# {kind} config resolved from {source or file}\n" + config_text(cfg))
    return 0


def run_list(args) -> int:
    from mmad.config import configs_dir

    root = configs_dir()
    if root is None:
        raise ConfigError("no configs ship with this installation")
    for path in sorted(root.rglob("*.yaml")):
        print(f"configs/{path.relative_to(root).as_posix()}")
    return 0
