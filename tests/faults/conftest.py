"""Fixtures for the fault matrix: one fake driver per test process, one open NVML source.

pynvml never unloads libnvidia-ml.so.1, so the fake is loaded once; the matrix reuses one
NvmlSource for hundreds of cells (re-enumerating between them) because opening NVML per cell
would make the matrix slow without testing anything more.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.fakenvml import library_path
from exporter.fakenvml.control import FakeNvmlControl
from exporter.sources.nvml import NvmlSource
from exporter.sources.nvml import gpm as nvml_gpm

# An 8-GPU Hopper node with two GPUs in MIG mode: every NVML call the exporter makes, GPM and
# the per-GPU-instance GPM included, is made on it (an Ampere node would never reach GPM).
SCENARIO = "h100-mig"
FROZEN_AT = 100.0  # scenario time: every collection of a cell reads the same values
GPUS = 8


@pytest.fixture(scope="session")
def fake_library() -> Path:
    return library_path()


@pytest.fixture(scope="session")
def control(fake_library: Path) -> FakeNvmlControl:
    return FakeNvmlControl(str(fake_library))


def prepare_node(control: FakeNvmlControl) -> None:
    """Give every GPU a fan, so a fault on nvmlDeviceGetFanSpeed has a value to remove."""
    for gpu in range(GPUS):
        control.set_key(gpu, "fan_present", "on")
        control.set_key(gpu, "fan", "40")


@pytest.fixture(scope="module")
def matrix_source(fake_library: Path, control: FakeNvmlControl) -> Iterator[NvmlSource]:
    """An open NvmlSource on the 8-GPU MIG node, frozen in time, shared by a module's cells.

    The process collector is on (so per-process utilization is asked) and GPM intervals are
    measured with the frozen scenario clock: every GPM pair is then zero seconds long, which
    the fake answers with the instantaneous values, so GPM series repeat exactly like the rest
    (the 100 ms minimum NVML needs is lifted for the module, the fake needs none).
    """
    previous = os.environ.get("FAKE_NVML_SCENARIO")
    os.environ["FAKE_NVML_SCENARIO"] = SCENARIO
    control.clear_faults()
    control.set_time(FROZEN_AT)
    minimum = nvml_gpm.MIN_INTERVAL_SECONDS
    nvml_gpm.MIN_INTERVAL_SECONDS = 0.0
    source = NvmlSource(
        library_path=str(fake_library), capture_processes=True, clock=control.get_time
    )
    source.open()
    prepare_node(control)
    source.collect()  # GPM's baseline: from the second collection on, every GPM series is there
    try:
        yield source
    finally:
        nvml_gpm.MIN_INTERVAL_SECONDS = minimum
        control.clear_faults()
        control.set_time(None)
        source.close()
        if previous is None:
            os.environ.pop("FAKE_NVML_SCENARIO", None)
        else:
            os.environ["FAKE_NVML_SCENARIO"] = previous


@pytest.fixture
def node(control: FakeNvmlControl, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The scenario selected but NVML not held open: an nvmlInit fault then really bites
    (the fake, like the driver, reference-counts init and only the first init can fail)."""
    monkeypatch.setenv("FAKE_NVML_SCENARIO", SCENARIO)
    control.clear_faults()
    control.set_time(FROZEN_AT)
    yield
    control.clear_faults()
    control.set_time(None)
