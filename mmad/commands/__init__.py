"""Command groups of the ``mmad`` CLI; each module has ``register(subparsers)``.

Helpers shared by the groups live here: the common run flags of train/test commands.
Nothing heavy is imported at module level.
"""

from __future__ import annotations

import argparse


def add_group(subparsers, name: str, help: str) -> argparse._SubParsersAction:
    """Add a command group (``mmad NAME ...``) and return its sub-parsers."""
    p = subparsers.add_parser(name, help=help, description=help)
    p.set_defaults(group_parser=p)
    return p.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND")


def add_run_flags(p: argparse.ArgumentParser, config_required: bool = True) -> None:
    """The flags every train/test command takes."""
    p.add_argument("--config", required=config_required, help="YAML config file")
    p.add_argument("--data", help="dataset root (overrides data.root)")
    p.add_argument("--out", help="run folder (overrides the config's out)")
    p.add_argument("--epochs", type=int, help="number of epochs (overrides train.epochs)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="set any config field, e.g. --set model.num_frames=16 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    p.add_argument("--allow-config-change", action="store_true",
                   help="with --resume: continue although the config differs from the checkpoint's")


def run_overrides(args) -> list[str]:
    """Turn the common flags into config overrides (--data/--out/--epochs first, then --set)."""
    out = []
    if getattr(args, "data", None):
        out.append(f"data.root={args.data}")
    if getattr(args, "out", None):
        out.append(f"out={args.out}")
    if getattr(args, "epochs", None) is not None:
        out.append(f"train.epochs={args.epochs}")
    out.extend(getattr(args, "overrides", []) or [])
    return out


def is_main_process() -> bool:
    """False in every ``torchrun`` process but rank 0 (those print no summary)."""
    import os

    return int(os.environ.get("RANK", "0")) == 0
