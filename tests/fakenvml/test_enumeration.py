"""Enumeration and identity through the real pynvml."""

from __future__ import annotations

import ctypes
import re

import pytest

from exporter.fakenvml import BUILTIN_SCENARIOS
from exporter.fakenvml.control import FakeNvmlControl

from .conftest import InitFn

pynvml = pytest.importorskip("pynvml")

EXPECTED = {
    "t4": (1, "Tesla T4", 15360, 70000),
    "a100-mig": (8, "NVIDIA A100-SXM4-80GB", 81920, 400000),
    "h100-mig": (8, "NVIDIA H100 80GB HBM3", 81559, 700000),
    "h100-nvlink": (8, "NVIDIA H100 80GB HBM3", 81559, 700000),
    "large-16": (16, "NVIDIA H100 80GB HBM3", 81559, 700000),
}
UUID_RE = re.compile(r"^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.mark.parametrize("scenario", BUILTIN_SCENARIOS)
def test_scenario_enumerates(nvml: InitFn, scenario: str) -> None:
    nvml(scenario)
    count, name, mem_mib, power_mw = EXPECTED[scenario]
    assert pynvml.nvmlDeviceGetCount() == count
    uuids, buses, serials, minors = set(), set(), set(), set()
    for i in range(count):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        assert pynvml.nvmlDeviceGetName(h) == name
        assert pynvml.nvmlDeviceGetIndex(h) == i
        uuid = pynvml.nvmlDeviceGetUUID(h)
        assert UUID_RE.match(uuid)
        uuids.add(uuid)
        serials.add(pynvml.nvmlDeviceGetSerial(h))
        minors.add(pynvml.nvmlDeviceGetMinorNumber(h))
        pci = pynvml.nvmlDeviceGetPciInfo(h)
        assert re.match(r"^[0-9A-F]{8}:[0-9A-F]{2}:[0-9A-F]{2}\.0$", pci.busId)
        assert pci.busIdLegacy == pci.busId[4:]
        assert (pci.domain, pci.bus, pci.device) == tuple(
            int(x, 16) for x in re.split("[:.]", pci.busId)[:3]
        )
        assert pci.pciDeviceId & 0xFFFF == 0x10DE
        buses.add(pci.busId)
        assert pynvml.nvmlDeviceGetHandleByUUID(uuid).contents is not None
        assert pynvml.nvmlDeviceGetIndex(pynvml.nvmlDeviceGetHandleByUUID(uuid)) == i
        assert pynvml.nvmlDeviceGetIndex(pynvml.nvmlDeviceGetHandleByPciBusId(pci.busId)) == i
        assert pynvml.nvmlDeviceGetMemoryInfo(h).total == mem_mib * 1024 * 1024
        assert pynvml.nvmlDeviceGetPowerManagementDefaultLimit(h) == power_mw
    assert len(uuids) == len(buses) == len(serials) == len(minors) == count


def test_system_calls(nvml: InitFn) -> None:
    nvml("a100-mig")
    assert pynvml.nvmlSystemGetDriverVersion() == "550.54.15"
    assert pynvml.nvmlSystemGetNVMLVersion() == "12.550.54.15"
    assert pynvml.nvmlSystemGetCudaDriverVersion() == 12040
    assert pynvml.nvmlSystemGetCudaDriverVersion_v2() == 12040
    assert pynvml.nvmlSystemGetProcessName(10001) == "python3"
    with pytest.raises(pynvml.NVMLError_NotFound):
        pynvml.nvmlSystemGetProcessName(1)
    assert pynvml.nvmlErrorString(pynvml.NVML_ERROR_GPU_IS_LOST) == "GPU is lost"


def test_identity_values(nvml: InitFn) -> None:
    nvml("a100-mig")
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    assert pynvml.nvmlDeviceGetBrand(h) == pynvml.NVML_BRAND_NVIDIA
    assert pynvml.nvmlDeviceGetArchitecture(h) == pynvml.NVML_DEVICE_ARCH_AMPERE
    assert pynvml.nvmlDeviceGetCudaComputeCapability(h) == (8, 0)
    assert pynvml.nvmlDeviceGetVbiosVersion(h) == "92.00.45.00.03"
    assert pynvml.nvmlDeviceGetPersistenceMode(h) == pynvml.NVML_FEATURE_ENABLED
    assert pynvml.nvmlDeviceGetComputeMode(h) == pynvml.NVML_COMPUTEMODE_DEFAULT
    assert pynvml.nvmlDeviceGetPciInfo(h).busId == "00000000:07:00.0"


def test_pci_bus_id_lookup_forms(nvml: InitFn) -> None:
    nvml("a100-mig")
    want = pynvml.nvmlDeviceGetHandleByIndex(1)
    for form in ("00000000:0F:00.0", "00000000:0f:00.0", "0000:0F:00.0", "0f:00.0"):
        got = pynvml.nvmlDeviceGetHandleByPciBusId(form)
        assert pynvml.nvmlDeviceGetIndex(got) == 1, form
    assert pynvml.nvmlDeviceGetUUID(got) == pynvml.nvmlDeviceGetUUID(want)
    with pytest.raises(pynvml.NVMLError_NotFound):
        pynvml.nvmlDeviceGetHandleByPciBusId("00000000:55:00.0")
    with pytest.raises(pynvml.NVMLError_NotFound):
        pynvml.nvmlDeviceGetHandleByUUID("GPU-00000000-0000-0000-0000-000000000000")


def test_large_16_uses_two_pci_domains(nvml: InitFn) -> None:
    nvml("large-16")
    domains = {
        pynvml.nvmlDeviceGetPciInfo(pynvml.nvmlDeviceGetHandleByIndex(i)).domain for i in range(16)
    }
    assert domains == {0, 1}


def test_handles_are_stable(nvml: InitFn) -> None:
    nvml("a100-mig")
    a = pynvml.nvmlDeviceGetHandleByIndex(3)
    b = pynvml.nvmlDeviceGetHandleByIndex(3)
    assert ctypes.addressof(a.contents) == ctypes.addressof(b.contents)


def test_refcounted_init_and_uninitialized(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    lib = ctl.lib
    count = ctypes.c_uint(0)
    # Nothing initialised yet in this test: the C library itself says UNINITIALIZED.
    assert lib.nvmlDeviceGetCount_v2(ctypes.byref(count)) == pynvml.NVML_ERROR_UNINITIALIZED
    assert lib.nvmlShutdown() == pynvml.NVML_ERROR_UNINITIALIZED
    assert lib.nvmlInit_v2() == 0
    assert lib.nvmlInit() == 0
    assert lib.nvmlShutdown() == 0
    assert lib.nvmlDeviceGetCount_v2(ctypes.byref(count)) == 0  # still initialised once
    assert lib.nvmlShutdown() == 0
    assert lib.nvmlDeviceGetCount_v2(ctypes.byref(count)) == pynvml.NVML_ERROR_UNINITIALIZED


def test_null_and_bad_handles(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("t4")
    name = ctypes.create_string_buffer(96)
    lib = ctl.lib
    assert lib.nvmlDeviceGetName(None, name, 96) == pynvml.NVML_ERROR_INVALID_ARGUMENT
    bogus = ctypes.c_void_p(ctypes.addressof(name))
    assert lib.nvmlDeviceGetName(bogus, name, 96) == pynvml.NVML_ERROR_INVALID_ARGUMENT
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    assert lib.nvmlDeviceGetName(h, None, 96) == pynvml.NVML_ERROR_INVALID_ARGUMENT
    assert lib.nvmlDeviceGetName(h, name, 4) == pynvml.NVML_ERROR_INSUFFICIENT_SIZE
    assert lib.nvmlDeviceGetPowerUsage(h, None) == pynvml.NVML_ERROR_INVALID_ARGUMENT
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        pynvml.nvmlDeviceGetHandleByIndex(1)
