"""Per-process busy seconds on shared GPUs, from nvmlDeviceGetProcessUtilization.

On a time-sliced or MPS GPU, "which pod is using it" is the question; NVML answers it per pid
(SM, memory, encoder, decoder percent), averaged over the window since the timestamp passed in.
So each collection passes the newest timestamp of the previous answer, and a process's busy
seconds grow by percent x (its sample's timestamp - that timestamp): no window is counted
twice or skipped. The first answer per GPU only sets the baseline (its window is the driver's).

The counters are cumulative per (GPU UUID, pid) and pruned when the pid leaves NVML's process
list; the attribution source turns them into per-container counters (exporter/pod_activity.py).
Opt-in with the process collector: not on MIG (NVML has no per-process utilization there).
"""

from __future__ import annotations

import ctypes
import struct
from typing import Any

import pynvml

from exporter.model import GpuProcessActivity
from exporter.sources.nvml.device import Gpu, ReusedArray
from exporter.sources.nvml.errors import NOT_FOUND, Ledger

_CALL = "nvmlDeviceGetProcessUtilization"
# nvmlProcessUtilizationSample_t: pid, (pad), timeStamp, smUtil, memUtil, encUtil, decUtil.
_SAMPLE = struct.Struct("=I4xQIIII")
_INITIAL_CAPACITY = 64
_MAX_CAPACITY = 16384


class ProcessUtilizationReader:
    """Keeps cumulative busy seconds per GPU process (see the module doc)."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._last_seen: dict[str, int] = {}  # uuid -> newest sample timestamp (us)
        self._busy: dict[tuple[str, int], list[float]] = {}  # (uuid, pid) -> 4 engines
        self._index: dict[str, int] = {}  # uuid -> GPU index
        self._buffer = ReusedArray(
            pynvml.c_nvmlProcessUtilizationSample_t, _INITIAL_CAPACITY, _MAX_CAPACITY
        )
        self._function: Any = None

    def reset_driver(self) -> None:
        """NVML was (re)initialised: resolve the C function again; the counters stay."""
        self._function = None

    def read(self, gpu: Gpu, live_pids: set[int]) -> None:
        """Absorb this GPU's new process samples; forget pids no longer on the GPU."""
        uuid = gpu.labels[1]
        self._index[uuid] = gpu.index
        for key in [key for key in self._busy if key[0] == uuid and key[1] not in live_pids]:
            del self._busy[key]
        if gpu.mig_enabled or _CALL in gpu.skip:
            return
        samples = self._samples(gpu, self._last_seen.get(uuid, 0))
        if not samples:
            return
        last_seen = self._last_seen.get(uuid, 0)
        newest = last_seen
        for pid, timestamp, sm, memory, encoder, decoder in samples:
            if timestamp <= last_seen:
                continue
            newest = max(newest, timestamp)
            if last_seen == 0 or pid not in live_pids:
                continue  # the baseline answer, or a pid that already left
            seconds = (timestamp - last_seen) / 1e6
            busy = self._busy.setdefault((uuid, pid), [0.0, 0.0, 0.0, 0.0])
            for engine, percent in enumerate((sm, memory, encoder, decoder)):
                busy[engine] += seconds * min(percent, 100) / 100.0
        self._last_seen[uuid] = newest

    def activity(self) -> tuple[GpuProcessActivity, ...]:
        """Cumulative busy seconds of every tracked process."""
        return tuple(
            GpuProcessActivity(self._index.get(uuid, -1), uuid, pid, tuple(busy))
            for (uuid, pid), busy in sorted(self._busy.items())
        )

    def _samples(self, gpu: Gpu, last_seen_us: int) -> list[tuple[int, int, int, int, int, int]]:
        if self._function is None:
            self._function = pynvml._nvmlGetFunctionPointer(_CALL)
        function = self._function
        ret, raw = self._buffer.fill(
            lambda array, count: function(
                gpu.handle, array, count, ctypes.c_ulonglong(last_seen_us)
            )
        )
        if ret == NOT_FOUND:  # no process had a sample newer than last_seen
            return []
        if ret != pynvml.NVML_SUCCESS:
            self._ledger.failed(gpu, _CALL, pynvml.NVMLError(ret))
            return []
        return list(_SAMPLE.iter_unpack(raw))
