"""Node checks of diagnose: driver loaded and GPUs visible, PCI bus, /dev/nvidia*, CUDA."""

from __future__ import annotations

from exporter.fakenvml.control import FaultFile
from tests.diagnose.conftest import BUSES


def test_driver_loaded_and_gpus_visible(node, diagnose):
    run = diagnose(*node.args("--simulate", node.scenario(), "--json"))
    assert run.one("nvml.driver") == {
        "check": "nvml.driver",
        "level": "passed",
        "gpu": None,
        "evidence": "driver 560.35.03 (CUDA 12.6 at most), NVML sees 8 GPUs",
        "next_step": "",
    }


def test_driver_not_loaded(node, diagnose, monkeypatch):
    faults = FaultFile(node.root / "faults")
    faults.add_fault("nvmlInitWithFlags", None, "DRIVER_NOT_LOADED")
    monkeypatch.setenv("FAKE_NVML_FAULTS", str(faults.path))
    run = diagnose(*node.args("--simulate", node.scenario(), "--json"))
    driver = run.one("nvml.driver")
    assert driver["level"] == "failed"
    assert driver["evidence"] == "NVML does not work: nvmlInit failed: DRIVER_NOT_LOADED"
    assert "modprobe nvidia" in driver["next_step"]
    # everything that needs NVML says so instead of crashing
    assert run.one("gpu.ecc_uncorrected")["level"] == "skipped"
    assert run.one("cuda.runtime")["evidence"] == "needs NVML, which does not work"
    assert run.rc == 2


def test_no_gpu_visible(node, diagnose):
    empty = node.root / "empty.scn"
    empty.write_text(
        "[system]\ndriver_version = 560.35.03\ncuda_driver_version = 12060\ngpu_count = 0\n"
    )
    run = diagnose(*node.args("--simulate", str(empty), "--json"))
    driver = run.one("nvml.driver")
    assert (driver["level"], driver["evidence"]) == ("failed", "NVML initialised but sees no GPU")


def test_pci_bus_matches_nvml(node, diagnose):
    node.pci(extra=(("0000:00:02.0", "0x8086", "0x030000"), ("0000:c1:00.0", "0x10de", "0x068000")))
    run = diagnose(
        *node.args("--simulate", node.scenario(), "--path.sysfs", str(node.sysfs), "--json")
    )
    pci = run.one("node.pci_bus")
    assert (pci["level"], pci["evidence"]) == (
        "passed",
        "8 NVIDIA GPUs on the PCI bus, all in NVML",
    )


def test_gpu_on_the_bus_that_nvml_does_not_list(node, diagnose):
    node.pci(buses=(*BUSES, "c3"))
    run = diagnose(
        *node.args("--simulate", node.scenario(), "--path.sysfs", str(node.sysfs), "--json")
    )
    pci = run.one("node.pci_bus")
    assert pci["level"] == "failed"
    assert pci["evidence"] == (
        "the PCI bus shows 9 NVIDIA GPUs, NVML 8: the driver did not take 0000:c3:00.0"
    )


def test_gpu_that_left_the_bus(node, diagnose):
    node.pci(buses=tuple(bus for bus in BUSES if bus != "47"))
    run = diagnose(
        *node.args("--simulate", node.scenario(), "--path.sysfs", str(node.sysfs), "--json")
    )
    pci = run.one("node.pci_bus")
    assert pci["level"] == "failed"
    assert pci["evidence"] == (
        "NVML lists 8 GPUs, the PCI bus shows 7: GPU 2 (0000:47:00.0) left the bus"
    )


def test_pci_bus_unreadable_or_simulated_is_skipped(node, diagnose):
    run = diagnose(*node.args("--simulate", node.scenario(), "--json"))
    assert run.one("node.pci_bus")["level"] == "skipped"
    run = diagnose(
        *node.args("--simulate", node.scenario(), "--path.sysfs", str(node.sysfs), "--json")
    )
    assert run.one("node.pci_bus")["level"] == "skipped"
    assert "cannot list" in run.one("node.pci_bus")["evidence"]


def test_container_devices_present(node, diagnose):
    node.devices()
    run = diagnose(*node.args("--simulate", node.scenario(), "--path.dev", str(node.dev), "--json"))
    devices = run.one("container.devices")
    assert devices["level"] == "passed"
    assert devices["evidence"].endswith("/nvidiactl, nvidia-uvm and 8 GPU devices")


def test_container_without_gpu_devices(node, diagnose):
    node.devices(("null", "zero"))
    run = diagnose(*node.args("--simulate", node.scenario(), "--path.dev", str(node.dev), "--json"))
    devices = run.one("container.devices")
    assert devices["level"] == "failed"
    assert devices["evidence"].startswith("this container sees no ")
    assert "NVIDIA container runtime" in devices["next_step"]


def test_container_missing_one_gpu_device_and_uvm(node, diagnose):
    node.devices(("nvidiactl", "nvidia-uvm", *(f"nvidia{i}" for i in range(7))))
    run = diagnose(*node.args("--simulate", node.scenario(), "--path.dev", str(node.dev), "--json"))
    devices = run.one("container.devices")
    assert devices["level"] == "warning"
    assert "GPU 7 (" in devices["evidence"]
    node.devices(("nvidiactl", *(f"nvidia{i}" for i in range(8))))
    (node.dev / "nvidia-uvm").unlink()
    run = diagnose(*node.args("--simulate", node.scenario(), "--path.dev", str(node.dev), "--json"))
    assert "nvidia-uvm is missing" in run.one("container.devices")["evidence"]


def test_cuda_runtime_newer_than_the_driver_fails(node, diagnose):
    run = diagnose(*node.args("--simulate", node.scenario(), "--cuda-runtime", "12.8", "--json"))
    cuda = run.one("cuda.runtime")
    assert cuda["level"] == "failed"
    assert cuda["evidence"].startswith(
        "CUDA runtime 12.8 is newer than driver 560.35.03 supports (CUDA 12.6 at most)"
    )
    assert run.rc == 2


def test_cuda_runtime_the_driver_supports_passes(node, diagnose):
    for runtime in ("12.6", "11.8"):
        run = diagnose(
            *node.args("--simulate", node.scenario(), "--cuda-runtime", runtime, "--json")
        )
        assert run.one("cuda.runtime")["level"] == "passed", runtime
    run = diagnose(*node.args("--simulate", node.scenario(), "--json"))
    assert run.one("cuda.runtime")["level"] == "skipped"  # nothing asked


def test_broken_scenario_exits_2_naming_the_line(node, diagnose):
    broken = node.root / "broken.scn"
    broken.write_text("[system]\ngpu_count = 2\n[gpu *]\nmemory_total_mib = lots\n")
    run = diagnose(*node.args("--simulate", str(broken)))
    assert run.rc == 2
    assert run.out == ""
    assert f"{broken}:4" in run.err


def test_no_uvm_is_right_in_a_container_without_cuda(node, diagnose, monkeypatch):
    node.devices(("nvidiactl", *(f"nvidia{i}" for i in range(8))))
    monkeypatch.setenv("NVIDIA_DRIVER_CAPABILITIES", "utility")  # the exporter's own pod
    run = diagnose(*node.args("--simulate", node.scenario(), "--path.dev", str(node.dev), "--json"))
    devices = run.one("container.devices")
    assert devices["level"] == "passed"
    assert "no nvidia-uvm, as NVIDIA_DRIVER_CAPABILITIES=utility asks" in devices["evidence"]
