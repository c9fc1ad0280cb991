"""Command groups of the ``mmad`` CLI; each module has ``register(subparsers)``.

Helpers shared by the groups live here: the flags of the one command-line grammar (README,
"Command line"), their deprecated old spellings, and loading a command's config from ``--config``
or from the checkpoint it reads.
Nothing heavy is imported at module level.
"""

from __future__ import annotations

import argparse
import sys


class ExampleFormatter(argparse.HelpFormatter):
    """Wraps the description as usual but prints an ``example: mmad ...`` epilog on one line (copyable)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("example"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def add_group(subparsers, name: str, help: str) -> argparse._SubParsersAction:
    """Add a command group (``mmad NAME ...``) and return its sub-parsers."""
    p = subparsers.add_parser(name, help=help, description=help)
    p.set_defaults(group_parser=p)
    return p.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND")


# The command-line grammar (README "Command line"; tests/test_cli_grammar.py walks every parser):
# one spelling per concept, old spellings kept one release as hidden aliases that print a warning.
CONCEPT_FLAGS = {
    "split": "--split",  # a data split / subset: train, val, test
    "pred": "--pred",  # a prediction file (read or written)
    "checkpoint": "--checkpoint",  # the one model a command uses
    "config": "--config",
    "out": "--out",  # where outputs go
}
DEPRECATED_FLAGS = {"--subset": "--split", "--submission": "--pred", "--predictions": "--pred",
                    "--recognizer": "--checkpoint"}
TRAIN_ONLY_FLAGS = ("--epochs", "--resume")


class DeprecatedAlias(argparse.Action):
    """An old spelling of a flag: stores into the new flag's dest and prints one warning line."""

    def __init__(self, option_strings, dest, *, new: str, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"warning: {option_string} is deprecated and goes away in the next release; use {self.new}",
              file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_deprecated(p: argparse.ArgumentParser, old: str, new: str, **kwargs) -> None:
    """Accept ``old`` as a hidden alias of ``new`` (same dest, a warning when used)."""
    dest = new.lstrip("-").replace("-", "_")
    p.add_argument(old, dest=dest, action=DeprecatedAlias, new=new, help=argparse.SUPPRESS,
                   default=argparse.SUPPRESS, **kwargs)


def add_config_flags(p: argparse.ArgumentParser, *, checkpoint_config: bool = False,
                     config_optional: bool = False, data: bool = True,
                     example: str = "data.num_frames=16") -> None:
    """``--config``, ``--data`` and ``--set``.

    ``checkpoint_config``: the command reads a checkpoint that carries its config, so ``--config``
    is optional (a given one overrides the stored one). ``config_optional``: the defaults suffice.
    """
    if checkpoint_config:
        help = "YAML config file (default: the config stored in the checkpoint; a given file overrides it)"
    elif config_optional:
        help = "YAML config file (default: the built-in defaults)"
    else:
        help = "YAML config file (a path, or the name of a shipped one: configs/recognition/micropuppet.yaml)"
    p.add_argument("--config", required=not (checkpoint_config or config_optional), help=help)
    if data:
        p.add_argument("--data", metavar="DIR", help="dataset root (overrides data.root)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"set any config field by its dotted path, e.g. --set {example} (repeatable)")


def add_train_flags(p: argparse.ArgumentParser) -> None:
    """The flags only train commands take: ``--out`` as the run folder, ``--epochs``, ``--resume``."""
    p.add_argument("--out", metavar="RUN", help="run folder (overrides the config's out)")
    p.add_argument("--epochs", type=int, help="number of epochs (overrides train.epochs)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/last.pt")
    p.add_argument("--allow-config-change", action="store_true",
                   help="with --resume: continue although the config differs from the checkpoint's")


def add_run_flags(p: argparse.ArgumentParser, config_required: bool = True,
                  example: str = "data.num_frames=16") -> None:
    """The flags of a train command: config flags plus train flags."""
    add_config_flags(p, config_optional=not config_required, example=example)
    add_train_flags(p)


def add_split_flag(p: argparse.ArgumentParser, help: str) -> None:
    """``--split NAME`` (old spelling ``--subset``)."""
    p.add_argument("--split", metavar="NAME", help=help)
    add_deprecated(p, "--subset", "--split", metavar="NAME")


def add_device_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")


def add_precision_flag(p: argparse.ArgumentParser, default: str | None = "auto") -> None:
    """``--precision``: the autocast the model runs under (mmad.engine.precision)."""
    from mmad.engine.precision import PRECISIONS

    p.add_argument("--precision", choices=PRECISIONS, default=default,
                   help="autocast: auto (bf16 on GPUs that have it, else fp16; bf16 on CPUs with native "
                        f"bf16, else fp32), fp32, bf16 or fp16 (default {default or 'encoder.precision'})")


def run_overrides(args) -> list[str]:
    """Turn the common flags into config overrides (--data/--out/--epochs first, then --set).

    ``--out`` sets the config's ``out`` only on train commands (elsewhere it names the output folder).
    """
    out = []
    if getattr(args, "data", None):
        out.append(f"data.root={args.data}")
    if getattr(args, "out", None) and hasattr(args, "resume"):
        out.append(f"out={args.out}")
    if getattr(args, "epochs", None) is not None:
        out.append(f"train.epochs={args.epochs}")
    out.extend(getattr(args, "overrides", []) or [])
    return out


def load_run_config(cls, args, checkpoint: str | None = None, *, kind: str | None = None):
    """The config of a command: ``--config`` when given, else the one stored in ``checkpoint`` (else
    the defaults), then ``--data``/``--out``/``--epochs`` and ``--set`` over it. ``kind`` is the kind
    of checkpoint the command needs ("recognition", "detection"); another kind is a one-line error."""
    from mmad.config import load_config

    if getattr(args, "config", None) or checkpoint is None:
        return load_config(cls, getattr(args, "config", None), run_overrides(args))
    return load_config(cls, None, run_overrides(args), base=stored_config(checkpoint, kind=kind),
                       base_source=checkpoint)


def stored_config(checkpoint: str, *, kind: str | None = None) -> dict:
    """The config dict a checkpoint of ``fit`` carries; a :class:`ConfigError` when it has none.

    The file is read through :func:`mmad.engine.read_checkpoint`, so a missing, unreadable or
    wrong-kind checkpoint is a :class:`DataError` naming it.
    """
    from mmad.engine import read_checkpoint
    from mmad.errors import ConfigError

    stored = read_checkpoint(checkpoint, kind=kind).get("config")
    if not isinstance(stored, dict) or not stored:
        raise ConfigError(f"{checkpoint}: the checkpoint stores no config; give one with --config")
    return stored


def is_main_process() -> bool:
    """False in every ``torchrun`` process but rank 0 (those print no summary)."""
    import os

    return int(os.environ.get("RANK", "0")) == 0
