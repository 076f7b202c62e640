"""Xid events: one-shot delivery, timeouts, attribution."""

from __future__ import annotations

import ctypes
import threading
import time
from pathlib import Path

import pytest

from exporter.fakenvml.control import NOT_ATTRIBUTED, FakeNvmlControl, FaultFile

from .conftest import InitFn

pynvml = pytest.importorskip("pynvml")
XID = pynvml.nvmlEventTypeXidCriticalError


def _register(*gpus: int) -> object:
    es = pynvml.nvmlEventSetCreate()
    for g in gpus:
        pynvml.nvmlDeviceRegisterEvents(pynvml.nvmlDeviceGetHandleByIndex(g), XID, es)
    return es


def test_supported_event_types(nvml: InitFn) -> None:
    nvml("a100-mig")
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    types = pynvml.nvmlDeviceGetSupportedEventTypes(h)
    assert types & XID
    assert types & pynvml.nvmlEventTypeDoubleBitEccError
    assert types & pynvml.nvmlEventMigConfigChange
    nvml("t4")


def test_wait_times_out(nvml: InitFn) -> None:
    nvml("a100-mig")
    es = _register(0)
    start = time.monotonic()
    with pytest.raises(pynvml.NVMLError_Timeout):
        pynvml.nvmlEventSetWait(es, 300)
    elapsed = time.monotonic() - start
    assert 0.28 <= elapsed < 0.6
    pynvml.nvmlEventSetFree(es)


def test_xid_delivered_exactly_once(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("a100-mig")
    es = _register(0, 1, 7)
    other = _register(2)
    assert ctl.inject_xid(7, 48) == 1  # only the set that covers GPU 7
    data = pynvml.nvmlEventSetWait(es, 1000)
    assert data.eventType == XID
    assert data.eventData == 48
    assert pynvml.nvmlDeviceGetIndex(data.device) == 7
    assert data.gpuInstanceId == NOT_ATTRIBUTED
    assert data.computeInstanceId == NOT_ATTRIBUTED
    with pytest.raises(pynvml.NVMLError_Timeout):
        pynvml.nvmlEventSetWait(es, 100)
    with pytest.raises(pynvml.NVMLError_Timeout):
        pynvml.nvmlEventSetWait(other, 50)
    # MIG attribution
    ctl.inject_xid(1, 43, 3, 0)
    ctl.inject_xid(0, 13)
    d1 = pynvml.nvmlEventSetWait(es, 1000)
    d2 = pynvml.nvmlEventSetWait(es, 1000)
    assert (d1.eventData, d1.gpuInstanceId, d1.computeInstanceId) == (43, 3, 0)
    assert d2.eventData == 13
    pynvml.nvmlEventSetFree(es)
    pynvml.nvmlEventSetFree(other)


def test_two_sets_each_get_the_event(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("a100-mig")
    a, b = _register(4), _register(4)
    assert ctl.inject_xid(4, 48) == 2
    assert pynvml.nvmlEventSetWait(a, 500).eventData == 48
    assert pynvml.nvmlEventSetWait(b, 500).eventData == 48
    pynvml.nvmlEventSetFree(a)
    pynvml.nvmlEventSetFree(b)


def test_wait_wakes_on_injection(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("a100-mig")
    es = _register(3)
    threading.Timer(0.2, lambda: ctl.inject_xid(3, 94)).start()
    start = time.monotonic()
    data = pynvml.nvmlEventSetWait(es, 5000)
    assert data.eventData == 94
    assert 0.15 <= time.monotonic() - start < 1.0
    pynvml.nvmlEventSetFree(es)


def test_wait_does_not_block_other_calls(nvml: InitFn) -> None:
    nvml("a100-mig")
    es = _register(0)
    errors: list[int] = []

    def waiter() -> None:
        try:
            pynvml.nvmlEventSetWait(es, 500)
        except pynvml.NVMLError as e:
            errors.append(e.value)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.05)
    start = time.monotonic()
    for _ in range(200):
        pynvml.nvmlDeviceGetPowerUsage(pynvml.nvmlDeviceGetHandleByIndex(0))
    assert time.monotonic() - start < 0.3
    t.join()
    assert errors == [pynvml.NVML_ERROR_TIMEOUT]
    pynvml.nvmlEventSetFree(es)


def test_register_on_mig_handle_not_supported(nvml: InitFn) -> None:
    nvml("a100-mig")
    es = pynvml.nvmlEventSetCreate()
    mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(pynvml.nvmlDeviceGetHandleByIndex(6), 0)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceRegisterEvents(mig, XID, es)
    pynvml.nvmlEventSetFree(es)


def test_xid_from_fault_file_once(nvml: InitFn, tmp_path: Path) -> None:
    ff = FaultFile(tmp_path / "faults")
    nvml("a100-mig", **ff.env())
    es = _register(6)
    token = ff.xid(6, 31, gi=7, ci=0)
    data = pynvml.nvmlEventSetWait(es, 2000)
    assert (data.eventData, data.gpuInstanceId, data.computeInstanceId) == (31, 7, 0)
    ff.raw("# touch the file so it is re-read; the xid line stays")
    with pytest.raises(pynvml.NVMLError_Timeout):
        pynvml.nvmlEventSetWait(es, 400)
    assert token in ff.path.read_text()
    pynvml.nvmlEventSetFree(es)


def test_invalid_event_set(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("t4")
    data = pynvml.c_nvmlEventData_t()
    buf = ctypes.create_string_buffer(64)
    assert ctl.lib.nvmlEventSetWait_v2(buf, ctypes.byref(data), 10) == 2
    assert ctl.lib.nvmlEventSetWait_v2(None, ctypes.byref(data), 10) == 2
