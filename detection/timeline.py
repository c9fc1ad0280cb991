"""The one place where time in seconds and feature-step coordinates meet.

A cached feature sequence has one step every ``stride_frames`` frames; step ``i`` describes the
window centred at ``times[i]`` seconds. Step coordinates are continuous: ``x = 0`` is the centre
of the first step, ``x = i`` the centre of step ``i``, and step ``i`` covers ``[i - 0.5, i + 0.5]``.
Segments given to the head are in step coordinates; everything outside the head is in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmad.errors import DataError


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
    def from_stride(cls, *, fps: float, stride_frames: int, num_steps: int, start: float | None = None) -> Timeline:
        """Timeline of steps every ``stride_frames`` frames; by default step 0 is centred on the first stride."""
        if fps <= 0 or stride_frames <= 0:
            raise ValueError(f"fps and stride_frames must be positive, got {fps} and {stride_frames}")
        step_seconds = stride_frames / fps
        if start is None:
            start = 0.5 * step_seconds
        return cls(start=float(start), step_seconds=float(step_seconds), num_steps=int(num_steps))

    @classmethod
    def from_times(cls, times, *, fps: float, stride_frames: int, source: str | None = None) -> Timeline:
        """Timeline of step centre ``times`` (seconds, shape (N,)); they must advance by ``stride_frames / fps``.

        Raises :class:`DataError` naming ``source`` when the times are not evenly spaced at that step.
        """
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        step_seconds = stride_frames / fps
        if times.size == 0:
            return cls(start=0.5 * step_seconds, step_seconds=step_seconds, num_steps=0)
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

    def cropped(self, first_step: int, num_steps: int) -> Timeline:
        """Timeline of the sub-sequence of ``num_steps`` steps that begins at step ``first_step``."""
        return Timeline(start=self.start + first_step * self.step_seconds, step_seconds=self.step_seconds,
                        num_steps=int(num_steps))

    @property
    def extent_steps(self) -> tuple[float, float]:
        """Step coordinates covered by the features: ``(-0.5, N - 0.5)``."""
        return -0.5, self.num_steps - 0.5
