"""The benchmark hooks of the fake driver: call counter, per-call latency, synthetic processes.

Why these matter: the side-by-side benchmark divides the counter by collections to compare
NVML calls per collection, and the latency option is what keeps a design that makes many
calls from looking as cheap as one that makes few. Timing here only checks "at least the
configured latency", never a performance figure.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from exporter.fakenvml.control import FakeNvmlControl, read_call_counter
from tests.fakenvml.conftest import InitFn

pynvml = pytest.importorskip("pynvml")


def test_every_entry_point_counts_modelled_stub_and_error_string(
    nvml: InitFn, ctl: FakeNvmlControl
) -> None:
    nvml("t4")
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    ctl.reset_call_count()
    pynvml.nvmlDeviceGetPowerUsage(handle)  # modelled
    assert ctl.call_count() == 1
    pynvml.nvmlSystemGetDriverVersion()  # system call (index entry)
    assert ctl.call_count() == 2
    with pytest.raises(pynvml.NVMLError):
        pynvml.nvmlDeviceGetBoardId(handle)  # generated NOT_SUPPORTED stub
    assert ctl.call_count() >= 3
    before = ctl.call_count()
    ctl.lib.nvmlErrorString(3)
    assert ctl.call_count() == before + 1


def test_init_and_shutdown_count(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("t4")
    ctl.reset_call_count()
    pynvml.nvmlInit()
    pynvml.nvmlShutdown()
    assert ctl.call_count() == 2


def test_counter_file_is_shared_and_readable(
    nvml: InitFn, ctl: FakeNvmlControl, tmp_path: Path
) -> None:
    path = tmp_path / "calls"
    assert read_call_counter(path) == 0
    nvml("t4", FAKE_NVML_CALL_COUNTER=str(path))
    start = read_call_counter(path)
    assert start >= 1  # the init itself
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)
    assert read_call_counter(path) == start + 2


def test_counter_file_from_another_process(lib_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "calls"
    code = textwrap.dedent(
        """
        import pynvml
        pynvml.nvmlInit()
        for i in range(pynvml.nvmlDeviceGetCount()):
            pynvml.nvmlDeviceGetHandleByIndex(i)
        """
    )
    env = {
        "LD_LIBRARY_PATH": str(lib_dir),
        "FAKE_NVML_SCENARIO": "a100-mig",
        "FAKE_NVML_CALL_COUNTER": str(path),
        "PATH": "/usr/bin:/bin",
    }
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    assert read_call_counter(path) == 1 + 1 + 8  # init, count, 8 handles


def test_latency_env_and_control(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("t4", FAKE_NVML_CALL_LATENCY_US="20000")
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    started = time.perf_counter()
    pynvml.nvmlDeviceGetPowerUsage(handle)
    assert time.perf_counter() - started >= 0.02
    ctl.set_call_latency(0)
    try:
        started = time.perf_counter()
        pynvml.nvmlDeviceGetPowerUsage(handle)
        assert time.perf_counter() - started < 0.02
    finally:
        ctl.set_call_latency(None)


def test_latency_sleep_mode_does_not_burn_cpu(nvml: InitFn) -> None:
    nvml("t4", FAKE_NVML_CALL_LATENCY_US="50000", FAKE_NVML_CALL_LATENCY_MODE="sleep")
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    cpu, wall = time.thread_time(), time.perf_counter()
    pynvml.nvmlDeviceGetPowerUsage(handle)
    assert time.perf_counter() - wall >= 0.05
    assert time.thread_time() - cpu < 0.04


def test_latency_defaults_to_zero_after_reinit(nvml: InitFn) -> None:
    nvml("t4")
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    started = time.perf_counter()
    for _ in range(100):
        pynvml.nvmlDeviceGetPowerUsage(handle)
    assert time.perf_counter() - started < 0.5  # no 20 ms per call left over from before


@pytest.mark.parametrize("count", [0, 5, 1000])
def test_synthetic_processes_replace_the_scenarios(nvml: InitFn, count: int) -> None:
    nvml("h100-nvlink", FAKE_NVML_PROCESSES=str(count))
    per_gpu = [
        pynvml.nvmlDeviceGetComputeRunningProcesses(pynvml.nvmlDeviceGetHandleByIndex(i))
        for i in range(pynvml.nvmlDeviceGetCount())
    ]
    pids = sorted(p.pid for procs in per_gpu for p in procs)
    assert pids == [200000 + k for k in range(count)]
    if count:
        assert pynvml.nvmlSystemGetProcessName(200000 + count - 1) == f"bench-proc-{count - 1}"


def test_synthetic_processes_on_mig_belong_to_instances(nvml: InitFn) -> None:
    nvml("a100-mig", FAKE_NVML_PROCESSES="80")
    parent = pynvml.nvmlDeviceGetHandleByIndex(6)
    procs = pynvml.nvmlDeviceGetComputeRunningProcesses(parent)
    assert len(procs) == 10
    assert all(p.gpuInstanceId != 0xFFFFFFFF for p in procs)
    mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, 0)
    on_mig = pynvml.nvmlDeviceGetComputeRunningProcesses(mig)
    assert 0 < len(on_mig) < len(procs)


def test_scenario_processes_come_back_without_the_variable(nvml: InitFn) -> None:
    nvml("t4")
    procs = pynvml.nvmlDeviceGetComputeRunningProcesses(pynvml.nvmlDeviceGetHandleByIndex(0))
    assert [p.pid for p in procs] and all(p.pid < 200000 for p in procs)
