"""The NVML source: the only module that talks to pynvml.

One poll thread calls `collect()` every interval; nothing else calls NVML, so all NVML access is
serialised here (NVML_LOCK is held around every collection for sources added later, such as the
Xid event waiter). Values are converted to Prometheus base units at this boundary.

Error policy, per value:
- NOT_SUPPORTED or FUNCTION_NOT_FOUND (old driver): the value is omitted, never exported as 0,
  logged once, and the call is not made again for that GPU until the next enumeration.
- GPU_IS_LOST (or RESET_REQUIRED): the GPU keeps its identity series with nvidia_gpu_up 0, its
  other series are dropped, and it is retried every collection until it answers again.
- Anything else: the value is omitted for this collection, counted in
  nvidia_gpu_exporter_nvml_errors_total{call,code} and logged once per (gpu, call, code).
"""

from __future__ import annotations

import ctypes
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pynvml
import structlog

from exporter import metrics
from exporter.distinfo import distribution_version
from exporter.model import (
    GpuIdentity,
    GpuProcess,
    LabelValues,
    MigIdentity,
    SampleBuilder,
    SampleMap,
)
from exporter.poller import SourceUnavailableError
from exporter.sources import nvml_fields as fields
from exporter.worker import ThreadWorker

log = structlog.get_logger(__name__)

NVML_LOCK = threading.Lock()
ENUMERATION_REFRESH_SECONDS = 60.0

_NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
_FUNCTION_NOT_FOUND = pynvml.NVML_ERROR_FUNCTION_NOT_FOUND
_LOST_CODES = frozenset({pynvml.NVML_ERROR_GPU_IS_LOST, pynvml.NVML_ERROR_RESET_REQUIRED})
_SKIP_CODES = frozenset({_NOT_SUPPORTED, _FUNCTION_NOT_FOUND})
_NOT_AVAILABLE = 0xFFFFFFFF  # gpuInstanceId/computeInstanceId when a process is not on MIG
# NOT_SUPPORTED that only says what the GPU model is: a passively cooled datacenter GPU (A100,
# H100, T4...) has no fan, a pre-Ampere GPU no MIG. Logged at debug: at info every start printed
# one line per GPU with nothing to act on, and the missing series already tell the story.
_HARDWARE_ABSENT_CALLS = frozenset({"nvmlDeviceGetFanSpeed", "nvmlDeviceGetMigMode"})

_ERROR_NAMES: dict[int, str] = {
    value: name.removeprefix("NVML_ERROR_")
    for name, value in vars(pynvml).items()
    if name.startswith("NVML_ERROR_") and isinstance(value, int)
}
_BRANDS: dict[int, str] = {
    value: name.removeprefix("NVML_BRAND_").lower()
    for name, value in vars(pynvml).items()
    if name.startswith("NVML_BRAND_") and name != "NVML_BRAND_COUNT" and isinstance(value, int)
}


def error_name(code: int) -> str:
    """NVML return code as its short name, for labels and logs (e.g. GPU_IS_LOST)."""
    return _ERROR_NAMES.get(code, str(code))


class GpuLostError(Exception):
    """Raised inside a GPU's read when NVML says the GPU is lost or needs a reset."""


@dataclass(slots=True)
class _FieldBatch:
    """A prebuilt ctypes array for one GPU's nvmlDeviceGetFieldValues call, reused every time.

    Why decode with struct: pynvml's structures override __getattribute__, which made reading
    ~40 entries per GPU the most expensive part of a collection. The layout is nvml.h's
    nvmlFieldValue_t (40 bytes): fieldId, scopeId, timestamp, latencyUsec, valueType,
    nvmlReturn, then the 8-byte value union.
    """

    specs: list[fields.FieldSpec]
    array: Any
    labels: list[LabelValues]

    @classmethod
    def build(cls, specs: list[fields.FieldSpec], gpu_labels: LabelValues = ()) -> _FieldBatch:
        array = (pynvml.c_nvmlFieldValue_t * len(specs))()
        for slot, spec in zip(array, specs, strict=True):
            slot.fieldId = spec.field_id
            slot.scopeId = spec.scope
        labels = [(*gpu_labels, *spec.extra_labels) for spec in specs]
        return cls(specs, array, labels)

    def entries(self) -> Iterator[tuple[int, int, bytes]]:
        """(nvmlReturn, valueType, raw value bytes) per entry, after a call filled the array."""
        for _, _, _, _, value_type, code, raw in _FIELD_VALUE.iter_unpack(memoryview(self.array)):
            yield code, value_type, raw


_FIELD_VALUE = struct.Struct("=IIqqII8s")
_DOUBLE = struct.Struct("=d")
# nvmlValueType_t -> how many bytes of the union and whether signed (0 is a double).
_INT_VALUE_TYPES: dict[int, tuple[int, bool]] = {
    1: (4, False),  # unsigned int
    2: (8, False),  # unsigned long (LP64)
    3: (8, False),  # unsigned long long
    4: (8, True),  # signed long long
    5: (4, True),  # signed int
    6: (2, False),  # unsigned short
}


def decode_field_value(value_type: int, raw: bytes) -> float | None:
    """The number in an nvmlValue_t union, or None for a value type we do not know."""
    if value_type == 0:
        return float(_DOUBLE.unpack(raw)[0])
    layout = _INT_VALUE_TYPES.get(value_type)
    if layout is None:
        return None
    size, signed = layout
    return float(int.from_bytes(raw[:size], "little", signed=signed))


@dataclass(slots=True)
class _Mig:
    handle: Any
    labels: LabelValues  # gpu, uuid, gpu_instance, compute_instance, profile, mig_uuid
    multiprocessors: int | None
    identity: MigIdentity


@dataclass(slots=True)
class _Gpu:
    index: int
    handle: Any
    labels: LabelValues  # gpu, uuid
    info_labels: LabelValues
    mig_enabled: bool = False
    migs: list[_Mig] = field(default_factory=list)
    static: list[tuple[str, LabelValues, float]] = field(default_factory=list)
    skip: set[str] = field(default_factory=set)
    batch: _FieldBatch | None = None
    supported_reasons: tuple[tuple[int, str], ...] = ()
    nvlink_links: tuple[int, ...] = ()
    lost: bool = False
    pci_bus_id: str = ""
    minor_number: int | None = None


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _cuda_version_text(version: int) -> str:
    return f"{version // 1000}.{(version % 1000) // 10}"


class NvmlSource:
    """Enumerates GPUs and MIG devices and reads every metric family from NVML."""

    name = "nvml"

    def __init__(self, library_path: str | None = None, capture_processes: bool = False) -> None:
        """`library_path`: load this libnvidia-ml.so.1 first (the fake driver in --simulate).

        `capture_processes`: keep the per-process list of each collection for `processes()`
        (per-process memory attribution is opt-in: it costs memory and cardinality).
        """
        self._library_path = library_path
        self.capture_processes = capture_processes
        self._processes: tuple[GpuProcess, ...] = ()
        self._process_buffer: list[GpuProcess] = []
        self._gpus: list[_Gpu] = []
        self._driver_version = ""
        self._cuda_version = ""
        self._enumerated_at = 0.0
        self._enumerated: tuple[object, ...] = ()  # identities of the last enumeration
        self._device_count = -1
        self._errors: dict[tuple[str, str], int] = {}
        self._logged: set[tuple[int, str, int]] = set()
        self._field_values = None  # the C function, resolved once
        self._directory: tuple[GpuIdentity, ...] = ()
        self._marked_lost: set[str] = set()  # uuids the Xid source saw fall off the bus
        self.pynvml_version = getattr(pynvml, "__version__", "") or _package_version()

    # -- lifecycle -------------------------------------------------------------------

    def open(self) -> None:
        """nvmlInit; any failure means the driver is not usable now (the poller retries)."""
        if self._library_path:
            ctypes.CDLL(self._library_path, mode=ctypes.RTLD_GLOBAL)
        try:
            with NVML_LOCK:
                pynvml.nvmlInit()
                try:
                    self._driver_version = _text(pynvml.nvmlSystemGetDriverVersion())
                except pynvml.NVMLError:
                    pynvml.nvmlShutdown()  # release the init reference we just took
                    raise
                try:
                    self._cuda_version = _cuda_version_text(
                        pynvml.nvmlSystemGetCudaDriverVersion_v2()
                    )
                except pynvml.NVMLError:
                    self._cuda_version = ""
                try:
                    self._field_values = pynvml._nvmlGetFunctionPointer("nvmlDeviceGetFieldValues")
                except pynvml.NVMLError:  # a driver older than field values: no batch
                    self._field_values = None
        except pynvml.NVMLError as err:
            raise SourceUnavailableError(f"nvmlInit failed: {error_name(err.value)}") from err
        self._gpus = []
        self._device_count = -1
        log.info(
            "nvml_initialised",
            driver_version=self._driver_version,
            cuda_driver_version=self._cuda_version,
        )

    def close(self) -> None:
        """nvmlShutdown; errors are logged, never raised (we are shutting down)."""
        try:
            with NVML_LOCK:
                pynvml.nvmlShutdown()
        except pynvml.NVMLError as err:
            log.warning("nvml_shutdown_failed", error=error_name(err.value))

    # -- error handling ----------------------------------------------------------------

    def _failed(self, gpu: _Gpu, call: str, err: pynvml.NVMLError) -> None:
        code: int = err.value
        if code in _LOST_CODES:
            raise GpuLostError(error_name(code))
        once = (gpu.index, call, code)
        if code in _SKIP_CODES:
            gpu.skip.add(call)
            if once not in self._logged:
                self._logged.add(once)
                level = log.debug if call in _HARDWARE_ABSENT_CALLS else log.info
                level("nvml_not_supported", gpu=gpu.index, call=call, code=error_name(code))
            return
        key = (call, error_name(code))
        self._errors[key] = self._errors.get(key, 0) + 1
        if once not in self._logged:
            self._logged.add(once)
            log.warning("nvml_call_failed", gpu=gpu.index, call=call, code=error_name(code))

    def _call(self, gpu: _Gpu, call: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Call NVML for one value; None when it is unsupported or failed (see module doc)."""
        if call in gpu.skip:
            return None
        try:
            return fn(*args)
        except pynvml.NVMLError as err:
            self._failed(gpu, call, err)
            return None
        except pynvml.NVMLLibraryMismatchError:
            gpu.skip.add(call)
            return None

    # -- enumeration ---------------------------------------------------------------------

    def _enumerate(self, count: int) -> None:
        previous = {gpu.index: gpu for gpu in self._gpus}
        gpus: list[_Gpu] = []
        for index in range(count):
            try:
                gpus.append(self._describe(index))
            except (GpuLostError, pynvml.NVMLError) as err:
                # A GPU NVML counts but cannot describe stays visible, with nvidia_gpu_up 0
                # (and its last known identity), and is described again every collection.
                if isinstance(err, pynvml.NVMLError):
                    key = ("nvmlDeviceGetHandleByIndex", error_name(err.value))
                    self._errors[key] = self._errors.get(key, 0) + 1
                    log.warning("gpu_enumeration_failed", gpu=index, code=error_name(err.value))
                old = previous.get(index)
                placeholder = old or _Gpu(index, None, (str(index), ""), ())
                placeholder.lost = True
                gpus.append(placeholder)
        self._gpus = gpus
        self._device_count = count
        self._enumerated_at = time.monotonic()
        # Enumeration repeats every ENUMERATION_REFRESH_SECONDS: info only when the set of GPUs
        # and MIG devices changed (a line every minute saying nothing changed is noise).
        identities = tuple((gpu.labels, tuple(mig.labels for mig in gpu.migs)) for gpu in gpus)
        changed = identities != self._enumerated
        self._enumerated = identities
        (log.info if changed else log.debug)(
            "gpus_enumerated",
            gpus=len(gpus),
            mig_devices=sum(len(gpu.migs) for gpu in gpus),
            changed=changed,
        )

    def _describe(self, index: int) -> _Gpu:
        """Read everything static about one GPU: identity, limits, MIG layout, field plan."""
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            uuid = _text(pynvml.nvmlDeviceGetUUID(handle))
        except pynvml.NVMLError as err:
            if err.value in _LOST_CODES:
                raise GpuLostError(error_name(err.value)) from err
            raise
        gpu = _Gpu(index, handle, (str(index), uuid), ())
        name = self._call(gpu, "nvmlDeviceGetName", pynvml.nvmlDeviceGetName, handle)
        brand = self._call(gpu, "nvmlDeviceGetBrand", pynvml.nvmlDeviceGetBrand, handle)
        arch = self._call(
            gpu, "nvmlDeviceGetArchitecture", pynvml.nvmlDeviceGetArchitecture, handle
        )
        capability = self._call(
            gpu,
            "nvmlDeviceGetCudaComputeCapability",
            pynvml.nvmlDeviceGetCudaComputeCapability,
            handle,
        )
        vbios = self._call(
            gpu, "nvmlDeviceGetVbiosVersion", pynvml.nvmlDeviceGetVbiosVersion, handle
        )
        serial = self._call(gpu, "nvmlDeviceGetSerial", pynvml.nvmlDeviceGetSerial, handle)
        pci = self._call(gpu, "nvmlDeviceGetPciInfo", pynvml.nvmlDeviceGetPciInfo, handle)
        persistence = self._call(
            gpu, "nvmlDeviceGetPersistenceMode", pynvml.nvmlDeviceGetPersistenceMode, handle
        )
        mig_mode = self._call(gpu, "nvmlDeviceGetMigMode", pynvml.nvmlDeviceGetMigMode, handle)
        gpu.mig_enabled = bool(mig_mode and mig_mode[0] == pynvml.NVML_DEVICE_MIG_ENABLE)
        gpu.info_labels = (
            str(index),
            uuid,
            _text(name) if name is not None else "",
            _BRANDS.get(brand, str(brand)) if brand is not None else "",
            fields.ARCHITECTURES.get(arch, str(arch)) if arch is not None else "",
            f"{capability[0]}.{capability[1]}" if capability else "",
            self._driver_version,
            self._cuda_version,
            _text(vbios) if vbios is not None else "",
            _text(serial) if serial is not None else "",
            _text(pci.busId) if pci is not None else "",
            ("enabled" if gpu.mig_enabled else "disabled") if mig_mode is not None else "",
            ("enabled" if persistence else "disabled") if persistence is not None else "",
        )
        gpu.pci_bus_id = _text(pci.busId) if pci is not None else ""
        gpu.minor_number = self._call(
            gpu, "nvmlDeviceGetMinorNumber", pynvml.nvmlDeviceGetMinorNumber, handle
        )
        self._describe_static(gpu)
        self._describe_fields(gpu)
        if gpu.mig_enabled:
            gpu.migs = self._describe_migs(gpu)
        return gpu

    def _describe_static(self, gpu: _Gpu) -> None:
        handle, labels = gpu.handle, gpu.labels
        static = gpu.static
        for clock_type, clock in fields.CLOCK_DOMAINS:
            mhz = self._call(
                gpu,
                f"nvmlDeviceGetMaxClockInfo:{clock}",
                pynvml.nvmlDeviceGetMaxClockInfo,
                handle,
                clock_type,
            )
            if mhz is not None:
                static.append((metrics.MAX_CLOCK.name, (*labels, clock), mhz * 1e6))
        for threshold_type, threshold in fields.TEMPERATURE_THRESHOLDS:
            celsius = self._call(
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
        max_generation = self._call(
            gpu,
            "nvmlDeviceGetMaxPcieLinkGeneration",
            pynvml.nvmlDeviceGetMaxPcieLinkGeneration,
            handle,
        )
        if max_generation is not None:
            static.append((metrics.PCIE_LINK_MAX_GENERATION.name, labels, float(max_generation)))
        max_width = self._call(
            gpu, "nvmlDeviceGetMaxPcieLinkWidth", pynvml.nvmlDeviceGetMaxPcieLinkWidth, handle
        )
        if max_width is not None:
            static.append((metrics.PCIE_LINK_MAX_WIDTH.name, labels, float(max_width)))
        supported = self._call(
            gpu,
            "nvmlDeviceGetSupportedClocksEventReasons",
            pynvml.nvmlDeviceGetSupportedClocksEventReasons,
            handle,
        )
        if supported is None:
            supported = self._call(
                gpu,
                "nvmlDeviceGetSupportedClocksThrottleReasons",
                pynvml.nvmlDeviceGetSupportedClocksThrottleReasons,
                handle,
            )
        if supported is not None:
            gpu.supported_reasons = tuple(
                (bit, reason) for bit, reason in fields.CLOCK_EVENT_REASONS if supported & bit
            )

    def _probe_fields(self, gpu: _Gpu, specs: list[fields.FieldSpec]) -> list[fields.FieldSpec]:
        """Keep the field ids this GPU answers; NOT_SUPPORTED ones are dropped for good."""
        if not specs or self._field_values is None or "nvmlDeviceGetFieldValues" in gpu.skip:
            return []
        batch = _FieldBatch.build(specs)
        ret = self._field_values(gpu.handle, ctypes.c_int32(len(specs)), ctypes.byref(batch.array))
        if ret != 0:
            self._failed(gpu, "nvmlDeviceGetFieldValues", pynvml.NVMLError(ret))
            return []
        kept = []
        for spec, slot in zip(specs, batch.array, strict=True):
            if slot.nvmlReturn in _LOST_CODES:
                raise GpuLostError(error_name(slot.nvmlReturn))
            if slot.nvmlReturn == _NOT_SUPPORTED:
                once = (gpu.index, f"field:{spec.field_id}", _NOT_SUPPORTED)
                if once not in self._logged:
                    self._logged.add(once)
                    log.debug("nvml_field_not_supported", gpu=gpu.index, field=spec.field_id)
                continue
            kept.append(spec)
        return kept

    def _describe_fields(self, gpu: _Gpu) -> None:
        link_count = 0
        probe = self._probe_fields(gpu, [fields.FieldSpec(fields.NVLINK_LINK_COUNT, "")])
        if probe and self._field_values is not None:
            batch = _FieldBatch.build(probe)
            self._field_values(gpu.handle, ctypes.c_int32(1), ctypes.byref(batch.array))
            code, value_type, raw = next(batch.entries())
            if code == 0:
                link_count = int(decode_field_value(value_type, raw) or 0)
            elif code in _LOST_CODES:
                raise GpuLostError(error_name(code))
            elif code != _NOT_SUPPORTED:  # NVLink series stay away until the next enumeration
                self._field_failed(gpu, fields.NVLINK_LINK_COUNT, code)
        candidates = list(fields.PER_GPU_FIELDS)
        if link_count > 0:
            candidates.extend(fields.NVLINK_FIELDS)
            candidates.extend(fields.nvlink_state_fields(link_count))
        kept = self._probe_fields(gpu, candidates)
        if link_count > 0 and not any(s.field_id == fields.NVLINK_GET_STATE for s in kept):
            gpu.nvlink_links = tuple(range(link_count))  # per-link calls instead
        gpu.batch = _FieldBatch.build(kept, gpu.labels) if kept else None

    def _describe_migs(self, gpu: _Gpu) -> list[_Mig]:
        count = self._call(
            gpu, "nvmlDeviceGetMaxMigDeviceCount", pynvml.nvmlDeviceGetMaxMigDeviceCount, gpu.handle
        )
        migs: list[_Mig] = []
        for slot in range(count or 0):
            try:
                handle = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(gpu.handle, slot)
            except pynvml.NVMLError as err:
                if err.value == pynvml.NVML_ERROR_NOT_FOUND:
                    continue  # an empty slot: later slots may still hold devices
                self._failed(gpu, "nvmlDeviceGetMigDeviceHandleByIndex", err)
                continue
            try:
                gi = pynvml.nvmlDeviceGetGpuInstanceId(handle)
                ci = pynvml.nvmlDeviceGetComputeInstanceId(handle)
                mig_uuid = _text(pynvml.nvmlDeviceGetUUID(handle))
                name = _text(pynvml.nvmlDeviceGetName(handle))
            except pynvml.NVMLError as err:
                self._failed(gpu, "mig_identity", err)
                continue
            profile = name.rpartition(" ")[2] if " MIG " in name else ""
            identity = MigIdentity(gi, ci, mig_uuid, profile, *self._placement(gpu, gi))
            sms: int | None = None
            attributes = self._call(
                gpu, "nvmlDeviceGetAttributes", pynvml.nvmlDeviceGetAttributes, handle
            )
            if attributes is not None:
                sms = int(attributes.multiprocessorCount)
            migs.append(
                _Mig(handle, (*gpu.labels, str(gi), str(ci), profile, mig_uuid), sms, identity)
            )
        return migs

    def _placement(self, gpu: _Gpu, gpu_instance: int) -> tuple[int | None, int | None, int | None]:
        """Profile id and placement of a GPU instance (DRA names MIG devices by them)."""
        instance = self._call(
            gpu,
            "nvmlDeviceGetGpuInstanceById",
            pynvml.nvmlDeviceGetGpuInstanceById,
            gpu.handle,
            gpu_instance,
        )
        if instance is None:
            return None, None, None
        info = self._call(gpu, "nvmlGpuInstanceGetInfo", pynvml.nvmlGpuInstanceGetInfo, instance)
        if info is None:
            return None, None, None
        return int(info.profileId), int(info.placement.start), int(info.placement.size)

    def directory(self) -> tuple[GpuIdentity, ...]:
        """The GPUs and MIG devices of the last collection; safe to call from any thread."""
        return self._directory

    def _publish_directory(self) -> None:
        self._directory = tuple(
            GpuIdentity(
                index=gpu.index,
                uuid=gpu.labels[1],
                pci_bus_id=gpu.pci_bus_id,
                minor_number=gpu.minor_number,
                migs=tuple(mig.identity for mig in gpu.migs),
                lost=gpu.lost or gpu.labels[1] in self._marked_lost,
            )
            for gpu in self._gpus
        )

    # -- collection ----------------------------------------------------------------------

    def collect(self) -> SampleMap:
        """Read every GPU once and return the samples of this collection."""
        with NVML_LOCK:
            try:
                count = pynvml.nvmlDeviceGetCount()
            except pynvml.NVMLError as err:
                # NVML as a whole stopped answering (driver unloaded, library state lost):
                # let the poller re-initialise it with backoff.
                raise SourceUnavailableError(
                    f"nvmlDeviceGetCount failed: {error_name(err.value)}"
                ) from err
            stale = time.monotonic() - self._enumerated_at > ENUMERATION_REFRESH_SECONDS
            if count != self._device_count or stale:
                self._enumerate(count)
            out = SampleBuilder()
            self._process_buffer = []
            for position, known in enumerate(self._gpus):
                self._collect_gpu(position, known, out)
            self._processes = tuple(self._process_buffer)
        self._publish_directory()
        for (call, code), total in sorted(self._errors.items()):
            out.add(metrics.NVML_ERRORS.name, (call, code), float(total))
        out.add(metrics.GPUS.name, (), float(len(self._gpus)))
        out.add(metrics.MIG_DEVICES.name, (), float(sum(len(gpu.migs) for gpu in self._gpus)))
        return out.freeze()

    def _collect_gpu(self, position: int, gpu: _Gpu, out: SampleBuilder) -> None:
        """Read one GPU; a lost GPU is described again from scratch until it answers.

        What a collection says about a GPU (docs/xid.md, "What up and fallen_off_bus mean"):
        `nvidia_gpu_up` is 1 only when NVML answered *and* the driver has not reported the GPU
        fallen off the bus since; whenever it is 0 the GPU's value series are left out, so a
        dashboard never shows live-looking power or clocks for a GPU that is gone. A
        fallen-off-bus mark ends only when NVML itself reported the GPU lost and then answered
        again (a GPU reset or driver reload): a GPU that the driver says fell off the bus but
        that NVML still answers for from cached state stays marked.
        """
        was_lost = gpu.lost or gpu.handle is None
        reading = SampleBuilder()
        try:
            if was_lost:
                gpu = self._describe(gpu.index)
                self._gpus[position] = gpu
            self._read_gpu(gpu, reading)
        except (GpuLostError, pynvml.NVMLError) as err:
            if not was_lost:
                log.error("gpu_lost", gpu=gpu.index, uuid=gpu.labels[1], error=str(err))
            gpu.lost = True
            self._identity(gpu, out, up=False)
            return
        if was_lost:
            # NVML answers again after reporting the GPU lost (a GPU reset or driver reload):
            # a fallen-off-bus mark the Xid source set for this GPU is obsolete too.
            self._marked_lost.discard(gpu.labels[1])
            log.info("gpu_recovered", gpu=gpu.index, uuid=gpu.labels[1])
        if gpu.labels[1] in self._marked_lost:
            self._identity(gpu, out, up=False)
            return
        self._identity(gpu, out, up=True)
        out.merge(reading)

    def mark_lost(self, uuid: str, lost: bool = True) -> None:
        """Xid 79 or fallen-off-bus text for this GPU: up 0 and no value series until cleared.

        Called from the Xid threads; a single set add/discard, no NVML call and no lock. The
        mark ends when NVML reports the GPU lost and then answers again, or with `lost=False`
        (udev saw the GPU come back on the PCI bus).
        """
        if lost:
            self._marked_lost.add(uuid)
        else:
            self._marked_lost.discard(uuid)

    def fallen_off_bus(self, uuid: str) -> bool:
        """True while the Xid source's fallen-off-bus mark for this GPU holds."""
        return uuid in self._marked_lost

    def request_enumeration(self) -> None:
        """The PCI bus changed (udev): enumerate GPUs again at the next collection."""
        self._enumerated_at = float("-inf")

    def _identity(self, gpu: _Gpu, out: SampleBuilder, up: bool) -> None:
        if gpu.info_labels:
            out.add(metrics.INFO.name, gpu.info_labels, 1.0)
        out.add(metrics.UP.name, gpu.labels, 1.0 if up else 0.0)

    def _read_gpu(self, gpu: _Gpu, out: SampleBuilder) -> None:
        handle, labels, call = gpu.handle, gpu.labels, self._call
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

    def _read_reasons(self, gpu: _Gpu, out: SampleBuilder) -> None:
        reasons = self._call(
            gpu,
            "nvmlDeviceGetCurrentClocksEventReasons",
            pynvml.nvmlDeviceGetCurrentClocksEventReasons,
            gpu.handle,
        )
        if reasons is None and "nvmlDeviceGetCurrentClocksEventReasons" in gpu.skip:
            reasons = self._call(
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

    def _read_fields(self, gpu: _Gpu, out: SampleBuilder) -> set[str]:
        """One nvmlDeviceGetFieldValues call for every batched field; returns the families read."""
        batch = gpu.batch
        if batch is None or self._field_values is None:
            return set()
        ret = self._field_values(
            gpu.handle, ctypes.c_int32(len(batch.specs)), ctypes.byref(batch.array)
        )
        if ret != 0:
            self._failed(gpu, "nvmlDeviceGetFieldValues", pynvml.NVMLError(ret))
            return set()
        seen: set[str] = set()
        unsupported: list[int] = []
        add = out.add
        for position, (code, value_type, raw) in enumerate(batch.entries()):
            spec = batch.specs[position]
            if code != 0:
                if code in _LOST_CODES:
                    raise GpuLostError(error_name(code))
                if code == _NOT_SUPPORTED:
                    unsupported.append(position)
                    continue
                self._field_failed(gpu, spec.field_id, code)
                continue
            value = decode_field_value(value_type, raw)
            if value is None:
                continue
            add(spec.family, batch.labels[position], value * spec.scale)
            seen.add(spec.family)
        if unsupported:  # a field stopped being supported: drop it from the next batches
            dropped = set(unsupported)
            kept = [spec for position, spec in enumerate(batch.specs) if position not in dropped]
            gpu.batch = _FieldBatch.build(kept, gpu.labels) if kept else None
        return seen

    def _field_failed(self, gpu: _Gpu, field_id: int, code: int) -> None:
        key = (f"nvmlDeviceGetFieldValues:{field_id}", error_name(code))
        self._errors[key] = self._errors.get(key, 0) + 1
        once = (gpu.index, key[0], code)
        if once not in self._logged:
            self._logged.add(once)
            log.warning("nvml_field_failed", gpu=gpu.index, field=field_id, code=error_name(code))

    def _read_pcie_throughput(self, gpu: _Gpu, out: SampleBuilder) -> None:
        for counter, direction in (
            (pynvml.NVML_PCIE_UTIL_TX_BYTES, "transmit"),
            (pynvml.NVML_PCIE_UTIL_RX_BYTES, "receive"),
        ):
            kib = self._call(
                gpu,
                f"nvmlDeviceGetPcieThroughput:{direction}",
                pynvml.nvmlDeviceGetPcieThroughput,
                gpu.handle,
                counter,
            )
            if kib is not None:
                out.add(metrics.PCIE_THROUGHPUT.name, (*gpu.labels, direction), kib * 1024.0)

    def _count_processes(self, gpu: _Gpu, handle: Any, mig_uuid: str = "") -> int | None:
        compute = self._call(
            gpu,
            "nvmlDeviceGetComputeRunningProcesses",
            pynvml.nvmlDeviceGetComputeRunningProcesses,
            handle,
        )
        graphics = self._call(
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
                    self._process_buffer.append(
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

    def processes(self) -> tuple[GpuProcess, ...]:
        """Processes of the last collection (empty unless capture_processes); any thread."""
        return self._processes

    def _read_migs(self, gpu: _Gpu, out: SampleBuilder) -> None:
        add = out.add
        for mig in gpu.migs:
            labels = mig.labels
            memory = self._call(
                gpu,
                "mig:nvmlDeviceGetMemoryInfo_v2",
                pynvml.nvmlDeviceGetMemoryInfo,
                mig.handle,
                pynvml.nvmlMemory_v2,
            )
            if memory is None and "mig:nvmlDeviceGetMemoryInfo_v2" in gpu.skip:
                memory = self._call(
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


def _package_version() -> str:
    return distribution_version("nvidia-ml-py") or ""


# =============================================================================================
# NVML Xid event waiter (issue 3, Xid errors and lost GPUs; owner: the Xid work, docs/xid.md)
# =============================================================================================

# Bounds how long a stop request waits (half the 0.5 s join it gets); an event wakes it at once.
XID_EVENT_WAIT_MS = 250
XID_EVENT_RETRY_SECONDS = 5.0
XidEventCallback = Callable[[str, int, int | None, int | None], object]
HealthCallback = Callable[[bool, str], None]


def _no_heartbeat() -> None:
    return None


class NvmlXidEventWaiter(ThreadWorker):
    """Waits for NVML XidCriticalError events on every physical GPU, in its own thread.

    Why a second Xid source: the kernel log may not be readable (no CAP_SYSLOG, no /dev/kmsg
    in the container), while NVML events need only the driver. NVML keeps no history, so this
    source only sees Xids that happen while it runs; XidState pairs its reports with the kernel
    log's so one Xid is counted once.

    NVML_LOCK is held only to create, register and free the event set, never inside
    nvmlEventSetWait: the wait would otherwise block every collection for its whole timeout.
    The waiter initialises NVML itself (NVML reference-counts nvmlInit/nvmlShutdown), so it
    does not depend on the poll thread's state.
    """

    name = "nvml_events"

    def __init__(
        self,
        on_xid: XidEventCallback,
        on_health: HealthCallback,
        stop: threading.Event,
        library_path: str | None = None,
        wait_ms: int = XID_EVENT_WAIT_MS,
        on_heartbeat: Callable[[], None] = _no_heartbeat,
    ) -> None:
        self._on_xid = on_xid
        self._on_health = on_health
        self._on_heartbeat = on_heartbeat  # each completed wait: the source is alive
        self._stop = stop
        self._library_path = library_path
        self._wait_ms = wait_ms
        self._event_set: Any = None
        self._initialised = False
        self._devices: dict[int, str] = {}  # handle address -> PCI bus id
        self._reregister = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nvml-events", daemon=True)
        self.registered = 0
        self.events = 0

    def request_reregister(self) -> None:
        """GPUs appeared or disappeared: build the event set again."""
        self._reregister.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._open()
            except pynvml.NVMLError as err:
                self._on_health(False, f"event set unavailable: {error_name(err.value)}")
                self._close()
                self._stop.wait(XID_EVENT_RETRY_SECONDS)
                continue
            except Exception as err:  # a thread never dies on a bad call
                self._on_health(False, f"event set unavailable: {err}")
                self._close()
                self._stop.wait(XID_EVENT_RETRY_SECONDS)
                continue
            if not self.registered:
                self._on_health(False, "no GPU supports Xid events")
                self._close()
                self._stop.wait(XID_EVENT_RETRY_SECONDS)
                continue
            self._on_health(True, "")
            try:
                self._wait_loop()
            finally:
                self._close()

    def _open(self) -> None:
        if self._library_path:
            ctypes.CDLL(self._library_path, mode=ctypes.RTLD_GLOBAL)
        self._reregister.clear()
        with NVML_LOCK:
            pynvml.nvmlInit()
            self._initialised = True
            self._event_set = pynvml.nvmlEventSetCreate()
            self._devices = {}
            self.registered = 0
            for index in range(pynvml.nvmlDeviceGetCount()):
                try:
                    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                    pci = _text(pynvml.nvmlDeviceGetPciInfo(handle).busId)
                    pynvml.nvmlDeviceRegisterEvents(
                        handle, pynvml.nvmlEventTypeXidCriticalError, self._event_set
                    )
                except pynvml.NVMLError as err:
                    log.info("xid_events_not_registered", gpu=index, code=error_name(err.value))
                    continue
                address = ctypes.cast(handle, ctypes.c_void_p).value or 0
                self._devices[address] = pci
                self.registered += 1
        log.info("xid_events_registered", gpus=self.registered)

    def _wait_loop(self) -> None:
        while not self._stop.is_set() and not self._reregister.is_set():
            try:
                data = pynvml.nvmlEventSetWait_v2(self._event_set, self._wait_ms)
            except pynvml.NVMLError as err:
                if err.value == pynvml.NVML_ERROR_TIMEOUT:
                    self._on_heartbeat()
                    continue
                self._on_health(False, f"nvmlEventSetWait failed: {error_name(err.value)}")
                self._stop.wait(XID_EVENT_RETRY_SECONDS)
                return
            self._on_heartbeat()
            try:
                self._deliver(data)
            except Exception as err:  # one bad event never stops the waiter
                log.warning("xid_event_failed", error=str(err))

    def _deliver(self, data: pynvml.c_nvmlEventData_t) -> None:
        if not data.eventType & pynvml.nvmlEventTypeXidCriticalError:
            return
        self.events += 1
        address = ctypes.cast(data.device, ctypes.c_void_p).value or 0
        pci = self._devices.get(address, "")
        gpu_instance = None if data.gpuInstanceId == _NOT_AVAILABLE else int(data.gpuInstanceId)
        compute_instance = (
            None if data.computeInstanceId == _NOT_AVAILABLE else int(data.computeInstanceId)
        )
        self._on_xid(pci, int(data.eventData), gpu_instance, compute_instance)

    def _close(self) -> None:
        with NVML_LOCK:
            if self._event_set is not None:
                try:
                    pynvml.nvmlEventSetFree(self._event_set)
                except pynvml.NVMLError as err:
                    log.info("xid_event_set_free_failed", code=error_name(err.value))
                self._event_set = None
            if self._initialised:
                self._initialised = False
                try:
                    pynvml.nvmlShutdown()
                except pynvml.NVMLError as err:
                    log.info("xid_events_shutdown_failed", code=error_name(err.value))
