"""Build, cache, CLI and exported-symbol checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.fakenvml import BUILTIN_SCENARIOS, DEFAULT_SCENARIO, build_fake_driver
from exporter.fakenvml.build import SCENARIO_SOURCE_DIR, build_id

REPO = Path(__file__).resolve().parents[2]

# nvml-api.md section 6.1 plus the extra symbols the brief names.
REQUIRED_SYMBOLS = [
    "nvmlInitWithFlags",
    "nvmlInit_v2",
    "nvmlInit",
    "nvmlShutdown",
    "nvmlErrorString",
    "nvmlSystemGetDriverVersion",
    "nvmlSystemGetNVMLVersion",
    "nvmlSystemGetCudaDriverVersion",
    "nvmlSystemGetCudaDriverVersion_v2",
    "nvmlSystemGetProcessName",
    "nvmlDeviceGetCount_v2",
    "nvmlDeviceGetCount",
    "nvmlDeviceGetHandleByIndex_v2",
    "nvmlDeviceGetHandleByIndex",
    "nvmlDeviceGetHandleByUUID",
    "nvmlDeviceGetHandleByPciBusId_v2",
    "nvmlDeviceGetName",
    "nvmlDeviceGetUUID",
    "nvmlDeviceGetSerial",
    "nvmlDeviceGetIndex",
    "nvmlDeviceGetMinorNumber",
    "nvmlDeviceGetPciInfo_v3",
    "nvmlDeviceGetBrand",
    "nvmlDeviceGetArchitecture",
    "nvmlDeviceGetCudaComputeCapability",
    "nvmlDeviceGetVbiosVersion",
    "nvmlDeviceGetPersistenceMode",
    "nvmlDeviceGetComputeMode",
    "nvmlDeviceGetUtilizationRates",
    "nvmlDeviceGetEncoderUtilization",
    "nvmlDeviceGetDecoderUtilization",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetMemoryInfo_v2",
    "nvmlDeviceGetBAR1MemoryInfo",
    "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetEnforcedPowerLimit",
    "nvmlDeviceGetPowerManagementLimit",
    "nvmlDeviceGetPowerManagementDefaultLimit",
    "nvmlDeviceGetPowerManagementLimitConstraints",
    "nvmlDeviceGetTotalEnergyConsumption",
    "nvmlDeviceGetTemperature",
    "nvmlDeviceGetTemperatureV",
    "nvmlDeviceGetDisplayActive",  # nvitop
    "nvmlDeviceGetDriverModel",  # nvitop (NOT_SUPPORTED: Windows only)
    "nvmlDeviceGetDriverModel_v2",
    "nvmlDeviceGetTemperatureThreshold",
    "nvmlDeviceGetClockInfo",
    "nvmlDeviceGetMaxClockInfo",
    "nvmlDeviceGetClock",
    "nvmlDeviceGetCurrentClocksEventReasons",
    "nvmlDeviceGetSupportedClocksEventReasons",
    "nvmlDeviceGetCurrentClocksThrottleReasons",
    "nvmlDeviceGetSupportedClocksThrottleReasons",
    "nvmlDeviceGetPerformanceState",
    "nvmlDeviceGetFanSpeed",
    "nvmlDeviceGetViolationStatus",
    "nvmlDeviceGetEccMode",
    "nvmlDeviceGetTotalEccErrors",
    "nvmlDeviceGetMemoryErrorCounter",
    "nvmlDeviceGetRetiredPages",
    "nvmlDeviceGetRetiredPages_v2",
    "nvmlDeviceGetRetiredPagesPendingStatus",
    "nvmlDeviceGetRemappedRows",
    "nvmlDeviceGetRowRemapperHistogram",
    "nvmlDeviceGetPcieThroughput",
    "nvmlDeviceGetPcieReplayCounter",
    "nvmlDeviceGetCurrPcieLinkGeneration",
    "nvmlDeviceGetCurrPcieLinkWidth",
    "nvmlDeviceGetMaxPcieLinkGeneration",
    "nvmlDeviceGetMaxPcieLinkWidth",
    "nvmlDeviceGetNvLinkState",
    "nvmlDeviceGetNvLinkVersion",
    "nvmlDeviceGetNvLinkErrorCounter",
    "nvmlDeviceGetNvLinkRemotePciInfo_v2",
    "nvmlDeviceGetFieldValues",
    "nvmlDeviceGetComputeRunningProcesses_v3",
    "nvmlDeviceGetGraphicsRunningProcesses_v3",
    "nvmlDeviceGetComputeRunningProcesses_v2",
    "nvmlDeviceGetGraphicsRunningProcesses_v2",
    "nvmlDeviceGetProcessUtilization",
    "nvmlDeviceGetMigMode",
    "nvmlDeviceGetMaxMigDeviceCount",
    "nvmlDeviceGetMigDeviceHandleByIndex",
    "nvmlDeviceIsMigDeviceHandle",
    "nvmlDeviceGetGpuInstanceId",
    "nvmlDeviceGetComputeInstanceId",
    "nvmlDeviceGetDeviceHandleFromMigDeviceHandle",
    "nvmlDeviceGetAttributes_v2",
    "nvmlDeviceGetGpuInstanceById",
    "nvmlGpuInstanceGetInfo",
    "nvmlDeviceGetGpuInstanceProfileInfoV",
    "nvmlDeviceGetGpuInstanceProfileInfo",
    "nvmlEventSetCreate",
    "nvmlDeviceRegisterEvents",
    "nvmlDeviceGetSupportedEventTypes",
    "nvmlEventSetWait_v2",
    "nvmlEventSetWait",
    "nvmlEventSetFree",
    "fakeNvmlSetFault",
    "fakeNvmlClearFaults",
    "fakeNvmlSetGpuLost",
    "fakeNvmlInjectXid",
    "fakeNvmlSetTime",
    "fakeNvmlSetValue",
]


def _exported(lib: Path) -> set[str]:
    out = subprocess.run(
        ["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True, check=True
    ).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def test_build_layout_and_cache(lib_dir: Path) -> None:
    assert lib_dir.name == f"fakenvml-{build_id()}"
    lib = lib_dir / "libnvidia-ml.so.1"
    assert lib.is_file()
    names = sorted(p.stem for p in (lib_dir / "scenarios").glob("*.scn"))
    assert names == sorted(BUILTIN_SCENARIOS)
    mtime = lib.stat().st_mtime_ns
    assert build_fake_driver() == lib_dir
    assert lib.stat().st_mtime_ns == mtime  # reused, not rebuilt


def test_builtin_scenarios_match_files() -> None:
    assert sorted(p.stem for p in SCENARIO_SOURCE_DIR.glob("*.scn")) == sorted(BUILTIN_SCENARIOS)
    assert DEFAULT_SCENARIO == "a100-mig"
    assert DEFAULT_SCENARIO in BUILTIN_SCENARIOS


def test_soname_and_symbols(lib_dir: Path) -> None:
    lib = lib_dir / "libnvidia-ml.so.1"
    dyn = subprocess.run(
        ["readelf", "-d", str(lib)], capture_output=True, text=True, check=True
    ).stdout
    assert "Library soname: [libnvidia-ml.so.1]" in dyn
    exported = _exported(lib)
    missing = sorted(set(REQUIRED_SYMBOLS) - exported)
    assert not missing
    # internal helpers stay hidden
    assert not {s for s in exported if s.startswith("fk_")}


def test_cli(lib_dir: Path) -> None:
    env = dict(os.environ)
    run = [sys.executable, "-m", "exporter.fakenvml"]
    out = subprocess.run(
        [*run, "path"], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0
    assert out.stdout.strip() == str(lib_dir)
    out = subprocess.run(
        [*run, "build"], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0
    assert out.stdout.strip() == str(lib_dir)
    out = subprocess.run(
        [*run, "scenarios"], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    assert out.stdout.split() == list(BUILTIN_SCENARIOS)


def test_concurrent_builds_into_fresh_cache(tmp_path: Path) -> None:
    env = dict(os.environ, GPU_NODE_EXPORTER_CACHE=str(tmp_path))
    code = "from exporter.fakenvml import build_fake_driver; print(build_fake_driver())"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outs = {p.communicate()[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(outs) == 1
    built = Path(outs.pop())
    assert built.parent == tmp_path
    assert (built / "libnvidia-ml.so.1").is_file()
    assert not [p for p in built.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_missing_compiler_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU_NODE_EXPORTER_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "/nonexistent/cc-missing")
    with pytest.raises(RuntimeError, match="C compiler"):
        build_fake_driver(force=True)


def test_missing_header_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU_NODE_EXPORTER_CACHE", str(tmp_path))
    monkeypatch.setenv("NVML_INCLUDE_DIR", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"nvml\.h"):
        build_fake_driver(force=True)
