"""The NVML Xid event waiter and the lost-GPU hooks, on the real pynvml over the fake driver."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.fakenvml.control import FakeNvmlControl
from exporter.model import SourceHealth
from exporter.publisher import Publisher
from exporter.sources.nvml import NVML_LOCK, NvmlSource, NvmlXidEventWaiter
from exporter.xid.parser import XidEvent, normalize_pci
from exporter.xid.state import XidState
from tests.xid.expo import exposition, values


def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


class Waiter:
    def __init__(self, library: Path) -> None:
        self.stop = threading.Event()
        self.seen: list[tuple[str, int, int | None, int | None]] = []
        self.health: list[tuple[bool, str]] = []
        self.waiter = NvmlXidEventWaiter(
            lambda *event: self.seen.append(event),
            lambda up, detail: self.health.append((up, detail)),
            self.stop,
            library_path=str(library),
        )
        self.waiter.start()
        wait_for(lambda: bool(self.health))

    def close(self) -> float:
        started = time.monotonic()
        self.stop.set()
        assert self.waiter.join(2.0)
        return time.monotonic() - started


@pytest.fixture
def waiter(
    fake_library: Path, control: FakeNvmlControl, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Waiter]:
    monkeypatch.setitem(os.environ, "FAKE_NVML_SCENARIO", "a100-mig")
    control.clear_faults()
    rig = Waiter(fake_library)
    yield rig
    rig.close()
    control.clear_faults()


def test_xid_events_arrive_with_pci_and_mig_ids(waiter: Waiter, control: FakeNvmlControl) -> None:
    assert waiter.health[-1] == (True, "")
    assert waiter.waiter.registered == 8
    assert control.inject_xid(3, 48) == 1
    assert control.inject_xid(0, 13, 1, 0) == 1
    wait_for(lambda: len(waiter.seen) == 2)
    (pci_a, xid_a, gi_a, ci_a), (pci_b, xid_b, gi_b, ci_b) = waiter.seen
    assert (xid_a, gi_a, ci_a) == (48, None, None)
    assert pci_a.upper().endswith("4E:00.0")  # the a100-mig scenario's 4th GPU
    assert (xid_b, gi_b, ci_b) == (13, 1, 0)
    assert pci_b.upper().endswith("07:00.0")


def test_waiter_does_not_hold_the_nvml_lock_while_waiting(waiter: Waiter) -> None:
    for _ in range(5):
        assert NVML_LOCK.acquire(timeout=0.2)
        NVML_LOCK.release()
        time.sleep(0.1)


def test_waiter_stops_within_a_second(
    fake_library: Path, control: FakeNvmlControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(os.environ, "FAKE_NVML_SCENARIO", "t4")
    rig = Waiter(fake_library)
    assert rig.close() < 1.0


def test_nvml_and_kmsg_reports_of_one_xid_count_once(
    waiter: Waiter, control: FakeNvmlControl, fake_library: Path
) -> None:
    waiter.close()  # replace the plain rig with one feeding XidState
    publisher = Publisher(process_metrics=False)
    state = XidState(publisher, lambda: ())
    stop = threading.Event()
    observed: list[bool] = []  # what state.observe_nvml answered, once it has returned

    def observe_nvml(pci: str, xid: int, gi: int | None, ci: int | None) -> bool:
        counted = state.observe_nvml(pci, xid, gi, ci)
        observed.append(counted)
        return counted

    events = NvmlXidEventWaiter(
        observe_nvml,
        lambda up, d: state.set_input("nvml_events", up, d),
        stop,
        library_path=str(fake_library),
    )
    events.start()
    try:
        wait_for(lambda: events.registered == 8)
        control.inject_xid(1, 94)
        wait_for(lambda: len(observed) == 1)
        assert observed == [True]
        assert state.total_counted() == 1
        assert not state.observe(XidEvent(94, "0000:0f:00"), time.time())  # the kmsg line
        assert state.total_counted() == 1
        assert state.observe(XidEvent(94, "0000:0f:00"), time.time())  # a new Xid 94
        control.inject_xid(1, 94)  # ...and its NVML event
        # events.events counts before the callback runs: wait for the callback's answer.
        wait_for(lambda: len(observed) == 2)
        assert observed == [True, False]
        assert state.total_counted() == 2
    finally:
        stop.set()
        assert events.join(2.0)


def test_gpu_lost_and_recovered_on_the_fake_driver(open_source, control: FakeNvmlControl) -> None:  # type: ignore[no-untyped-def]
    source: NvmlSource = open_source("a100-mig")
    publisher = Publisher(process_metrics=False)
    state = XidState(publisher, source.directory, on_lost=source.mark_lost)

    def up_and_fallen() -> tuple[dict[tuple[str, ...], float], dict[tuple[str, ...], float]]:
        publisher.publish("nvml", source.collect(), SourceHealth(up=True))
        state.refresh()
        text = exposition(publisher)
        return (
            values(text, "nvidia_gpu_up", "gpu"),
            values(text, "nvidia_gpu_fallen_off_bus", "gpu"),
        )

    up, fallen = up_and_fallen()
    assert up[("2",)] == 1
    assert fallen[("2",)] == 0
    control.set_gpu_lost(2)
    up, fallen = up_and_fallen()
    assert up[("2",)] == 0
    assert fallen[("2",)] == 1
    control.set_gpu_lost(2, False)
    up, fallen = up_and_fallen()
    assert up[("2",)] == 1
    assert fallen[("2",)] == 0
    # Xid 79 from the kernel log marks GPU 5 lost although NVML still answers for it.
    pci = next(gpu.pci_bus_id for gpu in source.directory() if gpu.index == 5)
    state.observe(XidEvent(79, normalize_pci(pci) or ""), time.time())
    up, fallen = up_and_fallen()
    assert up[("5",)] == 0
    assert fallen[("5",)] == 1
    state.clear_fallen(pci)  # udev saw it come back on the bus
    up, fallen = up_and_fallen()
    assert up[("5",)] == 1
    assert fallen[("5",)] == 0
