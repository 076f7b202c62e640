"""Fixtures for testing the fake NVML driver with the real pynvml.

The library is loaded once per session by absolute path (ctypes.CDLL) before any
pynvml.nvmlInit, so pynvml's own CDLL("libnvidia-ml.so.1") resolves to it. Scenarios are
switched through FAKE_NVML_SCENARIO + nvmlShutdown/nvmlInit; the library re-reads the
environment on each 0 -> 1 init.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exporter.fakenvml import build_fake_driver
from exporter.fakenvml.control import FakeNvmlControl

pynvml = pytest.importorskip("pynvml")

_CONTROL: FakeNvmlControl | None = None


def _control() -> FakeNvmlControl:
    global _CONTROL
    if _CONTROL is None:
        _CONTROL = FakeNvmlControl(build_fake_driver() / "libnvidia-ml.so.1")
    return _CONTROL


@pytest.fixture(scope="session")
def lib_dir() -> Path:
    """Directory holding the built libnvidia-ml.so.1 and scenarios/."""
    return build_fake_driver()


@pytest.fixture(scope="session")
def ctl() -> FakeNvmlControl:
    """The control wrapper around the library loaded in this process."""
    return _control()


InitFn = Callable[..., None]


@pytest.fixture
def nvml(ctl: FakeNvmlControl, monkeypatch: pytest.MonkeyPatch) -> Iterator[InitFn]:
    """Call nvml("t4", FAKE_NVML_TIME="10") to init pynvml on a scenario; shut down after."""
    inits: list[int] = []

    def init(scenario: str, **env: str) -> None:
        monkeypatch.setenv("FAKE_NVML_SCENARIO", scenario)
        for key in ("FAKE_NVML_TIME", "FAKE_NVML_FAULTS", "FAKE_NVML_SCENARIO_DIR"):
            if key not in env:
                monkeypatch.delenv(key, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        pynvml.nvmlInit()
        inits.append(1)

    yield init
    for _ in inits:
        pynvml.nvmlShutdown()
    ctl.clear_faults()
    ctl.set_time(None)
