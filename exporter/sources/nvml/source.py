"""NvmlSource: the lifecycle, enumeration and collection loop of the NVML package.

One poll thread calls `collect()` every interval; nothing else calls NVML for values, so all
NVML access is serialised (NVML_LOCK is held around every collection for the Xid event waiter,
which shares the library). Values are converted to Prometheus base units at this boundary; the
error policy is errors.py's.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable

import pynvml

from exporter import metrics
from exporter.distinfo import distribution_version
from exporter.model import GpuIdentity, GpuProcess, GpuProcessActivity, SampleBuilder, SampleMap
from exporter.poller import SourceUnavailableError
from exporter.sources.nvml.describe import GpuDescriber
from exporter.sources.nvml.device import Driver, Gpu, cuda_version_text, text
from exporter.sources.nvml.errors import GpuLostError, Ledger, error_name, log
from exporter.sources.nvml.gpm import GpmReader
from exporter.sources.nvml.process_utilization import ProcessUtilizationReader
from exporter.sources.nvml.readings import GpuReader
from exporter.sources.nvml.utilization import UtilizationSampler

NVML_LOCK = threading.Lock()
ENUMERATION_REFRESH_SECONDS = 60.0


class NvmlSource:
    """Enumerates GPUs and MIG devices and reads every metric family from NVML."""

    name = "nvml"

    def __init__(
        self,
        library_path: str | None = None,
        capture_processes: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`library_path`: load this libnvidia-ml.so.1 first (the fake driver in --simulate).

        `capture_processes`: keep the per-process list of each collection for `processes()`
        (per-process memory attribution is opt-in: it costs memory and cardinality).

        `clock`: the monotonic clock GPM intervals are measured with (tests pass the fake
        driver's scenario clock).
        """
        self._library_path = library_path
        self._ledger = Ledger()
        self._driver = Driver()
        self._describer = GpuDescriber(self._ledger, self._driver)
        self._reader = GpuReader(self._ledger, self._driver, capture_processes)
        self._utilization = UtilizationSampler(self._ledger)
        self._gpm = GpmReader(self._ledger, clock)
        self._process_utilization = ProcessUtilizationReader(self._ledger)
        self._processes: tuple[GpuProcess, ...] = ()
        self._process_activity: tuple[GpuProcessActivity, ...] = ()
        self._gpus: list[Gpu] = []
        self._enumerated_at = 0.0
        self._enumerated: tuple[object, ...] = ()  # identities of the last enumeration
        self._device_count = -1
        self._directory: tuple[GpuIdentity, ...] = ()
        self._marked_lost: set[str] = set()  # uuids the Xid source saw fall off the bus
        self.pynvml_version = getattr(pynvml, "__version__", "") or _package_version()

    @property
    def capture_processes(self) -> bool:
        """Whether each collection keeps its process list for `processes()`."""
        return self._reader.capture_processes

    @capture_processes.setter
    def capture_processes(self, value: bool) -> None:
        self._reader.capture_processes = value

    # -- lifecycle -------------------------------------------------------------------

    def open(self) -> None:
        """nvmlInit; any failure means the driver is not usable now (the poller retries)."""
        if self._library_path:
            ctypes.CDLL(self._library_path, mode=ctypes.RTLD_GLOBAL)
        try:
            with NVML_LOCK:
                pynvml.nvmlInit()
                try:
                    self._driver.driver_version = text(pynvml.nvmlSystemGetDriverVersion())
                except pynvml.NVMLError:
                    pynvml.nvmlShutdown()  # release the init reference we just took
                    raise
                try:
                    self._driver.cuda_version = cuda_version_text(
                        pynvml.nvmlSystemGetCudaDriverVersion_v2()
                    )
                except pynvml.NVMLError:
                    self._driver.cuda_version = ""
                try:
                    self._driver.field_values = pynvml._nvmlGetFunctionPointer(
                        "nvmlDeviceGetFieldValues"
                    )
                except pynvml.NVMLError:  # a driver older than field values: no batch
                    self._driver.field_values = None
        except pynvml.NVMLError as err:
            raise SourceUnavailableError(f"nvmlInit failed: {error_name(err.value)}") from err
        self._gpus = []
        self._device_count = -1
        # A new NVML session: C functions are resolved again and GPM sample buffers of the old
        # one are not reused; the busy-seconds counters carry on (they are per UUID).
        self._utilization.reset_driver()
        self._process_utilization.reset_driver()
        self._gpm.forget_samples()
        log.info(
            "nvml_initialised",
            driver_version=self._driver.driver_version,
            cuda_driver_version=self._driver.cuda_version,
        )

    def close(self) -> None:
        """nvmlShutdown; errors are logged, never raised (we are shutting down)."""
        try:
            with NVML_LOCK:
                self._gpm.release()
                pynvml.nvmlShutdown()
        except pynvml.NVMLError as err:
            log.warning("nvml_shutdown_failed", error=error_name(err.value))

    # -- enumeration ---------------------------------------------------------------------

    def _enumerate(self, count: int) -> None:
        previous = {gpu.index: gpu for gpu in self._gpus}
        gpus: list[Gpu] = []
        for index in range(count):
            try:
                gpus.append(self._describer.describe(index))
            except (GpuLostError, pynvml.NVMLError) as err:
                # A GPU NVML counts but cannot describe stays visible, with nvidia_gpu_up 0
                # (and its last known identity), and is described again every collection.
                if isinstance(err, pynvml.NVMLError):
                    key = ("nvmlDeviceGetHandleByIndex", error_name(err.value))
                    self._ledger.errors[key] = self._ledger.errors.get(key, 0) + 1
                    log.warning("gpu_enumeration_failed", gpu=index, code=error_name(err.value))
                old = previous.get(index)
                placeholder = old or Gpu(index, None, (str(index), ""), ())
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
            self._reader.process_buffer = []
            for position, known in enumerate(self._gpus):
                self._collect_gpu(position, known, out)
            self._processes = tuple(self._reader.process_buffer)
            if self._reader.capture_processes:
                self._process_activity = self._process_utilization.activity()
        self._publish_directory()
        for (call, code), total in sorted(self._ledger.errors.items()):
            out.add(metrics.NVML_ERRORS.name, (call, code), float(total))
        out.add(metrics.GPUS.name, (), float(len(self._gpus)))
        out.add(metrics.MIG_DEVICES.name, (), float(sum(len(gpu.migs) for gpu in self._gpus)))
        return out.freeze()

    def _collect_gpu(self, position: int, gpu: Gpu, out: SampleBuilder) -> None:
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
                gpu = self._describer.describe(gpu.index)
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

    def _read_gpu(self, gpu: Gpu, out: SampleBuilder) -> None:
        """The single pass over one GPU: its values, then its activity (samples, GPM, pids)."""
        first = len(self._reader.process_buffer)  # this GPU's processes are appended below
        self._reader.read(gpu, out)
        self._utilization.read(gpu, out)
        self._gpm.read(gpu, out)
        if self._reader.capture_processes:
            live = {process.pid for process in self._reader.process_buffer[first:]}
            self._process_utilization.read(gpu, live)

    def _identity(self, gpu: Gpu, out: SampleBuilder, up: bool) -> None:
        if gpu.info_labels:
            out.add(metrics.INFO.name, gpu.info_labels, 1.0)
        out.add(metrics.UP.name, gpu.labels, 1.0 if up else 0.0)

    def processes(self) -> tuple[GpuProcess, ...]:
        """Processes of the last collection (empty unless capture_processes); any thread."""
        return self._processes

    def process_activity(self) -> tuple[GpuProcessActivity, ...]:
        """Cumulative per-process busy seconds (empty unless capture_processes); any thread."""
        return self._process_activity


def _package_version() -> str:
    return distribution_version("nvidia-ml-py") or ""
