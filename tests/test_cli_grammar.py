"""The command-line grammar (README "Command line"), checked over every parser of the ``mmad`` tree."""

from __future__ import annotations

import argparse
import contextlib
import io
import logging

import pytest
import torch

from mmad.cli import build_parser, iter_parsers, main
from mmad.commands import DEPRECATED_FLAGS, TRAIN_ONLY_FLAGS, DeprecatedAlias, load_run_config
from mmad.errors import ConfigError

PARSER = build_parser()
LEAVES = {path: p for path, p in iter_parsers(PARSER) if p.get_default("func") is not None}
# commands that read a checkpoint storing its config
CHECKPOINT_COMMANDS = {("recognition", "test"), ("recognition", "interpret"), ("detection", "test")}


def visible_options(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in p._actions if a.help != argparse.SUPPRESS for s in a.option_strings}


def all_options(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in p._actions for s in a.option_strings}


def test_the_tree_has_the_commands():
    names = {" ".join(path) for path in LEAVES}
    for expected in ("data synth", "data check", "data stats", "eval detection", "eval recognition",
                     "recognition train", "recognition test", "recognition interpret", "detection extract",
                     "detection train", "detection test", "detect", "demo", "config show"):
        assert expected in names


@pytest.mark.parametrize("path", sorted(LEAVES), ids=" ".join)
def test_one_spelling_per_concept(path):
    p = LEAVES[path]
    shown = visible_options(p)
    every = all_options(p)
    for old, new in DEPRECATED_FLAGS.items():
        if old == "--recognizer" and "--detector" in shown:
            continue  # two models: --recognizer/--detector is the grammar
        assert old not in shown, f"mmad {' '.join(path)} shows {old}; the grammar says {new}"
        if old in every:  # an old spelling kept for one release: hidden, warns, same dest as the new one
            action = every[old]
            assert isinstance(action, DeprecatedAlias) and action.new == new and new in shown
            assert action.dest == every[new].dest
    for option, action in shown.items():
        assert action.dest not in ("subset", "predictions", "submission"), option


@pytest.mark.parametrize("path", sorted(LEAVES), ids=" ".join)
def test_train_only_flags_only_on_train(path):
    shown = visible_options(LEAVES[path])
    for flag in TRAIN_ONLY_FLAGS:
        if path[-1] != "train":
            assert flag not in shown, f"mmad {' '.join(path)} takes the train-only flag {flag}"
    if path[-1] == "train" and path[0] != "demo":
        assert all(flag in shown for flag in TRAIN_ONLY_FLAGS)


@pytest.mark.parametrize("path", sorted(CHECKPOINT_COMMANDS), ids=" ".join)
def test_config_optional_where_the_checkpoint_carries_it(path):
    shown = visible_options(LEAVES[path])
    assert not shown["--config"].required
    assert shown["--checkpoint"].required


@pytest.mark.parametrize("path", sorted(LEAVES), ids=" ".join)
def test_every_command_takes_quiet_and_verbose(path):
    shown = visible_options(LEAVES[path])
    assert "-q" in shown and "-v" in shown
    argv = list(path) + ["-h"]
    with pytest.raises(SystemExit) as e, contextlib.redirect_stdout(io.StringIO()):
        PARSER.parse_args(argv)
    assert e.value.code == 0


@pytest.mark.parametrize("argv,dest,value", [
    (["eval", "detection", "--gt", "g", "--pred", "p", "--subset", "val"], "split", "val"),
    (["data", "stats", "f.json", "--subset", "val"], "split", "val"),
    (["recognition", "test", "--checkpoint", "k", "--submission", "s.csv"], "pred", "s.csv"),
    (["detection", "test", "--checkpoint", "k", "--predictions", "p.csv"], "pred", "p.csv"),
    (["detection", "extract", "--recognizer", "k"], "checkpoint", "k"),
])
def test_old_spellings_still_work_with_a_warning(argv, dest, value):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        args = PARSER.parse_args(argv)
    assert getattr(args, dest) == value
    old = next(a for a in argv if a in DEPRECATED_FLAGS)
    assert f"warning: {old} is deprecated" in err.getvalue() and DEPRECATED_FLAGS[old] in err.getvalue()


def test_quiet_and_verbose_before_or_after_the_command():
    assert PARSER.parse_args(["-q", "config", "list"]).verbosity == -1
    assert PARSER.parse_args(["config", "list", "-q"]).verbosity == -1
    assert PARSER.parse_args(["config", "list", "-v"]).verbosity == 1
    assert PARSER.parse_args(["config", "list"]).verbosity == 0


def test_quiet_hides_progress_and_verbose_shows_debug():
    from mmad.progress import configure_logging, progress, reset_logging

    def run(verbosity):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            configure_logging(verbosity)
            try:
                list(progress(range(5), desc="work", unit="thing", every=2))
                logging.getLogger("mmad.test").debug("detail")
                logging.getLogger("detection.test").warning("careful")
                logging.getLogger("somebody.else").info("not ours")
            finally:
                reset_logging()
        return err.getvalue()

    default = run(0)
    assert default.splitlines()[:2] == ["work: 2/5 things (40%)" + default.splitlines()[0][22:],
                                        default.splitlines()[1]]
    assert "work: 5/5 things (100%)" in default and "detail" not in default and "careful" in default
    assert "not ours" not in default
    assert run(-1) == "careful\n"
    assert "detail" in run(1)


def test_progress_lines_have_rate_and_eta():
    from mmad.progress import Progress

    bar = Progress(total=300, desc="extract", unit="video", bar=False)
    bar.count, bar.started = 30, bar.started - 12.0  # 30 videos in 12 s
    line = bar.line()
    assert line.startswith("extract: 30/300 videos (10%), 2.5 videos/s, ETA 1:48"), line
    bar.count = 3  # 3 videos in 12 s: slower than one a second reads as seconds per video
    assert bar.line() == "extract: 3/300 videos (1%), 4 s/video, ETA 19:48"


def test_main_leaves_logging_as_it_was():
    root = logging.getLogger()
    before = list(root.handlers)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["config", "list"]) == 0
    assert root.handlers == before


def stored_checkpoint(tmp_path, config: dict):
    path = tmp_path / "best.pt"
    torch.save({"model": {}, "config": config}, path)
    return str(path)


def test_checkpoint_config_is_used_and_a_given_config_overrides(tmp_path):
    from recognition.config import RecognitionConfig

    checkpoint = stored_checkpoint(tmp_path, {"data": {"num_frames": 4, "root": "somewhere"}, "out": "runs/x"})
    args = PARSER.parse_args(["recognition", "test", "--checkpoint", checkpoint, "--set", "data.image_size=96"])
    cfg = load_run_config(RecognitionConfig, args, checkpoint)
    assert cfg.data.num_frames == 4 and cfg.data.root == "somewhere" and cfg.data.image_size == 96
    own = tmp_path / "own.yaml"
    own.write_text("data:\n  num_frames: 12\n")
    args = PARSER.parse_args(["recognition", "test", "--checkpoint", checkpoint, "--config", str(own),
                              "--data", "elsewhere"])
    cfg = load_run_config(RecognitionConfig, args, checkpoint)
    assert cfg.data.num_frames == 12 and cfg.data.root == "elsewhere"


def test_a_bad_stored_value_names_the_checkpoint(tmp_path):
    from recognition.config import RecognitionConfig

    checkpoint = stored_checkpoint(tmp_path, {"data": {"num_frames": "many"}})
    args = PARSER.parse_args(["recognition", "test", "--checkpoint", checkpoint])
    with pytest.raises(ConfigError, match=r"best\.pt: data\.num_frames: expected an integer, got 'many'"):
        load_run_config(RecognitionConfig, args, checkpoint)


def test_a_checkpoint_without_config_asks_for_one(tmp_path, capsys):
    path = tmp_path / "bare.pt"
    torch.save({"model": {}}, path)
    assert main(["recognition", "test", "--checkpoint", str(path)]) == 2
    assert "stores no config; give one with --config" in capsys.readouterr().err


def test_train_out_is_the_run_folder_but_test_out_is_not(tmp_path):
    from mmad.commands import run_overrides

    train = PARSER.parse_args(["recognition", "train", "--config", "c.yaml", "--out", "R", "--epochs", "3"])
    assert run_overrides(train) == ["out=R", "train.epochs=3"]
    test = PARSER.parse_args(["recognition", "test", "--checkpoint", "k", "--out", "D"])
    assert run_overrides(test) == []


def test_extraction_writes_outside_the_dataset_by_default():
    from detection.config import DetectionConfig

    cfg = DetectionConfig()
    assert cfg.data.feature_path.parts[0] != cfg.data.root.split("/")[0]
    cfg.data.root = "/data/read_only/mma52"
    assert not str(cfg.data.feature_path).startswith(cfg.data.root)


def test_long_steps_show_progress_unless_quiet(tmp_path):
    """data synth and data check report progress on stderr (lines, not a bar, off a terminal); -q hides it."""

    def run(*argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            assert main([str(a) for a in argv]) == 0
        return out.getvalue(), err.getvalue()

    out, err = run("data", "synth", "detection", "--preset", "tiny", "--out", tmp_path / "d")
    assert "render: 4/4 videos (100%)" in err and "wrote detection dataset" in out
    _, err = run("data", "check", tmp_path / "d")
    assert "check train:" in err and "items (100%)" in err
    out, err = run("-q", "data", "check", tmp_path / "d")
    assert err == "" and out
