"""Busy-seconds counters from NVML's utilization sample buffer (nvmlDeviceGetSamples).

The driver samples each engine every sample period (1/6 s to 1 s by product) and keeps the
last samples in a ring buffer. Reading the buffer from the last timestamp seen counts every
sample exactly once, whatever the collection interval: the counters' `rate()` is the true
average, where nvidia_gpu_utilization_ratio is one sample per collection and aliases.

Accounting, per GPU and engine:
- a sample says "busy v% of the period that ended at its timestamp"; it covers the time since
  the previous sample, unless that is more than GAP_FACTOR times the shortest spacing seen (the
  sample period): such a gap means samples were overwritten before we read them (the buffer
  wrapped), and the sample still covers only one period, so busy and sampled seconds both stop
  short of wall time and busy/sampled stays exact. (The factor lets the driver's timestamp
  jitter count in full instead of being trimmed to the shortest spacing.);
- the first sample ever seen only sets the baseline (its period is unknown);
- NOT_FOUND means no new sample since the last one (an idle collection, or a short interval);
- the counters are kept per GPU UUID, outside the Gpu objects, so they survive re-enumeration
  and an NVML re-initialisation (timestamps are wall-clock microseconds, which continue).
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass
from typing import Any

import pynvml

from exporter import metrics
from exporter.model import SampleBuilder
from exporter.sources.nvml.device import Gpu, ReusedArray, decode_field_value
from exporter.sources.nvml.errors import NOT_FOUND, Ledger

#: (nvmlSamplingType_t, engine label): the engines of nvidia_gpu_utilization_busy_seconds_total.
SAMPLE_TYPES: tuple[tuple[int, str], ...] = (
    (pynvml.NVML_GPU_UTILIZATION_SAMPLES, "gpu"),
    (pynvml.NVML_MEMORY_UTILIZATION_SAMPLES, "memory"),
    (pynvml.NVML_ENC_UTILIZATION_SAMPLES, "encoder"),
    (pynvml.NVML_DEC_UTILIZATION_SAMPLES, "decoder"),
)
_SAMPLE = struct.Struct("=Q8s")  # nvmlSample_t: timeStamp, nvmlValue_t union
_SAMPLE_UINT = struct.Struct("=QI4x")  # the same when the union holds an unsigned int
_UNSIGNED_INT = 1  # NVML_VALUE_TYPE_UNSIGNED_INT: what utilization samples are
GAP_FACTOR = 1.5
_INITIAL_CAPACITY = 256
_MAX_CAPACITY = 65536


@dataclass(slots=True)
class EngineCounter:
    """Busy and covered seconds of one engine of one GPU, and where the buffer was left."""

    last_timestamp_us: int = 0
    period_us: int = 0  # shortest spacing seen between two samples: the sample period
    busy_seconds: float = 0.0
    sampled_seconds: float = 0.0
    started: bool = False

    def absorb(self, samples: list[tuple[int, float]]) -> None:
        """Add (timestamp us, percent) samples, oldest first; older or repeated ones are skipped.

        One tight loop with locals: it runs for every sample of every engine of every GPU
        (about 30 per engine per 5 s collection at the H100's 1/6 s sample period).
        """
        last, period = self.last_timestamp_us, self.period_us
        busy = sampled = 0.0  # microseconds x percent, microseconds
        for timestamp, percent in samples:
            if timestamp <= last:
                continue
            if not self.started:
                self.started = True
                last = timestamp
                continue
            spacing = timestamp - last
            if period == 0 or spacing < period:
                period = spacing
            covered = spacing if spacing <= GAP_FACTOR * period else period
            busy += covered * (
                percent if 0.0 <= percent <= 100.0 else max(0.0, min(percent, 100.0))
            )
            sampled += covered
            last = timestamp
        self.last_timestamp_us, self.period_us = last, period
        self.busy_seconds += busy / 1e8
        self.sampled_seconds += sampled / 1e6


class UtilizationSampler:
    """Reads the sample buffer of each engine of a GPU into the busy-seconds counters."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._counters: dict[tuple[str, str], EngineCounter] = {}
        self._buffer = ReusedArray(pynvml.c_nvmlSample_t, _INITIAL_CAPACITY, _MAX_CAPACITY)
        self._get_samples: Any = None

    def reset_driver(self) -> None:
        """NVML was (re)initialised: resolve the C function again; the counters stay."""
        self._get_samples = None

    def read(self, gpu: Gpu, out: SampleBuilder) -> None:
        """Absorb the new samples of every engine and add the counters (not on MIG GPUs)."""
        if gpu.mig_enabled:  # NVML keeps no utilization samples on a MIG-enabled GPU
            return
        labels = gpu.labels
        for sample_type, engine in SAMPLE_TYPES:
            call = f"nvmlDeviceGetSamples:{engine}"
            if call in gpu.skip:
                continue
            counter = self._counters.get((labels[1], engine))
            if counter is None:
                counter = self._counters[(labels[1], engine)] = EngineCounter()
            samples = self._samples(gpu, call, sample_type, counter.last_timestamp_us)
            if samples is None:
                continue
            counter.absorb(samples)
            if counter.started:
                out.add(metrics.UTILIZATION_BUSY.name, (*labels, engine), counter.busy_seconds)
                out.add(
                    metrics.UTILIZATION_SAMPLED.name, (*labels, engine), counter.sampled_seconds
                )

    def _samples(
        self, gpu: Gpu, call: str, sample_type: int, last_seen_us: int
    ) -> list[tuple[int, float]] | None:
        """New (timestamp, percent) samples; [] when none is new; None when the call failed.

        One C call into a reused buffer (device.ReusedArray says why).
        """
        if self._get_samples is None:
            self._get_samples = pynvml._nvmlGetFunctionPointer("nvmlDeviceGetSamples")
        get_samples, value_type = self._get_samples, ctypes.c_int(0)
        ret, view = self._buffer.fill(
            lambda array, count: get_samples(
                gpu.handle,
                ctypes.c_int(sample_type),
                ctypes.c_ulonglong(last_seen_us),
                ctypes.byref(value_type),
                count,
                array,
            )
        )
        if ret == NOT_FOUND:
            return []
        if ret != pynvml.NVML_SUCCESS:
            self._ledger.failed(gpu, call, pynvml.NVMLError(ret))
            return None
        decoded: list[tuple[int, float]]
        if value_type.value == _UNSIGNED_INT:  # the usual case, decoded in one pass
            decoded = list(_SAMPLE_UINT.iter_unpack(view))
        else:
            decoded = []
            for timestamp, raw in _SAMPLE.iter_unpack(view):
                value = decode_field_value(value_type.value, raw)
                if value is not None:
                    decoded.append((timestamp, value))
        decoded.sort()
        return decoded
