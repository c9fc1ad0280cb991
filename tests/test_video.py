"""Tests for mmad.video: sampling edge cases, write/probe/read round trip, bad files."""

from __future__ import annotations

import av
import numpy as np
import pytest

from mmad.errors import DataError
from mmad.video import (
    VideoInfo,
    dense_indices,
    iter_frames,
    probe,
    read_frames,
    segment_indices,
    step_indices,
    write_video,
)

# ---------------------------------------------------------------- sampling


def test_segment_indices_test_mode_takes_segment_centres():
    idx = segment_indices(100, 4, train=False)
    assert idx.tolist() == [12, 37, 62, 87]
    assert idx.dtype == np.int64


def test_segment_indices_train_stays_inside_segments_and_varies():
    rng = np.random.default_rng(0)
    draws = np.stack([segment_indices(100, 4, train=True, rng=rng) for _ in range(300)])
    for i in range(4):
        assert draws[:, i].min() >= 25 * i and draws[:, i].max() <= 25 * i + 24
        assert len(np.unique(draws[:, i])) > 10  # random, not fixed
    assert not np.array_equal(draws[0], draws[1])


def test_segment_indices_short_video_repeats_in_order():
    idx = segment_indices(3, 8, train=False)
    assert len(idx) == 8
    assert idx.min() == 0 and idx.max() == 2
    assert np.all(np.diff(idx) >= 0)
    assert set(idx.tolist()) == {0, 1, 2}
    train_idx = segment_indices(3, 8, train=True, rng=np.random.default_rng(1))
    assert np.all(np.diff(train_idx) >= 0) and train_idx.max() <= 2


def test_single_frame_video():
    assert segment_indices(1, 5, train=True).tolist() == [0] * 5
    assert dense_indices(1, 4, 3, train=True).tolist() == [0] * 4
    assert dense_indices(1, 4, 3, train=False).tolist() == [0] * 4
    assert step_indices(1, 4).tolist() == [0]


def test_dense_indices_centred_in_test():
    idx = dense_indices(100, 8, 2, train=False)
    assert idx.tolist() == list(range(42, 57, 2))  # 42 frames before the span, 43 after


def test_dense_indices_train_jitter_covers_valid_starts():
    rng = np.random.default_rng(0)
    starts = {int(dense_indices(20, 4, 3, train=True, rng=rng)[0]) for _ in range(400)}
    assert starts == set(range(0, 20 - 10 + 1))


def test_dense_indices_short_clip_stays_in_temporal_order():
    # a 40-frame clip, 8 frames at stride 8 (span 57): stride 5 fits, no wrap-around
    assert dense_indices(40, 8, 8, train=False).tolist() == [2, 7, 12, 17, 22, 27, 32, 37]
    rng = np.random.default_rng(3)
    for length, samples, stride in [(40, 8, 8), (5, 6, 2), (20, 16, 4), (3, 8, 8), (57, 8, 8)]:
        for train in (True, False):
            idx = dense_indices(length, samples, stride, train=train, rng=rng)
            assert len(idx) == samples and idx.min() >= 0 and idx.max() <= length - 1
            assert np.all(np.diff(idx) >= 0), (length, samples, stride, idx)
            if length >= samples:
                assert np.all(np.diff(idx) >= 1)  # every frame distinct when there are enough
    assert dense_indices(5, 6, 2, train=False).tolist() == [0, 0, 1, 2, 3, 4]
    assert dense_indices(57, 8, 8, train=False).tolist() == list(range(0, 57, 8))  # exactly fits: unchanged



def test_step_indices_and_bad_arguments():
    assert step_indices(10, 4).tolist() == [0, 4, 8]
    with pytest.raises(ValueError):
        segment_indices(0, 4, train=False)
    with pytest.raises(ValueError):
        dense_indices(10, 4, 0, train=False)


# ---------------------------------------------------------------- files


def _ramp_frames(n: int, height: int = 32, width: int = 48) -> list[np.ndarray]:
    """Frame i is a flat grey of level 10 * i, so decoded frames identify themselves."""
    return [np.full((height, width, 3), 10 * i, dtype=np.uint8) for i in range(n)]


def _level(frame: np.ndarray) -> int:
    return int(round(float(frame.mean()) / 10))


@pytest.fixture
def ramp_video(tmp_path):
    path = tmp_path / "ramp.mp4"
    write_video(path, iter(_ramp_frames(20)), fps=30, crf=10)
    return path


def test_write_probe_round_trip(ramp_video):
    info = probe(ramp_video)
    assert info == VideoInfo(fps=30.0, num_frames=20, width=48, height=32, duration=pytest.approx(20 / 30))
    assert not list(ramp_video.parent.glob(".*tmp*"))  # temp file renamed away


def test_read_frames_unsorted_repeated_and_resized(ramp_video):
    frames = read_frames(ramp_video, [7, 2, 2, 19], size=16)
    assert frames.shape == (4, 16, 24, 3) and frames.dtype == np.uint8
    assert [_level(f) for f in frames] == [7, 2, 2, 19]


def test_read_frames_past_end_repeats_last_frame(ramp_video):
    frames = read_frames(ramp_video, [0, 25, 40])
    assert [_level(f) for f in frames] == [0, 19, 19]


def test_iter_frames_indices_times_and_window(ramp_video):
    items = list(iter_frames(ramp_video, stride=4, start=2, end=15))
    assert [i for i, _, _ in items] == [2, 6, 10, 14]
    assert [t for _, t, _ in items] == pytest.approx([2 / 30, 6 / 30, 10 / 30, 14 / 30])
    assert [_level(f) for _, _, f in items] == [2, 6, 10, 14]


def test_iter_frames_is_lazy(ramp_video):
    stream = iter_frames(ramp_video, size=8)
    first = next(stream)
    assert first[0] == 0 and first[2].shape == (8, 12, 3)
    stream.close()


def test_write_video_rejects_odd_size_and_empty(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "odd.mp4", [np.zeros((31, 48, 3), np.uint8)], fps=30)
    with pytest.raises(ValueError, match="at least one"):
        write_video(tmp_path / "empty.mp4", [], fps=30)
    assert not (tmp_path / "odd.mp4").exists() and not list(tmp_path.iterdir())


def test_missing_empty_and_truncated_files_raise_data_error(tmp_path, ramp_video):
    with pytest.raises(DataError, match="not found"):
        probe(tmp_path / "nope.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        read_frames(empty, [0])
    data = ramp_video.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as info:
        probe(cut)
    assert str(cut) in str(info.value)


def test_truncated_stream_with_header_first_repeats_last_decoded(tmp_path):
    """A header-first mp4 cut in half still opens; frames past the cut repeat the last good one."""
    path = tmp_path / "faststart.mp4"
    rng = np.random.default_rng(0)
    container = av.open(str(path), "w", options={"movflags": "faststart"})
    stream = container.add_stream("libx264", rate=30)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    for i in range(30):
        frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), format="rgb24")
        frame.pts = i
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert probe(path).num_frames == 30  # the container still claims 30
    decodable = len(list(iter_frames(path)))
    assert 0 < decodable < 30
    frames = read_frames(path, [decodable - 1, 29])
    assert np.array_equal(frames[0], frames[1])


def test_probe_derives_frame_count_from_duration_when_container_has_none(tmp_path):
    """Matroska stores no frame count; probe falls back to duration x fps."""
    path = tmp_path / "clip.mkv"
    write_video(path, _ramp_frames(25), fps=25)
    container = av.open(str(path))
    assert container.streams.video[0].frames == 0
    container.close()
    info = probe(path)
    assert info.num_frames == 25 and info.fps == 25.0 and info.duration == pytest.approx(1.0)
    assert _level(read_frames(path, [24])[0]) == 24


# --------------------------------------------------------------------------- rotation, decode report


def _marked_frames(count: int, width: int = 64, height: int = 32):
    frames = []
    for t in range(count):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[:8, :8] = 255  # a top-left mark, to see which way a frame is turned
        frame[-1, -1] = 10 * t
        frames.append(frame)
    return frames


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_is_honoured(tmp_path, rotation):
    from mmad.video import iter_decoded, iter_frames, probe, read_frames, write_video

    path = write_video(tmp_path / "phone.mp4", _marked_frames(4), fps=10, rotation=rotation)
    info = probe(path)
    assert info.rotation == rotation
    upright = np.rot90(_marked_frames(1)[0], k=rotation // 90)
    assert (info.height, info.width) == upright.shape[:2]
    frame = read_frames(path, [0])[0]
    assert frame.shape == upright.shape
    mark = upright[..., 0] > 128
    assert frame[..., 0][mark].mean() > 200 and frame[..., 0][~mark].mean() < 40
    small = next(iter_frames(path, size=16))[2]
    assert min(small.shape[:2]) == 16 and (small.shape[0] > small.shape[1]) == (upright.shape[0] > upright.shape[1])
    index, decoded = next(iter_decoded(path, start=1))
    assert index == 1 and decoded.rgb().shape == upright.shape


def test_decode_report_counts_frames_of_a_truncated_file(tmp_path):
    from mmad.video import DecodeReport, iter_decoded, iter_frames, probe, write_video

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (32, 48, 3), dtype=np.uint8) for _ in range(60)]
    full = write_video(tmp_path / "full.mkv", frames, fps=10)
    report = DecodeReport()
    assert [i for i, _, f in iter_frames(full, stride=7, convert=False, report=report)] == list(range(0, 60, 7))
    assert report.frames_decoded == 60 and report.error is None
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    assert probe(cut).num_frames == 60  # the header still says 60
    report = DecodeReport()
    kept = [i for i, _ in iter_decoded(cut, stride=5, start=2, report=report)]
    assert 0 < report.frames_decoded < 60 and kept == list(range(2, report.frames_decoded, 5))
