"""What a user can get wrong and what the machine can do: each case ends in one line naming the file, status 2.

Table-driven through ``mmad.cli.main``: every command that loads a checkpoint, given each kind of
bad file; eval on an empty submission; output folders in the way; a full disk during a write;
lock files; NaN losses, signals and changed configs during training; an empty validation shard
under torchrun. Every case also checks that no traceback was printed and nothing that existed
before was changed.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import yaml

from mmad.cli import main
from mmad.errors import ConfigError, DataError

torch.set_num_threads(1)
TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

from test_engine import (  # noqa: E402
    ToyTask,
    _free_port,
    assert_same_tensors,
    final_state,
    small_optim,
    small_train,
)

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def run_cli(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def assert_one_line_error(rc: int, err: str, *names) -> None:
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (to show that nothing was changed)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------- tiny checkpoints


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """Configs, a recognizer (last.pt and a different best.pt), a detector trained on last.pt, a video."""
    from detection.config import DetectionConfig
    from detection.features import checkpoint_hash
    from detection.task import build_detector
    from mmad.config import from_dict, to_dict
    from mmad.video import write_video
    from recognition.config import RecognitionConfig
    from recognition.model import build_model

    base = tmp_path_factory.mktemp("hardening")
    rec_tree = {
        "model": {"num_classes": 52, "dim": 16, "backbone": {"arch": "resnet18"},
                  "sem": {"roi_size": 2, "pose_hidden": 16},
                  "transformer": {"num_layers": 1, "num_heads": 2, "ffn_dim": 32}, "head": {"hidden_dim": 16}},
        "data": {"root": str(base / "no_data"), "num_frames": 2, "frame_stride": 4, "image_size": 64,
                 "resize_short_side": 64},
        "train": {"epochs": 1, "batch_size": 2, "num_workers": 0, "amp": False, "progress_bar": False,
                  "tensorboard": False},
        "out": str(base / "unused"),
    }
    rcfg = from_dict(RecognitionConfig, rec_tree)
    (base / "rec").mkdir()
    for name, seed in (("last.pt", 0), ("best.pt", 1)):
        torch.manual_seed(seed)
        torch.save({"format": 1, "kind": "recognition", "model": build_model(rcfg.model).state_dict(), "ema": None,
                    "config": to_dict(rcfg)}, base / "rec" / name)
    det_tree = {
        "data": {"root": str(base / "no_data"), "feature_dir": str(base / "features"), "num_workers": 0},
        "model": {"feature_dim": 512 + 16, "num_classes": 52, "embed_dim": 16, "num_levels": 2,
                  "num_stem_layers": 1, "num_heads": 2, "head_convs": 1},
        "train": {"epochs": 1, "batch_size": 2, "num_workers": 0, "amp": False, "tensorboard": False,
                  "progress_bar": False},
        "encoder": {"stride_frames": 4, "chunk_frames": 8, "device": "cpu"},
        "out": str(base / "det_run"),
    }
    dcfg = from_dict(DetectionConfig, {**det_tree, "data": {**det_tree["data"],
                                                              "encoder_hash": checkpoint_hash(base / "rec" / "last.pt")}})
    (base / "det").mkdir()
    torch.manual_seed(0)
    torch.save({"format": 1, "kind": "detection", "model": build_detector(dcfg).state_dict(), "ema": None,
                "config": to_dict(dcfg)}, base / "det" / "last.pt")
    (base / "rec.yaml").write_text(yaml.safe_dump(rec_tree))
    (base / "det.yaml").write_text(yaml.safe_dump(det_tree))
    video = write_video(base / "clip.mp4", [np.full((64, 64, 3), 40 * i, np.uint8) for i in range(6)], 10.0)
    (base / "keypoints").mkdir()
    return SimpleNamespace(base=base, rec=base / "rec" / "last.pt", rec_best=base / "rec" / "best.pt",
                           det=base / "det" / "last.pt", rec_cfg=base / "rec.yaml", det_cfg=base / "det.yaml",
                           video=video, keypoints=base / "keypoints")


class _Code:  # pickled as a reference to this class: refused by weights-only loading
    pass


def make_bad(case: str, folder: Path, kit, *, wrong_kind: Path) -> Path:
    """A file (or folder) of the given kind of badness at ``folder/<case>.pt``."""
    path = folder / f"{case}.pt"
    if case == "missing":
        return path
    if case == "folder":
        path.mkdir()
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        data = kit.rec.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif case == "text":
        path.write_text("model:\n  dim: 16\nthis is a YAML file, not weights\n")
    elif case == "pickle":
        path.write_bytes(pickle.dumps({"model": _Code()}, protocol=2))
    elif case == "bare_state_dict":
        torch.save({"conv.weight": torch.zeros(2, 2)}, path)
    elif case == "wrong_kind":
        path.write_bytes(wrong_kind.read_bytes())
    return path


CHECKPOINT_CASES = {
    "missing": "checkpoint not found",
    "folder": "is a folder",
    "empty": "empty file",
    "truncated": "truncated or damaged",
    "random": "not a checkpoint",
    "text": "a text file, not a checkpoint",
    "pickle": "pickle that weights-only loading refuses",
    "bare_state_dict": "bare state dict",
    "wrong_kind": "checkpoint is needed here",
}

# (name, argv builder, which good checkpoint is the wrong kind here, cases that apply)
COMMANDS = {
    "recognition test": (lambda k, bad, tmp: ["recognition", "test", "--config", k.rec_cfg, "--checkpoint", bad],
                         "det", tuple(CHECKPOINT_CASES)),
    "recognition interpret": (lambda k, bad, tmp: ["recognition", "interpret", "--config", k.rec_cfg, "--checkpoint",
                                                   bad, "--out", tmp / "interpret"], "det", tuple(CHECKPOINT_CASES)),
    "detection test": (lambda k, bad, tmp: ["detection", "test", "--config", k.det_cfg, "--checkpoint", bad],
                       "rec", tuple(CHECKPOINT_CASES)),
    "detection extract": (lambda k, bad, tmp: ["detection", "extract", "--config", k.det_cfg, "--checkpoint", bad],
                          "det", tuple(CHECKPOINT_CASES)),
    "detect --recognizer": (lambda k, bad, tmp: ["detect", k.video, "--keypoints", k.keypoints, "--recognizer", bad,
                                                 "--detector", k.det, "--out", tmp / "out"],
                            "det", tuple(CHECKPOINT_CASES)),
    "detect --detector": (lambda k, bad, tmp: ["detect", k.video, "--keypoints", k.keypoints, "--recognizer", k.rec,
                                               "--detector", bad, "--out", tmp / "out"],
                          "rec", tuple(CHECKPOINT_CASES)),
    "train --resume": (lambda k, bad, tmp: ["recognition", "train", "--config", k.rec_cfg, "--out", bad.parent,
                                            "--resume"],
                       "det", tuple(c for c in CHECKPOINT_CASES if c != "missing")),
    "pretrained backbone": (lambda k, bad, tmp: ["recognition", "train", "--config", k.rec_cfg, "--out",
                                                 tmp / "run", "--set", f"model.backbone.pretrained={bad}"],
                            None, ("folder", "empty", "truncated", "random", "text", "pickle")),
}


@pytest.mark.parametrize("case", list(CHECKPOINT_CASES))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_bad_checkpoint_is_one_line_naming_it(kit, tmp_path, command, case):
    build, wrong, cases = COMMANDS[command]
    if case not in cases:
        pytest.skip(f"{case} does not apply to {command}")
    folder = tmp_path / "run" if command == "train --resume" else tmp_path
    folder.mkdir(exist_ok=True)
    wrong_kind = kit.det if wrong == "det" else kit.rec
    bad = make_bad(case, folder, kit, wrong_kind=wrong_kind)
    if command == "train --resume":  # the run folder's last.pt is the bad file
        bad = bad.rename(folder / "last.pt") if bad.exists() else folder / "last.pt"
    before = snapshot(kit.base)
    bad_bytes = bad.read_bytes() if bad.is_file() else None
    rc, out, err = run_cli(build(kit, bad, tmp_path))
    assert_one_line_error(rc, err, bad, CHECKPOINT_CASES[case])
    if case == "wrong_kind":
        assert ("detection checkpoint" if wrong == "det" else "recognition checkpoint") in err
    assert snapshot(kit.base) == before
    if bad_bytes is not None:
        assert bad.read_bytes() == bad_bytes
    assert not (tmp_path / "out").exists()  # detect checks its inputs before writing anything


def test_ema_weights_that_do_not_fit_are_one_line(tmp_path):
    from mmad.engine import evaluate_checkpoint

    fit_dir = tmp_path / "run"
    from mmad.engine import fit

    fit(ToyTask(), small_train(epochs=1, ema=0.9), small_optim(), fit_dir)
    ckpt = final_state(fit_dir)
    ckpt["ema"] = {k: torch.zeros(3) for k in ckpt["ema"]}
    torch.save(ckpt, tmp_path / "bad_ema.pt")
    with pytest.raises(DataError, match=r"bad_ema.pt: its EMA weights do not fit this model: tensors .* shape"):
        evaluate_checkpoint(ToyTask(), tmp_path / "bad_ema.pt", device="cpu", use_ema=True)
    evaluate_checkpoint(ToyTask(), tmp_path / "bad_ema.pt", device="cpu", use_ema=False)  # the weights are fine


def test_a_detector_names_the_recognizer_it_was_trained_with(kit, tmp_path):
    """The demo mismatch: a detector trained on last.pt's features, given best.pt."""
    rc, _, err = run_cli(["detect", kit.video, "--keypoints", kit.keypoints, "--recognizer", kit.rec_best,
                          "--detector", kit.det, "--out", tmp_path / "out"])
    assert_one_line_error(rc, err, kit.det, kit.rec_best, f"{kit.rec} beside it fits")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------- eval and other files


def test_an_empty_detection_submission_scores_zero_with_a_warning(tmp_path):
    gt = tmp_path / "gt.csv"
    gt.write_text("id,video_id,start_frame,end_frame,class,total_frames,fps\n0,v0,30,90,3,300,30.0\n")
    for name, body in (("header.csv", ",video_id,t_start,t_end,class,score\n"), ("empty.json", '{"results": {}}')):
        pred = tmp_path / name
        pred.write_text(body)
        rc, out, err = run_cli(["eval", "detection", "--gt", gt, "--pred", pred, "--json"])
        assert rc == 0
        assert err.count("\n") == 1 and err.startswith("warning:") and str(pred) in err and "AP is 0" in err
        report = json.loads(out)
        assert report["average_mAP"] == 0.0 and report["num_predictions"] == 0


@pytest.mark.parametrize("case, problem", [
    ("folder", "is a folder"),
    ("utf16", "not a readable CSV"),
    ("random", "not a readable CSV"),
    ("missing", "file not found"),
    ("empty", "empty file"),
])
def test_bad_prediction_files_for_eval(tmp_path, case, problem):
    gt = tmp_path / "gt.csv"
    gt.write_text("id,video_id,start_frame,end_frame,class,total_frames,fps\n0,v0,30,90,3,300,30.0\n")
    pred = tmp_path / "pred.csv"
    if case == "folder":
        pred.mkdir()
    elif case == "utf16":
        pred.write_text(",video_id,t_start,t_end,class,score\n0,v0,1,2,3,0.5\n", encoding="utf-16")
    elif case == "random":
        pred.write_bytes(np.random.default_rng(1).bytes(3000))
    elif case == "empty":
        pred.write_bytes(b"")
    rc, _, err = run_cli(["eval", "detection", "--gt", gt, "--pred", pred])
    assert_one_line_error(rc, err, pred, problem)


@pytest.mark.parametrize("case, problem", [
    ("folder", "is a folder, not a YAML config file"),
    ("latin1", "not UTF-8 text"),
    ("binary", "not UTF-8 text"),
    ("missing", "config file not found"),
    ("broken", "not valid YAML"),
])
def test_bad_config_files(tmp_path, case, problem):
    config = tmp_path / "c.yaml"
    if case == "folder":
        config.mkdir()
    elif case == "latin1":
        config.write_bytes("out: caf\u00e9\n".encode("latin-1"))
    elif case == "binary":
        config.write_bytes(b"\xff\xfe\x00b\x00a")
    elif case == "broken":
        config.write_text("train: [1, 2\n")
    rc, _, err = run_cli(["recognition", "train", "--config", config, "--out", tmp_path / "run"])
    assert_one_line_error(rc, err, config, problem)
    assert not (tmp_path / "run").exists()


def test_an_output_folder_that_is_a_file(kit, tmp_path):
    blocker = tmp_path / "run"
    blocker.write_text("keep me\n")
    rc, _, err = run_cli(["recognition", "train", "--config", kit.rec_cfg, "--out", blocker])
    assert_one_line_error(rc, err, blocker, "is a file, but a folder is needed")
    rc, _, err = run_cli(["recognition", "train", "--config", kit.rec_cfg, "--out", blocker / "sub"])
    assert_one_line_error(rc, err, blocker, "is a file")
    assert blocker.read_text() == "keep me\n"


def test_an_output_file_that_is_a_folder(tmp_path):
    from mmad.fileio import atomic_write_text

    (tmp_path / "report.txt").mkdir()
    with pytest.raises(DataError, match="report.txt: is a folder"):
        atomic_write_text(tmp_path / "report.txt", "x")
    assert (tmp_path / "report.txt").is_dir()


@pytest.mark.skipif(AS_ROOT, reason="root reads and writes files whatever their permissions")
def test_unreadable_checkpoint_and_read_only_output(kit, tmp_path):
    from mmad.fileio import atomic_write_text

    locked = tmp_path / "locked.pt"
    locked.write_bytes(kit.rec.read_bytes())
    locked.chmod(0)
    rc, _, err = run_cli(["recognition", "test", "--config", kit.rec_cfg, "--checkpoint", locked])
    assert_one_line_error(rc, err, locked, "permission denied")
    read_only = tmp_path / "ro"
    read_only.mkdir()
    (read_only / "a.txt").write_text("old")
    read_only.chmod(0o555)
    try:
        with pytest.raises(DataError, match="cannot write"):
            atomic_write_text(read_only / "a.txt", "new")
    finally:
        read_only.chmod(0o755)
    assert (read_only / "a.txt").read_text() == "old"


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_disk_that_fills_mid_write_keeps_the_old_file(tmp_path, monkeypatch, code):
    """A checkpoint write that fails half-way: one-line error, the previous last.pt intact, no temporary file."""
    from mmad.engine import checkpoint as checkpoint_module
    from mmad.engine import fit

    fit(ToyTask(), small_train(epochs=3), small_optim(), tmp_path, stop_after=1)
    before = (tmp_path / "last.pt").read_bytes()
    real_save = torch.save

    def full_disk(obj, f):
        real_save(obj, f)
        f.write(b"half a tensor")
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    with pytest.raises(DataError, match=rf"last.pt: cannot write \({os.strerror(code)}\); any previous version"):
        fit(ToyTask(), small_train(epochs=3), small_optim(), tmp_path, resume=True)
    monkeypatch.undo()
    assert (tmp_path / "last.pt").read_bytes() == before
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name or p.name == ".lock"]
    result = fit(ToyTask(), small_train(epochs=3), small_optim(), tmp_path, resume=True)  # and it resumes
    assert result.epochs_done == 3


# ------------------------------------------------------------------------------------- resume and config


def test_resume_on_a_folder_without_checkpoint_says_so(tmp_path, caplog):
    from mmad.engine import fit

    with caplog.at_level("WARNING", logger="mmad.engine"):
        result = fit(ToyTask(), small_train(epochs=1), small_optim(), tmp_path, resume=True)
    lines = [r.getMessage() for r in caplog.records if "nothing to resume" in r.getMessage()]
    assert len(lines) == 1 and str(tmp_path) in lines[0] and "starting a new run from epoch 1" in lines[0]
    assert result.epochs_done == 1


def test_a_changed_config_is_refused_on_resume_unless_allowed(tmp_path):
    from mmad.engine import fit

    config = {"optim": {"lr": 0.1}, "train": {"epochs": 3, "seed": 3}, "out": str(tmp_path)}
    fit(ToyTask(), small_train(epochs=3), small_optim(), tmp_path, config_dict=config, stop_after=1)
    before = snapshot(tmp_path)
    changed = {**config, "optim": {"lr": 0.2}, "out": "elsewhere", "train": {"epochs": 4, "seed": 3}}
    with pytest.raises(ConfigError) as info:
        fit(ToyTask(), small_train(epochs=4), small_optim(lr=0.2), tmp_path, config_dict=changed, resume=True)
    message = str(info.value)
    assert "optim.lr: 0.1 -> 0.2" in message and "--allow-config-change" in message and "\n" not in message
    assert "epochs" not in message and "out:" not in message  # a longer run and a moved folder are fine
    assert snapshot(tmp_path) == before
    result = fit(ToyTask(), small_train(epochs=4), small_optim(lr=0.2), tmp_path, config_dict=changed, resume=True,
                 allow_config_change=True)
    assert result.epochs_done == 4


def test_the_cli_has_the_flag_that_allows_a_changed_config(capsys):
    for group in ("recognition", "detection"):
        with pytest.raises(SystemExit):
            main([group, "train", "--help"])
        assert "--allow-config-change" in capsys.readouterr().out


# ------------------------------------------------------------------------------------- NaN losses


class NanAt(ToyTask):
    """The loss is NaN at the given (0-based) training steps."""

    def __init__(self, nan_steps, **kw):
        super().__init__(**kw)
        self.nan_steps = set(nan_steps)

    def training_step(self, model, batch):
        step = self.steps
        losses = super().training_step(model, batch)
        if step in self.nan_steps:
            losses["loss"] = losses["loss"] * float("nan")
        return losses


def test_a_nan_loss_stops_naming_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path):
    from mmad.engine import NonFiniteLossError, fit

    # 48 items, batch 8: 6 iterations per epoch; step 8 is epoch 2, iteration 3
    with pytest.raises(NonFiniteLossError) as info:
        fit(NanAt({8}), small_train(epochs=3), small_optim(), tmp_path)
    message = str(info.value)
    assert "epoch 2, iteration 3 of 6" in message and "last.pt keeps the last completed epoch" in message
    assert isinstance(info.value, ConfigError)  # the CLI prints it as one line, status 2
    assert final_state(tmp_path)["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in final_state(tmp_path)["model"].values())


def test_nan_steps_can_be_skipped_and_are_counted(tmp_path):
    from mmad.engine import NonFiniteLossError, fit

    result = fit(NanAt({2, 9}), small_train(epochs=2, max_nonfinite_steps=2), small_optim(), tmp_path / "a")
    assert result.epochs_done == 2 and result.history[-1]["train/nonfinite_steps"] == 2
    assert all(torch.isfinite(v).all() for v in final_state(tmp_path / "a")["model"].values())
    with pytest.raises(NonFiniteLossError, match="epoch 2, iteration 5 .*1 allowed"):
        fit(NanAt({2, 10}), small_train(epochs=2, max_nonfinite_steps=1), small_optim(), tmp_path / "b")


# ------------------------------------------------------------------------------------- signals and locks

CHILD = textwrap.dedent("""
    import os, sys, time
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from test_engine import ToyTask, small_train, small_optim
    from mmad.engine import TrainingInterrupted, fit

    class Slow(ToyTask):
        def training_step(self, model, batch):
            if self.steps == {pause_at}:
                open({marker!r}, "w").write(str(os.getpid()))
                time.sleep(1.5)  # the parent signals now
            return super().training_step(model, batch)

    try:
        fit(Slow(), small_train(ema=0.9), small_optim(), {run!r})
    except TrainingInterrupted as e:
        print("stopped:", e, file=sys.stderr)
        sys.exit(130)
    sys.exit(0)
""")


def _start_child(tmp_path: Path, run: Path, pause_at: int) -> tuple[subprocess.Popen, Path]:
    marker = tmp_path / "paused"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(TESTS), pause_at=pause_at, marker=str(marker), run=str(run)))
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.time() + 120
    while not marker.exists():
        assert child.poll() is None, child.communicate()
        assert time.time() < deadline
        time.sleep(0.02)
    return child, marker


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_writes_a_resumable_checkpoint_and_the_resumed_run_is_identical(tmp_path, sig):
    from mmad.engine import fit

    full = tmp_path / "full"
    fit(ToyTask(), small_train(ema=0.9), small_optim(), full)
    run = tmp_path / "run"
    child, _ = _start_child(tmp_path, run, pause_at=14)  # epoch 3, iteration 3
    # a second process on the same run folder is refused, naming the holder
    with pytest.raises(DataError) as info:
        fit(ToyTask(), small_train(ema=0.9), small_optim(), run, resume=True)
    assert f"in use by process {child.pid}" in str(info.value) and str(run / ".lock") in str(info.value)
    child.send_signal(sig)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert "Traceback" not in err and f"stopped at epoch 3, iteration 3 of 6; {run / 'last.pt'}" in err
    state = final_state(run)
    assert state["epoch"] == 2 and state["step_in_epoch"] == 3 and state["global_step"] == 15
    assert not (run / ".lock").exists()
    fit(ToyTask(), small_train(ema=0.9), small_optim(), run, resume=True)
    a, b = final_state(full), final_state(run)
    for key in ("model", "ema", "optimizer", "epoch", "global_step"):
        assert_same_tensors(a[key], b[key], key)
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[2]["train/loss"] == pytest.approx(expected[2]["train/loss"])


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    from mmad.engine import fit
    from mmad.fileio import FileLock, read_lock_holder

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = tmp_path / ".lock"
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "purpose": "training",
                                "since": "earlier"}))
    with caplog.at_level("WARNING"):
        result = fit(ToyTask(), small_train(epochs=1), small_optim(), tmp_path)
    assert result.epochs_done == 1 and not lock.exists()
    assert any("taking over the lock" in r.getMessage() for r in caplog.records)
    with FileLock(lock, purpose="test"):
        assert read_lock_holder(lock)["pid"] == os.getpid()
    assert not lock.exists()


def test_a_feature_cache_in_use_is_refused_naming_the_holder(kit, tmp_path):
    from detection.config import DetectionConfig
    from detection.encoder import extract_features
    from mmad.config import load_config

    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        cache = tmp_path / "features"
        cache.mkdir()
        lock = cache / ".extract_rank0.lock"
        lock.write_text(json.dumps({"pid": alive.pid, "host": socket.gethostname(),
                                    "purpose": "mmad detection extract", "since": "now"}))
        cfg = load_config(DetectionConfig, kit.det_cfg, [f"data.feature_dir={cache}"])
        with pytest.raises(DataError, match=rf"{lock}: in use by process {alive.pid}"):
            extract_features(cfg, kit.rec, rank=0, world_size=1)
        assert json.loads(lock.read_text())["pid"] == alive.pid  # the holder's lock is left alone
    finally:
        alive.kill()
        alive.wait()


# ------------------------------------------------------------------------------------- torchrun


class _FakeBatch:
    def __init__(self, labels, ids):
        self.label = torch.tensor(labels)
        self.body_label = torch.zeros(len(labels), dtype=torch.long)
        self.video_id = list(ids)

    def to(self, device, non_blocking=False):
        return self


def _fake_model(batch):
    logits = torch.nn.functional.one_hot(batch.label, 4).float() * 5
    return SimpleNamespace(logits=logits, body_logits=None, aux=SimpleNamespace(routing_weights=None))


def _empty_shard_worker(rank: int, world_size: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from recognition.task import collect_predictions

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    # rank 1's shard: every clip failed to load, so its loader yields nothing
    loader = [_FakeBatch([0, 1], ["a", "b"]), _FakeBatch([2], ["c"])] if rank == 0 else []
    pred = collect_predictions(_fake_model, loader, device=torch.device("cpu"), distributed=True)
    torch.save({"ids": pred.video_ids, "labels": torch.as_tensor(pred.labels)}, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_a_rank_with_an_empty_validation_shard_joins_the_gather(tmp_path):
    mp.spawn(_empty_shard_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert results[0]["ids"] == results[1]["ids"] == ["a", "b", "c"]
    assert results[1]["labels"].tolist() == [0, 1, 2]


def test_gather_without_any_output_on_one_rank_merges_keys():
    from mmad.engine.distributed import gather_eval_outputs

    out = gather_eval_outputs({"video_id": []})
    assert out == {"video_id": []}
