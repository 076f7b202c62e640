"""exporter.simulate: the scenario check before start and the driver's messages in our log."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from exporter.fakenvml.build import SCENARIO_SOURCE_DIR
from exporter.fakenvml.control import FakeNvmlControl
from exporter.simulate import (
    ScenarioError,
    detach_log_handler,
    prepare_simulation,
    scenario_problem,
)

pynvml = pytest.importorskip("pynvml")


@pytest.fixture
def detached() -> Iterator[None]:
    """Whatever a test attaches, the next one finds the driver logging to stderr again."""
    yield
    detach_log_handler()


def test_a_builtin_scenario_file_has_no_problem() -> None:
    for scenario in sorted(SCENARIO_SOURCE_DIR.glob("*.scn")):
        assert scenario_problem(str(scenario)) is None, scenario


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[system]\ngpu_count = 1\n[gpu 0]\nfan = fast\n", ":4: fan: expected"),
        ("[system]\ngpu_count = 1\n[gpu 2]\nname = X\n", ":4: GPU 2 selected but gpu_count is 1"),
        ("[gpu *]\nmig_device = slot=0 gi=1\n", ":2: mig_device"),
        ("[system]\ngpu_count = 1\nname = a\nwhat = 1\n", ":4: unknown [system] key 'what'"),
        ("not a section\n", ":1: expected 'key = value' or a [section]"),
    ],
)
def test_the_problem_names_file_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    scenario = tmp_path / "bad.scn"
    scenario.write_text(text)
    problem = scenario_problem(str(scenario))
    assert problem is not None
    assert problem.startswith(f"{scenario}:")
    assert expected in problem


def test_a_missing_file_is_a_problem(tmp_path: Path) -> None:
    problem = scenario_problem(str(tmp_path / "gone.scn"))
    assert problem is not None
    assert "cannot open scenario" in problem


def test_prepare_simulation_rejects_a_broken_file(tmp_path: Path, detached: None) -> None:
    scenario = tmp_path / "bad.scn"
    scenario.write_text("[system]\ngpu_count = lots\n")
    with pytest.raises(ScenarioError, match=r"bad\.scn:2: gpu_count"):
        prepare_simulation(str(scenario))


def test_prepare_simulation_selects_a_file_by_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, detached: None
) -> None:
    shutil.copy(SCENARIO_SOURCE_DIR / "t4.scn", tmp_path / "node.scn")
    monkeypatch.chdir(tmp_path)
    prepare_simulation("node.scn")
    assert os.environ["FAKE_NVML_SCENARIO"] == str(tmp_path / "node.scn")


def test_driver_messages_are_log_events_until_detached(
    capfd: pytest.CaptureFixture[str], detached: None
) -> None:
    library = prepare_simulation("t4")
    control = FakeNvmlControl(library)
    pynvml.nvmlInit()
    try:
        capfd.readouterr()
        with structlog.testing.capture_logs() as logs, pytest.raises(ValueError):
            control.set_key(0, "no_such_key", "1")
        assert logs == [
            {
                "event": "fake_nvml_message",
                "log_level": "warning",
                "message": "fakeNvmlSetKey(0, no_such_key): unknown key 'no_such_key'",
            }
        ]
        assert "no_such_key" not in capfd.readouterr().err  # nothing raw on stderr
        detach_log_handler()
        with pytest.raises(ValueError):
            control.set_key(0, "no_such_key", "1")
        assert "fake NVML: fakeNvmlSetKey(0, no_such_key)" in capfd.readouterr().err
    finally:
        pynvml.nvmlShutdown()
