"""The README's first command, end to end: the exporter on the simulated node, over HTTP."""

from __future__ import annotations

import ctypes.util
import subprocess
import time
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter import metrics
from tests.tools import ExporterProcess, http_get, require_tool

# Families the default scenario must show (every NVML family of the issue).
NVML_GROUPS = {
    "identity",
    "utilization",
    "memory",
    "power",
    "thermal",
    "clocks",
    "ecc",
    "pcie",
    "nvlink",
    "processes",
    "mig",
}
EXPECTED = {
    family.name
    for family in metrics.CATALOG
    if family.group in NVML_GROUPS
    and family.name != "nvidia_gpu_process_memory_used_bytes"  # opt-in (--collector.processes)
    and family
    not in (
        metrics.RETIRED_PAGES,  # pre-Ampere only (the t4 scenario has them)
        metrics.RETIRED_PAGES_PENDING,
        metrics.FAN_SPEED,  # SXM boards have no fan
        metrics.PCIE_THROUGHPUT,  # only where the PCIe byte counters are unsupported
    )
}


@pytest.fixture(scope="module")
def exporter() -> Iterator[ExporterProcess]:
    process = ExporterProcess("--simulate", "--collection.interval=1s")
    process.wait_ready()
    yield process
    if process.process.poll() is None:
        process.stop()


def test_every_family_is_served(exporter: ExporterProcess) -> None:
    text = exporter.metrics()
    served = {sample.name for family in parse_text(text) for sample in family.samples}
    missing = {name for name in EXPECTED if name not in served}
    assert not missing, f"missing families: {sorted(missing)}"
    assert 'profile="1g.10gb"' in text and 'profile="3g.40gb"' in text
    assert 'nvidia_gpu_exporter_source_up{source="nvml"} 1' in text


def test_promtool_accepts_the_exposition(exporter: ExporterProcess) -> None:
    promtool = require_tool("promtool")
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=exporter.metrics(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


def test_openmetrics_and_gzip(exporter: ExporterProcess) -> None:
    status, body = http_get(
        exporter.port, "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert status == 200 and body.endswith(b"# EOF\n")


def test_sigterm_stops_within_two_seconds() -> None:
    process = ExporterProcess("--simulate=t4")
    process.wait_ready()
    code, seconds = process.stop()
    assert code == 0, process.log()
    assert seconds < 2.0
    assert "nvml_initialised" in process.log()
    assert '"exporter_stopped"' in process.log()


def test_without_a_driver_it_serves_its_own_health() -> None:
    if ctypes.util.find_library("nvidia-ml"):
        pytest.skip("a real NVIDIA driver is installed here: this test needs a machine without one")
    process = ExporterProcess(env={"LD_LIBRARY_PATH": "/nonexistent"})
    try:
        process.wait_http()
        # HTTP answers before the first (failed) NVML collection is rendered: until then
        # /readyz says so instead of "nvml is down". Wait for that collection, not for HTTP.
        deadline = time.monotonic() + 30
        ready_status, reason = http_get(process.port, "/readyz")
        while b"first collection" in reason and time.monotonic() < deadline:
            time.sleep(0.02)
            ready_status, reason = http_get(process.port, "/readyz")
        assert ready_status == 503 and b"nvml is down" in reason, reason
        status, body = http_get(process.port, "/metrics")
        assert status == 200
        assert b'nvidia_gpu_exporter_source_up{source="nvml"} 0' in body
        assert http_get(process.port, "/healthz")[0] == 200
        assert process.process.poll() is None  # still running, no crash loop
    finally:
        code, _ = process.stop()
    assert code == 0


def test_kmsg_collector_off_opens_no_kernel_log_and_keeps_nvml_events() -> None:
    # A kernel-log path that cannot be opened: with the collector off it is never tried, so
    # there is no kmsg source to report down (the DaemonSet's default, docs/install.md).
    process = ExporterProcess(
        "--simulate",
        "--collection.interval=1s",
        "--collector.kmsg=false",
        "--path.kmsg=/nonexistent",
    )
    try:
        process.wait_ready()
        deadline = time.monotonic() + 30
        body = process.metrics()
        while 'nvidia_gpu_exporter_source_up{source="nvml_events"} 1' not in body:
            assert time.monotonic() < deadline, body
            time.sleep(0.05)
            body = process.metrics()
        assert 'source="kmsg"' not in body
        assert "/nonexistent" not in process.log()
    finally:
        code, _ = process.stop()
    assert code == 0
