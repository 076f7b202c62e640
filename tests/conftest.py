"""Suite-wide rules: under CI=true a skipped test is a failure, so CI always runs everything.

Tests that need a tool this machine lacks skip with a loud reason locally (a laptop without
promtool still runs the rest); `.ci/run` sets CI=true and installs the tools, and any skip left
then means a broken install step, which must fail the build rather than pass quietly.
"""

from __future__ import annotations

import os

import pytest

_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    # A module-level pytest.importorskip skips at collection, which no test report shows.
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") == "true" and _skipped:
        print(f"\nCI=true: {len(_skipped)} skipped test(s) count as failures:")
        for nodeid in _skipped:
            print(f"  SKIPPED {nodeid}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _fake_driver_environment_is_per_test() -> object:
    """Undo what a test (or --simulate, in-process) left in the fake driver's FAKE_NVML_* env.

    The fake driver reads these at nvmlInit, and one pytest process runs every test: without
    this, a scenario or faults file chosen by one test would quietly apply to the next.
    """
    saved = {name: value for name, value in os.environ.items() if name.startswith("FAKE_NVML")}
    yield
    for name in [name for name in os.environ if name.startswith("FAKE_NVML")]:
        if name not in saved:
            del os.environ[name]
    os.environ.update(saved)
