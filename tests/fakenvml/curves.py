"""Closed-form means of the fake driver's curves, written independently of its C code.

A sine is ``base + amp*sin(2*pi*(t+phase)/period)``; a square wave is ``high`` during the
first ``on`` seconds of every ``period`` of ``t + phase`` and ``low`` otherwise
(docs/fake-driver.md). Both are defined for negative t too (the sample periods before scenario
time 0). Tests compare the driver's samples and GPM metrics against these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

#: The default utilization sample period, seconds (sample_period_ms = 1000/6).
PERIOD = 1.0 / 6.0


@dataclass(frozen=True)
class Sine:
    base: float
    amp: float = 0.0
    period: float = 60.0
    phase: float = 0.0

    def value(self, t: float) -> float:
        """The instantaneous value at t."""
        return self.base + self.amp * math.sin(2 * math.pi * (t + self.phase) / self.period)

    def integral(self, t: float) -> float:
        """Integral from 0 to t (any sign of t)."""
        w = 2 * math.pi / self.period
        return self.base * t + self.amp / w * (
            math.cos(w * self.phase) - math.cos(w * (t + self.phase))
        )


@dataclass(frozen=True)
class Square:
    high: float
    low: float
    period: float
    on: float
    phase: float = 0.0

    def _on_time(self, u: float) -> float:
        n = math.floor(u / self.period)
        return n * self.on + min(u - n * self.period, self.on)

    def value(self, t: float) -> float:
        """The instantaneous value at t: high in [0, on) of each period of t + phase."""
        u = t + self.phase
        return self.high if u - math.floor(u / self.period) * self.period < self.on else self.low

    def integral(self, t: float) -> float:
        """Integral from 0 to t (any sign of t)."""
        high_time = self._on_time(t + self.phase) - self._on_time(self.phase)
        return self.low * t + (self.high - self.low) * high_time


Curve = Sine | Square


def mean(curve: Curve, a: float, b: float) -> float:
    """Exact mean of the curve over (a, b]."""
    return (curve.integral(b) - curve.integral(a)) / (b - a)


def sample_value(curve: Curve, k: int, period: float = PERIOD) -> int:
    """Sample k (any integer, k <= 0 before scenario time 0): the mean over ((k-1)P, kP],
    clamped to 0..100, rounded half away from zero."""
    v = min(100.0, max(0.0, mean(curve, (k - 1) * period, k * period)))
    return math.floor(v + 0.5)


def buffer_ks(t: float, buffer: int = 100, period: float = PERIOD) -> range:
    """The sample indices in the buffer at scenario time t >= 0: the last complete sample
    floor(t/P) and the buffer - 1 before it (full from the start: k <= 0 before time 0)."""
    last = math.floor(t / period + 1e-9)
    return range(last - buffer + 1, last + 1)


def scenario(tmp_path: Path, text: str, name: str = "custom") -> str:
    """Write a scenario file and return its path (FAKE_NVML_SCENARIO accepts a path)."""
    path = tmp_path / f"{name}.scn"
    path.write_text(text)
    return str(path)
