"""Smoke test of benchmarks/compare.py: `--quick` runs, measures both sides, writes its output.

Why no figures are asserted: performance claims come from the full side-by-side run on a
quiet machine (`make bench`), never from timed assertions in tests. This proves the command
works end to end (fake driver counter, both exporters, thread lookup, HTTP load, Xid, the
three outputs) in well under 90 s, writing only to tmp.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

from compare_report import END, START, Row, write_docs  # noqa: E402


def _peer_available() -> bool:
    from compare_procs import peer_python

    try:
        peer_python()
    except (OSError, subprocess.CalledProcessError):
        return False
    return True


@pytest.mark.slow
def test_quick_mode_writes_results_and_docs_section(tmp_path: Path) -> None:
    docs = tmp_path / "performance.md"
    docs.write_text(
        f"# Performance\n\nfleet text above\n\n{START}\nold\n{END}\n\nfleet text below\n"
    )
    argv = [sys.executable, str(BENCH / "compare.py"), "--quick"]
    argv += ["--output-dir", str(tmp_path / "results"), "--docs", str(docs)]
    peer = _peer_available()
    if not peer:
        argv.append("--no-peer")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=90, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "results" / "latest.json").read_text())
    assert {"CPU", "cores", "kernel", "Python", "nvitop-exporter", "date"} <= set(data["machine"])
    metrics = {row["metric"] for row in data["rows"]}
    assert {
        "whole-process CPU, /proc/<pid>/stat",
        "poll-thread CPU per collection",
        "NVML calls per collection",
        "latency p99",
        "response size",
        "Xid record to /metrics, median",
        "RSS after 10 minutes",
    } <= metrics
    calls = [r for r in data["rows"] if r["metric"] == "NVML calls per collection"]
    assert all(r["ours_stats"] and r["ours_stats"]["median"] > 0 for r in calls)
    if peer:
        assert all(r["peer_stats"] and r["peer_stats"]["median"] > 0 for r in calls)
        assert any(r["ratio_ours_over_peer"] for r in data["rows"])
    markdown = (tmp_path / "results" / "latest.md").read_text()
    assert "| NVML calls per collection (calls) |" in markdown
    text = docs.read_text()
    assert "fleet text above" in text and "fleet text below" in text and "old" not in text
    assert text.count(START) == 1 and "NVML calls per collection" in text


def test_docs_section_is_created_with_markers(tmp_path: Path) -> None:
    docs = tmp_path / "docs" / "performance.md"
    row = Row("S", "m", "c", "ms", "a", "b", ours=[1.0, 3.0], peer=[2.0, 2.0])
    write_docs(docs, {"date": "today"}, [row], ["a note"])
    text = docs.read_text()
    assert text.startswith("# Performance")
    assert "| m (ms) | c | 2.00 (1.00-3.00) | 2.00 | 1.00 |" in text
    write_docs(docs, {"date": "later"}, [row], [])
    again = docs.read_text()
    assert again.count(START) == 1 and "later" in again and "today" not in again


def test_ratio_only_where_both_measure_the_same_thing() -> None:
    same = Row("S", "m", "c", "ms", "a", "b", ours=[1.0], peer=[4.0])
    different = Row("S", "m", "c", "ms", "a", "b", ours=[1.0], peer=[4.0], compare=False)
    assert same.ratio() == 0.25
    assert different.ratio() is None
    assert Row("S", "m", "c", "ms", "a", "b", ours=[float("nan")]).stats("ours") is None
