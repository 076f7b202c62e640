"""The NVML Xid event waiter (issue 3, Xid errors and lost GPUs; docs/xid.md).

Its own thread and its own nvmlInit reference: it shares only NVML_LOCK with the source.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from typing import Any

import pynvml

from exporter.sources.nvml.device import text
from exporter.sources.nvml.errors import NOT_AVAILABLE, error_name, log
from exporter.sources.nvml.source import NVML_LOCK
from exporter.worker import ThreadWorker

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
                    pci = text(pynvml.nvmlDeviceGetPciInfo(handle).busId)
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
        gpu_instance = None if data.gpuInstanceId == NOT_AVAILABLE else int(data.gpuInstanceId)
        compute_instance = (
            None if data.computeInstanceId == NOT_AVAILABLE else int(data.computeInstanceId)
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
