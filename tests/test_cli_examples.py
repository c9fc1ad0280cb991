"""Every ``mmad ...`` example printed by ``--help`` and written in the README runs or, where it needs
a real dataset or a trained model, parses and loads its config with its ``--set`` overrides (a dry
run), so the documentation cannot drift from the code."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from pathlib import Path

import pytest

from mmad.cli import build_parser, iter_parsers, main
from mmad.commands import run_overrides
from mmad.config import field_paths, find_config_file, load_config

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
# examples run for real, in this order, in one scratch folder (tiny data, seconds)
RUN_FOR_REAL = (("data", "synth"), ("data", "check"), ("data", "stats"), ("config", "show"), ("config", "list"))


def help_examples() -> list[str]:
    """The ``example: mmad ...`` lines of every parser's epilog."""
    found = []
    for _, p in iter_parsers(build_parser()):
        for match in re.finditer(r"example: (mmad .+)", p.epilog or ""):
            found.append(match.group(1).strip())
    return found


def readme_examples() -> list[str]:
    """``mmad ...`` commands in the README's code blocks (continuations joined, ``&&`` split,
    ``torchrun ... -m mmad.cli`` read as ``mmad``)."""
    text = README.read_text(encoding="utf-8")
    found = []
    for language, block in re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M):
        if language not in ("bash", "sh", ""):
            continue
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            for part in line.split("&&"):
                part = part.strip()
                if "-m mmad.cli " in part:
                    part = "mmad " + part.split("-m mmad.cli ", 1)[1]
                if part.startswith("mmad ") and "[" not in part:
                    found.append(" ".join(part.split()))
    return found


def readme_mentions() -> list[str]:
    """``mmad ...`` inline code spans of the README's prose (often partial: a command and a flag)."""
    prose = re.sub(r"^```.*?^```", "", README.read_text(encoding="utf-8"), flags=re.S | re.M)
    return sorted({" ".join(span.split()) for span in re.findall(r"`(mmad [^`]+)`", prose)})


@pytest.mark.parametrize("mention", readme_mentions())
def test_readme_mentions_name_real_commands_and_flags(mention):
    """A mention need not be complete, but its command and every flag it names must exist."""
    parsers = dict(iter_parsers(build_parser()))
    words = shlex.split(mention)[1:]
    path: tuple[str, ...] = ()
    for word in words:
        if (*path, word) in parsers:
            path = (*path, word)
        elif not word.startswith("-"):
            break
    assert path, f"`{mention}` names no command"
    options = {s for a in parsers[path]._actions for s in a.option_strings}
    for flag in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", mention):
        assert flag in options, f"`{mention}`: mmad {' '.join(path)} has no {flag}"


def dry_run(argv: list[str]) -> None:
    """Parse ``argv`` and load the config it names with its overrides (no data, no model needed)."""
    parser = build_parser()
    with contextlib.redirect_stderr(io.StringIO()) as err:
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:
            raise AssertionError(f"mmad {' '.join(argv)} does not parse: {err.getvalue().strip()}") from e
    assert getattr(args, "func", None) is not None, f"mmad {' '.join(argv)} names no command"
    if not hasattr(args, "overrides") or args.command not in ("recognition", "detection"):
        return
    if args.command == "recognition":
        from recognition.config import RecognitionConfig as cls
    else:
        from detection.config import DetectionConfig as cls
    config = find_config_file(args.config) if getattr(args, "config", None) else None
    load_config(cls, config, run_overrides(args))


EXAMPLES = sorted(set(help_examples() + readme_examples()))


def test_examples_were_found():
    helps, readme = help_examples(), readme_examples()
    assert len(helps) >= 8 and len(readme) >= 10
    assert any("--set data.num_frames=16" in e for e in helps)


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_parses_and_its_config_loads(example):
    dry_run(shlex.split(example)[1:])


def test_examples_that_need_no_dataset_run(tmp_path, monkeypatch):
    """The data/config examples run for real in a scratch folder, synth first (tiny data)."""
    monkeypatch.chdir(tmp_path)
    runnable = [e for e in EXAMPLES if tuple(shlex.split(e)[1:3]) in RUN_FOR_REAL]
    runnable.sort(key=lambda e: RUN_FOR_REAL.index(tuple(shlex.split(e)[1:3])))
    assert len(runnable) >= 5
    for example in runnable:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(shlex.split(example)[1:])
        assert rc == 0, f"{example}: exit {rc}\n{err.getvalue()}"
    assert os.path.isfile("check.json")


def test_the_dry_run_catches_a_wrong_set_key():
    with pytest.raises(Exception, match=r"--set model.num_frames=16: unknown config key 'model.num_frames' "
                                         r"\(did you mean 'data.num_frames'\?\)"):
        dry_run(["recognition", "train", "--config", "configs/recognition/micropuppet.yaml",
                 "--set", "model.num_frames=16"])


def test_set_examples_in_help_texts_name_real_fields():
    """``--set KEY=...`` in any option's help names a field of the group's config."""
    from detection.config import DetectionConfig
    from recognition.config import RecognitionConfig

    fields = {"recognition": set(field_paths(RecognitionConfig)), "detection": set(field_paths(DetectionConfig))}
    seen = 0
    for path, p in iter_parsers(build_parser()):
        texts = [a.help or "" for a in p._actions] + [p.description or "", p.epilog or ""]
        for key in re.findall(r"--set ([\w.]+)=", " ".join(texts)):
            allowed = fields.get(path[0] if path else "", fields["recognition"] | fields["detection"])
            assert key in allowed, f"mmad {' '.join(path)}: help names --set {key}, not a config field"
            seen += 1
    assert seen > 0
