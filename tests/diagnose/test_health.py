"""The GPU-health checks of diagnose on the fake driver: each one passing and failing.

Failing cases come from the fake driver itself: scenario values appended to the h100-nvlink
scenario (a healthy 8-GPU node), faults files (a lost GPU) and kernel-log files (Xids).
"""

from __future__ import annotations

from exporter.fakenvml.control import FaultFile
from tests.diagnose.conftest import BUSES, kmsg_record, xid_line


def test_healthy_node_passes_every_health_check(node, diagnose):
    run = diagnose(*node.args("--simulate", node.scenario(), "--json"))
    for check in (
        "gpu.answering",
        "gpu.fallen_off_bus",
        "gpu.xid",
        "gpu.ecc_uncorrected",
        "gpu.row_remap",
        "gpu.thermal",
        "gpu.pcie_link",
        "gpu.nvlink",
        "gpu.persistence_mode",
    ):
        assert run.levels(check) == {str(gpu): "passed" for gpu in range(8)}, check
    assert run.one("node.mixed_models")["level"] == "passed"
    assert run.rc == 0


def test_lost_gpu(node, diagnose, monkeypatch):
    faults = FaultFile(node.root / "faults")
    faults.lost(3)
    monkeypatch.setenv("FAKE_NVML_FAULTS", str(faults.path))
    run = diagnose(*node.args("--simulate", node.scenario(), "--json"))
    fallen = run.one("gpu.fallen_off_bus", "3")
    assert fallen["level"] == "failed"
    assert fallen["evidence"] == (
        "GPU 3 has fallen off the bus (nvidia_gpu_fallen_off_bus 1) and does not answer NVML"
    )
    assert "power-cycle" in fallen["next_step"]
    assert run.levels("gpu.fallen_off_bus")["2"] == "passed"
    assert "3" not in run.levels("gpu.ecc_uncorrected")  # no values to judge for a lost GPU
    assert run.rc == 2


def test_fallen_off_bus_xid_in_the_kernel_log(node, diagnose):
    node.write_kmsg(
        kmsg_record("NVRM: loading NVIDIA UNIX Open Kernel Module", 9000, seq=1),
        kmsg_record(xid_line("07", 79, "GPU has fallen off the bus."), 12 * 60, seq=2),
    )
    # GPU 3 on bus 07, as in the example
    swap = "[gpu 0]\npci_bus_id = 00000000:4E:00.0\n[gpu 3]\npci_bus_id = 00000000:07:00.0\n"
    run = diagnose(*node.args("--simulate", node.scenario(swap), "--json"))
    xid = run.one("gpu.xid", "3")
    assert xid == {
        "check": "gpu.xid",
        "level": "failed",
        "gpu": "3",
        "evidence": "Xid 79 on GPU 3 (0000:07:00.0) 12 min ago: GPU has fallen off the bus",
        "next_step": "Cordon and drain the node, power-cycle it; replace the GPU if it recurs",
    }
    assert run.one("gpu.xid", "0")["level"] == "passed"
    assert run.rc == 2


def test_xid_of_a_lost_gpu_names_the_kernels_address(node, diagnose, monkeypatch):
    faults = FaultFile(node.root / "faults")
    faults.lost(3)
    monkeypatch.setenv("FAKE_NVML_FAULTS", str(faults.path))
    node.write_kmsg(kmsg_record(xid_line(BUSES[3], 79, "GPU has fallen off the bus."), 60))
    run = diagnose(*node.args("--simulate", node.scenario(), "--json"))
    xid = run.one("gpu.xid", None)
    assert xid["level"] == "failed"
    assert xid["evidence"].startswith("Xid 79 on 0000:4e:00.0 (an address no GPU")


def test_warning_xid_and_dmesg_line_without_time(node, diagnose):
    node.kmsg.write_text(
        kmsg_record(xid_line(BUSES[1], 13, "Graphics Exception"), 2 * 3600)
        + xid_line(BUSES[2], 48, "An uncorrectable double bit error")
        + "\n"
    )
    run = diagnose(*node.args("--simulate", node.scenario(), "--json"))
    old = run.one("gpu.xid", "1")
    assert old["level"] == "warning"
    assert old["evidence"] == "Xid 13 on GPU 1 (0000:0f:00.0) 2 h ago: Graphics Engine Exception"
    untimed = run.one("gpu.xid", "2")
    assert untimed["level"] == "failed"
    assert "at an unknown time: Double Bit ECC Error" in untimed["evidence"]


def test_unreadable_kernel_log_skips_the_xid_check(node, diagnose):
    node.kmsg.unlink()
    run = diagnose(*node.args("--simulate", node.scenario(), "--json"))
    assert run.findings("gpu.xid") == [run.one("gpu.xid", None)]
    assert run.one("gpu.xid", None)["level"] == "skipped"
    assert "kernel log unreadable" in run.one("gpu.xid", None)["evidence"]
    assert run.rc == 0


def test_uncorrectable_ecc(node, diagnose):
    extra = "[gpu 2]\necc_uncorrected_volatile = 3\necc_uncorrected_aggregate = 7\n"
    run = diagnose(*node.args("--simulate", node.scenario(extra), "--json"))
    ecc = run.one("gpu.ecc_uncorrected", "2")
    assert ecc["level"] == "failed"
    assert ecc["evidence"] == (
        "3 uncorrected ECC errors since the driver loaded (7 in the GPU's lifetime)"
    )
    assert run.levels("gpu.ecc_uncorrected")["1"] == "passed"


def test_row_remap_pending_and_failed(node, diagnose):
    extra = "[gpu 4]\nremapped_rows = 1 1 1 0\n[gpu 5]\nremapped_rows = 0 2 0 1\n"
    run = diagnose(*node.args("--simulate", node.scenario(extra), "--json"))
    pending, failed = run.one("gpu.row_remap", "4"), run.one("gpu.row_remap", "5")
    assert pending["level"] == "warning"
    assert pending["evidence"].startswith("a row remapping waits for a GPU reset")
    assert failed["level"] == "failed"
    assert failed["evidence"] == (
        "a row remapping failed (0 correctable, 2 uncorrectable rows remapped)"
    )
    assert "RMA" in failed["next_step"]


def test_thermal_slowdown(node, diagnose):
    extra = "[gpu 6]\nclocks_event_reasons = 0x40\ntemperature = 91\n"
    run = diagnose(*node.args("--simulate", node.scenario(extra), "--json"))
    thermal = run.one("gpu.thermal", "6")
    assert thermal["level"] == "failed"
    assert thermal["evidence"] == (
        "clocks held down by hw_thermal_slowdown at 91 °C (slowdown at 89 °C)"
    )
    assert run.levels("gpu.thermal")["5"] == "passed"


def test_pcie_link_below_max_under_load(node, diagnose):
    extra = "[gpu 1]\npcie_current = 3 16\nutilization_gpu = 90\n[gpu 2]\npcie_current = 5 8\n"
    run = diagnose(*node.args("--simulate", node.scenario(extra), "--json"))
    assert run.one("gpu.pcie_link", "1") == {
        "check": "gpu.pcie_link",
        "level": "warning",
        "gpu": "1",
        "evidence": "link generation below max under load: Gen3 x16 of Gen5 x16 at 90% utilization",
        "next_step": "Reseat the GPU or its riser and check the slot's BIOS PCIe settings",
    }
    assert run.one("gpu.pcie_link", "2")["evidence"] == "link width below max: Gen5 x8 of Gen5 x16"


def test_pcie_link_below_max_while_idle_passes(node, diagnose):
    extra = "[gpu 1]\npcie_current = 1 16\nutilization_gpu = 0\n"
    run = diagnose(*node.args("--simulate", node.scenario(extra), "--json"))
    idle = run.one("gpu.pcie_link", "1")
    assert idle["level"] == "passed"
    assert "judged only under load" in idle["evidence"]


def test_nvlink_link_down(node, diagnose):
    run = diagnose(
        *node.args("--simulate", node.scenario("[gpu 7]\nnvlink_inactive = 3 9\n"), "--json")
    )
    nvlink = run.one("gpu.nvlink", "7")
    assert nvlink["level"] == "failed"
    assert nvlink["evidence"] == "NVLink link 3, 9 down (16 of 18 up)"
    assert run.levels("gpu.nvlink")["6"] == "passed"


def test_nvlink_absent_is_skipped(node, diagnose):
    run = diagnose(*node.args("--simulate", "t4", "--json"))
    assert run.one("gpu.nvlink", "0")["level"] == "skipped"


def test_two_gpu_models_on_one_node(node, diagnose):
    extra = "[gpu 4-7]\nname = NVIDIA H100 PCIe\nmemory_total_mib = 81559\n"
    run = diagnose(*node.args("--simulate", node.scenario(extra), "--json"))
    mixed = run.one("node.mixed_models")
    assert mixed["level"] == "warning"
    assert mixed["evidence"] == (
        "2 GPU models on one node: 4x NVIDIA H100 80GB HBM3, 4x NVIDIA H100 PCIe"
    )
    assert run.rc == 1


def test_persistence_mode_off(node, diagnose):
    run = diagnose(
        *node.args("--simulate", node.scenario("[gpu 0]\npersistence_mode = off\n"), "--json")
    )
    assert run.one("gpu.persistence_mode", "0")["level"] == "warning"
    assert "nvidia-persistenced" in run.one("gpu.persistence_mode", "0")["next_step"]
    assert run.levels("gpu.persistence_mode")["1"] == "passed"
