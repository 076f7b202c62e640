"""What NvmlSource logs, and at which level: a quiet log at info is one people keep reading."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from exporter.fakenvml.control import FakeNvmlControl
from exporter.sources.nvml import NvmlSource

Logs = list[dict[str, object]]


def _events(logs: Logs, event: str) -> Logs:
    return [entry for entry in logs if entry["event"] == event]


def test_enumeration_logs_at_info_only_when_the_set_changed(
    open_source: Callable[..., NvmlSource], control: FakeNvmlControl
) -> None:
    with structlog.testing.capture_logs() as logs:
        source = open_source("a100-mig")
        source.collect()  # first enumeration: the set is new
        for _ in range(3):  # the periodic re-enumeration finds the same GPUs
            source.request_enumeration()
            source.collect()
        control.set_key(3, "uuid", "GPU-00000000-0000-0000-0000-000000000003")  # a GPU swapped
        source.request_enumeration()
        source.collect()
    enumerated = _events(logs, "gpus_enumerated")
    assert [(e["log_level"], e["changed"]) for e in enumerated] == [
        ("info", True),
        ("debug", False),
        ("debug", False),
        ("debug", False),
        ("info", True),
    ]
    assert enumerated[0]["gpus"] == 8
    assert enumerated[0]["mig_devices"] == 10


def test_a_gpu_without_a_fan_is_not_news(open_source: Callable[..., NvmlSource]) -> None:
    """Passively cooled GPUs (every built-in scenario) say NOT_SUPPORTED for the fan at debug;
    another NOT_SUPPORTED, a limitation worth knowing, stays at info."""
    with structlog.testing.capture_logs() as logs:
        source = open_source("t4")
        source.collect()
    by_call = {e["call"]: e["log_level"] for e in _events(logs, "nvml_not_supported")}
    assert by_call["nvmlDeviceGetFanSpeed"] == "debug"
    assert by_call["nvmlDeviceGetMigMode"] == "debug"  # a T4 has no MIG
    assert by_call["nvmlDeviceGetTemperatureThreshold:memory_max"] == "info"
    info = [e for e in logs if e["log_level"] == "info" and "Fan" in str(e.get("call", ""))]
    assert info == []
