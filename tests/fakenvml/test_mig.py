"""MIG enumeration, per-instance values and process attribution."""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import pytest

from exporter.fakenvml.control import FakeNvmlControl

from .conftest import InitFn

pynvml = pytest.importorskip("pynvml")
MIB = 1024 * 1024
NA = 0xFFFFFFFF


def _is_mig(h: object) -> int:
    """pynvml returns a c_uint here (a pynvml quirk)."""
    r = pynvml.nvmlDeviceIsMigDeviceHandle(h)
    return int(getattr(r, "value", r))


def _migs(parent: object) -> dict[int, object]:
    out = {}
    for i in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(parent)):
        try:
            out[i] = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, i)
        except pynvml.NVMLError_NotFound:
            continue
    return out


def test_mig_modes(nvml: InitFn) -> None:
    nvml("a100-mig")
    for i in range(6):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        assert pynvml.nvmlDeviceGetMigMode(h) == [0, 0]
        assert pynvml.nvmlDeviceGetMaxMigDeviceCount(h) == 0
    for i in (6, 7):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        assert pynvml.nvmlDeviceGetMigMode(h) == [1, 1]
        assert pynvml.nvmlDeviceGetMaxMigDeviceCount(h) == 7


def test_gpu6_seven_1g_instances(nvml: InitFn) -> None:
    nvml("a100-mig")
    parent = pynvml.nvmlDeviceGetHandleByIndex(6)
    migs = _migs(parent)
    assert sorted(migs) == list(range(7))
    gis = []
    for idx, m in migs.items():
        assert _is_mig(m) == 1
        assert pynvml.nvmlDeviceGetName(m) == "NVIDIA A100-SXM4-80GB MIG 1g.10gb"
        assert pynvml.nvmlDeviceGetUUID(m).startswith("MIG-")
        assert pynvml.nvmlDeviceGetIndex(m) == idx
        assert pynvml.nvmlDeviceGetComputeInstanceId(m) == 0
        gis.append(pynvml.nvmlDeviceGetGpuInstanceId(m))
        mem = pynvml.nvmlDeviceGetMemoryInfo(m, version=pynvml.nvmlMemory_v2)
        assert mem.total == 9728 * MIB
        assert mem.reserved == 0
        attrs = pynvml.nvmlDeviceGetAttributes(m)
        assert attrs.multiprocessorCount == 14
        assert attrs.memorySizeMB == 9728
        assert attrs.gpuInstanceSliceCount == 1
        assert attrs.computeInstanceSliceCount == 1
        p = pynvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(m)
        assert pynvml.nvmlDeviceGetIndex(p) == 6
    assert gis == [7, 8, 9, 11, 12, 13, 14]
    uuids = {pynvml.nvmlDeviceGetUUID(m) for m in migs.values()}
    assert len(uuids) == 7


def test_gpu7_gap_and_profiles(nvml: InitFn) -> None:
    nvml("a100-mig")
    parent = pynvml.nvmlDeviceGetHandleByIndex(7)
    m0 = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, 0)
    with pytest.raises(pynvml.NVMLError_NotFound):
        pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, 1)
    m2 = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, 2)
    m3 = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, 3)
    for i in (4, 5, 6):
        with pytest.raises(pynvml.NVMLError_NotFound):
            pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, i)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, 7)
    assert pynvml.nvmlDeviceGetName(m0).endswith(" MIG 3g.40gb")
    assert pynvml.nvmlDeviceGetName(m2).endswith(" MIG 2g.20gb")
    assert [pynvml.nvmlDeviceGetGpuInstanceId(m) for m in (m0, m2, m3)] == [2, 3, 5]
    assert pynvml.nvmlDeviceGetMemoryInfo(m0).total == 40192 * MIB
    assert pynvml.nvmlDeviceGetMemoryInfo(m3).total == 19968 * MIB
    # structured profile lookup: GI by id -> info -> profile -> name
    for m, prof_name, slices, start in ((m0, "3g.40gb", 3, 4), (m2, "2g.20gb", 2, 0)):
        gi = pynvml.nvmlDeviceGetGpuInstanceById(parent, pynvml.nvmlDeviceGetGpuInstanceId(m))
        info = pynvml.nvmlGpuInstanceGetInfo(gi)
        assert info.id == pynvml.nvmlDeviceGetGpuInstanceId(m)
        assert (info.placement.start, info.placement.size) == (start, slices)
        assert ctypes.addressof(info.device.contents) == ctypes.addressof(parent.contents)
        prof = pynvml.nvmlDeviceGetGpuInstanceProfileInfo(parent, info.profileId)
        assert prof.id == info.profileId
        assert prof.name == f"MIG {prof_name}"
        assert prof.sliceCount == slices
        assert prof.memorySizeMB == pynvml.nvmlDeviceGetAttributes(m).memorySizeMB
    v1 = pynvml.nvmlDeviceGetGpuInstanceProfileInfo(parent, 4, version=1)
    assert v1.sliceCount == 7
    assert v1.memorySizeMB == 80896
    with pytest.raises(pynvml.NVMLError_NotFound):
        pynvml.nvmlDeviceGetGpuInstanceById(parent, 1)


def test_mig_parent_not_supported_calls(nvml: InitFn) -> None:
    nvml("a100-mig")
    parent = pynvml.nvmlDeviceGetHandleByIndex(6)
    for fn in (
        pynvml.nvmlDeviceGetUtilizationRates,
        pynvml.nvmlDeviceGetEncoderUtilization,
        pynvml.nvmlDeviceGetDecoderUtilization,
        pynvml.nvmlDeviceGetRemappedRows,
    ):
        with pytest.raises(pynvml.NVMLError_NotSupported):
            fn(parent)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetProcessUtilization(parent, 0)
    # physical quantities still work on the parent
    assert pynvml.nvmlDeviceGetPowerUsage(parent) > 0
    assert pynvml.nvmlDeviceGetTemperature(parent, 0) > 0


def test_physical_only_on_mig_handle(nvml: InitFn) -> None:
    nvml("a100-mig")
    m = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(pynvml.nvmlDeviceGetHandleByIndex(6), 0)
    calls: list[Callable[[], object]] = [
        lambda: pynvml.nvmlDeviceGetPowerUsage(m),
        lambda: pynvml.nvmlDeviceGetTemperature(m, 0),
        lambda: pynvml.nvmlDeviceGetClockInfo(m, 0),
        lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(m),
        lambda: pynvml.nvmlDeviceGetPcieThroughput(m, 0),
        lambda: pynvml.nvmlDeviceGetNvLinkState(m, 0),
        lambda: pynvml.nvmlDeviceGetTotalEccErrors(m, 0, 0),
        lambda: pynvml.nvmlDeviceGetUtilizationRates(m),
    ]
    for call in calls:
        with pytest.raises(pynvml.NVMLError_NotSupported):
            call()
    fv = pynvml.nvmlDeviceGetFieldValues(m, [83, 186])
    assert [v.nvmlReturn for v in fv] == [3, 3]
    # physical handles have no GI/CI ids
    phys = pynvml.nvmlDeviceGetHandleByIndex(6)
    assert _is_mig(phys) == 0
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetGpuInstanceId(phys)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetAttributes(phys)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        pynvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(phys)


def test_handle_by_mig_uuid(nvml: InitFn) -> None:
    nvml("a100-mig")
    parent = pynvml.nvmlDeviceGetHandleByIndex(7)
    m3 = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, 3)
    uuid = pynvml.nvmlDeviceGetUUID(m3)
    got = pynvml.nvmlDeviceGetHandleByUUID(uuid)
    assert ctypes.addressof(got.contents) == ctypes.addressof(m3.contents)
    assert pynvml.nvmlDeviceGetGpuInstanceId(got) == 5


def test_per_instance_processes_and_memory(nvml: InitFn) -> None:
    nvml("a100-mig")
    parent = pynvml.nvmlDeviceGetHandleByIndex(6)
    allp = pynvml.nvmlDeviceGetComputeRunningProcesses(parent)
    assert sorted((p.pid, p.gpuInstanceId, p.computeInstanceId) for p in allp) == [
        (10601, 7, 0),
        (10602, 9, 0),
        (10603, 14, 0),
    ]
    migs = _migs(parent)
    m0, m1, m2 = migs[0], migs[1], migs[2]
    p0 = pynvml.nvmlDeviceGetComputeRunningProcesses(m0)
    assert [(p.pid, p.usedGpuMemory) for p in p0] == [(10601, 6000 * MIB)]
    assert pynvml.nvmlDeviceGetComputeRunningProcesses(m1) == []
    assert [p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(m2)] == [10602]
    assert pynvml.nvmlDeviceGetMemoryInfo(m0, version=pynvml.nvmlMemory_v2).used == 6000 * MIB
    assert pynvml.nvmlDeviceGetMemoryInfo(m1, version=pynvml.nvmlMemory_v2).used == 0
    parent_used = pynvml.nvmlDeviceGetMemoryInfo(parent, version=pynvml.nvmlMemory_v2).used
    assert parent_used == (6000 + 4000 + 9000) * MIB
    bar0 = pynvml.nvmlDeviceGetBAR1MemoryInfo(m0)
    assert 0 < bar0.bar1Total < pynvml.nvmlDeviceGetBAR1MemoryInfo(parent).bar1Total


def test_non_mig_processes_have_na_ids(nvml: InitFn) -> None:
    nvml("a100-mig")
    h = pynvml.nvmlDeviceGetHandleByIndex(4)
    compute = pynvml.nvmlDeviceGetComputeRunningProcesses(h)
    graphics = pynvml.nvmlDeviceGetGraphicsRunningProcesses(h)
    assert [(p.pid, p.usedGpuMemory) for p in compute] == [(10401, 70000 * MIB)]
    assert [p.pid for p in graphics] == [10402]
    assert compute[0].gpuInstanceId == NA
    assert compute[0].computeInstanceId == NA
    assert pynvml.nvmlDeviceGetComputeRunningProcesses(pynvml.nvmlDeviceGetHandleByIndex(3)) == []


def test_two_call_protocol(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("a100-mig")
    h = pynvml.nvmlDeviceGetHandleByIndex(0)  # two compute processes
    fn = ctl.lib.nvmlDeviceGetComputeRunningProcesses_v3
    count = ctypes.c_uint(0)
    assert fn(h, ctypes.byref(count), None) == pynvml.NVML_ERROR_INSUFFICIENT_SIZE
    assert count.value == 2
    small = (pynvml.c_nvmlProcessInfo_v2_t * 1)()
    count.value = 1
    assert fn(h, ctypes.byref(count), small) == pynvml.NVML_ERROR_INSUFFICIENT_SIZE
    assert count.value == 2
    buf = (pynvml.c_nvmlProcessInfo_v2_t * 5)()
    count.value = 5
    assert fn(h, ctypes.byref(count), buf) == 0
    assert count.value == 2
    assert [buf[i].pid for i in range(2)] == [10001, 10002]
    assert ctypes.sizeof(pynvml.c_nvmlProcessInfo_v2_t) == 24
    # v2 symbol, same struct
    count.value = 5
    assert ctl.lib.nvmlDeviceGetComputeRunningProcesses_v2(h, ctypes.byref(count), buf) == 0
    # zero processes: SUCCESS with count 0
    idle = pynvml.nvmlDeviceGetHandleByIndex(3)
    count.value = 0
    assert fn(idle, ctypes.byref(count), None) == 0
    assert count.value == 0
    assert fn(h, None, None) == pynvml.NVML_ERROR_INVALID_ARGUMENT
    # retired pages two-call (T4 only)
