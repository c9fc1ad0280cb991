"""The one place where time in seconds, frame indices and feature-step coordinates meet.

**The step-time rule.** A feature step describes a window of frames; its recorded time is the mean
time of the frames in that window (:func:`window_mean_frame` divided by the fps), for odd or even
window lengths and any spacing. The clip encoder, the feature cache, the feature dataset and
:meth:`Timeline.from_stride` all use this one rule; :data:`STEP_TIME_RULE` names it in every cache.

**Two clocks.** A video's annotation can declare another fps than its container decodes at (the
MMA-52 CSV says 29 for videos that decode at 29.97). Frame indices are the bridge: an annotation
time ``t`` means frame ``t * annotation_fps``, and :meth:`Timeline.reclocked` re-expresses feature
steps in the annotation's clock, so that labels and predictions stay in the clock of the ground
truth they are scored against (:func:`annotation_clock_fps` decides which clock a video uses).

A cached feature sequence has one step every ``stride_frames`` frames; step ``i`` describes the
window whose mean time is ``times[i]`` seconds. Step coordinates are continuous: ``x = 0`` is the
centre of the first step, ``x = i`` the centre of step ``i``, and step ``i`` covers
``[i - 0.5, i + 0.5]``. Segments given to the head are in step coordinates; everything outside the
head is in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmad.errors import DataError

# Name of the step-time rule, written into every feature cache; caches without it (made with the
# older rule "time of the window's anchor frame") are refused rather than silently mis-timed.
STEP_TIME_RULE = "window_mean"


def window_mean_frame(first_frame, *, window: int, frame_spacing: int):
    """Mean frame index of windows of ``window`` frames ``frame_spacing`` apart starting at ``first_frame``.

    ``first_frame`` is a number or an array (any shape) of the first frame of each window; the result
    has its shape (float). This is the one step-time rule: a step's time is this value / fps.
    """
    if window < 1 or frame_spacing < 1:
        raise ValueError(f"window and frame_spacing must be >= 1, got {window} and {frame_spacing}")
    return np.asarray(first_frame, dtype=np.float64) + frame_spacing * (window - 1) / 2.0


def encoder_step_frames(num_steps: int, *, stride_frames: int, window: int = 1, window_dilation: int = 1) -> np.ndarray:
    """Mean frame index of each step of the clip encoder's layout, shape (N,) float64.

    Step ``n`` samples frame ``stride_frames // 2 + n * stride_frames``; its window holds the sampled
    frames ``n + (i - (window - 1) // 2) * window_dilation``, ``i = 0 .. window - 1``, i.e. ``window``
    frames ``stride_frames * window_dilation`` apart (edge clamping is not counted: the nominal window).
    """
    if stride_frames < 1 or window_dilation < 1:
        raise ValueError(f"stride_frames and window_dilation must be >= 1, got {stride_frames} and {window_dilation}")
    steps = np.arange(int(num_steps), dtype=np.int64)
    first = stride_frames // 2 + stride_frames * (steps - (window - 1) // 2 * window_dilation)
    return window_mean_frame(first, window=window, frame_spacing=stride_frames * window_dilation)


def annotation_clock_fps(*, annotation_fps: float | None, annotation_frames: int | None, container_fps: float,
                         container_frames: int | None, rtol: float = 1e-3) -> float:
    """The fps that turns a video's annotation seconds into frame indices.

    The annotation's own fps when it differs from the container's but both count the same frames
    (within one frame or 1%): its seconds are frame / annotation fps (MMA-52: 29 vs 29.97). Otherwise
    the container's: the fps agree, or the annotation's fps describes no frame grid of this video
    (e.g. a guess for a file that stores none), and its seconds are taken as the video's own.
    """
    if not annotation_fps or annotation_fps <= 0 or abs(annotation_fps - container_fps) <= rtol * container_fps:
        return float(container_fps)
    if annotation_frames is None or container_frames is None:
        return float(container_fps)
    if abs(int(annotation_frames) - int(container_frames)) <= max(1, 0.01 * int(container_frames)):
        return float(annotation_fps)
    return float(container_fps)


@dataclass(frozen=True)
class Timeline:
    """Affine map between seconds and step coordinates of one feature sequence.

    Attributes:
        start: time in seconds of the centre of step 0.
        step_seconds: seconds between consecutive steps (``stride_frames / fps``).
        num_steps: number of steps N in the sequence.
    """

    start: float
    step_seconds: float
    num_steps: int

    @classmethod
    def from_stride(cls, *, fps: float, stride_frames: int, num_steps: int, window: int = 1,
                    window_dilation: int = 1, start: float | None = None) -> Timeline:
        """Timeline of the clip encoder's steps every ``stride_frames`` frames (windows of ``window``
        sampled frames ``window_dilation`` apart); by default step times follow :func:`encoder_step_frames`."""
        if fps <= 0 or stride_frames <= 0:
            raise ValueError(f"fps and stride_frames must be positive, got {fps} and {stride_frames}")
        step_seconds = stride_frames / fps
        if start is None:
            start = float(encoder_step_frames(1, stride_frames=stride_frames, window=window,
                                              window_dilation=window_dilation)[0]) / fps
        return cls(start=float(start), step_seconds=float(step_seconds), num_steps=int(num_steps))

    @classmethod
    def from_times(cls, times, *, fps: float, stride_frames: int, source: str | None = None) -> Timeline:
        """Timeline of step centre ``times`` (seconds, shape (N,)); they must advance by ``stride_frames / fps``.

        Raises :class:`DataError` naming ``source`` when the times are not evenly spaced at that step.
        """
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        step_seconds = stride_frames / fps
        if times.size == 0:
            return cls.from_stride(fps=fps, stride_frames=stride_frames, num_steps=0)
        expected = times[0] + step_seconds * np.arange(times.size)
        error = np.abs(times - expected)
        worst = int(np.argmax(error))
        if error[worst] > 0.25 * step_seconds:
            raise DataError(source, f"step times are not evenly spaced by stride_frames/fps = {step_seconds:.4f} s "
                            f"(step {worst} is at {times[worst]:.4f} s, expected {expected[worst]:.4f} s)")
        return cls(start=float(times[0]), step_seconds=float(step_seconds), num_steps=int(times.size))

    def to_steps(self, seconds):
        """Seconds (float or array/tensor of any shape) -> continuous step coordinates, same shape."""
        return (seconds - self.start) / self.step_seconds

    def to_seconds(self, steps):
        """Continuous step coordinates (float or array/tensor of any shape) -> seconds, same shape."""
        return steps * self.step_seconds + self.start

    def step_times(self) -> np.ndarray:
        """Centre time in seconds of every step, shape (N,)."""
        return self.start + self.step_seconds * np.arange(self.num_steps, dtype=np.float64)

    def reclocked(self, *, from_fps: float, to_fps: float) -> Timeline:
        """The same steps in another clock: a time ``t`` here is frame ``t * from_fps``, i.e. ``frame / to_fps`` there."""
        scale = float(from_fps) / float(to_fps)
        return Timeline(start=self.start * scale, step_seconds=self.step_seconds * scale, num_steps=self.num_steps)

    def cropped(self, first_step: int, num_steps: int) -> Timeline:
        """Timeline of the sub-sequence of ``num_steps`` steps that begins at step ``first_step``."""
        return Timeline(start=self.start + first_step * self.step_seconds, step_seconds=self.step_seconds,
                        num_steps=int(num_steps))

    @property
    def extent_steps(self) -> tuple[float, float]:
        """Step coordinates covered by the features: ``(-0.5, N - 0.5)``."""
        return -0.5, self.num_steps - 0.5
