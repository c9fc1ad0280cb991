"""Prepared data (``mmad data prepare``): seeking decodes the right frames, the loader gives the same
samples from prepared copies as from the originals, and stale, corrupt or bad files are handled."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mmad.cli import main
from mmad.config import from_dict
from mmad.datasets.ma52 import write_ma52_list
from mmad.datasets.prepare import MANIFEST_NAME, PrepareSettings, prepare_dataset
from mmad.errors import ConfigError, DataError
from mmad.types import ClipRecord
from mmad.video import read_frames, seek_frames, write_video
from recognition.config import RecognitionConfig
from recognition.data import ClipDataset, build_dataset

torch.set_num_threads(1)
SETTINGS = PrepareSettings(short_side=96, keyframe_interval=8)
# Stated tolerance of the re-encoded pixels against the original path's (both at the loader's
# size, values in [0, 1]): mean absolute difference and PSNR. Measured: mean 2-3/255, PSNR > 30 dB.
MEAN_TOLERANCE = 4 / 255
MIN_PSNR_DB = 27.0


def _add_second_person(folder: Path, frames: range) -> None:
    """A larger second person beside the first in ``frames`` of a clip: a track anchored before
    those frames stays on the first person, one anchored inside them takes the second."""
    for t in frames:
        path = next(folder.glob(f"*_{t:012d}_keypoints.json"))
        doc = json.loads(path.read_text())
        if not doc["people"]:
            continue
        other = json.loads(json.dumps(doc["people"][0]))
        for key in ("pose_keypoints_2d", "hand_left_keypoints_2d", "hand_right_keypoints_2d"):
            values = other.get(key) or []
            for i in range(0, len(values), 3):
                values[i] = values[i] * 1.2 + 30.0
                values[i + 1] = values[i + 1] * 1.2 - 10.0
        doc["people"].append(other)
        path.write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory) -> Path:
    """Five 160x120 MicroPuppet clips of 1-1.3 s in MA-52 layout (3 train, 2 val), odd frames
    brighter; one clip has a second person in some frames."""
    from mmad.synth.generate import RecognitionPreset, plan_recognition, render_job

    root = tmp_path_factory.mktemp("prepare") / "clips"
    preset = RecognitionPreset(clips_per_class=(1, 1, 0), subjects=(2, 1, 1), height=120, width=160,
                               clip_seconds=(1.0, 1.3), max_clips=(3, 2, 0))
    records, jobs = plan_recognition(preset, 0, root)
    for job in jobs:
        render_job(job, 0)
        # odd frames much brighter than even ones, so a frame off by one is far outside the tolerance
        frames = read_frames(job.video_path, np.arange(job.num_frames))
        frames = (frames * 0.7).astype(np.uint8) + (np.arange(job.num_frames) % 2 * 70).astype(np.uint8)[:, None, None, None]
        write_video(job.video_path, frames, 30.0)
    for split in ("train", "val"):
        write_ma52_list(records[split], root / f"{split}_list_videos.txt")
    first = records["train"][0]
    _add_second_person(root / "keypoints" / "train" / first.video_id, range(10, 27))
    return root


@pytest.fixture(scope="module")
def prepared_root(dataset_root) -> Path:
    out = dataset_root.parent / "prepared"
    summary = prepare_dataset(dataset_root, out, settings=SETTINGS)
    assert summary.prepared == 5 and not summary.failed
    return out


def make_cfg(root: Path, prepared: Path | None, **data) -> RecognitionConfig:
    base = {"root": str(root), "num_frames": 8, "frame_stride": 3, "image_size": 64, "resize_short_side": 72,
            "prepared_dir": None if prepared is None else str(prepared)}
    base.update(data)
    return from_dict(RecognitionConfig, {"model": {"dim": 32, "transformer": {"num_heads": 4}}, "data": base})


def _spy_indices(monkeypatch) -> list:
    """Record the frame indices every ``ClipDataset._read_frames`` call asks for."""
    seen: list = []
    original = ClipDataset._read_frames

    def spy(self, record, indices, native):
        seen.append((record.video_id, np.asarray(indices).tolist()))
        return original(self, record, indices, native)

    monkeypatch.setattr(ClipDataset, "_read_frames", spy)
    return seen


def _samples(dataset, seed: int = 0):
    out = []
    for i in range(len(dataset)):
        torch.manual_seed(seed + i)
        out.append(dataset[i])
    return out


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


# ----------------------------------------------------------------------------- seeking


def test_seek_frames_equals_decoding_from_the_start(tmp_path):
    rng = np.random.default_rng(0)
    frames = [np.clip(rng.normal(40 + 4 * t, 30, (48, 64, 3)), 0, 255).astype(np.uint8) for t in range(45)]
    cases = [[0], [44], [7, 8, 9], [15, 16], [3, 3, 40, 1, 1], [50, 2], [47, 46], [8 * k for k in range(6)]]
    cases += [rng.integers(0, 48, rng.integers(1, 10)).tolist() for _ in range(25)]
    for interval in (8, 1, 5, 100):
        path = write_video(tmp_path / f"v{interval}.mp4", frames, 30.0, keyframe_interval=interval)
        for indices in cases:
            assert np.array_equal(seek_frames(path, indices), read_frames(path, indices)), (indices, interval)
    resized = seek_frames(path, [5, 30], frame_size=(32, 24))
    assert resized.shape == (2, 24, 32, 3)


def test_seek_frames_refuses_b_frames(tmp_path):
    texture = np.random.default_rng(1).normal(0, 30, (48, 64, 3))
    frames = [np.clip(texture + 40 + 4 * t, 0, 255).astype(np.uint8) for t in range(30)]
    path = write_video(tmp_path / "b.mp4", frames, 30.0)  # the encoder's default: B-frames here
    with pytest.raises(DataError, match="b.mp4: packets out of presentation order"):
        seek_frames(path, [20])


# ----------------------------------------------------------------------------- the loader


@pytest.mark.parametrize("train", [True, False])
def test_prepared_loader_gives_the_same_samples(dataset_root, prepared_root, monkeypatch, train):
    seen = _spy_indices(monkeypatch)
    original = build_dataset(make_cfg(dataset_root, None), "train", train=train)
    prepared = build_dataset(make_cfg(dataset_root, prepared_root), "train", train=train)
    expected = _samples(original)
    from_original = list(seen)
    seen.clear()
    got = _samples(prepared)
    assert seen == from_original  # the same sampled frame indices, from the same draws
    assert all(prepared.prepared.entry(prepared.info.video_path(r), prepared.info.keypoint_folder(r))
               for r in prepared.records)  # every item came from a prepared copy
    for a, b in zip(expected, got):
        assert a.video_id == b.video_id and a.label == b.label
        assert a.frames.shape == b.frames.shape
        assert torch.equal(a.keypoints, b.keypoints)
        assert torch.equal(a.boxes, b.boxes) and torch.equal(a.entity_conf, b.entity_conf)
        assert float((a.frames - b.frames).abs().mean()) <= MEAN_TOLERANCE
        assert _psnr(a.frames, b.frames) >= MIN_PSNR_DB


def test_spans_of_a_video_track_the_same_person(dataset_root, prepared_root):
    """A span of a video (as iMiGUE records are) tracks its subject over the span only, from the
    packed untracked people, as it does from the JSON files."""
    cfg = make_cfg(dataset_root, None)
    base = build_dataset(cfg, "train", train=False).records[0]  # the clip with a second person
    spans = [ClipRecord(video_id=base.video_id, path=base.path, label=base.label, body_label=base.body_label,
                        subject=base.subject, split=base.split, t_start=t0, t_end=t1)
             for t0, t1 in ((0.0, 0.5), (0.1, 0.4), (0.34, 0.9))]
    from mmad.datasets import open_dataset

    info = open_dataset(dataset_root)
    kwargs = dict(layout="body25_hands", entities=cfg.model.entity_names, train=False, dataset_info=info)
    original = ClipDataset(spans, cfg=cfg.data, **kwargs)
    prepared = ClipDataset(spans, cfg=make_cfg(dataset_root, prepared_root).data, **kwargs)
    for i in range(len(spans)):
        a, b = original._annotations(i), prepared._annotations(i)
        assert a[:3] == b[:3]
        for x, y in zip(a[3:], b[3:]):
            assert np.array_equal(x, y)
    # the span that starts among two people follows another person than the whole-video track
    whole = build_dataset(make_cfg(dataset_root, prepared_root), "train", train=False)._annotations(0)[3]
    assert np.array_equal(whole[3:12], prepared._annotations(1)[3])
    assert not np.array_equal(whole[10:27], prepared._annotations(2)[3])


# ----------------------------------------------------------------------------- stale, corrupt, bad


def _copy(dataset_root, prepared_root, tmp_path) -> tuple[Path, Path]:
    root, prepared = tmp_path / "clips", tmp_path / "prepared"
    shutil.copytree(dataset_root, root)  # copy2 keeps modification times: the copies stay fresh
    shutil.copytree(prepared_root, prepared)
    return root, prepared


def test_stale_and_corrupt_copies_fall_back_to_the_originals(dataset_root, prepared_root, tmp_path, caplog):
    root, prepared = _copy(dataset_root, prepared_root, tmp_path)
    records = build_dataset(make_cfg(root, None), "train", train=False).records
    stale, corrupt_video, corrupt_keypoints = records
    os.utime(stale.path, ns=(0, 1_000_000_000))  # the original changed after preparing
    (prepared / "train" / Path(corrupt_video.path).name).write_bytes(b"not a video at all")
    (prepared / "keypoints" / "train" / f"{corrupt_keypoints.video_id}.npz").write_bytes(b"garbage")
    expected = _samples(build_dataset(make_cfg(root, None), "train", train=False))
    dataset = build_dataset(make_cfg(root, prepared), "train", train=False)
    with caplog.at_level(logging.WARNING):
        got = _samples(dataset)
    messages = [r.getMessage() for r in caplog.records]
    assert any(stale.path in m and "original video changed" in m for m in messages)
    assert any(corrupt_video.path in m and "prepared copy unreadable" in m for m in messages)
    assert any(corrupt_keypoints.path in m and "unreadable prepared keypoint file" in m for m in messages)
    assert all("\n" not in m for m in messages)
    for a, b in zip(expected[:2], got[:2]):  # these two now read the original video
        assert torch.equal(a.frames, b.frames) and torch.equal(a.boxes, b.boxes)
    assert torch.equal(expected[2].keypoints, got[2].keypoints)  # keypoints from the JSON files again
    assert float((expected[2].frames - got[2].frames).abs().mean()) <= MEAN_TOLERANCE  # video still prepared


def test_changed_keypoints_are_prepared_again(dataset_root, prepared_root, tmp_path):
    root, prepared = _copy(dataset_root, prepared_root, tmp_path)
    record = build_dataset(make_cfg(root, None), "val", train=False).records[0]
    folder = root / "keypoints" / "val" / record.video_id
    next(folder.glob("*.json")).unlink()  # a frame's keypoints removed
    dataset = build_dataset(make_cfg(root, prepared), "val", train=False)
    assert dataset._prepared_entry(record) is None
    summary = prepare_dataset(root, prepared, settings=SETTINGS)
    assert (summary.prepared, summary.up_to_date, summary.failed) == (1, 4, {})
    dataset = build_dataset(make_cfg(root, prepared), "val", train=False)
    assert dataset._prepared_entry(record) is not None


def test_a_bad_video_is_skipped_and_listed(dataset_root, tmp_path, capsys, caplog):
    root = tmp_path / "clips"
    shutil.copytree(dataset_root, root)
    bad = root / "val" / sorted(os.listdir(root / "val"))[0]
    bad.write_bytes(b"\x00" * 100)
    out = tmp_path / "prepared"
    with caplog.at_level(logging.ERROR):
        rc = main(["data", "prepare", str(root), "--out", str(out), "--short-side", "96", "--workers", "2"])
    printed = capsys.readouterr().out
    assert rc == 1
    assert "prepared 4 video(s), 0 already up to date, 1 failed" in printed
    assert f"failed: {bad}: unreadable or truncated video" in printed
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and str(bad) in errors[0] and "\n" not in errors[0]
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert len(manifest["videos"]) == 4 and list(manifest["failed"]) == [str(bad)]


def test_prepared_dir_without_a_manifest_is_a_config_error(dataset_root, tmp_path):
    with pytest.raises(ConfigError, match="holds no prepared.json: run 'mmad data prepare"):
        build_dataset(make_cfg(dataset_root, tmp_path), "train", train=True)


def test_a_copy_smaller_than_the_loader_needs_is_not_used(dataset_root, prepared_root, caplog):
    dataset = build_dataset(make_cfg(dataset_root, prepared_root, resize_short_side=112, image_size=96), "val",
                            train=False)
    with caplog.at_level(logging.WARNING):
        assert dataset._prepared_entry(dataset.records[0]) is None
    assert "below data.resize_short_side 112" in caplog.text


def test_prepare_refuses_a_foreign_folder_and_bad_settings(dataset_root, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="holds no prepared.json"):
        prepare_dataset(dataset_root, tmp_path)
    with pytest.raises(ConfigError, match="keyframe interval 0"):
        PrepareSettings(keyframe_interval=0)
