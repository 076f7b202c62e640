"""exporter/verdict.py: each rule's passing and failing case, from literal sample maps.

The maps are written as the NVML and Xid sources publish them (label order = the catalog), so
a renamed family or a moved label breaks these tests rather than the status page.
"""

from __future__ import annotations

import pytest

from exporter import metrics
from exporter.model import Sample
from exporter.verdict import (
    LEVELS,
    RECENT_XID_SECONDS,
    Finding,
    age_text,
    gpu_findings,
    gpu_verdict,
    short_bus_id,
    worst,
)

NOW = 1_700_000_000.0


def _info(gpu: str, model: str = "NVIDIA H100 80GB HBM3", persistence: str = "enabled") -> tuple:
    return (
        gpu,
        f"GPU-{gpu}",
        model,
        "nvidia",
        "hopper",
        "9.0",
        "560.35.03",
        "12.6",
        "96.00",
        f"S{gpu}",
        f"00000000:0{gpu}:00.0",
        "disabled",
        persistence,
    )


def healthy(*gpus: str) -> dict[str, list[Sample]]:
    """A map of healthy GPUs, every family the rules read present."""
    out: dict[str, list[Sample]] = {}

    def add(family: metrics.Family, labels: tuple, value: float) -> None:
        out.setdefault(family.name, []).append((labels, value))

    for gpu in gpus or ("0",):
        base = (gpu, f"GPU-{gpu}")
        add(metrics.INFO, _info(gpu), 1.0)
        add(metrics.UP, base, 1.0)
        add(metrics.FALLEN_OFF_BUS, base, 0.0)
        add(metrics.ECC_MODE, base, 1.0)
        add(metrics.ECC_UNCORRECTED, (*base, "volatile"), 0.0)
        add(metrics.ECC_UNCORRECTED, (*base, "aggregate"), 0.0)
        add(metrics.REMAPPED_ROWS, (*base, "correctable"), 0.0)
        add(metrics.REMAPPED_ROWS, (*base, "uncorrectable"), 0.0)
        add(metrics.REMAPPED_ROWS_PENDING, base, 0.0)
        add(metrics.REMAPPED_ROWS_FAILURE, base, 0.0)
        add(metrics.TEMPERATURE, base, 55.0)
        add(metrics.TEMPERATURE_THRESHOLD, (*base, "slowdown"), 89.0)
        for reason in ("gpu_idle", "sw_power_cap", "sw_thermal_slowdown", "hw_thermal_slowdown"):
            add(metrics.CLOCK_EVENT_ACTIVE, (*base, reason), 0.0)
        add(metrics.PCIE_LINK_GENERATION, base, 5.0)
        add(metrics.PCIE_LINK_MAX_GENERATION, base, 5.0)
        add(metrics.PCIE_LINK_WIDTH, base, 16.0)
        add(metrics.PCIE_LINK_MAX_WIDTH, base, 16.0)
        add(metrics.UTILIZATION, base, 0.8)
        for link in range(4):
            add(metrics.NVLINK_UP, (*base, str(link)), 1.0)
    return out


def put(samples: dict[str, list[Sample]], family: metrics.Family, labels: tuple, value: float):
    """Replace (or add) one sample."""
    rows = [row for row in samples.get(family.name, []) if row[0] != labels]
    rows.append((labels, value))
    samples[family.name] = rows


def find(findings: list[Finding], check: str, gpu: str | None = "0") -> Finding:
    matches = [f for f in findings if f.check == check and f.gpu == gpu]
    assert len(matches) == 1, (check, gpu, findings)
    return matches[0]


def test_healthy_gpu_passes_every_check():
    findings = gpu_findings(healthy("0", "1"), NOW)
    assert {f.level for f in findings} == {"passed"}
    checks = {f.check for f in findings if f.gpu == "0"}
    assert checks == {
        "gpu.answering",
        "gpu.fallen_off_bus",
        "gpu.xid",
        "gpu.ecc_uncorrected",
        "gpu.row_remap",
        "gpu.thermal",
        "gpu.pcie_link",
        "gpu.nvlink",
        "gpu.persistence_mode",
    }
    assert find(findings, "node.mixed_models", None).evidence == (
        "one model: 2x NVIDIA H100 80GB HBM3"
    )
    assert all(f.next_step == "" for f in findings)
    assert gpu_verdict(findings, "0") == "passed"


def test_fallen_off_bus_with_xid_79_names_the_gpu_the_age_and_the_step():
    samples = healthy("3")
    put(samples, metrics.UP, ("3", "GPU-3"), 0.0)
    put(samples, metrics.FALLEN_OFF_BUS, ("3", "GPU-3"), 1.0)
    put(samples, metrics.XID_LAST_SEEN, ("3", "GPU-3", "79"), NOW - 12 * 60)
    findings = gpu_findings(samples, NOW)
    xid = find(findings, "gpu.xid", "3")
    assert xid.level == "failed"
    assert xid.evidence == "Xid 79 on GPU 3 (0000:03:00.0) 12 min ago: GPU has fallen off the bus"
    assert xid.next_step == (
        "Cordon and drain the node, power-cycle it; replace the GPU if it recurs"
    )
    fallen = find(findings, "gpu.fallen_off_bus", "3")
    assert fallen.level == "failed"
    assert "Xid 79 12 min ago" in fallen.evidence
    # a GPU that is gone has no value series: no ECC/thermal/... verdicts, no answering duplicate
    assert {f.check for f in findings if f.gpu == "3"} == {"gpu.fallen_off_bus", "gpu.xid"}
    assert gpu_verdict(findings, "3") == "failed"


def test_gpu_not_answering_without_fallen_flag():
    samples = healthy()
    del samples[metrics.FALLEN_OFF_BUS.name]
    put(samples, metrics.UP, ("0", "GPU-0"), 0.0)
    finding = find(gpu_findings(samples, NOW), "gpu.answering")
    assert finding.level == "failed"
    assert "nvidia_gpu_up 0" in finding.evidence
    assert "nvidia-smi -r -i 0" in finding.next_step


@pytest.mark.parametrize(
    ("code", "age", "level"),
    [
        (79, 60.0, "failed"),  # critical, recent
        (79, RECENT_XID_SECONDS + 1, "warning"),  # critical, history
        (13, 60.0, "warning"),  # warning severity
        (43, 60.0, "passed"),  # info severity
    ],
)
def test_xid_level_follows_catalog_severity_and_age(code: int, age: float, level: str):
    samples = healthy()
    put(samples, metrics.XID_LAST_SEEN, ("0", "GPU-0", str(code)), NOW - age)
    finding = find(gpu_findings(samples, NOW), "gpu.xid")
    assert finding.level == level
    assert finding.evidence.startswith(f"Xid {code} on GPU 0 (0000:00:00.0)")
    assert (finding.next_step == "") == (level == "passed")


def test_xid_on_an_unknown_pci_address_is_node_wide():
    samples = healthy()
    put(samples, metrics.XID_LAST_SEEN, ("", "", "48"), NOW - 30)
    finding = find(gpu_findings(samples, NOW), "gpu.xid", None)
    assert finding.level == "failed"
    assert "a PCI address no GPU NVML lists" in finding.evidence


def test_uncorrected_ecc():
    samples = healthy()
    put(samples, metrics.ECC_UNCORRECTED, ("0", "GPU-0", "volatile"), 2.0)
    put(samples, metrics.ECC_UNCORRECTED, ("0", "GPU-0", "aggregate"), 5.0)
    finding = find(gpu_findings(samples, NOW), "gpu.ecc_uncorrected")
    assert finding.level == "failed"
    assert finding.evidence.startswith("2 uncorrected ECC errors since the driver loaded (5 ")
    put(samples, metrics.ECC_UNCORRECTED, ("0", "GPU-0", "volatile"), 0.0)
    assert find(gpu_findings(samples, NOW), "gpu.ecc_uncorrected").level == "warning"


def test_ecc_disabled_and_not_reported():
    samples = healthy()
    del samples[metrics.ECC_UNCORRECTED.name]
    assert find(gpu_findings(samples, NOW), "gpu.ecc_uncorrected").level == "skipped"
    put(samples, metrics.ECC_MODE, ("0", "GPU-0"), 0.0)
    assert find(gpu_findings(samples, NOW), "gpu.ecc_uncorrected").level == "warning"


@pytest.mark.parametrize(
    ("family", "level", "words"),
    [
        (metrics.REMAPPED_ROWS_PENDING, "warning", "waits for a GPU reset"),
        (metrics.REMAPPED_ROWS_FAILURE, "failed", "a row remapping failed"),
    ],
)
def test_row_remap_pending_and_failed(family: metrics.Family, level: str, words: str):
    samples = healthy()
    put(samples, family, ("0", "GPU-0"), 1.0)
    finding = find(gpu_findings(samples, NOW), "gpu.row_remap")
    assert finding.level == level
    assert words in finding.evidence
    assert finding.next_step


def test_row_remap_skipped_on_mig_and_retired_pages_pending():
    samples = healthy()
    for family in (metrics.REMAPPED_ROWS_PENDING, metrics.REMAPPED_ROWS_FAILURE):
        del samples[family.name]
    info = list(_info("0"))
    info[metrics.INFO_LABELS.index("mig_mode")] = "enabled"
    samples[metrics.INFO.name] = [(tuple(info), 1.0)]
    finding = find(gpu_findings(samples, NOW), "gpu.row_remap")
    assert (finding.level, finding.evidence) == (
        "skipped",
        "row remapping is not readable while MIG instances exist",
    )
    put(samples, metrics.RETIRED_PAGES_PENDING, ("0", "GPU-0"), 1.0)
    assert find(gpu_findings(samples, NOW), "gpu.row_remap").level == "warning"


@pytest.mark.parametrize(
    ("reason", "level"), [("sw_thermal_slowdown", "warning"), ("hw_thermal_slowdown", "failed")]
)
def test_thermal_slowdown(reason: str, level: str):
    samples = healthy()
    put(samples, metrics.CLOCK_EVENT_ACTIVE, ("0", "GPU-0", reason), 1.0)
    finding = find(gpu_findings(samples, NOW), "gpu.thermal")
    assert finding.level == level
    assert reason in finding.evidence
    assert "55 °C (slowdown at 89 °C)" in finding.evidence


def test_temperature_at_slowdown_threshold_warns():
    samples = healthy()
    put(samples, metrics.TEMPERATURE, ("0", "GPU-0"), 90.0)
    assert find(gpu_findings(samples, NOW), "gpu.thermal").level == "warning"


def test_pcie_generation_below_max_counts_only_under_load():
    samples = healthy()
    put(samples, metrics.PCIE_LINK_GENERATION, ("0", "GPU-0"), 3.0)
    finding = find(gpu_findings(samples, NOW), "gpu.pcie_link")
    assert finding.level == "warning"
    assert finding.evidence == (
        "link generation below max under load: Gen3 x16 of Gen5 x16 at 80% utilization"
    )
    put(samples, metrics.UTILIZATION, ("0", "GPU-0"), 0.0)
    finding = find(gpu_findings(samples, NOW), "gpu.pcie_link")
    assert finding.level == "passed"
    assert "judged only under load" in finding.evidence


def test_pcie_width_below_max_warns_even_idle():
    samples = healthy()
    put(samples, metrics.PCIE_LINK_WIDTH, ("0", "GPU-0"), 8.0)
    put(samples, metrics.UTILIZATION, ("0", "GPU-0"), 0.0)
    finding = find(gpu_findings(samples, NOW), "gpu.pcie_link")
    assert (finding.level, finding.evidence) == (
        "warning",
        "link width below max: Gen5 x8 of Gen5 x16",
    )


def test_nvlink_down_and_absent():
    samples = healthy()
    put(samples, metrics.NVLINK_UP, ("0", "GPU-0", "2"), 0.0)
    finding = find(gpu_findings(samples, NOW), "gpu.nvlink")
    assert finding.level == "failed"
    assert finding.evidence == "NVLink link 2 down (3 of 4 up)"
    del samples[metrics.NVLINK_UP.name]
    assert find(gpu_findings(samples, NOW), "gpu.nvlink").level == "skipped"


def test_two_models_on_one_node():
    samples = healthy("0", "1")
    samples[metrics.INFO.name] = [(_info("0"), 1.0), (_info("1", "NVIDIA A100-SXM4-80GB"), 1.0)]
    finding = find(gpu_findings(samples, NOW), "node.mixed_models", None)
    assert finding.level == "warning"
    assert finding.evidence == (
        "2 GPU models on one node: 1x NVIDIA A100-SXM4-80GB, 1x NVIDIA H100 80GB HBM3"
    )


def test_persistence_mode_off_and_unknown():
    samples = healthy()
    samples[metrics.INFO.name] = [(_info("0", persistence="disabled"), 1.0)]
    assert find(gpu_findings(samples, NOW), "gpu.persistence_mode").level == "warning"
    samples[metrics.INFO.name] = [(_info("0", persistence=""), 1.0)]
    assert find(gpu_findings(samples, NOW), "gpu.persistence_mode").level == "skipped"


def test_recovery_action():
    samples = healthy()
    put(samples, metrics.RECOVERY_ACTION, ("0", "GPU-0"), 2.0)
    finding = find(gpu_findings(samples, NOW), "gpu.recovery_action")
    assert finding.level == "failed"
    assert "node reboot required" in finding.evidence
    put(samples, metrics.RECOVERY_ACTION, ("0", "GPU-0"), 0.0)
    assert find(gpu_findings(samples, NOW), "gpu.recovery_action").level == "passed"


def test_gpu_verdict_is_the_worst_level_of_that_gpu_only():
    findings = [
        Finding("a", "passed", "0", "", ""),
        Finding("b", "warning", "0", "", "x"),
        Finding("c", "failed", "1", "", "x"),
        Finding("d", "failed", None, "", "x"),
    ]
    assert gpu_verdict(findings, "0") == "warning"
    assert gpu_verdict(findings, "1") == "failed"
    assert gpu_verdict(findings, "7") == "passed"
    assert gpu_verdict([Finding("a", "skipped", "0", "", "")], "0") == "skipped"
    assert worst(["skipped", "passed"]) == "passed"
    assert set(LEVELS) == {"passed", "warning", "failed", "skipped"}


def test_empty_map_has_no_findings():
    assert gpu_findings({}, NOW) == []


def test_formatting_helpers():
    assert short_bus_id("00000000:07:00.0") == "0000:07:00.0"
    assert short_bus_id("00000001:B7:00.0") == "0001:b7:00.0"
    assert short_bus_id("12345678:00:01.0") == "12345678:00:01.0"
    assert [age_text(s) for s in (5, 720, 3 * 3600, 3 * 86400)] == ["5 s", "12 min", "3 h", "3 d"]
