"""Metric getters: types, units, NOT_SUPPORTED cases, time model, versioned structs."""

from __future__ import annotations

import ctypes
import math
import time

import pytest

from exporter.fakenvml.control import FakeNvmlControl

from .conftest import InitFn
from .curves import PERIOD, Sine, mean

pynvml = pytest.importorskip("pynvml")
MIB = 1024 * 1024


def _h(i: int = 0) -> object:
    return pynvml.nvmlDeviceGetHandleByIndex(i)


def test_a100_metric_types_and_units(nvml: InitFn) -> None:
    nvml("a100-mig", FAKE_NVML_TIME="0")
    h = _h(0)
    util = pynvml.nvmlDeviceGetUtilizationRates(h)
    assert util.gpu == 70
    assert util.memory == 40
    mem = pynvml.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
    assert mem.total == 81920 * MIB
    assert mem.reserved == 567 * MIB
    assert mem.used == 42000 * MIB  # max(scenario used 30000, processes 40000 + 2000)
    assert mem.free == mem.total - mem.reserved - mem.used
    v1 = pynvml.nvmlDeviceGetMemoryInfo(h)
    assert v1.used == mem.used + mem.reserved
    assert v1.free == mem.free
    bar1 = pynvml.nvmlDeviceGetBAR1MemoryInfo(h)
    assert bar1.bar1Total == 131072 * MIB
    assert bar1.bar1Used == 2 * MIB
    assert pynvml.nvmlDeviceGetPowerUsage(h) == 320000
    assert pynvml.nvmlDeviceGetEnforcedPowerLimit(h) == 400000
    assert pynvml.nvmlDeviceGetPowerManagementLimit(h) == 400000
    assert pynvml.nvmlDeviceGetPowerManagementLimitConstraints(h) == [100000, 400000]
    assert pynvml.nvmlDeviceGetTotalEnergyConsumption(h) == 0
    assert pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU) == 48
    assert pynvml.nvmlDeviceGetTemperatureV(h, pynvml.NVML_TEMPERATURE_GPU) == 48
    assert pynvml.nvmlDeviceGetTemperatureThreshold(h, 0) == 92
    assert pynvml.nvmlDeviceGetTemperatureThreshold(h, 1) == 89
    assert pynvml.nvmlDeviceGetTemperatureThreshold(h, 2) == 95
    assert pynvml.nvmlDeviceGetTemperatureThreshold(h, 3) == 87
    assert pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM) == 1300
    assert pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM) == 1593
    assert pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_GRAPHICS) == 1410
    assert pynvml.nvmlDeviceGetClock(h, pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_ID_CURRENT) == 1300
    assert pynvml.nvmlDeviceGetCurrentClocksEventReasons(h) == 0
    assert pynvml.nvmlDeviceGetSupportedClocksEventReasons(h) == 0x1FF
    assert pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(h) == 0
    assert pynvml.nvmlDeviceGetPerformanceState(h) == 0
    assert pynvml.nvmlDeviceGetEccMode(h) == [1, 1]
    assert pynvml.nvmlDeviceGetTotalEccErrors(h, 0, pynvml.NVML_AGGREGATE_ECC) == 3
    assert pynvml.nvmlDeviceGetMemoryErrorCounter(h, 0, 1, pynvml.NVML_MEMORY_LOCATION_DRAM) == 3
    assert pynvml.nvmlDeviceGetRemappedRows(h) == (0, 0, 0, 0)
    hist = pynvml.nvmlDeviceGetRowRemapperHistogram(h)
    assert (hist.max, hist.high, hist.none) == (640, 0, 0)
    assert pynvml.nvmlDeviceGetPcieThroughput(h, pynvml.NVML_PCIE_UTIL_TX_BYTES) == 400000
    assert pynvml.nvmlDeviceGetPcieReplayCounter(h) == 0
    assert pynvml.nvmlDeviceGetCurrPcieLinkGeneration(h) == 4
    assert pynvml.nvmlDeviceGetMaxPcieLinkWidth(h) == 16
    assert pynvml.nvmlDeviceGetNvLinkState(h, 0) == pynvml.NVML_FEATURE_ENABLED
    assert pynvml.nvmlDeviceGetNvLinkVersion(h, 11) == 3
    assert pynvml.nvmlDeviceGetNvLinkErrorCounter(h, 0, 0) == 0
    assert pynvml.nvmlDeviceGetNvLinkRemotePciInfo(h, 0).busId.startswith("00000000:")
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        pynvml.nvmlDeviceGetNvLinkState(h, 12)
    # GPU 5 has link 11 down
    assert pynvml.nvmlDeviceGetNvLinkState(_h(5), 11) == pynvml.NVML_FEATURE_DISABLED
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetFanSpeed(h)
    viol = pynvml.nvmlDeviceGetViolationStatus(h, pynvml.NVML_PERF_POLICY_POWER)
    assert viol.violationTime == 0
    assert viol.referenceTime > 1_600_000_000_000_000


def test_t4_differences(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("t4", FAKE_NVML_TIME="0")
    h = _h(0)
    assert pynvml.nvmlDeviceGetArchitecture(h) == pynvml.NVML_DEVICE_ARCH_TURING
    assert pynvml.nvmlDeviceGetCudaComputeCapability(h) == (7, 5)
    assert pynvml.nvmlDeviceGetPowerManagementDefaultLimit(h) == 70000
    assert pynvml.nvmlDeviceGetMemoryInfo(h).total == 15360 * MIB
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetMigMode(h)
    assert pynvml.nvmlDeviceGetMaxMigDeviceCount(h) == 0
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetRemappedRows(h)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetFanSpeed(h)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetNvLinkState(h, 0)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetTemperatureThreshold(h, pynvml.NVML_TEMPERATURE_THRESHOLD_MEM_MAX)
    sbe = pynvml.nvmlDeviceGetRetiredPages(h, 0)
    assert len(sbe) == 2
    assert all(isinstance(a, int) and a > 0 for a in sbe)
    assert pynvml.nvmlDeviceGetRetiredPages(h, 1) == []
    pages_v2 = pynvml.nvmlDeviceGetRetiredPages_v2(h, 0)
    assert len(pages_v2) == 2
    assert pynvml.nvmlDeviceGetRetiredPagesPendingStatus(h) == pynvml.NVML_FEATURE_DISABLED
    assert pynvml.nvmlDeviceGetEncoderUtilization(h) == [0, 166667]  # one sample period, us
    assert pynvml.nvmlDeviceGetDecoderUtilization(h)[0] == 10
    # t = 0: the buffer is full from the start, (-100P, 0] (utilization_memory = 30 20 60)
    zero = pynvml.nvmlDeviceGetProcessUtilization(h, 0)
    assert [(s.pid, s.smUtil) for s in zero] == [(4242, 50)]
    assert zero[0].memUtil == round(mean(Sine(30, 20, 60), -100 * PERIOD, 0.0)) == 17
    ctl.set_time(10.0)
    samples = pynvml.nvmlDeviceGetProcessUtilization(h, 0)
    assert [s.pid for s in samples] == [4242]
    assert samples[0].smUtil == 50


def test_versioned_struct_mismatch(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("a100-mig")
    h = _h(0)
    mem = pynvml.c_nvmlMemory_v2_t()
    mem.version = 0x01000028
    assert ctl.lib.nvmlDeviceGetMemoryInfo_v2(h, ctypes.byref(mem)) == 25
    mem.version = pynvml.nvmlMemory_v2
    assert ctl.lib.nvmlDeviceGetMemoryInfo_v2(h, ctypes.byref(mem)) == 0
    temp = pynvml.c_nvmlTemperature_v1_t()
    temp.version = 0
    assert ctl.lib.nvmlDeviceGetTemperatureV(h, ctypes.byref(temp)) == 25
    prof = pynvml.c_nvmlGpuInstanceProfileInfo_v2_t()
    prof.version = 0x01000098
    assert ctl.lib.nvmlDeviceGetGpuInstanceProfileInfoV(h, 0, ctypes.byref(prof)) == 25


def test_frozen_time_gives_equal_reads(nvml: InitFn) -> None:
    nvml("a100-mig", FAKE_NVML_TIME="123.5")
    h = _h(0)

    def snap() -> tuple[object, ...]:
        fv = pynvml.nvmlDeviceGetFieldValues(h, [83, 186, (138, 0xFFFFFFFF), 3, 197, 308])
        return (
            pynvml.nvmlDeviceGetPowerUsage(h),
            pynvml.nvmlDeviceGetTotalEnergyConsumption(h),
            pynvml.nvmlDeviceGetTemperature(h, 0),
            pynvml.nvmlDeviceGetUtilizationRates(h).gpu,
            pynvml.nvmlDeviceGetClockInfo(h, 1),
            pynvml.nvmlDeviceGetCurrentClocksEventReasons(h),
            tuple(v.value.ullVal for v in fv[:5]),
            fv[5].value.dVal,
        )

    first = snap()
    time.sleep(0.05)
    assert snap() == first


def test_energy_is_integral_of_power(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("a100-mig")
    h = _h(0)  # power_w = 320 60 60 0  (W, sine amplitude 60 W, period 60 s)
    ctl.set_time(60.0)  # one full period: integral = 320 W * 60 s
    assert pynvml.nvmlDeviceGetTotalEnergyConsumption(h) == 320 * 60 * 1000
    ctl.set_time(15.0)  # quarter period: peak power
    assert pynvml.nvmlDeviceGetPowerUsage(h) == 380000
    expected = 1000 * (320 * 15 + 60 * 60 / (2 * math.pi))
    assert abs(pynvml.nvmlDeviceGetTotalEnergyConsumption(h) - expected) <= 1


def test_counters_monotonic_over_time(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("h100-nvlink")
    h = _h(2)
    ids = [83, 191, 3, 5, 74, 81, 269, 94, 197, 198, (138, 0xFFFFFFFF), (139, 3), 52, 38]
    prev: list[int] | None = None
    for t in [0, 0.5, 1, 7, 13.3, 29, 45, 60, 61, 300, 1000, 3600.25]:
        ctl.set_time(t)
        fv = pynvml.nvmlDeviceGetFieldValues(h, ids)
        assert all(v.nvmlReturn == 0 for v in fv)
        vals = [v.value.ullVal for v in fv]
        vals.append(pynvml.nvmlDeviceGetTotalEccErrors(h, 0, 0))
        vals.append(pynvml.nvmlDeviceGetNvLinkErrorCounter(h, 4, 0))
        vals.append(pynvml.nvmlDeviceGetViolationStatus(h, 0).violationTime)
        if prev is not None:
            assert all(b >= a for a, b in zip(prev, vals, strict=True)), (t, prev, vals)
        prev = vals
    assert prev is not None
    assert prev[0] > 0
    assert prev[8] > 0


def test_real_clock_advances(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("a100-mig")
    t1 = ctl.get_time()
    time.sleep(0.05)
    assert ctl.get_time() > t1


def test_clock_event_reasons_change_over_time(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("a100-mig")  # reasons 0x0 0x4 0x0 0x20 every 15 s
    h = _h(0)
    seen = []
    for t in (1, 16, 31, 46, 61):
        ctl.set_time(t)
        seen.append(pynvml.nvmlDeviceGetCurrentClocksEventReasons(h))
    assert seen == [0x0, 0x4, 0x0, 0x20, 0x0]


def test_set_value_override(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("a100-mig", FAKE_NVML_TIME="0")
    ctl.set_value(1, "power_w", 123.0)
    assert pynvml.nvmlDeviceGetPowerUsage(_h(1)) == 123000
    ctl.set_key(1, "temperature", "91")
    assert pynvml.nvmlDeviceGetTemperature(_h(1), 0) == 91
    with pytest.raises(ValueError):
        ctl.set_value(1, "no_such_key", 1.0)
