"""The udev watcher: NVIDIA GPUs appearing on and disappearing from the PCI bus.

Why watch the bus when NVML lists GPUs: a GPU that fell off the bus, or was never initialised
by the driver, may be missing from NVML's count, and "one GPU fewer than the board has" is the
alert. The PCI bus (through udev) sees the hardware independently of the driver, so the node
exports both counts: nvidia_gpu_exporter_pci_gpus next to nvidia_gpu_exporter_gpus and
nvidia_gpu_up. When the set of GPUs on the bus changes, NVML is asked to enumerate again.

The only module that imports pyudev. Events come from an injectable iterator, so tests need no
netlink socket. Without udev (no netlink in the container, no permission, no pyudev) the source
reports itself down and everything else goes on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import structlog

from exporter import metrics
from exporter.model import SampleBuilder, SourceHealth
from exporter.publisher import Publisher
from exporter.worker import ThreadWorker
from exporter.xid.parser import normalize_pci

log = structlog.get_logger(__name__)

SOURCE_NAME = "udev"
NVIDIA_VENDOR = 0x10DE
GPU_CLASSES = frozenset({0x0300, 0x0302})  # VGA-compatible and 3D controller
POLL_TIMEOUT_SECONDS = 0.5
RETRY_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class PciEvent:
    """One PCI uevent as we need it: action, slot (`0000:07:00.0`), vendor id and class."""

    action: str
    slot: str
    pci_id: str  # udev's PCI_ID, e.g. "10DE:20B0"
    pci_class: str  # udev's PCI_CLASS, e.g. "30200"


def is_nvidia_gpu(pci_id: str, pci_class: str) -> bool:
    """Vendor 0x10de with a display or 3D controller class (NVSwitches are bridges: not GPUs)."""
    try:
        vendor = int(pci_id.split(":", 1)[0], 16)
        klass = int(pci_class, 16) >> 8
    except ValueError:
        return False
    return vendor == NVIDIA_VENDOR and klass in GPU_CLASSES


EventSource = Callable[[threading.Event], Iterator[PciEvent | None]]
InitialScan = Callable[[], Iterable[PciEvent]]


def pyudev_scan() -> Iterable[PciEvent]:
    """The PCI devices present now, from udev's database."""
    import pyudev

    context = pyudev.Context()
    for device in context.list_devices(subsystem="pci"):
        properties = device.properties
        yield PciEvent(
            "add", device.sys_name, properties.get("PCI_ID", ""), properties.get("PCI_CLASS", "")
        )


def pyudev_events(stop: threading.Event) -> Iterator[PciEvent | None]:
    """PCI uevents from a netlink monitor; None on each poll timeout (lets the loop stop)."""
    import pyudev

    monitor = pyudev.Monitor.from_netlink(pyudev.Context())
    monitor.filter_by(subsystem="pci")
    monitor.start()
    while not stop.is_set():
        device = monitor.poll(timeout=POLL_TIMEOUT_SECONDS)
        if device is None:
            yield None
            continue
        properties = device.properties
        yield PciEvent(
            device.action or "",
            device.sys_name,
            properties.get("PCI_ID", ""),
            properties.get("PCI_CLASS", ""),
        )


class UdevWatcher(ThreadWorker):
    """Keeps the set of NVIDIA GPUs on the PCI bus and tells the others when it changes."""

    name = SOURCE_NAME

    def __init__(
        self,
        publisher: Publisher,
        stop: threading.Event,
        *,
        on_change: Callable[[], None] = lambda: None,
        on_added: Callable[[str], None] = lambda _slot: None,
        events: EventSource = pyudev_events,
        scan: InitialScan = pyudev_scan,
    ) -> None:
        self._publisher = publisher
        self._stop = stop
        self._on_change = on_change
        self._on_added = on_added
        self._events = events
        self._scan = scan
        self._slots: set[str] = set()
        self._up = False
        self._detail = "not started"
        self._events_seen = 0
        self._errors = 0
        self._thread = threading.Thread(target=self._run, name="udev", daemon=True)
        publisher.register(SOURCE_NAME, stall_after=float("inf"))

    def gpus(self) -> frozenset[str]:
        """PCI slots (normalised) of the NVIDIA GPUs on the bus now."""
        return frozenset(self._slots)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._watch()
            except Exception as err:
                self._errors += 1
                log.warning("udev_unavailable", error=str(err))
                self._publish(False, f"udev unavailable: {err}")
                self._stop.wait(RETRY_SECONDS)

    def _watch(self) -> None:
        events = self._events(self._stop)  # open the monitor first: no event falls in between
        slots = set()
        for present in self._scan():
            if is_nvidia_gpu(present.pci_id, present.pci_class):
                slot = normalize_pci(present.slot)
                if slot is not None:
                    slots.add(slot)
        self._slots = slots
        self._publish(True, "")
        log.info("udev_watching", gpus=len(slots))
        for event in events:
            if self._stop.is_set():
                return
            self._publisher.heartbeat(SOURCE_NAME)  # a poll returned: the monitor is alive
            if event is None:
                continue
            try:
                self._handle(event)
            except Exception as err:
                self._errors += 1
                log.warning("udev_event_failed", error=str(err))

    def _handle(self, event: PciEvent) -> None:
        if not is_nvidia_gpu(event.pci_id, event.pci_class):
            return
        slot = normalize_pci(event.slot)
        if slot is None:
            return
        self._events_seen += 1
        if event.action == "add" and slot not in self._slots:
            self._slots = self._slots | {slot}
            log.info("gpu_appeared_on_pci", slot=event.slot)
            self._on_added(event.slot)
        elif event.action == "remove" and slot in self._slots:
            self._slots = self._slots - {slot}
            log.warning("gpu_disappeared_from_pci", slot=event.slot)
        else:
            return
        self._publish(True, "")
        self._on_change()

    def _publish(self, up: bool, detail: str) -> None:
        self._up, self._detail = up, detail
        out = SampleBuilder()
        if up:
            out.add(metrics.PCI_GPUS.name, (), float(len(self._slots)))
        health = SourceHealth(
            up=up,
            last_success_timestamp=time.time() if up else None,
            errors=self._errors,
            detail=detail,
        )
        self._publisher.publish(SOURCE_NAME, out.freeze(), health)
