"""The per-GPU values of one collection: memory, power, clocks, throttling, PCIe, NVLink, MIG.

One GpuReader.read per GPU per collection; the activity readers (utilization samples, GPM,
per-process utilization) are called from the same pass, so every GPU is visited once.
"""

from __future__ import annotations

import ctypes
from typing import Any

import pynvml

from exporter import metrics
from exporter.model import GpuProcess, SampleBuilder
from exporter.sources import nvml_fields as fields
from exporter.sources.nvml.device import Driver, FieldBatch, Gpu, decode_field_value
from exporter.sources.nvml.errors import LOST_CODES, NOT_SUPPORTED, GpuLostError, Ledger, error_name


class GpuReader:
    """Reads the values of one GPU (and its MIG devices) into a SampleBuilder."""

    def __init__(self, ledger: Ledger, driver: Driver, capture_processes: bool = False) -> None:
        """`capture_processes`: keep each collection's process list (for per-process series)."""
        self._ledger = ledger
        self._driver = driver
        self.capture_processes = capture_processes
        self.process_buffer: list[GpuProcess] = []

    def read(self, gpu: Gpu, out: SampleBuilder) -> None:
        """Every value of one GPU; raises GpuLostError when NVML says the GPU is gone."""
        handle, labels, call = gpu.handle, gpu.labels, self._ledger.call
        add = out.add
        memory = call(
            gpu,
            "nvmlDeviceGetMemoryInfo_v2",
            pynvml.nvmlDeviceGetMemoryInfo,
            handle,
            pynvml.nvmlMemory_v2,
        )
        if memory is None and "nvmlDeviceGetMemoryInfo_v2" in gpu.skip:
            memory = call(gpu, "nvmlDeviceGetMemoryInfo", pynvml.nvmlDeviceGetMemoryInfo, handle)
        if memory is not None:
            add(metrics.MEMORY_TOTAL.name, labels, float(memory.total))
            add(metrics.MEMORY_USED.name, labels, float(memory.used))
            add(metrics.MEMORY_FREE.name, labels, float(memory.free))
            reserved = getattr(memory, "reserved", None)
            if reserved is not None:
                add(metrics.MEMORY_RESERVED.name, labels, float(reserved))
        bar1 = call(gpu, "nvmlDeviceGetBAR1MemoryInfo", pynvml.nvmlDeviceGetBAR1MemoryInfo, handle)
        if bar1 is not None:
            add(metrics.BAR1_TOTAL.name, labels, float(bar1.bar1Total))
            add(metrics.BAR1_USED.name, labels, float(bar1.bar1Used))
        if not gpu.mig_enabled:  # NVML has no utilization on MIG-enabled GPUs
            rates = call(
                gpu, "nvmlDeviceGetUtilizationRates", pynvml.nvmlDeviceGetUtilizationRates, handle
            )
            if rates is not None:
                add(metrics.UTILIZATION.name, labels, rates.gpu / 100.0)
                add(metrics.MEMORY_UTILIZATION.name, labels, rates.memory / 100.0)
            encoder = call(
                gpu,
                "nvmlDeviceGetEncoderUtilization",
                pynvml.nvmlDeviceGetEncoderUtilization,
                handle,
            )
            if encoder is not None:
                add(metrics.ENCODER_UTILIZATION.name, labels, encoder[0] / 100.0)
            decoder = call(
                gpu,
                "nvmlDeviceGetDecoderUtilization",
                pynvml.nvmlDeviceGetDecoderUtilization,
                handle,
            )
            if decoder is not None:
                add(metrics.DECODER_UTILIZATION.name, labels, decoder[0] / 100.0)
        power = call(gpu, "nvmlDeviceGetPowerUsage", pynvml.nvmlDeviceGetPowerUsage, handle)
        if power is not None:
            add(metrics.POWER_USAGE.name, labels, power / 1000.0)
        enforced = call(
            gpu, "nvmlDeviceGetEnforcedPowerLimit", pynvml.nvmlDeviceGetEnforcedPowerLimit, handle
        )
        if enforced is not None:
            add(metrics.POWER_LIMIT.name, (*labels, "enforced"), enforced / 1000.0)
        temperature = call(
            gpu,
            "nvmlDeviceGetTemperatureV",
            pynvml.nvmlDeviceGetTemperatureV,
            handle,
            pynvml.NVML_TEMPERATURE_GPU,
        )
        if temperature is None and "nvmlDeviceGetTemperatureV" in gpu.skip:
            temperature = call(
                gpu,
                "nvmlDeviceGetTemperature",
                pynvml.nvmlDeviceGetTemperature,
                handle,
                pynvml.NVML_TEMPERATURE_GPU,
            )
        if temperature is not None:
            add(metrics.TEMPERATURE.name, labels, float(temperature))
        fan = call(gpu, "nvmlDeviceGetFanSpeed", pynvml.nvmlDeviceGetFanSpeed, handle)
        if fan is not None:
            add(metrics.FAN_SPEED.name, labels, fan / 100.0)
        for clock_type, clock in fields.CLOCK_DOMAINS:
            mhz = call(
                gpu,
                f"nvmlDeviceGetClockInfo:{clock}",
                pynvml.nvmlDeviceGetClockInfo,
                handle,
                clock_type,
            )
            if mhz is not None:
                add(metrics.CLOCK.name, (*labels, clock), mhz * 1e6)
        pstate = call(
            gpu, "nvmlDeviceGetPerformanceState", pynvml.nvmlDeviceGetPerformanceState, handle
        )
        if pstate is not None and pstate != pynvml.NVML_PSTATE_UNKNOWN:
            add(metrics.PERFORMANCE_STATE.name, labels, float(pstate))
        if gpu.supported_reasons:
            self._read_reasons(gpu, out)
        generation = call(
            gpu,
            "nvmlDeviceGetCurrPcieLinkGeneration",
            pynvml.nvmlDeviceGetCurrPcieLinkGeneration,
            handle,
        )
        if generation is not None:
            add(metrics.PCIE_LINK_GENERATION.name, labels, float(generation))
        width = call(
            gpu, "nvmlDeviceGetCurrPcieLinkWidth", pynvml.nvmlDeviceGetCurrPcieLinkWidth, handle
        )
        if width is not None:
            add(metrics.PCIE_LINK_WIDTH.name, labels, float(width))
        for link in gpu.nvlink_links:
            state = call(
                gpu,
                f"nvmlDeviceGetNvLinkState:{link}",
                pynvml.nvmlDeviceGetNvLinkState,
                handle,
                link,
            )
            if state is not None:
                add(metrics.NVLINK_UP.name, (*labels, str(link)), 1.0 if state else 0.0)
        batch_specs = self._read_fields(gpu, out)
        if metrics.PCIE_TX_BYTES.name not in batch_specs:
            self._read_pcie_throughput(gpu, out)
        for family, sample_labels, value in gpu.static:
            add(family, sample_labels, value)
        if gpu.mig_enabled:
            self._read_migs(gpu, out)
        else:
            processes = self._count_processes(gpu, handle)
            if processes is not None:
                add(metrics.PROCESSES.name, labels, float(processes))

    def _read_reasons(self, gpu: Gpu, out: SampleBuilder) -> None:
        reasons = self._ledger.call(
            gpu,
            "nvmlDeviceGetCurrentClocksEventReasons",
            pynvml.nvmlDeviceGetCurrentClocksEventReasons,
            gpu.handle,
        )
        if reasons is None and "nvmlDeviceGetCurrentClocksEventReasons" in gpu.skip:
            reasons = self._ledger.call(
                gpu,
                "nvmlDeviceGetCurrentClocksThrottleReasons",
                pynvml.nvmlDeviceGetCurrentClocksThrottleReasons,
                gpu.handle,
            )
        if reasons is None:
            return
        for bit, reason in gpu.supported_reasons:
            out.add(
                metrics.CLOCK_EVENT_ACTIVE.name,
                (*gpu.labels, reason),
                1.0 if reasons & bit else 0.0,
            )

    def _read_fields(self, gpu: Gpu, out: SampleBuilder) -> set[str]:
        """One nvmlDeviceGetFieldValues call for every batched field; returns the families read."""
        batch = gpu.batch
        if batch is None or self._driver.field_values is None:
            return set()
        ret = self._driver.field_values(
            gpu.handle, ctypes.c_int32(len(batch.specs)), ctypes.byref(batch.array)
        )
        if ret != 0:
            self._ledger.failed(gpu, "nvmlDeviceGetFieldValues", pynvml.NVMLError(ret))
            return set()
        seen: set[str] = set()
        unsupported: list[int] = []
        add = out.add
        for position, (code, value_type, raw) in enumerate(batch.entries()):
            spec = batch.specs[position]
            if code != 0:
                if code in LOST_CODES:
                    raise GpuLostError(error_name(code))
                if code == NOT_SUPPORTED:
                    unsupported.append(position)
                    continue
                self._ledger.field_failed(gpu, spec.field_id, code)
                continue
            value = decode_field_value(value_type, raw)
            if value is None:
                continue
            add(spec.family, batch.labels[position], value * spec.scale)
            seen.add(spec.family)
        if unsupported:  # a field stopped being supported: drop it from the next batches
            dropped = set(unsupported)
            kept = [spec for position, spec in enumerate(batch.specs) if position not in dropped]
            gpu.batch = FieldBatch.build(kept, gpu.labels) if kept else None
        return seen

    def _read_pcie_throughput(self, gpu: Gpu, out: SampleBuilder) -> None:
        for counter, direction in (
            (pynvml.NVML_PCIE_UTIL_TX_BYTES, "transmit"),
            (pynvml.NVML_PCIE_UTIL_RX_BYTES, "receive"),
        ):
            kib = self._ledger.call(
                gpu,
                f"nvmlDeviceGetPcieThroughput:{direction}",
                pynvml.nvmlDeviceGetPcieThroughput,
                gpu.handle,
                counter,
            )
            if kib is not None:
                out.add(metrics.PCIE_THROUGHPUT.name, (*gpu.labels, direction), kib * 1024.0)

    def _count_processes(self, gpu: Gpu, handle: Any, mig_uuid: str = "") -> int | None:
        compute = self._ledger.call(
            gpu,
            "nvmlDeviceGetComputeRunningProcesses",
            pynvml.nvmlDeviceGetComputeRunningProcesses,
            handle,
        )
        graphics = self._ledger.call(
            gpu,
            "nvmlDeviceGetGraphicsRunningProcesses",
            pynvml.nvmlDeviceGetGraphicsRunningProcesses,
            handle,
        )
        # Without the compute list, or with a graphics list that failed this time (not one the
        # GPU does not support), the count is unknown: a partial count would be a wrong value.
        if compute is None or (
            graphics is None and "nvmlDeviceGetGraphicsRunningProcesses" not in gpu.skip
        ):
            return None
        if self.capture_processes:
            for kind, listed in (("compute", compute), ("graphics", graphics)):
                for process in listed or ():
                    used = process.usedGpuMemory
                    self.process_buffer.append(
                        GpuProcess(
                            gpu.index,
                            gpu.labels[1],
                            mig_uuid,
                            int(process.pid),
                            None if used is None else float(used),
                            kind,
                        )
                    )
        return len({process.pid for process in (compute or []) + (graphics or [])})

    def _read_migs(self, gpu: Gpu, out: SampleBuilder) -> None:
        add = out.add
        for mig in gpu.migs:
            labels = mig.labels
            memory = self._ledger.call(
                gpu,
                "mig:nvmlDeviceGetMemoryInfo_v2",
                pynvml.nvmlDeviceGetMemoryInfo,
                mig.handle,
                pynvml.nvmlMemory_v2,
            )
            if memory is None and "mig:nvmlDeviceGetMemoryInfo_v2" in gpu.skip:
                memory = self._ledger.call(
                    gpu, "mig:nvmlDeviceGetMemoryInfo", pynvml.nvmlDeviceGetMemoryInfo, mig.handle
                )
            if memory is not None:
                add(metrics.MIG_MEMORY_TOTAL.name, labels, float(memory.total))
                add(metrics.MIG_MEMORY_USED.name, labels, float(memory.used))
                add(metrics.MIG_MEMORY_FREE.name, labels, float(memory.free))
            processes = self._count_processes(gpu, mig.handle, mig.identity.uuid)
            if processes is not None:
                add(metrics.MIG_PROCESSES.name, labels, float(processes))
            if mig.multiprocessors is not None:
                add(metrics.MIG_MULTIPROCESSORS.name, labels, float(mig.multiprocessors))
