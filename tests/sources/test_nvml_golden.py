"""A golden exposition of the default scenario at a fixed time, checked by promtool too.

Regenerate after an intended change with: UPDATE_GOLDEN=1 python -m pytest tests/sources -k golden
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from exporter.render import render
from exporter.sources.nvml import NvmlSource
from tests.tools import require_tool

GOLDEN = Path(__file__).parent.parent / "golden" / "a100-mig-t100.prom"


def _exposition(open_source: Callable[..., NvmlSource]) -> str:
    return render([open_source("a100-mig", at=100.0).collect()])


def test_exposition_matches_golden_file(open_source: Callable[..., NvmlSource]) -> None:
    text = _exposition(open_source)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "exposition changed: see the module docstring"


def test_golden_file_passes_promtool() -> None:
    promtool = require_tool("promtool")
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=GOLDEN.read_text(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.stdout + result.stderr).strip() == ""
