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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") == "true" and _skipped:
        print(f"\nCI=true: {len(_skipped)} skipped test(s) count as failures:")
        for nodeid in _skipped:
            print(f"  SKIPPED {nodeid}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
