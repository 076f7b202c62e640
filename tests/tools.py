"""Helpers shared by tests: external tools and a running exporter process."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest


def require_tool(name: str) -> str:
    """Path of a command-line tool, or a loud skip (a failure under CI=true)."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(
            f"{name} is not installed: run 'make system-deps' (Debian package) to test this"
        )
    return path


def wait_until(
    predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll `predicate` until it is true: tests wait for the event they assert, never sleep."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.02)


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class ExporterProcess:
    """`python -m exporter` in a subprocess, stopped with SIGTERM.

    It listens on port 0 and the test learns the port from its `exporter_started` log line:
    a port picked free here could be taken by someone else before the child binds it.
    """

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = 0  # known once wait_http() has read it from the log
        handle, name = tempfile.mkstemp(prefix="exporter-", suffix=".log")
        os.close(handle)
        self.log_path = Path(name)
        self._log = self.log_path.open("wb")
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                "--web.listen-address=127.0.0.1:0",
                *args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    def _port_from_log(self) -> int:
        for line in self.log().splitlines():
            if '"exporter_started"' in line:
                with contextlib.suppress(ValueError):
                    return int(json.loads(line)["port"])
        return 0

    def wait_http(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"exporter exited early:\n{self.log()}")
            if not self.port:
                self.port = self._port_from_log()
                if not self.port:
                    time.sleep(0.02)
                    continue
            try:
                http_get(self.port, "/healthz")
                return
            except OSError:
                time.sleep(0.02)
        raise AssertionError(f"exporter did not serve within {timeout}s:\n{self.log()}")

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Wait for /readyz 200; returns seconds since the process started."""
        self.wait_http(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, _ = http_get(self.port, "/readyz")
            if status == 200:
                return time.monotonic() - self.started
            time.sleep(0.02)
        raise AssertionError(f"exporter not ready within {timeout}s:\n{self.log()}")

    def metrics(self) -> str:
        status, body = http_get(self.port, "/metrics")
        assert status == 200
        return body.decode()

    def stop(self) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds it took)."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=10)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self._log.close()
        return code, time.monotonic() - started

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


def replace_file(path: Path, content: str | bytes) -> None:
    """Write like Kubernetes and editors do: a new file renamed over the old one."""
    temporary = path.with_name(path.name + ".tmp")
    if isinstance(content, bytes):
        temporary.write_bytes(content)
    else:
        temporary.write_text(content)
    os.replace(temporary, path)
