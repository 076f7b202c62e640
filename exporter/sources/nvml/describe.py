"""Enumeration: everything static about a GPU, read once per enumeration, not per collection.

Identity (nvidia_gpu_info), limits (max clocks, temperature thresholds, PCIe maximums), the
supported throttle reasons, the field-value plan (which ids this GPU answers, NVLink links) and
the MIG layout. A GPU that cannot be named (no handle or UUID) raises; the source keeps it as a
placeholder with nvidia_gpu_up 0.
"""

from __future__ import annotations

import ctypes

import pynvml

from exporter import metrics
from exporter.model import MigIdentity
from exporter.sources import nvml_fields as fields
from exporter.sources.nvml.device import Driver, FieldBatch, Gpu, Mig, decode_field_value, text
from exporter.sources.nvml.errors import (
    LOST_CODES,
    NOT_SUPPORTED,
    GpuLostError,
    Ledger,
    error_name,
    log,
)

_BRANDS: dict[int, str] = {
    value: name.removeprefix("NVML_BRAND_").lower()
    for name, value in vars(pynvml).items()
    if name.startswith("NVML_BRAND_") and name != "NVML_BRAND_COUNT" and isinstance(value, int)
}


class GpuDescriber:
    """Builds a Gpu from NVML's static answers (see the module doc)."""

    def __init__(self, ledger: Ledger, driver: Driver) -> None:
        self._ledger = ledger
        self._driver = driver

    def describe(self, index: int) -> Gpu:
        """Read everything static about one GPU: identity, limits, MIG layout, field plan."""
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            uuid = text(pynvml.nvmlDeviceGetUUID(handle))
        except pynvml.NVMLError as err:
            if err.value in LOST_CODES:
                raise GpuLostError(error_name(err.value)) from err
            raise
        gpu = Gpu(index, handle, (str(index), uuid), ())
        name = self._ledger.call(gpu, "nvmlDeviceGetName", pynvml.nvmlDeviceGetName, handle)
        brand = self._ledger.call(gpu, "nvmlDeviceGetBrand", pynvml.nvmlDeviceGetBrand, handle)
        arch = self._ledger.call(
            gpu, "nvmlDeviceGetArchitecture", pynvml.nvmlDeviceGetArchitecture, handle
        )
        capability = self._ledger.call(
            gpu,
            "nvmlDeviceGetCudaComputeCapability",
            pynvml.nvmlDeviceGetCudaComputeCapability,
            handle,
        )
        vbios = self._ledger.call(
            gpu, "nvmlDeviceGetVbiosVersion", pynvml.nvmlDeviceGetVbiosVersion, handle
        )
        serial = self._ledger.call(gpu, "nvmlDeviceGetSerial", pynvml.nvmlDeviceGetSerial, handle)
        pci = self._ledger.call(gpu, "nvmlDeviceGetPciInfo", pynvml.nvmlDeviceGetPciInfo, handle)
        persistence = self._ledger.call(
            gpu, "nvmlDeviceGetPersistenceMode", pynvml.nvmlDeviceGetPersistenceMode, handle
        )
        mig_mode = self._ledger.call(
            gpu, "nvmlDeviceGetMigMode", pynvml.nvmlDeviceGetMigMode, handle
        )
        gpu.mig_enabled = bool(mig_mode and mig_mode[0] == pynvml.NVML_DEVICE_MIG_ENABLE)
        gpu.info_labels = (
            str(index),
            uuid,
            text(name) if name is not None else "",
            _BRANDS.get(brand, str(brand)) if brand is not None else "",
            fields.ARCHITECTURES.get(arch, str(arch)) if arch is not None else "",
            f"{capability[0]}.{capability[1]}" if capability else "",
            self._driver.driver_version,
            self._driver.cuda_version,
            text(vbios) if vbios is not None else "",
            text(serial) if serial is not None else "",
            text(pci.busId) if pci is not None else "",
            ("enabled" if gpu.mig_enabled else "disabled") if mig_mode is not None else "",
            ("enabled" if persistence else "disabled") if persistence is not None else "",
        )
        gpu.pci_bus_id = text(pci.busId) if pci is not None else ""
        gpu.minor_number = self._ledger.call(
            gpu, "nvmlDeviceGetMinorNumber", pynvml.nvmlDeviceGetMinorNumber, handle
        )
        self._describe_static(gpu)
        self._describe_fields(gpu)
        if gpu.mig_enabled:
            gpu.migs = self._describe_migs(gpu)
        return gpu

    def _describe_static(self, gpu: Gpu) -> None:
        handle, labels = gpu.handle, gpu.labels
        static = gpu.static
        for clock_type, clock in fields.CLOCK_DOMAINS:
            mhz = self._ledger.call(
                gpu,
                f"nvmlDeviceGetMaxClockInfo:{clock}",
                pynvml.nvmlDeviceGetMaxClockInfo,
                handle,
                clock_type,
            )
            if mhz is not None:
                static.append((metrics.MAX_CLOCK.name, (*labels, clock), mhz * 1e6))
        for threshold_type, threshold in fields.TEMPERATURE_THRESHOLDS:
            celsius = self._ledger.call(
                gpu,
                f"nvmlDeviceGetTemperatureThreshold:{threshold}",
                pynvml.nvmlDeviceGetTemperatureThreshold,
                handle,
                threshold_type,
            )
            if celsius is not None and celsius > 0:
                static.append(
                    (metrics.TEMPERATURE_THRESHOLD.name, (*labels, threshold), float(celsius))
                )
        max_generation = self._ledger.call(
            gpu,
            "nvmlDeviceGetMaxPcieLinkGeneration",
            pynvml.nvmlDeviceGetMaxPcieLinkGeneration,
            handle,
        )
        if max_generation is not None:
            static.append((metrics.PCIE_LINK_MAX_GENERATION.name, labels, float(max_generation)))
        max_width = self._ledger.call(
            gpu, "nvmlDeviceGetMaxPcieLinkWidth", pynvml.nvmlDeviceGetMaxPcieLinkWidth, handle
        )
        if max_width is not None:
            static.append((metrics.PCIE_LINK_MAX_WIDTH.name, labels, float(max_width)))
        supported = self._ledger.call(
            gpu,
            "nvmlDeviceGetSupportedClocksEventReasons",
            pynvml.nvmlDeviceGetSupportedClocksEventReasons,
            handle,
        )
        if supported is None:
            supported = self._ledger.call(
                gpu,
                "nvmlDeviceGetSupportedClocksThrottleReasons",
                pynvml.nvmlDeviceGetSupportedClocksThrottleReasons,
                handle,
            )
        if supported is not None:
            gpu.supported_reasons = tuple(
                (bit, reason) for bit, reason in fields.CLOCK_EVENT_REASONS if supported & bit
            )

    def _probe_fields(self, gpu: Gpu, specs: list[fields.FieldSpec]) -> list[fields.FieldSpec]:
        """Keep the field ids this GPU answers; NOT_SUPPORTED ones are dropped for good."""
        if not specs or self._driver.field_values is None or "nvmlDeviceGetFieldValues" in gpu.skip:
            return []
        batch = FieldBatch.build(specs)
        ret = self._driver.field_values(
            gpu.handle, ctypes.c_int32(len(specs)), ctypes.byref(batch.array)
        )
        if ret != 0:
            self._ledger.failed(gpu, "nvmlDeviceGetFieldValues", pynvml.NVMLError(ret))
            return []
        kept = []
        for spec, slot in zip(specs, batch.array, strict=True):
            if slot.nvmlReturn in LOST_CODES:
                raise GpuLostError(error_name(slot.nvmlReturn))
            if slot.nvmlReturn == NOT_SUPPORTED:
                once = (gpu.index, f"field:{spec.field_id}", NOT_SUPPORTED)
                if once not in self._ledger.logged:
                    self._ledger.logged.add(once)
                    log.debug("nvml_field_not_supported", gpu=gpu.index, field=spec.field_id)
                continue
            kept.append(spec)
        return kept

    def _describe_fields(self, gpu: Gpu) -> None:
        link_count = 0
        probe = self._probe_fields(gpu, [fields.FieldSpec(fields.NVLINK_LINK_COUNT, "")])
        if probe and self._driver.field_values is not None:
            batch = FieldBatch.build(probe)
            self._driver.field_values(gpu.handle, ctypes.c_int32(1), ctypes.byref(batch.array))
            code, value_type, raw = next(batch.entries())
            if code == 0:
                link_count = int(decode_field_value(value_type, raw) or 0)
            elif code in LOST_CODES:
                raise GpuLostError(error_name(code))
            elif code != NOT_SUPPORTED:  # NVLink series stay away until the next enumeration
                self._ledger.field_failed(gpu, fields.NVLINK_LINK_COUNT, code)
        candidates = list(fields.PER_GPU_FIELDS)
        if link_count > 0:
            candidates.extend(fields.NVLINK_FIELDS)
            candidates.extend(fields.nvlink_state_fields(link_count))
        kept = self._probe_fields(gpu, candidates)
        if link_count > 0 and not any(s.field_id == fields.NVLINK_GET_STATE for s in kept):
            gpu.nvlink_links = tuple(range(link_count))  # per-link calls instead
        gpu.batch = FieldBatch.build(kept, gpu.labels) if kept else None

    def _describe_migs(self, gpu: Gpu) -> list[Mig]:
        count = self._ledger.call(
            gpu, "nvmlDeviceGetMaxMigDeviceCount", pynvml.nvmlDeviceGetMaxMigDeviceCount, gpu.handle
        )
        migs: list[Mig] = []
        for slot in range(count or 0):
            try:
                handle = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(gpu.handle, slot)
            except pynvml.NVMLError as err:
                if err.value == pynvml.NVML_ERROR_NOT_FOUND:
                    continue  # an empty slot: later slots may still hold devices
                self._ledger.failed(gpu, "nvmlDeviceGetMigDeviceHandleByIndex", err)
                continue
            try:
                gi = pynvml.nvmlDeviceGetGpuInstanceId(handle)
                ci = pynvml.nvmlDeviceGetComputeInstanceId(handle)
                mig_uuid = text(pynvml.nvmlDeviceGetUUID(handle))
                name = text(pynvml.nvmlDeviceGetName(handle))
            except pynvml.NVMLError as err:
                self._ledger.failed(gpu, "mig_identity", err)
                continue
            profile = name.rpartition(" ")[2] if " MIG " in name else ""
            identity = MigIdentity(gi, ci, mig_uuid, profile, *self._placement(gpu, gi))
            sms: int | None = None
            attributes = self._ledger.call(
                gpu, "nvmlDeviceGetAttributes", pynvml.nvmlDeviceGetAttributes, handle
            )
            if attributes is not None:
                sms = int(attributes.multiprocessorCount)
            migs.append(
                Mig(handle, (*gpu.labels, str(gi), str(ci), profile, mig_uuid), sms, identity)
            )
        return migs

    def _placement(self, gpu: Gpu, gpu_instance: int) -> tuple[int | None, int | None, int | None]:
        """Profile id and placement of a GPU instance (DRA names MIG devices by them)."""
        instance = self._ledger.call(
            gpu,
            "nvmlDeviceGetGpuInstanceById",
            pynvml.nvmlDeviceGetGpuInstanceById,
            gpu.handle,
            gpu_instance,
        )
        if instance is None:
            return None, None, None
        info = self._ledger.call(
            gpu, "nvmlGpuInstanceGetInfo", pynvml.nvmlGpuInstanceGetInfo, instance
        )
        if info is None:
            return None, None, None
        return int(info.profileId), int(info.placement.start), int(info.placement.size)
