"""Helpers shared by tests: external tools and a running exporter process."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class ExporterProcess:
    """`python -m exporter` in a subprocess, on a free port, stopped with SIGTERM."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"exporter-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                f"--web.listen-address=127.0.0.1:{self.port}",
                *args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    def wait_http(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"exporter exited early:\n{self.log()}")
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
