"""The udev watcher with injected PCI events (no netlink needed), and with real udev if present."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import pytest

from exporter.model import SourceHealth
from exporter.publisher import Publisher
from exporter.sources.udev import PciEvent, UdevWatcher, is_nvidia_gpu
from tests.xid.expo import exposition, values

GPU_A = PciEvent("add", "0000:07:00.0", "10DE:20B0", "30200")
GPU_B = PciEvent("add", "0000:0f:00.0", "10DE:2330", "30000")
NVSWITCH = PciEvent("add", "0000:c1:00.0", "10DE:22A3", "68000")
NIC = PciEvent("add", "0000:19:00.0", "15B3:101D", "20000")
NOT_YET = SourceHealth(up=False)


class Injected:
    def __init__(self) -> None:
        self.queue: queue.Queue[PciEvent | None] = queue.Queue()
        self.handled = 0  # events the watcher finished with (published, hooks called)

    def __call__(self, stop: threading.Event) -> Iterator[PciEvent | None]:
        while not stop.is_set():
            try:
                event = self.queue.get(timeout=0.1)
            except queue.Empty:
                yield None
                continue
            yield event
            # The watcher asks for the next event only once it has handled this one.
            self.handled += 1


def wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_class_and_vendor_filter() -> None:
    assert is_nvidia_gpu("10DE:20B0", "30200")
    assert is_nvidia_gpu("10de:1eb8", "030000")
    assert not is_nvidia_gpu("10DE:22A3", "68000")  # NVSwitch bridge
    assert not is_nvidia_gpu("15B3:101D", "20000")
    assert not is_nvidia_gpu("", "")


def test_add_and_remove_update_the_count_and_trigger_enumeration() -> None:
    publisher = Publisher(process_metrics=False)
    stop = threading.Event()
    events = Injected()
    changes: list[str] = []
    added: list[str] = []
    watcher = UdevWatcher(
        publisher,
        stop,
        on_change=lambda: changes.append("change"),
        on_added=added.append,
        events=events,
        scan=lambda: [GPU_A, NVSWITCH, NIC],
    )
    watcher.start()
    try:
        # The slots change before they are published: wait for the publish (health up).
        wait_for(lambda: (publisher.source_health("udev") or NOT_YET).up)
        assert watcher.gpus() == {"0000:07:00"}
        assert values(exposition(publisher), "nvidia_gpu_exporter_pci_gpus") == {(): 1}
        events.queue.put(GPU_B)
        wait_for(lambda: events.handled == 1)
        assert watcher.gpus() == {"0000:07:00", "0000:0f:00"}
        assert changes == ["change"]
        assert values(exposition(publisher), "nvidia_gpu_exporter_pci_gpus") == {(): 2}
        events.queue.put(PciEvent("remove", GPU_A.slot, GPU_A.pci_id, GPU_A.pci_class))
        events.queue.put(PciEvent("bind", GPU_B.slot, GPU_B.pci_id, GPU_B.pci_class))
        events.queue.put(NIC)
        wait_for(lambda: events.handled == 4)  # all three handled, not only the remove
        assert watcher.gpus() == {"0000:0f:00"}
        assert changes == ["change", "change"]
        assert added == ["0000:0f:00.0"]
        assert values(exposition(publisher), "nvidia_gpu_exporter_pci_gpus") == {(): 1}
        health = publisher.source_health("udev")
        assert health is not None
        assert health.up
    finally:
        stop.set()
        assert watcher.join(1.0)


def test_without_udev_the_source_is_down_and_nothing_else_breaks() -> None:
    publisher = Publisher(process_metrics=False)
    stop = threading.Event()

    def no_netlink(_stop: threading.Event) -> Iterator[PciEvent | None]:
        raise PermissionError(1, "Operation not permitted: netlink")

    watcher = UdevWatcher(publisher, stop, events=no_netlink, scan=lambda: [])
    watcher.start()
    try:
        wait_for(
            lambda: (
                publisher.source_health("udev") is not None
                and "netlink" in publisher.source_health("udev").detail
            )
        )  # type: ignore[union-attr]
        health = publisher.source_health("udev")
        assert health is not None
        assert not health.up
        assert "nvidia_gpu_exporter_pci_gpus" not in exposition(publisher)
    finally:
        stop.set()
        assert watcher.join(1.0)


def test_real_udev_when_available() -> None:
    pyudev = pytest.importorskip("pyudev", reason="pyudev is not installed")
    try:
        pyudev.Monitor.from_netlink(pyudev.Context())
    except OSError as err:
        pytest.skip(f"no udev netlink here ({err}): the injected-event tests cover the logic")
    publisher = Publisher(process_metrics=False)
    stop = threading.Event()
    watcher = UdevWatcher(publisher, stop)
    watcher.start()
    try:
        wait_for(
            lambda: (
                (publisher.source_health("udev") or None) is not None
                and publisher.source_health("udev").up
            )
        )  # type: ignore[union-attr]
        assert () in values(exposition(publisher), "nvidia_gpu_exporter_pci_gpus")
    finally:
        stop.set()
        assert watcher.join(1.5)
