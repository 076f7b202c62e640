"""Any NVML program runs against the fake: every function nvml.h declares is exported.

The header is read here independently of the build's generator (the raw text with comments
stripped, not the preprocessor's output), so a generator that missed declarations fails.
"""

from __future__ import annotations

import ctypes
import re
import subprocess
from pathlib import Path

import pytest

from exporter.fakenvml.build import (
    STUBS_NAME,
    declared_functions,
    find_compiler,
    find_nvml_include_dir,
    preprocess_header,
    stub_source,
)
from exporter.fakenvml.control import FakeNvmlControl, NvmlReturn

from .conftest import InitFn

pynvml = pytest.importorskip("pynvml")

_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.DOTALL)
# Every public function in nvml.h is written `... DECLDIR [type] nvmlName(`.
_DECLDIR_FUNCTION = re.compile(r"\bDECLDIR\b[^;(]*?\b(nvml\w+)\s*\(")


def header_functions() -> set[str]:
    text = _COMMENT.sub(" ", (find_nvml_include_dir() / "nvml.h").read_text())
    return set(_DECLDIR_FUNCTION.findall(text))


def exported(lib: Path, kinds: str) -> set[str]:
    out = subprocess.run(
        ["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True, check=True
    ).stdout
    return {
        parts[-1]
        for parts in (line.split() for line in out.splitlines())
        if len(parts) == 3 and parts[1] in kinds
    }


def test_the_header_declares_hundreds_of_functions() -> None:
    names = header_functions()
    assert len(names) > 400  # the parse found the header's functions, not a handful
    assert {"nvmlInit_v2", "nvmlErrorString", "nvmlDeviceGetDisplayActive"} <= names


def test_every_declared_function_is_exported(lib_dir: Path) -> None:
    lib = ctypes.CDLL(str(lib_dir / "libnvidia-ml.so.1"))
    missing = sorted(name for name in header_functions() if not hasattr(lib, name))
    assert missing == []


def test_unmodelled_functions_answer_not_supported(lib_dir: Path) -> None:
    """The stubs are the weak symbols; each returns NOT_SUPPORTED whatever it is given."""
    path = lib_dir / "libnvidia-ml.so.1"
    stubs = exported(path, "W")
    assert len(stubs) > 200
    assert "nvmlDeviceGetMinMaxFanSpeed" in stubs
    lib = ctypes.CDLL(str(path))
    for name in sorted(stubs):
        function = getattr(lib, name)
        function.restype = ctypes.c_int
        assert function() == NvmlReturn.NOT_SUPPORTED, name  # stubs never read their arguments


def test_modelled_functions_override_their_stubs(lib_dir: Path) -> None:
    path = lib_dir / "libnvidia-ml.so.1"
    modelled = {name for name in exported(path, "T") if name.startswith("nvml")}
    assert {"nvmlDeviceGetCount_v2", "nvmlDeviceGetDisplayActive"} <= modelled
    assert not modelled & exported(path, "W")


def test_stubs_are_generated_deterministically(lib_dir: Path) -> None:
    compiler, include = find_compiler(), find_nvml_include_dir()
    functions = declared_functions(preprocess_header(compiler, include))
    first = stub_source(functions)
    assert stub_source(dict(reversed(list(functions.items())))) == first  # order-independent
    assert (lib_dir / STUBS_NAME).read_text() == first  # what the build compiled
    names = re.findall(r"nvmlReturn_t (nvml\w+)\(", first)
    assert names == sorted(names)
    # every nvmlReturn_t function has a stub; nvmlErrorString (const char *) is modelled
    assert set(names) == header_functions() - {"nvmlErrorString"}


def test_nvitop_picks_the_process_struct_the_fake_writes(lib_dir: Path) -> None:
    """nvitop reads 32-byte process entries when nvmlDeviceGetConfComputeMemSizeInfo exists and
    nvmlDeviceGetRunningProcessDetailList does not (a 535-era driver); the fake writes NVML's
    24-byte nvmlProcessInfo_v2_t, so the two must be exported together, as a current driver
    does."""
    names = exported(lib_dir / "libnvidia-ml.so.1", "TW")
    assert "nvmlDeviceGetComputeRunningProcesses_v3" in names
    assert ("nvmlDeviceGetConfComputeMemSizeInfo" in names) <= (
        "nvmlDeviceGetRunningProcessDetailList" in names
    )


# --- the two functions nvitop needed, modelled -------------------------------------------------


def test_no_display_is_active(nvml: InitFn) -> None:
    nvml("a100-mig")
    for index in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        assert pynvml.nvmlDeviceGetDisplayActive(handle) == pynvml.NVML_FEATURE_DISABLED
        assert pynvml.nvmlDeviceGetDisplayMode(handle) == pynvml.NVML_FEATURE_DISABLED


def test_driver_model_is_windows_only(nvml: InitFn) -> None:
    nvml("t4")
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetDriverModel(handle)


def test_new_functions_honour_faults_and_lost_gpus(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("t4")
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    ctl.set_gpu_lost(0)
    try:
        with pytest.raises(pynvml.NVMLError_GpuIsLost):
            pynvml.nvmlDeviceGetDisplayActive(handle)
        with pytest.raises(pynvml.NVMLError_GpuIsLost):
            pynvml.nvmlDeviceGetDriverModel(handle)
    finally:
        ctl.set_gpu_lost(0, False)
