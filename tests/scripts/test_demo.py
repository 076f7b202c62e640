"""scripts/demo.py: the local demo really starts the pipeline, pages on Xid 79, and stops clean.

The demo runs as a user runs it (a subprocess, `--any-ports` so it cannot collide with
anything on the CI machine); the test reads its stdout like a person reads the terminal.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack import http_json
from tests.tools import require_tool

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scripts" / "demo.py"
LOST_NODE, LOST_GPU = "gpu-h100-nvlink", 7


class Terminal:
    """The demo's stdout, line by line, as it arrives."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_line(self, predicate: str, timeout: float) -> str:
        """Wait for a line containing `predicate`; fail with everything seen so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if predicate in line:
                return line
        pytest.fail(f"no line with {predicate!r} within {timeout}s:\n" + "\n".join(self.lines))


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[Terminal, Path]]:
    require_tool("prometheus")
    require_tool("prometheus-alertmanager")
    process = subprocess.Popen(
        [sys.executable, str(DEMO), "--any-ports", "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield Terminal(process), tmp_path
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def prometheus_query(port: int, expr: str) -> list[dict[str, object]]:
    reply = http_json(port, "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert reply["status"] == "success", reply
    return list(reply["data"]["result"])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_demo_scrapes_every_node_pages_on_xid79_and_stops_everything(
    demo: tuple[Terminal, Path],
) -> None:
    terminal, workdir = demo
    terminal.wait_line("demo ready", timeout=120)
    state = json.loads((workdir / "demo.json").read_text())
    assert sorted(state["exporters"]) == [
        "gpu-a100-mig",
        "gpu-h100-mig",
        "gpu-h100-nvlink",
        "gpu-t4",
    ]
    prometheus = int(state["prometheus"])

    def all_scraped() -> bool:
        up = prometheus_query(prometheus, 'up{job="gpu-node-exporter"} == 1')
        return len(up) == len(state["exporters"])

    deadline = time.monotonic() + 60
    while not all_scraped():
        assert time.monotonic() < deadline, "Prometheus did not scrape every node"
        time.sleep(0.5)
    assert not [line for line in terminal.lines if "[pager]" in line], "a healthy demo paged"

    injected = subprocess.run(
        [
            sys.executable,
            str(DEMO),
            "xid",
            LOST_NODE,
            str(LOST_GPU),
            "79",
            "--workdir",
            str(workdir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert injected.returncode == 0, injected.stdout + injected.stderr

    page = terminal.wait_line("[pager] FIRING NvidiaGpuFallenOffBus", timeout=120)
    assert f"node={LOST_NODE}" in page, page
    assert f"gpu={LOST_GPU}" in page, page
    assert "uuid=GPU-" in page, page

    children = [int(pid) for pid in state["pids"]]
    assert len(children) == len(state["exporters"]) + 2, state  # exporters, AM, Prometheus
    terminal.process.send_signal(signal.SIGTERM)
    terminal.wait_line("demo stopped", timeout=60)
    assert terminal.process.wait(30) == 0
    assert not [pid for pid in children if alive(pid)], "the demo left processes behind"


def test_injecting_into_no_running_demo_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(DEMO), "xid", LOST_NODE, "7", "79", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("demo: "), result.stderr
    assert "Traceback" not in result.stderr
