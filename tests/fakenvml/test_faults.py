"""Fault injection through ctypes and through the FAKE_NVML_FAULTS file."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.fakenvml.control import FakeNvmlControl, FaultFile, NvmlReturn, return_code

from .conftest import InitFn

pynvml = pytest.importorskip("pynvml")
POLL = 0.25  # > the library's 100 ms re-read interval


def test_return_code_names() -> None:
    assert return_code("GPU_IS_LOST") == 15
    assert return_code("NVML_ERROR_GPU_IS_LOST") == 15
    assert return_code("not_supported") == 3
    assert return_code(NvmlReturn.TIMEOUT) == 10
    assert return_code("0x3") == 3
    with pytest.raises(ValueError):
        return_code("NO_SUCH_CODE")


def test_ctypes_function_fault_per_gpu(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("a100-mig")
    h0, h1 = pynvml.nvmlDeviceGetHandleByIndex(0), pynvml.nvmlDeviceGetHandleByIndex(1)
    ctl.set_fault("nvmlDeviceGetPowerUsage", 1, "NO_PERMISSION")
    assert pynvml.nvmlDeviceGetPowerUsage(h0) > 0
    with pytest.raises(pynvml.NVMLError_NoPermission):
        pynvml.nvmlDeviceGetPowerUsage(h1)
    assert pynvml.nvmlDeviceGetTemperature(h1, 0) > 0
    ctl.clear_faults()
    assert pynvml.nvmlDeviceGetPowerUsage(h1) > 0


@pytest.mark.parametrize("code", [2, 3, 4, 6, 10, 15, 16, 17, 18, 25, 999])
def test_ctypes_any_return_code(nvml: InitFn, ctl: FakeNvmlControl, code: int) -> None:
    nvml("t4")
    ctl.set_fault("*", -1, code)
    with pytest.raises(pynvml.NVMLError) as err:
        pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
    assert err.value.value == code


def test_version_suffix_matching(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("a100-mig")
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    ctl.set_fault("nvmlDeviceGetMemoryInfo", 0, "UNKNOWN")
    with pytest.raises(pynvml.NVMLError_Unknown):
        pynvml.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
    ctl.set_fault("nvmlSystemGetDriverVersion", -1, "TIMEOUT")
    with pytest.raises(pynvml.NVMLError_Timeout):
        pynvml.nvmlSystemGetDriverVersion()


def test_gpu_lost_and_back(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("a100-mig")
    parent = pynvml.nvmlDeviceGetHandleByIndex(7)
    mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, 0)
    ctl.set_gpu_lost(7)
    calls: list[Callable[[], object]] = [
        lambda: pynvml.nvmlDeviceGetPowerUsage(parent),
        lambda: pynvml.nvmlDeviceGetUUID(mig),
        lambda: pynvml.nvmlDeviceGetHandleByIndex(7),
    ]
    for call in calls:
        with pytest.raises(pynvml.NVMLError_GpuIsLost):
            call()
    assert pynvml.nvmlDeviceGetCount() == 8
    assert pynvml.nvmlDeviceGetPowerUsage(pynvml.nvmlDeviceGetHandleByIndex(6)) > 0
    ctl.set_gpu_lost(7, False)
    assert pynvml.nvmlDeviceGetPowerUsage(parent) > 0
    assert pynvml.nvmlDeviceGetUUID(mig).startswith("MIG-")


def test_slow_call_releases_lock(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("a100-mig")
    h0, h1 = pynvml.nvmlDeviceGetHandleByIndex(0), pynvml.nvmlDeviceGetHandleByIndex(1)
    ctl.set_fault("nvmlDeviceGetPowerUsage", 0, 0, delay_ms=400)
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(pynvml.nvmlDeviceGetPowerUsage(h0)))
    start = time.monotonic()
    t.start()
    time.sleep(0.05)
    # other calls proceed while the slow one sleeps
    fast_start = time.monotonic()
    assert pynvml.nvmlDeviceGetPowerUsage(h1) > 0
    assert time.monotonic() - fast_start < 0.2
    t.join()
    assert time.monotonic() - start >= 0.4
    assert result
    assert result[0] > 0


def test_slow_failing_call(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("t4")
    ctl.set_fault("nvmlDeviceGetTemperature", 0, "TIMEOUT", delay_ms=200)
    start = time.monotonic()
    with pytest.raises(pynvml.NVMLError_Timeout):
        pynvml.nvmlDeviceGetTemperature(pynvml.nvmlDeviceGetHandleByIndex(0), 0)
    assert time.monotonic() - start >= 0.2


def test_ctypes_field_fault(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("a100-mig")
    ctl.set_field_fault(83, 2, "GPU_IS_LOST")
    h2 = pynvml.nvmlDeviceGetHandleByIndex(2)
    fv = pynvml.nvmlDeviceGetFieldValues(h2, [83, 186])
    assert [v.nvmlReturn for v in fv] == [15, 0]
    other = pynvml.nvmlDeviceGetFieldValues(pynvml.nvmlDeviceGetHandleByIndex(3), [83])
    assert other[0].nvmlReturn == 0


def test_fault_file(nvml: InitFn, tmp_path: Path) -> None:
    ff = FaultFile(tmp_path / "faults")
    nvml("a100-mig", **ff.env())
    h0, h3 = pynvml.nvmlDeviceGetHandleByIndex(0), pynvml.nvmlDeviceGetHandleByIndex(3)
    ff.add_fault("nvmlDeviceGetPowerUsage", 3, "NVML_ERROR_NOT_SUPPORTED")
    ff.add_field_fault(186, None, "UNKNOWN")
    time.sleep(POLL)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetPowerUsage(h3)
    assert pynvml.nvmlDeviceGetPowerUsage(h0) > 0
    assert pynvml.nvmlDeviceGetFieldValues(h0, [186])[0].nvmlReturn == 999
    ff.lost(0)
    time.sleep(POLL)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        pynvml.nvmlDeviceGetName(h0)
    ff.found(0)
    time.sleep(POLL)
    assert pynvml.nvmlDeviceGetName(h0) == "NVIDIA A100-SXM4-80GB"
    ff.time(42.0)
    time.sleep(POLL)
    e1 = pynvml.nvmlDeviceGetTotalEnergyConsumption(h0)
    time.sleep(0.05)
    assert pynvml.nvmlDeviceGetTotalEnergyConsumption(h0) == e1
    ff.clear()
    time.sleep(POLL)
    assert pynvml.nvmlDeviceGetPowerUsage(h3) > 0


def test_fault_file_slow_call_and_bad_lines(
    nvml: InitFn, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    ff = FaultFile(tmp_path / "faults")
    ff.raw("this is not a directive")
    ff.raw("fault nvmlDeviceGetName 0 NOT_A_CODE")
    ff.raw("fault nvmlDeviceGetName notagpu 3")
    ff.raw("xid 0 79")  # missing id=
    ff.add_fault("nvmlDeviceGetUUID", 0, 0, delay_ms=300)
    nvml("t4", **ff.env())
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    assert pynvml.nvmlDeviceGetName(h) == "Tesla T4"  # bad lines ignored
    start = time.monotonic()
    assert pynvml.nvmlDeviceGetUUID(h).startswith("GPU-")
    assert time.monotonic() - start >= 0.3
    err = capfd.readouterr().err
    assert err.count("ignored:") == 4
    assert f"{ff.path}:1:" in err
    assert f"{ff.path}:4:" in err


def test_injected_init_fault_fails_init_until_cleared(
    nvml: InitFn, ctl: FakeNvmlControl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nvml("t4")
    pynvml.nvmlShutdown()
    ctl.set_fault("nvmlInitWithFlags", -1, "DRIVER_NOT_LOADED")
    with pytest.raises(pynvml.NVMLError_DriverNotLoaded):
        pynvml.nvmlInit()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlDeviceGetCount()  # a failed init leaves NVML uninitialised
    ctl.clear_faults()
    faults = FaultFile(tmp_path / "faults")
    faults.add_fault("nvmlInitWithFlags", None, "LIB_RM_VERSION_MISMATCH")
    monkeypatch.setenv("FAKE_NVML_FAULTS", str(faults.path))
    with pytest.raises(pynvml.NVMLError_LibRmVersionMismatch):
        pynvml.nvmlInit()
    faults.clear()
    pynvml.nvmlInit()
    assert pynvml.nvmlDeviceGetCount() == 1
