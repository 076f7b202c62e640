"""Issue-level failure behaviour of the running exporter, through HTTP, on the fake driver.

Each test runs `python -m exporter --simulate` in a subprocess and injects faults through the
fake driver's faults file, the way an operator would see them: on /metrics and /readyz.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from exporter.fakenvml.control import FaultFile
from tests.tools import ExporterProcess, http_get


def _value(text: str, pattern: str) -> float | None:
    match = re.search(pattern + r" (\S+)\n", text)
    return float(match.group(1)) if match else None


def _wait_for(process: ExporterProcess, predicate: object, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = process.metrics()
        if predicate(text):  # type: ignore[operator]
            return text
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s; last exposition:\n{text[-3000:]}")


def test_hung_nvml_call_never_stalls_metrics_and_is_reported(tmp_path: Path) -> None:
    faults = FaultFile(tmp_path / "faults")
    process = ExporterProcess("--simulate=t4", "--collection.interval=0.2s", env=faults.env())
    try:
        process.wait_ready()
        faults.add_fault("nvmlDeviceGetPowerUsage", 0, 0, delay_ms=60_000)  # hangs for a minute
        # Stalled on /metrics: the poll thread is inside the hung call (a fixed sleep could
        # measure the scrapes below before the hang began).
        _wait_for(process, lambda t: 'nvidia_gpu_exporter_source_stalled{source="nvml"} 1' in t)
        latencies = []
        for _ in range(100):
            started = time.perf_counter()
            status, _ = http_get(process.port, "/metrics")
            latencies.append(time.perf_counter() - started)
            assert status == 200
        latencies.sort()
        assert latencies[98] < 0.1, f"p99 {latencies[98] * 1000:.1f} ms while NVML hangs"
        text = process.metrics()
        assert 'nvidia_gpu_exporter_source_stalled{source="nvml"} 1' in text  # still hung
        assert 'nvidia_gpu_exporter_source_up{source="nvml"} 0' in text
        # SIGTERM still ends the process promptly although an NVML call never returns.
        code, seconds = process.stop()
        assert code == 0
        assert seconds < 2.0
        assert "nvml_call_in_flight_at_exit" in process.log()
    finally:
        if process.process.poll() is None:
            process.stop()


def test_lost_gpu_goes_down_alone_and_recovers(tmp_path: Path) -> None:
    faults = FaultFile(tmp_path / "faults")
    process = ExporterProcess("--simulate", "--collection.interval=0.2s", env=faults.env())
    try:
        process.wait_ready()
        faults.lost(5)
        text = _wait_for(
            process,
            lambda t: (
                'nvidia_gpu_up{gpu="5"' in t
                and re.search(r'nvidia_gpu_up\{gpu="5",[^}]*\} 0\n', t) is not None
            ),
        )
        ups = re.findall(r'nvidia_gpu_up\{gpu="(\d+)",[^}]*\} (\d)', text)
        assert dict(ups) == {**{str(i): "1" for i in range(8)}, "5": "0"}
        assert re.search(r'nvidia_gpu_info\{gpu="5",', text)
        assert not re.search(r'nvidia_gpu_power_usage_watts\{gpu="5",', text)
        assert 'nvidia_gpu_exporter_source_up{source="nvml"} 1' in text
        faults.found(5)
        _wait_for(process, lambda t: re.search(r'nvidia_gpu_up\{gpu="5",[^}]*\} 1\n', t))
        assert "gpu_lost" in process.log() and "gpu_recovered" in process.log()
    finally:
        process.stop()


def test_nvml_failing_everywhere_then_recovering(tmp_path: Path) -> None:
    faults = FaultFile(tmp_path / "faults")
    process = ExporterProcess("--simulate=t4", "--collection.interval=0.2s", env=faults.env())
    try:
        process.wait_ready()
        faults.add_fault("nvmlDeviceGetCount", None, "UNKNOWN")
        faults.add_fault("nvmlInitWithFlags", None, "DRIVER_NOT_LOADED")
        text = _wait_for(process, lambda t: 'nvidia_gpu_exporter_source_up{source="nvml"} 0' in t)
        assert "nvidia_gpu_up{" not in text  # no stale values served as if fresh
        status, reason = http_get(process.port, "/readyz")
        assert status == 503 and b"nvml is down" in reason
        faults.clear()
        _wait_for(process, lambda t: 'nvidia_gpu_exporter_source_up{source="nvml"} 1' in t, 30)
        assert http_get(process.port, "/readyz")[0] == 200
    finally:
        process.stop()


def test_start_to_ready_is_fast() -> None:
    process = ExporterProcess("--simulate")
    try:
        seconds = process.wait_ready()
    finally:
        process.stop()
    # Budget: 2 s on a developer machine; generous here so a loaded CI box does not flake.
    assert seconds < 10.0


def test_sigterm_within_two_seconds_while_nvml_and_kubelet_hang(tmp_path: Path) -> None:
    import threading

    from tests.fakekubelet import Behaviour, FakeKubelet

    socket_path = tmp_path / "kubelet.sock"
    kubelet = FakeKubelet(socket_path, Behaviour(hang=threading.Event())).start()
    faults = FaultFile(tmp_path / "faults")
    process = ExporterProcess(
        "--simulate=t4",
        "--collection.interval=0.2s",
        f"--path.pod-resources-socket={socket_path}",
        "--collector.pod-attribution=on",
        env=faults.env(),
    )
    try:
        process.wait_ready()
        faults.add_fault("nvmlDeviceGetPowerUsage", 0, 0, delay_ms=60_000)
        # Wait for evidence, not a fixed time: the kubelet was called (each List hangs until
        # its 2 s deadline, then the next one hangs too) and NVML is stalled inside the call.
        deadline = time.monotonic() + 20
        while not kubelet.behaviour.calls.get("List") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert kubelet.behaviour.calls.get("List"), "the exporter never called the kubelet"
        _wait_for(process, lambda t: 'nvidia_gpu_exporter_source_stalled{source="nvml"} 1' in t)
        code, seconds = process.stop()
        assert code == 0, process.log()
        assert seconds < 2.0, f"stopped after {seconds:.2f}s"
        assert "nvml_call_in_flight_at_exit" in process.log()
    finally:
        if process.process.poll() is None:
            process.stop()
        kubelet.stop()
