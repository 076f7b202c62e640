"""What the fake driver models for alert tests: node identity, driver version, GPUs that fall
off the bus, and row remapping on MIG-enabled GPUs."""

from __future__ import annotations

from pathlib import Path

import pynvml
import pytest

from exporter.fakenvml.control import FakeNvmlControl, FaultFile
from tests.fakenvml.conftest import InitFn
from tests.tools import wait_until


def identities() -> list[tuple[str, str]]:
    out = []
    for index in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        out.append((pynvml.nvmlDeviceGetUUID(handle), pynvml.nvmlDeviceGetSerial(handle)))
    return out


def test_node_name_gives_each_simulated_node_its_own_uuids_and_serials(
    ctl: FakeNvmlControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []
    monkeypatch.setenv("FAKE_NVML_SCENARIO", "a100-mig")
    for node in ("gpu-node-a", "gpu-node-b", "gpu-node-a"):
        monkeypatch.setenv("FAKE_NVML_NODE", node)
        pynvml.nvmlInit()  # the scenario and its identities load when init goes 0 -> 1
        try:
            seen.append(identities())
        finally:
            pynvml.nvmlShutdown()
    a, b, a_again = seen
    assert a == a_again  # deterministic: the same node name gives the same identities
    assert not {uuid for uuid, _ in a} & {uuid for uuid, _ in b}
    assert not {serial for _, serial in a} & {serial for _, serial in b}
    assert len({uuid for uuid, _ in a}) == 8


def test_driver_version_override(nvml: InitFn) -> None:
    nvml("t4", FAKE_NVML_DRIVER_VERSION="560.35.03")
    assert pynvml.nvmlSystemGetDriverVersion() == "560.35.03"
    assert pynvml.nvmlSystemGetNVMLVersion() == "12.560.35.03"


def test_xid_79_makes_the_gpu_lost_until_it_is_reset(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("a100-mig")
    handle = pynvml.nvmlDeviceGetHandleByIndex(2)
    ctl.inject_xid(2, 79)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        pynvml.nvmlDeviceGetPowerUsage(handle)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        pynvml.nvmlDeviceGetHandleByIndex(2)
    assert pynvml.nvmlDeviceGetCount() == 8  # still counted, like the real driver
    pynvml.nvmlDeviceGetPowerUsage(pynvml.nvmlDeviceGetHandleByIndex(3))  # others answer
    ctl.inject_xid(3, 48)  # another code does not lose the GPU
    pynvml.nvmlDeviceGetPowerUsage(pynvml.nvmlDeviceGetHandleByIndex(3))
    ctl.set_gpu_lost(2, False)  # a GPU reset
    assert pynvml.nvmlDeviceGetPowerUsage(handle) > 0


def test_fault_file_xid_79_and_reset(nvml: InitFn, tmp_path: Path) -> None:
    faults = FaultFile(tmp_path / "faults")
    nvml("t4", **faults.env())
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    faults.xid(0, 79)

    def lost() -> bool:
        try:
            pynvml.nvmlDeviceGetTemperature(handle, 0)
        except pynvml.NVMLError_GpuIsLost:
            return True
        return False

    wait_until(lost, timeout=5.0)
    faults.raw("# re-read: the xid line stays and is not delivered again")
    faults.reset(0)
    wait_until(lambda: not lost(), timeout=5.0)


def test_row_remapping_needs_no_active_mig_instance(nvml: InitFn, tmp_path: Path) -> None:
    scenario = tmp_path / "mig-empty.scn"
    scenario.write_text(
        "[system]\ngpu_count = 1\n[gpu *]\nname = NVIDIA A100-SXM4-80GB\narchitecture = ampere\n"
        "row_remapping = on\nremapped_rows = 1 0 0 0\nmig_capable = on\nmig_mode = on\n"
    )
    nvml(str(scenario))
    empty_mig = pynvml.nvmlDeviceGetHandleByIndex(0)
    assert pynvml.nvmlDeviceGetRemappedRows(empty_mig)[0] == 1


def test_row_remapping_is_not_supported_with_mig_instances(nvml: InitFn) -> None:
    nvml("a100-mig")
    with pytest.raises(pynvml.NVMLError_NotSupported):  # GPU 6 has seven instances
        pynvml.nvmlDeviceGetRemappedRows(pynvml.nvmlDeviceGetHandleByIndex(6))
    assert pynvml.nvmlDeviceGetRemappedRows(pynvml.nvmlDeviceGetHandleByIndex(0))[3] == 0
