"""Video decoding, writing and frame sampling (PyAV; no ffmpeg binary needed).

Frames are numpy ``uint8`` arrays in RGB order: one frame is (H, W, 3), a stack is (T, H, W, 3).
Frame indices count decoded frames from 0 in presentation order. The sampling functions are pure
numpy and return ``int64`` index arrays of shape (T,) that :func:`read_frames` accepts directly.

Nothing here holds a whole video in memory: :func:`read_frames` keeps only the requested frames and
stops decoding after the last one; :func:`iter_frames` streams.

Rotation metadata (the display matrix a phone writes for a portrait video) is honoured: frames are
returned upright, and :class:`VideoInfo` gives the upright ``width`` x ``height``, as players and
OpenPose show the video.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from mmad.errors import DataError
from mmad.fileio import atomic_path


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video's first video stream.

    ``fps`` frames per second; ``num_frames`` frame count (from the container header, or
    ``round(duration * fps)`` when the header has none); ``width``/``height`` in pixels;
    ``duration`` in seconds (``num_frames / fps`` when the container gives no duration).
    ``width``/``height`` are those of the upright picture: swapped from the coded size when
    ``rotation`` (counter-clockwise degrees, 0/90/180/270, from the display matrix) is 90 or 270.
    """

    fps: float
    num_frames: int
    width: int
    height: int
    duration: float
    rotation: int = 0


@dataclass
class DecodeReport:
    """Filled in by :func:`iter_frames` while it streams: how far decoding really got.

    ``frames_decoded`` counts every decoded frame (converted or not); ``error`` is the decoder's
    message when a damaged stream ended early (None when the stream ended normally or was not read
    to its end).
    """

    frames_decoded: int = 0
    error: str | None = None


def _open(path: Path):
    import av

    if not path.exists():
        raise DataError(path, "video file not found")
    if path.is_dir():
        raise DataError(path, "expected a video file, found a folder")
    if path.stat().st_size == 0:
        raise DataError(path, "empty video file")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc.__class__.__name__
        raise DataError(path, f"unreadable or truncated video ({reason})") from None
    if not container.streams.video:
        container.close()
        raise DataError(path, "no video stream in the file")
    return container


def _stream_fps(stream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return None


def _frame_rotation(frame) -> int:
    """The counter-clockwise display rotation of a decoded frame, one of 0, 90, 180, 270."""
    try:
        degrees = float(getattr(frame, "rotation", 0) or 0)
    except (TypeError, ValueError):
        return 0
    return int(round(degrees / 90.0)) % 4 * 90


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read fps, frame count, size, duration and rotation of ``path`` (the header and its first frame).

    Raises :class:`DataError` naming the file when it is missing, empty, unreadable, truncated or
    has no video frames.
    """
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        fps = _stream_fps(stream)
        if fps is None:
            raise DataError(path, "the video stream has no frame rate")
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        num_frames = int(stream.frames or 0)
        if num_frames <= 0 and duration is not None:
            num_frames = int(round(duration * fps))
        if num_frames <= 0:
            raise DataError(path, "the video has no frames")
        if duration is None or duration <= 0:
            duration = num_frames / fps
        width = int(stream.codec_context.width)
        height = int(stream.codec_context.height)
        if width <= 0 or height <= 0:
            raise DataError(path, f"bad frame size {width}x{height}")
        first = next(_decoded_frames(container, path), None)
        if first is None:
            raise DataError(path, "no frame could be decoded")
        rotation = _frame_rotation(first)
        if rotation in (90, 270):
            width, height = height, width
        return VideoInfo(fps=fps, num_frames=num_frames, width=width, height=height, duration=duration,
                         rotation=rotation)
    finally:
        container.close()


# --------------------------------------------------------------------------- sampling


def _check_counts(num_frames: int, count: int, count_name: str) -> None:
    if int(num_frames) < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if int(count) < 1:
        raise ValueError(f"{count_name} must be >= 1, got {count}")


def segment_indices(
    num_frames: int, num_segments: int, *, train: bool, rng: np.random.Generator | None = None
) -> np.ndarray:
    """TSN-style sampling: one frame from each of ``num_segments`` equal segments.

    Segment ``i`` covers the continuous span ``[i * L, (i + 1) * L)`` with ``L = num_frames /
    num_segments``; training takes a uniformly random position inside it, testing its centre. When
    the video is shorter than ``num_segments`` the same formula repeats frames in temporal order
    (``[0, 0, 1, 1, 2, ...]``).

    Returns:
        (num_segments,) int64, non-decreasing, each in ``[0, num_frames - 1]``.
    """
    _check_counts(num_frames, num_segments, "num_segments")
    seg_len = num_frames / num_segments
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        offsets = rng.random(num_segments)
    else:
        offsets = np.full(num_segments, 0.5)
    positions = (np.arange(num_segments) + offsets) * seg_len
    return np.clip(np.floor(positions).astype(np.int64), 0, num_frames - 1)


def fitting_stride(num_frames: int, num_samples: int, stride: int) -> int:
    """The largest stride <= ``stride`` whose span ``(num_samples - 1) * s + 1`` fits in ``num_frames``.

    0 when even consecutive frames do not fit (``num_frames < num_samples``).
    """
    if num_samples <= 1:
        return int(stride)
    return min(int(stride), (int(num_frames) - 1) // (int(num_samples) - 1))


def dense_indices(
    num_frames: int,
    num_samples: int,
    stride: int,
    *,
    train: bool,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """``num_samples`` frames ``stride`` apart, always in temporal order.

    When the span ``(num_samples - 1) * stride + 1`` fits, testing centres it in the video and
    training starts it at a uniformly random frame (temporal jitter). A video shorter than the
    span is sampled with the largest stride that fits (:func:`fitting_stride`), placed the same
    way; a video of fewer than ``num_samples`` frames repeats frames in order
    (``[0, 0, 1, 1, 2, ...]``). Indices never wrap around: the clip's time runs forward.

    Returns:
        (num_samples,) int64, non-decreasing, each in ``[0, num_frames - 1]``.
    """
    _check_counts(num_frames, num_samples, "num_samples")
    if int(stride) < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    stride = fitting_stride(num_frames, num_samples, stride)
    if stride < 1:
        return (np.arange(num_samples, dtype=np.int64) * int(num_frames)) // int(num_samples)
    steps = np.arange(num_samples, dtype=np.int64) * stride
    span = int(steps[-1]) + 1
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        start = int(rng.integers(0, num_frames - span + 1))
    else:
        start = (num_frames - span) // 2
    return start + steps


def step_indices(num_frames: int, stride: int) -> np.ndarray:
    """Every ``stride``-th frame from 0, for feature extraction over a long video: (ceil(N / stride),) int64."""
    _check_counts(num_frames, stride, "stride")
    return np.arange(0, int(num_frames), int(stride), dtype=np.int64)


# --------------------------------------------------------------------------- decoding


def resized_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """(width, height) after scaling so that the shorter side is ``short_side`` (unchanged when None)."""
    if short_side is None:
        return width, height
    if short_side < 1:
        raise ValueError(f"size must be >= 1, got {short_side}")
    scale = short_side / min(width, height)
    if width <= height:
        return short_side, max(1, int(round(height * scale)))
    return max(1, int(round(width * scale))), short_side


def _to_rgb(frame, out_size: tuple[int, int], native: tuple[int, int], reformatter=None) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a decoded frame, upright, of the upright size ``out_size`` (W, H).

    ``native`` is the upright size of the stream; frames carrying a display rotation are converted
    at their coded size and then turned. ``reformatter`` (a PyAV ``VideoReformatter``) keeps the
    scaler of the previous frame when the sizes repeat: the same pixels, without setting up a
    new scaler for every frame.
    """
    rotation = _frame_rotation(frame)
    coded = out_size if rotation in (0, 180) else (out_size[1], out_size[0])
    if reformatter is not None:
        array = reformatter.reformat(frame, format="rgb24", width=coded[0], height=coded[1]).to_ndarray()
    elif out_size == native:
        array = frame.to_ndarray(format="rgb24")
    else:
        array = frame.to_ndarray(format="rgb24", width=coded[0], height=coded[1])
    if rotation:
        array = np.ascontiguousarray(np.rot90(array, k=rotation // 90))
    return array


def _upright_size(stream, first_frame=None) -> tuple[int, int]:
    width, height = int(stream.codec_context.width), int(stream.codec_context.height)
    if first_frame is not None and _frame_rotation(first_frame) in (90, 270):
        return height, width
    return width, height


def _decoded_frames(container, path: Path, report: DecodeReport | None = None, *, threads: bool = False):
    """Yield decoded frames; a decoding error after the first frame ends the stream (truncated data).

    ``report`` (when given) counts the frames and records the error that ended a damaged stream.
    ``threads`` lets the decoder use several threads (frames still come in order).
    """
    import av

    stream = container.streams.video[0]
    if threads:
        stream.thread_type = "AUTO"
    produced = False
    try:
        for frame in container.decode(stream):
            produced = True
            if report is not None:
                report.frames_decoded += 1
            yield frame
    except av.error.FFmpegError as exc:
        if not produced:
            raise DataError(path, f"cannot decode any frame ({exc.__class__.__name__}: {exc})") from None
        if report is not None:
            report.error = f"{exc.__class__.__name__}: {exc}"


def read_frames(path: str | os.PathLike, indices, *, size: int | None = None) -> np.ndarray:
    """Decode the frames at ``indices`` (any order, repeats allowed) of the video at ``path``.

    Decodes sequentially from the start, converts only the requested frames and stops after the
    largest requested index. An index past the real end of the stream (the container over-stated
    its length) gets the last decoded frame.

    Args:
        indices: (T,) non-negative frame indices.
        size: when given, frames are resized on decode so that the shorter side has this length.

    Returns:
        (T, H, W, 3) uint8 RGB, row ``t`` the frame at ``indices[t]``.

    Raises:
        DataError: the file is missing/unreadable, or no frame could be decoded.
    """
    path = Path(path)
    wanted = _check_indices(indices)
    needed = set(wanted.tolist())
    last_needed = int(wanted.max())
    from av.video.reformatter import VideoReformatter

    kept: dict[int, np.ndarray] = {}
    last_frame = None
    reformatter = VideoReformatter()
    container = _open(path)
    try:
        stream = container.streams.video[0]
        native = out_size = None
        for index, frame in enumerate(_decoded_frames(container, path)):
            if native is None:
                native = _upright_size(stream, frame)
                out_size = resized_size(*native, size)
            if index in needed or index == last_needed:
                kept[index] = _to_rgb(frame, out_size, native, reformatter)
            last_frame = (index, frame)
            if index >= last_needed:
                break
    finally:
        container.close()
    if last_frame is None:
        raise DataError(path, "no frame could be decoded")
    last_index, frame = last_frame
    if last_index not in kept:
        kept[last_index] = _to_rgb(frame, out_size, native, reformatter)
    return np.stack([kept[i] if i in kept else kept[last_index] for i in wanted.tolist()])


def _check_indices(indices) -> np.ndarray:
    wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
    if wanted.size == 0:
        raise ValueError("reading frames needs at least one index")
    if wanted.min() < 0:
        raise ValueError(f"frame indices must be >= 0, got {int(wanted.min())}")
    return wanted


def seek_frames(path: str | os.PathLike, indices, *, frame_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode the frames at ``indices`` of a video without B-frames, from the nearest keyframes only.

    The packets are read in order without decoding them; when a wanted frame's packet arrives,
    the packets from the last keyframe up to it (or from the previous decoded frame, when no
    keyframe lies between) are decoded, and only the wanted frames are converted. With a keyframe
    every few frames (the videos :func:`write_video` writes with ``keyframe_interval``, as
    ``mmad data prepare`` makes them) few frames besides the wanted ones are decoded. A frame's
    index is read from its presentation time (``(pts - start) x time_base x fps``), so the frame
    rate must be constant. An index past the end gets the last frame, as in :func:`read_frames`.

    Args:
        indices: (T,) non-negative frame indices, any order, repeats allowed.
        frame_size: (W, H) of the returned frames (default: the video's own upright size).

    Returns:
        (T, H, W, 3) uint8 RGB, row ``t`` the frame at ``indices[t]``.

    Raises:
        DataError: the file is missing or unreadable, a wanted frame cannot be decoded, or the
            packets are not in presentation order (B-frames).
    """
    import av
    from av.video.reformatter import VideoReformatter

    path = Path(path)
    wanted = _check_indices(indices)
    needed = set(wanted.tolist())
    last_needed = int(wanted.max())
    kept: dict[int, np.ndarray] = {}
    reformatter = VideoReformatter()
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        fps = _stream_fps(stream)
        if fps is None or stream.time_base is None:
            raise DataError(path, "the video stream has no frame rate or time base")
        time_base, start = stream.time_base, stream.start_time or 0

        def keep(packets: list, index: int) -> None:
            frame = None
            for packet in packets:
                decoded = stream.codec_context.decode(packet)
                frame = decoded[-1] if decoded else frame
            if frame is None:
                raise DataError(path, f"frame {index} could not be decoded from its keyframe")
            upright = _upright_size(stream, frame)
            kept[index] = _to_rgb(frame, tuple(frame_size) if frame_size is not None else upright, upright,
                                  reformatter)

        pending: list = []  # packets since the last keyframe or the last decoded frame, not decoded yet
        index = -1
        try:
            for packet in container.demux(stream):
                if packet.pts is None or packet.size == 0:
                    continue
                previous, index = index, int(round(float((packet.pts - start) * time_base) * fps))
                if index <= previous:
                    raise DataError(path, "packets out of presentation order (B-frames); read it from the start")
                if packet.is_keyframe:
                    pending = []
                pending.append(packet)
                if index in needed:
                    keep(pending, index)
                    pending = []
                if index >= last_needed:
                    break
            if last_needed > index >= 0:  # wanted frames past the end: the last frame
                if index not in kept:
                    keep(pending, index)
                last_kept = kept[index]
                kept.update({i: last_kept for i in needed if i > index})
        except av.error.FFmpegError as exc:
            raise DataError(path, f"decoding failed near frame {index} ({exc.__class__.__name__})") from None
        missing = needed - kept.keys()
        if missing:
            raise DataError(path, f"no frame {min(missing)} (the frame rate is not constant)" if index >= 0
                            else "no frame could be decoded")
    finally:
        container.close()
    return np.stack([kept[i] for i in wanted.tolist()])


def iter_frames(
    path: str | os.PathLike,
    *,
    stride: int = 1,
    start: int = 0,
    end: int | None = None,
    size: int | None = None,
    convert: bool = True,
    report: DecodeReport | None = None,
    threads: bool = False,
) -> Iterator[tuple[int, float, np.ndarray | None]]:
    """Stream ``(frame_index, time_s, frame)`` for frames ``start, start + stride, ...`` below ``end``.

    ``start``/``end`` are frame indices (``end`` exclusive, None = to the end of the stream);
    ``time_s = frame_index / fps``; ``frame`` is (H, W, 3) uint8 RGB, upright, resized so that the
    shorter side is ``size`` when given (None with ``convert=False``: only decoded and counted).
    Frames between the yielded ones are decoded but never converted. ``report`` receives the count
    of decoded frames and the error that ended a damaged stream early; ``threads`` lets the decoder
    use several threads. Memory does not grow with the video's length.
    """
    for index, decoded in iter_decoded(path, stride=stride, start=start, end=end, report=report, threads=threads):
        yield index, index / decoded.fps, (decoded.rgb(size) if convert else None)


class DecodedFrame:
    """One decoded frame, converted to RGB only when asked (:meth:`rgb`)."""

    __slots__ = ("_frame", "_native", "fps")

    def __init__(self, frame, native: tuple[int, int], fps: float) -> None:
        self._frame = frame
        self._native = native
        self.fps = fps  # of the stream

    def rgb(self, size: int | None = None, *, frame_size: tuple[int, int] | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB, upright, the shorter side ``size`` when given (else the native size);
        ``frame_size`` (W, H) sets the exact upright output size instead."""
        out_size = tuple(frame_size) if frame_size is not None else resized_size(*self._native, size)
        return _to_rgb(self._frame, out_size, self._native)


def iter_decoded(
    path: str | os.PathLike,
    *,
    stride: int = 1,
    start: int = 0,
    end: int | None = None,
    report: DecodeReport | None = None,
    threads: bool = False,
) -> Iterator[tuple[int, DecodedFrame]]:
    """Stream ``(frame_index, DecodedFrame)`` for frames ``start, start + stride, ...`` below ``end``.

    The frames in between are decoded but never converted; a yielded frame is converted only when
    its :meth:`DecodedFrame.rgb` is called, at the size the caller needs. ``end``, ``report`` and
    ``threads`` as for :func:`iter_frames`.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        fps = _stream_fps(stream)
        if fps is None:
            raise DataError(path, "the video stream has no frame rate")
        native = None
        for index, frame in enumerate(_decoded_frames(container, path, report, threads=threads)):
            if end is not None and index >= end:
                break
            if index < start or (index - start) % stride:
                continue
            if native is None:
                native = _upright_size(stream, frame)
            yield index, DecodedFrame(frame, native, fps)
    finally:
        container.close()


# --------------------------------------------------------------------------- writing


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    crf: int = 23,
    rotation: int = 0,
    keyframe_interval: int | None = None,
) -> Path:
    """Encode ``frames`` ((H, W, 3) uint8 RGB each, H and W even) as H.264 yuv420p at ``fps``.

    ``rotation`` (counter-clockwise degrees) is stored as display metadata, as a phone does for a
    portrait video: the frames are stored as given and shown turned. ``keyframe_interval`` (frames)
    puts a keyframe exactly every that many frames, without B-frames and tuned for fast decoding,
    so that :func:`seek_frames` decodes few frames (default: the encoder's choice).

    Writes to a temporary file beside ``path`` and renames it into place, so a reader never sees a
    half-written video. The container format follows the suffix (``.mp4``). Encoding is single
    threaded so that parallel writers do not compete. Returns ``path``.

    Raises:
        ValueError: no frames, frames of differing or odd sizes, or not uint8 (H, W, 3).
    """
    import av

    path = Path(path)
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_path(path) as tmp:
        _encode_frames(av.open(str(tmp), mode="w"), frames, rate, crf, rotation, keyframe_interval)
    return path


def _encode_frames(container, frames: Iterable[np.ndarray], rate: Fraction, crf: int, rotation: int = 0,
                   keyframe_interval: int | None = None) -> None:
    """Encode ``frames`` into an open PyAV output ``container`` and close it (see :func:`write_video`)."""
    import av

    count = 0
    try:
        stream = None
        for frame in frames:
            frame = np.asarray(frame)
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(f"frame {count}: expected (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
            height, width = frame.shape[:2]
            if stream is None:
                if height % 2 or width % 2:
                    raise ValueError(f"H.264 yuv420p needs even frame sizes, got {width}x{height}")
                stream = container.add_stream("libx264", rate=rate)
                stream.width, stream.height = width, height
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(int(crf)), "preset": "veryfast", "threads": "1"}
                if keyframe_interval is not None:
                    gop = str(int(keyframe_interval))
                    stream.options.update(g=gop, keyint_min=gop, sc_threshold="0", bf="0", tune="fastdecode")
                stream.codec_context.time_base = 1 / rate
                if rotation % 360:
                    stream.set_display_rotation(rotation % 360)
            elif (height, width) != (stream.height, stream.width):
                raise ValueError(
                    f"frame {count}: size {width}x{height} differs from the first frame's "
                    f"{stream.width}x{stream.height}"
                )
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame.pts = count
            for packet in stream.encode(video_frame):
                container.mux(packet)
            count += 1
        if stream is None:
            raise ValueError("write_video needs at least one frame")
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()

