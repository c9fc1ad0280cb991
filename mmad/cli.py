"""The ``mmad`` command line: parses, calls a stage, prints, exits.

Each command group lives in ``mmad/commands/<group>.py`` with a ``register(subparsers)``
function; those modules import nothing heavy at module level (the stage code is imported
inside each handler), so ``mmad --help`` is instant. A user's mistake (:class:`DataError`,
:class:`ConfigError`, a missing file) prints one line on stderr and exits with status 2.

``-q``/``-v`` work anywhere on the line (``mmad -q data synth ...`` or ``mmad data synth ... -q``)
and set the logging level of the whole run (see :mod:`mmad.progress`).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mmad.errors import ConfigError, DataError

# Command groups, in the order shown by --help.
COMMAND_MODULES = (
    "mmad.commands.data",
    "mmad.commands.eval",
    "mmad.commands.recognition",
    "mmad.commands.detection",
    "mmad.commands.pose",
    "mmad.commands.interop",
    "mmad.commands.analyze",
    "mmad.commands.view",
    "mmad.commands.demo",
    "mmad.commands.config",
)


def _add_verbosity(p: argparse.ArgumentParser, default) -> None:
    group = p.add_argument_group("output")
    group.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1, default=default,
                       help="warnings and errors only: no progress")
    group.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=1, default=default,
                       help="more detail (debug messages)")


def iter_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every parser of the command tree as ``(("recognition", "test"), parser)``, the root first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from iter_parsers(sub, (*path, name))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmad",
        description="Micro-action understanding: recognition (Micro-DualNet), temporal detection, evaluation.",
    )
    from mmad import __version__

    parser.add_argument("--version", action="version", version=f"mmad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # group not built yet
                continue
            raise
        module.register(sub)
    _add_verbosity(parser, 0)
    for path, p in iter_parsers(parser):
        if path:  # the flags after the subcommand too; SUPPRESS keeps a value given before it
            _add_verbosity(p, argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from mmad.progress import configure_logging, reset_logging

    configure_logging(args.verbosity)
    try:
        return _run(parser, args)
    finally:
        reset_logging()


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    func = getattr(args, "func", None)
    if func is None:
        # a group without its subcommand, or nothing at all
        target = getattr(args, "group_parser", parser)
        target.print_help()
        return 2
    try:
        rc = func(args)
    except (DataError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"error: {e.filename or ''}: file not found", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `mmad data stats ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
