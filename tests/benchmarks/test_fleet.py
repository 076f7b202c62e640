"""Smoke test of benchmarks/fleet.py: `--quick` (2 simulated nodes, one real Prometheus, ~20 s)
runs end to end and writes fleet.json, fleet.md and the fleet section of a performance.md with
every measured field filled. It proves the benchmark works; it asserts no performance figure
(those come from the real run, on a quiet machine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

MEASURED = (
    "samples_per_s",
    "head_series",
    "head_series_per_node",
    "scrape_samples_scraped_per_target",
    "scrape_series_added_first_scrape_per_target",
    "rule_groups",
    "prometheus_rss_bytes",
    "dashboard_refresh_ms",
    "queries",
)


def test_quick_fleet_writes_every_measured_field(tmp_path: Path) -> None:
    require_tool("prometheus")
    docs = tmp_path / "performance.md"
    docs.write_text(
        "# Performance\n\nhand-written\n\n<!-- bench:start -->\nbench table\n<!-- bench:end -->\n"
        "\n<!-- fleet:start -->\nSTALE-FLEET-TEXT\n<!-- fleet:end -->\n\ntail\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "fleet.py"),
            "--quick",
            "--results",
            str(tmp_path / "results"),
            "--docs",
            str(docs),
        ],
        capture_output=True,
        text=True,
        timeout=85,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    report = json.loads((tmp_path / "results" / "fleet.json").read_text())
    (run,) = report["runs"]
    assert run["nodes"] == 2
    for field in MEASURED:
        assert run[field], f"{field} is empty: {run.get(field)!r}"
    assert run["samples_per_s"] > 0
    # Every node's series are in the head (the rules add their outputs on top).
    assert run["head_series"] >= 2 * run["scrape_samples_scraped_per_target"]
    assert "nvidia-gpu-node.recording" in run["rule_groups"]
    assert {q["dashboard"] for q in run["queries"]} == {"nvidia-gpu-fleet", "nvidia-gpu-cost"}
    assert not [q for q in run["queries"] if q["error"]]
    targets = {t["nodes"]: t for t in report["extrapolation"]["targets"]}
    assert set(targets) == {1000, 10000}
    assert targets[10000]["head_series"] > targets[1000]["head_series"] > 0
    assert report["extrapolation"]["breaks_first"]

    markdown = (tmp_path / "results" / "fleet.md").read_text()
    assert "samples/s" in markdown
    assert "10,000" in markdown
    text = docs.read_text()
    assert "STALE-FLEET-TEXT" not in text
    assert "hand-written" in text
    assert "bench table" in text  # the bench helper's section is left alone
    assert "tail" in text
    start, end = text.index("<!-- fleet:start -->"), text.index("<!-- fleet:end -->")
    assert "### Measured" in text[start:end]
