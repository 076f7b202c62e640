"""Profiling metrics through NVML GPM (GPU Performance Monitoring, Hopper and newer).

What GPM answers that utilization cannot: nvidia_gpu_utilization_ratio says a kernel ran;
GPM says how much of the GPU it used (SM activity and occupancy), whether the tensor cores did
the work, which math pipes were busy and how close to peak memory bandwidth it ran. DCGM needs
its profiling module (SYS_ADMIN, hundreds of MB) for the same counters; GPM is plain NVML.

How: each collection takes one GPM sample per GPU (nvmlGpmSampleGet) or per MIG GPU instance
(nvmlGpmMigSampleGet) and asks NVML for the metrics between it and the previous collection's
sample (nvmlGpmMetricsGet), so every ratio is the average of the whole interval, not a
snapshot; the *_seconds_total and *_bytes_total counters add ratio x interval, so their rate()
is exact over any window. The first collection only takes the baseline sample. A GPU without
GPM (nvmlGpmQueryDeviceSupport says no: A100, T4, ...) has none of these series, never zeros;
a metric NVML answers NOT_SUPPORTED for is dropped for that GPU until the next enumeration,
which also forgets GPU instances gone for ten minutes (a MIG device NVML could not describe for
a collection or two keeps its baseline, so its series come back at once).
"""

from __future__ import annotations

import ctypes
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pynvml

from exporter import metrics
from exporter.metrics_activity import ProfilingFamilies
from exporter.model import LabelValues, SampleBuilder
from exporter.sources.nvml.device import Gpu
from exporter.sources.nvml.errors import (
    LOST_CODES,
    NOT_SUPPORTED,
    GpuLostError,
    Ledger,
    error_name,
    log,
)

_MIB = 1024.0 * 1024.0
#: NVML requires the two samples of a metric at least 100 ms apart.
MIN_INTERVAL_SECONDS = 0.1
#: A GPU instance not seen for this long is forgotten (MIG reconfigured); a shorter absence
#: (a MIG device NVML failed to describe for a while) keeps its baseline and counters.
FORGET_AFTER_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class GpmMetric:
    """One GPM metric id and where it goes: a ratio family, a counter, an extra label value."""

    metric_id: int
    ratio: str  # attribute of ProfilingFamilies for the gauge ("" for none: counter only)
    counter: str  # attribute of ProfilingFamilies for the counter ("" for none)
    label: str = ""  # value of the extra label (pipe or direction), "" when the family has none
    throughput: bool = False  # MiB/s (counter adds bytes) instead of percent


#: What a GPU instance is asked; a whole GPU is asked the same less PCIe and NVLink throughput
#: (its field-value byte counters already give those).
GPM_METRICS: tuple[GpmMetric, ...] = (
    GpmMetric(pynvml.NVML_GPM_METRIC_GRAPHICS_UTIL, "graphics_active", "graphics_active_seconds"),
    GpmMetric(pynvml.NVML_GPM_METRIC_SM_UTIL, "sm_active", "sm_active_seconds"),
    GpmMetric(pynvml.NVML_GPM_METRIC_SM_OCCUPANCY, "sm_occupancy", ""),
    GpmMetric(pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL, "tensor_active", "tensor_active_seconds"),
    GpmMetric(pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL, "dram_active", "dram_active_seconds"),
    GpmMetric(pynvml.NVML_GPM_METRIC_FP64_UTIL, "", "pipe_active_seconds", "fp64"),
    GpmMetric(pynvml.NVML_GPM_METRIC_FP32_UTIL, "", "pipe_active_seconds", "fp32"),
    GpmMetric(pynvml.NVML_GPM_METRIC_FP16_UTIL, "", "pipe_active_seconds", "fp16"),
    GpmMetric(pynvml.NVML_GPM_METRIC_INTEGER_UTIL, "", "pipe_active_seconds", "integer"),
    GpmMetric(pynvml.NVML_GPM_METRIC_HMMA_TENSOR_UTIL, "", "pipe_active_seconds", "tensor_hmma"),
    GpmMetric(pynvml.NVML_GPM_METRIC_IMMA_TENSOR_UTIL, "", "pipe_active_seconds", "tensor_imma"),
    GpmMetric(pynvml.NVML_GPM_METRIC_DMMA_TENSOR_UTIL, "", "pipe_active_seconds", "tensor_dmma"),
    GpmMetric(pynvml.NVML_GPM_METRIC_DFMA_TENSOR_UTIL, "", "pipe_active_seconds", "tensor_dfma"),
    GpmMetric(pynvml.NVML_GPM_METRIC_PCIE_TX_PER_SEC, "", "pcie_bytes", "transmit", True),
    GpmMetric(pynvml.NVML_GPM_METRIC_PCIE_RX_PER_SEC, "", "pcie_bytes", "receive", True),
    GpmMetric(pynvml.NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC, "", "nvlink_bytes", "transmit", True),
    GpmMetric(pynvml.NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC, "", "nvlink_bytes", "receive", True),
)
GPU_METRICS = tuple(metric for metric in GPM_METRICS if not metric.throughput)
# nvmlGpmMetric_t: metricId, nvmlReturn, value, then the three metricInfo pointers.
_METRIC = struct.Struct("=IId24x")
_METRICS_OFFSET = pynvml.c_nvmlGpmMetricsGet_t.metrics.offset


@dataclass(slots=True)
class Scope:
    """GPM state of one GPU or one MIG GPU instance: two sample buffers and the counters."""

    labels: LabelValues
    families: ProfilingFamilies
    metrics: tuple[GpmMetric, ...] = GPM_METRICS
    previous: Any = None  # the sample of the last collection
    spare: Any = None  # the buffer the next sample goes into
    previous_at: float = 0.0  # clock time of the previous sample (set with it)
    counters: dict[tuple[str, str], float] = field(default_factory=dict)
    ratios: list[tuple[str, LabelValues, float]] = field(default_factory=list)  # last interval
    seen_at: float = 0.0  # clock time this scope was last read


class GpmReader:
    """Samples GPM per GPU (or per GPU instance on MIG) and turns sample pairs into series."""

    def __init__(self, ledger: Ledger, clock: Callable[[], float] = time.monotonic) -> None:
        """`clock`: seconds of a monotonic clock; the interval of each pair of samples.

        Tests that step the fake driver's scenario time pass the same clock, so the interval
        the counters multiply by is the one the fake measured over.
        """
        self._ledger = ledger
        self._clock = clock
        self._scopes: dict[tuple[str, int], Scope] = {}  # (uuid, gpu instance or -1)
        self._request: Any = pynvml.c_nvmlGpmMetricsGet_t()
        self._request_ids: tuple[int, ...] = ()  # the metric ids the request holds now

    # -- lifecycle -----------------------------------------------------------------------

    def release(self) -> None:
        """Free every sample buffer (before nvmlShutdown); the counters stay for the next init."""
        for scope in self._scopes.values():
            self._free(scope)

    @staticmethod
    def _free(scope: Scope) -> None:
        for sample in (scope.previous, scope.spare):
            if sample is not None:
                try:
                    pynvml.nvmlGpmSampleFree(sample)
                except pynvml.NVMLError as err:
                    log.debug("gpm_sample_free_failed", code=error_name(err.value))
        scope.previous = scope.spare = None

    def forget_samples(self) -> None:
        """A new NVML session: drop the old session's sample handles without freeing them."""
        for scope in self._scopes.values():
            scope.previous = scope.spare = None

    # -- collection -------------------------------------------------------------------------

    def read(self, gpu: Gpu, out: SampleBuilder) -> None:
        """One sample per scope of this GPU, and the metrics since the previous one."""
        fresh = gpu.gpm_supported is None  # first read since this GPU was enumerated
        if not self._supported(gpu):
            return
        wanted = (
            sorted({mig.identity.gpu_instance for mig in gpu.migs}) if gpu.mig_enabled else [-1]
        )
        now = self._clock()
        if fresh:
            self._prune(gpu.labels[1], set(wanted), now)
        for gpu_instance in wanted:
            scope = self._scope(gpu, gpu_instance)
            scope.seen_at = now
            if fresh:  # metrics NOT_SUPPORTED in the last enumeration are asked again
                scope.metrics = GPU_METRICS if gpu_instance < 0 else GPM_METRICS
            if gpu_instance < 0:
                self._sample_gpu(gpu, scope, out)
            else:
                self._sample_instance(gpu, gpu_instance, scope, out)

    def _prune(self, uuid: str, wanted: set[int], now: float) -> None:
        """Forget GPU instances gone for FORGET_AFTER_SECONDS (MIG reconfigured or switched)."""
        gone = [
            key
            for key, scope in self._scopes.items()
            if key[0] == uuid
            and key[1] not in wanted
            and now - scope.seen_at > FORGET_AFTER_SECONDS
        ]
        for key in gone:
            self._free(self._scopes.pop(key))

    def _supported(self, gpu: Gpu) -> bool:
        if gpu.gpm_supported is None:
            support = self._ledger.call(
                gpu, "nvmlGpmQueryDeviceSupport", pynvml.nvmlGpmQueryDeviceSupport, gpu.handle
            )
            if support is None and "nvmlGpmQueryDeviceSupport" not in gpu.skip:
                return False  # failed this time: ask again next collection
            gpu.gpm_supported = bool(support is not None and support.isSupportedDevice)
        return gpu.gpm_supported

    def _scope(self, gpu: Gpu, gpu_instance: int) -> Scope:
        key = (gpu.labels[1], gpu_instance)
        scope = self._scopes.get(key)
        if scope is None:
            if gpu_instance < 0:
                scope = Scope(gpu.labels, metrics.GPM, GPU_METRICS)
            else:
                scope = Scope((*gpu.labels, str(gpu_instance)), metrics.MIG_GPM)
            self._scopes[key] = scope
        return scope

    def _buffer(self, gpu: Gpu, scope: Scope) -> Any:
        if scope.spare is None:
            scope.spare = self._ledger.call(gpu, "nvmlGpmSampleAlloc", pynvml.nvmlGpmSampleAlloc)
        return scope.spare

    def _sample_gpu(self, gpu: Gpu, scope: Scope, out: SampleBuilder) -> None:
        sample = self._buffer(gpu, scope)
        if sample is None:
            return
        taken = self._ledger.call(
            gpu, "nvmlGpmSampleGet", pynvml.nvmlGpmSampleGet, gpu.handle, sample
        )
        self._advance(gpu, scope, taken is not None, out)

    def _sample_instance(
        self, gpu: Gpu, gpu_instance: int, scope: Scope, out: SampleBuilder
    ) -> None:
        sample = self._buffer(gpu, scope)
        if sample is None:
            return
        taken = self._ledger.call(
            gpu,
            "nvmlGpmMigSampleGet",
            pynvml.nvmlGpmMigSampleGet,
            gpu.handle,
            gpu_instance,
            sample,
        )
        self._advance(gpu, scope, taken is not None, out)

    def _advance(self, gpu: Gpu, scope: Scope, taken: bool, out: SampleBuilder) -> None:
        """The new sample is in scope.spare: compute the interval, then make it the baseline."""
        now = self._clock()
        if not taken:
            # Nothing this collection (the error is counted); the baseline stays, so the next
            # sample measures the whole interval since it: GPM counts inside the GPU.
            return
        elapsed = now - scope.previous_at
        if scope.previous is not None:
            if elapsed < MIN_INTERVAL_SECONDS:
                # Too close to the baseline for NVML: the last interval's averages stand, and
                # the baseline stays (the next interval is measured from it).
                self._emit_last(scope, out)
                return
            values = self._metrics(gpu, scope, scope.previous, scope.spare)
            if values is not None:
                self._emit(scope, values, elapsed, out)
        scope.previous, scope.spare = scope.spare, scope.previous
        scope.previous_at = now

    def _metrics(self, gpu: Gpu, scope: Scope, first: Any, second: Any) -> dict[int, float] | None:
        """metric id -> value between the two samples; None when the call failed."""
        call = "nvmlGpmMetricsGet"
        if call in gpu.skip:
            return None
        request = self._request
        request.version = pynvml.NVML_GPM_METRICS_GET_VERSION
        request.numMetrics = len(scope.metrics)
        request.sample1 = first
        request.sample2 = second
        ids = tuple(metric.metric_id for metric in scope.metrics)
        if ids != self._request_ids:  # NVML leaves metricId alone: set only when it changes
            for slot, metric_id in enumerate(ids):
                request.metrics[slot].metricId = metric_id
            self._request_ids = ids
        try:
            pynvml.nvmlGpmMetricsGet(request)
        except pynvml.NVMLError as err:
            self._ledger.failed(gpu, call, err)
            return None
        raw = ctypes.string_at(
            ctypes.addressof(request) + _METRICS_OFFSET, len(scope.metrics) * _METRIC.size
        )
        values: dict[int, float] = {}
        unsupported: set[int] = set()
        for metric_id, code, value in _METRIC.iter_unpack(raw):
            if code == 0:
                values[metric_id] = value
            elif code in LOST_CODES:
                raise GpuLostError(error_name(code))
            elif code == NOT_SUPPORTED:
                unsupported.add(metric_id)
            else:
                self._ledger.count(f"{call}:{metric_id}", code)
        if unsupported:
            log.debug("gpm_metrics_not_supported", gpu=gpu.index, metrics=sorted(unsupported))
            scope.metrics = tuple(m for m in scope.metrics if m.metric_id not in unsupported)
        return values

    def _emit(
        self, scope: Scope, values: dict[int, float], elapsed: float, out: SampleBuilder
    ) -> None:
        families = scope.families
        scope.ratios = []
        for metric in scope.metrics:
            value = values.get(metric.metric_id)
            if value is None:
                continue
            labels = (*scope.labels, metric.label) if metric.label else scope.labels
            if metric.throughput:
                key = (metric.counter, metric.label)
                scope.counters[key] = scope.counters.get(key, 0.0) + value * _MIB * elapsed
                continue
            ratio = min(max(value / 100.0, 0.0), 1.0)
            if metric.ratio:
                scope.ratios.append((getattr(families, metric.ratio).name, labels, ratio))
            if metric.counter:
                key = (metric.counter, metric.label)
                scope.counters[key] = scope.counters.get(key, 0.0) + ratio * elapsed
        self._emit_last(scope, out)

    @staticmethod
    def _emit_last(scope: Scope, out: SampleBuilder) -> None:
        """The ratios of the last measured interval and the counters."""
        for family, labels, ratio in scope.ratios:
            out.add(family, labels, ratio)
        families = scope.families
        for (counter, label), total in scope.counters.items():
            labels = (*scope.labels, label) if label else scope.labels
            out.add(getattr(families, counter).name, labels, total)
