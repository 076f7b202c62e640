"""Fixtures for NVML-source tests: the real pynvml over the fake driver, loaded once.

pynvml never unloads libnvidia-ml.so.1, so the fake is loaded once per test process and each
test switches scenario through FAKE_NVML_SCENARIO between nvmlShutdown and nvmlInit.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.fakenvml import library_path
from exporter.fakenvml.control import FakeNvmlControl
from exporter.sources.nvml import NvmlSource


@pytest.fixture(scope="session")
def fake_library() -> Path:
    return library_path()


@pytest.fixture(scope="session")
def control(fake_library: Path) -> FakeNvmlControl:
    return FakeNvmlControl(str(fake_library))


@pytest.fixture
def open_source(
    fake_library: Path, control: FakeNvmlControl, monkeypatch: pytest.MonkeyPatch
) -> Iterator[object]:
    """Factory: open an NvmlSource on a scenario at a frozen time; closes and clears faults."""
    opened: list[NvmlSource] = []

    def factory(scenario: str, at: float | None = 100.0, **options: object) -> NvmlSource:
        monkeypatch.setitem(os.environ, "FAKE_NVML_SCENARIO", scenario)
        control.clear_faults()
        control.set_time(-1.0 if at is None else at)
        source = NvmlSource(library_path=str(fake_library), **options)  # type: ignore[arg-type]
        source.open()
        opened.append(source)
        return source

    yield factory
    control.clear_faults()
    control.set_time(-1.0)
    for source in opened:
        source.close()
