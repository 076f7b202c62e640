"""The fault matrix for the NVML Xid event waiter: every call it makes, generated from the code.

Per cell: the fault is in place when the waiter starts; the thread survives, its health says
what failed (or, for a per-GPU failure, the other GPUs are still registered); when the fault
clears the waiter registers every GPU again and delivers an injected Xid with the right PCI
address; a stop request ends the thread within a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from exporter.fakenvml.control import FakeNvmlControl, NvmlReturn
from exporter.sources.nvml import NvmlSource, NvmlXidEventWaiter
from exporter.sources.nvml import events as nvml_events
from tests.faults.conftest import SCENARIO
from tests.faults.nvml_calls import exporter_calls

R = NvmlReturn
CODES = (R.UNKNOWN, R.GPU_IS_LOST, R.NO_PERMISSION, R.NOT_SUPPORTED)
WAITER_CALLS = sorted(
    {call.symbol: call for call in exporter_calls() if call.owner == "NvmlXidEventWaiter"}.values(),
    key=lambda call: call.symbol,
)
INIT = "nvmlInitWithFlags"  # the fake fails init only on an unloadable scenario (UNKNOWN)
CELLS = [
    (call.symbol, call.system, int(code))
    for call in WAITER_CALLS
    for code in CODES
    if call.symbol != INIT or code == R.UNKNOWN
]


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_the_waiter_has_cells() -> None:
    symbols = {symbol for symbol, _, _ in CELLS}
    assert {"nvmlEventSetCreate", "nvmlEventSetWait_v2", "nvmlDeviceRegisterEvents"} <= symbols


@pytest.mark.parametrize(
    ("symbol", "system", "code"),
    CELLS,
    ids=[f"{s}-{R(c).name}" for s, _, c in CELLS],
)
def test_event_waiter_fault(
    node: None,
    control: FakeNvmlControl,
    fake_library: object,
    monkeypatch: pytest.MonkeyPatch,
    symbol: str,
    system: bool,
    code: int,
) -> None:
    monkeypatch.setattr(nvml_events, "XID_EVENT_RETRY_SECONDS", 0.05)
    source = NvmlSource(library_path=str(fake_library))
    source.open()
    source.collect()
    pci = {gpu.index: gpu.pci_bus_id for gpu in source.directory()}
    source.close()  # nothing holds NVML open: the waiter's own nvmlInit is the first
    health: list[tuple[bool, str]] = []
    xids: list[tuple[str, int]] = []
    stop = threading.Event()
    waiter = NvmlXidEventWaiter(
        lambda bus, xid, _gi, _ci: xids.append((bus, xid)),
        lambda up, detail: health.append((up, detail)),
        stop,
        library_path=str(fake_library),
        wait_ms=50,
    )
    control.clear_faults()
    if symbol == INIT:
        monkeypatch.setenv("FAKE_NVML_SCENARIO", "/nonexistent/driver-not-loaded.scn")
    else:
        control.set_fault(symbol, -1 if system else 0, code)
    waiter.start()
    try:
        wait_until(lambda: len(health) > 0)
        if system:
            failing_at_start = symbol not in ("nvmlEventSetFree", "nvmlShutdown")
            if failing_at_start and symbol != "nvmlEventSetWait_v2":
                wait_until(lambda: any(not up and R(code).name in d for up, d in health))
            elif symbol == "nvmlEventSetWait_v2":
                wait_until(lambda: any(not up and "nvmlEventSetWait" in d for up, d in health))
        else:  # one GPU failed to register: the seven others still are
            wait_until(lambda: waiter.registered == 7 and health[-1][0])
        control.clear_faults()
        monkeypatch.setenv("FAKE_NVML_SCENARIO", SCENARIO)
        waiter.request_reregister()  # what the udev watcher does when the bus changes
        # The flag is cleared when the rebuild starts, after the old set was freed: from then
        # on an Xid can only land in the rebuilt set (before, it could land in the old set
        # just before it is freed, and be lost). registered/health alone can still describe
        # the old set.
        wait_until(
            lambda: not waiter._reregister.is_set() and waiter.registered == 8 and health[-1][0]
        )
        wait_until(lambda: control.inject_xid(3, 48) > 0 or False, timeout=5.0)
        wait_until(lambda: (pci[3], 48) in xids)
    finally:
        stop.set()
        control.clear_faults()
        started = time.monotonic()
        assert waiter.join(2.0)
        assert time.monotonic() - started < 1.0
