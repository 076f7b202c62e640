"""Wires the Xid inputs together: kernel log follower, NVML event waiter, udev watcher.

Why a small composition module here instead of in app.py: the three threads share one
XidState and hooks into the NVML source (mark a GPU lost, enumerate again), and keeping that
wiring next to them leaves the application with one object to start and stop.
"""

from __future__ import annotations

import threading
import time

from exporter.config import Config
from exporter.model import SourceHealth
from exporter.publisher import Publisher
from exporter.sources.kmsg import KmsgFollower
from exporter.sources.nvml import NvmlSource, NvmlXidEventWaiter
from exporter.sources.udev import UdevWatcher
from exporter.xid.state import SOURCE_NAME as XID_SOURCE_NAME
from exporter.xid.state import XidState

NVML_EVENTS_SOURCE = "nvml_events"


class XidService:
    """Owns the Xid threads; `start()`, then `stop(timeout)` after the stop event is set."""

    def __init__(
        self,
        config: Config,
        nvml: NvmlSource,
        publisher: Publisher,
        stop: threading.Event,
        library_path: str | None = None,
    ) -> None:
        self._publisher = publisher
        self._nvml = nvml
        self.state = XidState(publisher, nvml.directory, on_lost=nvml.mark_lost)
        # Off where the container runtime does not allow /dev/kmsg (a Kubernetes pod without a
        # device rule for it): a source that can never open would only report itself down.
        self.kmsg: KmsgFollower | None = None
        if config.kmsg:
            self.kmsg = KmsgFollower(config.kmsg_path, self.state, publisher, stop)
        self.events: NvmlXidEventWaiter | None = None
        if config.xid_nvml_events:
            publisher.register(NVML_EVENTS_SOURCE, stall_after=float("inf"))
            self.events = NvmlXidEventWaiter(
                self.state.observe_nvml,
                self._events_health,
                stop,
                library_path=library_path,
                on_heartbeat=lambda: publisher.heartbeat(NVML_EVENTS_SOURCE, XID_SOURCE_NAME),
            )
        self.udev: UdevWatcher | None = None
        # A simulated node has no PCI devices to watch: the host's bus would show zero GPUs
        # next to the fake driver's eight and look like missing GPUs.
        if config.udev and config.simulate is None:
            self.udev = UdevWatcher(
                publisher, stop, on_change=self._pci_changed, on_added=self.state.clear_fallen
            )

    def _events_health(self, up: bool, detail: str) -> None:
        self.state.set_input(NVML_EVENTS_SOURCE, up, detail)
        self._publisher.publish(
            NVML_EVENTS_SOURCE,
            None,
            SourceHealth(up=up, last_success_timestamp=time.time() if up else None, detail=detail),
        )

    def _pci_changed(self) -> None:
        self._nvml.request_enumeration()
        if self.events is not None:
            self.events.request_reregister()

    def start(self) -> None:
        """Start every enabled Xid thread."""
        if self.kmsg is not None:
            self.kmsg.start()
        if self.events is not None:
            self.events.start()
        if self.udev is not None:
            self.udev.start()

    def stop(self, timeout: float) -> bool:
        """Wait for the threads (the caller set the stop event); False if one is still busy."""
        deadline = time.monotonic() + timeout
        stopped = True
        for worker in (self.kmsg, self.events, self.udev):
            if worker is not None:
                stopped &= worker.join(max(0.0, deadline - time.monotonic()))
        return stopped
