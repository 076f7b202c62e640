"""Faults in the NVML source's system calls: nvmlInit and friends at open, nvmlShutdown at close.

Kept apart from the per-GPU matrix because nothing may hold NVML open here: the fake, like the
driver, reference-counts nvmlInit, and only the first init of a process can fail. The open cells
run through the real Poller and Publisher, so they also check what /readyz reads: the source's
health, down with the NVML code while open fails, up again once the fault clears.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pynvml
import pytest

from exporter.fakenvml.control import FakeNvmlControl, NvmlReturn
from exporter.poller import Poller
from exporter.publisher import Publisher
from exporter.sources.nvml import NvmlSource
from tests.faults.conftest import SCENARIO
from tests.faults.nvml_calls import exporter_calls
from tests.faults.test_nvml_matrix import SYSTEM_CODES, Snapshot, _assert_never_wrong

R = NvmlReturn
INIT_CODES = (
    R.DRIVER_NOT_LOADED,
    R.LIB_RM_VERSION_MISMATCH,
    R.NO_PERMISSION,
    R.UNKNOWN,
    R.IRQ_ISSUE,
    R.OPERATING_SYSTEM,
    R.TIMEOUT,
)
SOURCE_SYSTEM = [c for c in exporter_calls() if c.owner == "NvmlSource" and c.system]
OPEN_CALLS = sorted(c.symbol for c in SOURCE_SYSTEM if c.methods <= {"open"})
# nvmlShutdown also runs in open, to release the init reference when open fails after init.
CLOSE_CALLS = sorted(c.symbol for c in SOURCE_SYSTEM if "close" in c.methods)
# Optional at open: the exporter goes on without it (the info label is left empty until the
# source is opened again: the CUDA version is read once per open).
OPTIONAL = frozenset({"nvmlSystemGetCudaDriverVersion_v2"})
INIT = "nvmlInitWithFlags"
# GPM sample buffers: allocated once per GPU (or GPU instance) and reused, freed at close or
# when the instance disappears; their faults are checked in tests/sources/test_nvml_activity.py
# (test_gpm_buffer_allocation_fault and test_gpm_buffer_free_fault_at_close).
GPM_BUFFER_CALLS = frozenset({"nvmlGpmSampleAlloc", "nvmlGpmSampleFree"})


def _open_cells() -> list[tuple[str, int]]:
    return [(s, int(c)) for s in OPEN_CALLS for c in INIT_CODES]


def _name(code: int) -> str:
    return R(code).name


def test_every_system_call_has_a_phase() -> None:
    collect = {c.symbol for c in SOURCE_SYSTEM if c.methods & {"collect"}}
    phases = set(OPEN_CALLS) | set(CLOSE_CALLS) | collect | GPM_BUFFER_CALLS
    assert phases == {c.symbol for c in SOURCE_SYSTEM}
    assert "nvmlInitWithFlags" in OPEN_CALLS and "nvmlShutdown" in CLOSE_CALLS


def _baseline(library: Path) -> Snapshot:
    source = NvmlSource(library_path=str(library))
    source.open()
    try:
        return Snapshot.of(source.collect(), source)
    finally:
        source.close()


@pytest.mark.parametrize(
    ("symbol", "code"), _open_cells(), ids=[f"{s}-{_name(c)}" for s, c in _open_cells()]
)
def test_open_fault_is_unavailable_then_recovers(
    node: None,
    control: FakeNvmlControl,
    fake_library: Path,
    monkeypatch: pytest.MonkeyPatch,
    symbol: str,
    code: int,
) -> None:
    baseline = _baseline(fake_library)
    publisher = Publisher(process_metrics=False)
    source = NvmlSource(library_path=str(fake_library))
    stop = threading.Event()
    poller = Poller(source, publisher, 1.0, stop)
    control.set_fault(symbol, -1, code)
    try:
        poller.run_once()
        health = publisher.source_health("nvml")
        assert health is not None
        if symbol in OPTIONAL:
            assert health.up, health.detail
            after = Snapshot.of(source.collect(), source)
            for gpu, series in after.per_gpu.items():
                _assert_never_wrong(baseline.per_gpu[gpu], series, gpu)
        else:
            assert not health.up
            assert _name(code) in health.detail, health.detail
            # A failed open released its init reference: NVML is not left initialised.
            with pytest.raises(pynvml.NVMLError_Uninitialized):
                pynvml.nvmlDeviceGetCount()
        control.clear_faults()
        monkeypatch.setenv("FAKE_NVML_SCENARIO", SCENARIO)
        poller.run_once()  # the poller's backoff decides when; run_once is "now"
        health = publisher.source_health("nvml")
        assert health is not None
        assert health.up, health.detail
        if symbol not in OPTIONAL:
            assert Snapshot.of(source.collect(), source).per_gpu == baseline.per_gpu
    finally:
        stop.set()
        control.clear_faults()
        poller.close_source()


@pytest.mark.parametrize("symbol", CLOSE_CALLS)
@pytest.mark.parametrize("code", [int(c) for c in SYSTEM_CODES], ids=_name)
def test_close_fault_is_logged_never_raised(
    node: None, control: FakeNvmlControl, fake_library: Path, symbol: str, code: int
) -> None:
    source = NvmlSource(library_path=str(fake_library))
    source.open()
    control.set_fault(symbol, -1, code)
    try:
        source.close()  # must not raise
    finally:
        control.clear_faults()
    # The failed shutdown kept its reference: release it for the next cell.
    with contextlib.suppress(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlShutdown()
