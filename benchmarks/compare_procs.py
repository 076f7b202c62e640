"""The two exporters as processes: how to start each, and what /proc says about them.

Why a module of its own: compare.py decides what to measure; this one knows the two command
lines, the peer's private virtual environment, and how to read CPU time of a process and
of one of its threads from /proc (utime+stime, in clock ticks) so every row reads them the
same way.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from exporter.fakenvml import build_fake_driver

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = Path(__file__).resolve().parent / "compare_launch.py"
PEER_VERSION = "1.7.2"
PEER_PACKAGE = f"nvitop-exporter=={PEER_VERSION}"
TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def cache_root() -> Path:
    """Where the fake driver is cached too (build.py's rule), so one folder holds both."""
    explicit = os.environ.get("GPU_NODE_EXPORTER_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gpu-node-exporter"


def peer_python() -> Path:
    """The peer's interpreter, creating its venv on first use (never touches .venv)."""
    venv = cache_root() / f"peer-nvitop-exporter-{PEER_VERSION}"
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if not marker.is_file():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", PEER_PACKAGE],
            check=True,
        )
        marker.write_text(PEER_PACKAGE + "\n")
    return python


def peer_version(python: Path) -> str:
    """The installed peer's own version string."""
    out = subprocess.run(
        [str(python), "-c", "import nvitop_exporter as m; print(m.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


@dataclass(frozen=True)
class Exporter:
    """One side of the comparison: its command line and how to recognise it is ready."""

    name: str
    python: Path
    module: str
    ready_marker: str  # a line prefix that only appears once GPU series are served
    poll_thread: str  # kernel thread name of the collecting thread ("" = the main thread)
    default_interval_s: float

    def command(
        self, port: int, interval_s: float | None, scenario: str, extra: list[str]
    ) -> list[str]:
        """argv for one run; interval None means the exporter's own default (no flag)."""
        argv = [str(self.python), str(LAUNCHER), self.module]
        if self.name == "ours":
            argv += [
                f"--simulate={scenario}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--collector.pod-attribution=off",
                "--collector.processes=true",
                "--log.level=warning",
            ]
            if interval_s is not None:
                argv.append(f"--collection.interval={interval_s:g}s")
            if not any(a.startswith("--path.kmsg") for a in extra):
                argv.append("--collector.kmsg=false")
        else:
            argv += ["--bind-address", "127.0.0.1", "--port", str(port)]
            if interval_s is not None:
                argv += ["--interval", f"{interval_s:g}"]
        return argv + extra


def ours() -> Exporter:
    """This checkout, run with the interpreter running the benchmark (.venv under make)."""
    return Exporter(
        "ours", Path(sys.executable), "exporter", "nvidia_gpu_power_usage_watts{", "poll-nvml", 5.0
    )


def peer() -> Exporter:
    """nvitop-exporter: its collection loop runs in the main thread (cli.main -> collect)."""
    return Exporter(
        "peer", peer_python(), "nvitop_exporter", "gpu_utilization_Percentage{", "", 1.0
    )


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetch(port: int, gzip: bool = False, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET /metrics; (status, raw body as sent: compressed when gzip)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if gzip:
        request.add_header("Accept-Encoding", "gzip")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as err:
        return int(err.code), b""


def cpu_ticks(pid: int, tid: int | None = None) -> int:
    """utime+stime in clock ticks of a process (whole, all threads) or of one thread."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    text = Path(path).read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def cpu_ns(pid: int, tid: int | None = None) -> int:
    """On-CPU nanoseconds from schedstat: one thread, or the sum over the live threads.

    Why besides cpu_ticks: utime+stime move in 10 ms ticks, too coarse for one collection of
    a few milliseconds; schedstat's first field is the scheduler's exact runtime.
    """
    tasks = [tid] if tid is not None else [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
    total = 0
    for task in tasks:
        try:
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def thread_id(pid: int, name: str) -> int | None:
    """The tid whose kernel name is ``name``; ``""`` means the main thread (tid == pid)."""
    if not name:
        return pid
    names: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            names[(task / "comm").read_text().strip()] = int(task.name)
        except OSError:
            continue
    if name in names:
        return names[name]
    # A renamed poller ("poll-nvml-2", a pool): the first thread sharing the prefix.
    prefix = name.split("-", 1)[0] + "-"
    return next((tid for comm, tid in sorted(names.items()) if comm.startswith(prefix)), None)


@dataclass
class Running:
    """A started exporter and what its start cost."""

    exporter: Exporter
    process: subprocess.Popen[bytes]
    port: int
    started: float
    ready_s: float = float("nan")
    log: Path = field(default_factory=Path)

    @property
    def pid(self) -> int:
        """The exporter's pid (the launcher execs nothing: it is the exporter)."""
        return int(self.process.pid)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start(
    exporter: Exporter,
    scenario: str,
    interval_s: float | None,
    env: Mapping[str, str],
    log: Path,
    extra: list[str] | None = None,
    ready_timeout_s: float = 60.0,
) -> Running:
    """Start an exporter and wait for the first 200 from /metrics that has GPU series.

    ready_s is measured from just before the fork to that response, polled every 10 ms.
    """
    port = free_port()
    full_env = {
        **os.environ,
        **env,
        "FAKE_NVML_SCENARIO": scenario,
        "PYTHONPATH": str(ROOT),
        "LD_LIBRARY_PATH": str(build_fake_driver()),  # how the peer finds libnvidia-ml.so.1
    }
    argv = exporter.command(port, interval_s, scenario, extra or [])
    handle = log.open("wb")
    started = time.monotonic()
    process = subprocess.Popen(argv, env=full_env, stdout=handle, stderr=subprocess.STDOUT)
    handle.close()
    running = Running(exporter, process, port, started, log=log)
    marker = exporter.ready_marker.encode()
    deadline = started + ready_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-400:].strip().replace("\n", " / ")
            raise RuntimeError(f"{exporter.name} exited early: {tail}")
        try:
            status, body = fetch(port, timeout=2.0)
        except OSError:
            status, body = 0, b""
        if status == 200 and (body.startswith(marker) or b"\n" + marker in body):
            running.ready_s = time.monotonic() - started
            return running
        time.sleep(0.01)
    running.stop()
    raise RuntimeError(f"{exporter.name} not ready within {ready_timeout_s} s: see {log}")
