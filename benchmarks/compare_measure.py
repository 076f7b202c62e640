"""One measurement run of one exporter: start it, let it warm up, read /proc over a window.

Why the window is read with nobody scraping: a scrape costs the exporter CPU (the peer
renders on every scrape), which would mix HTTP cost into the collection cost. Our exporter's
collection count comes from its own `collections_total{source="nvml"}` scraped just before
and just after the window; the peer has no such counter, so its collections are counted as
bursts of NVML calls in the fake driver's shared counter file (its loop is the only NVML
caller: one burst per collection).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from compare_http import LoadResult, load, sizes
from compare_procs import TICK_S, Exporter, cpu_ns, cpu_ticks, fetch, rss_kib, start, thread_id

from exporter.fakenvml.control import read_call_counter

COLLECTIONS = re.compile(rb'^nvidia_gpu_exporter_collections_total\{source="nvml"\} (\S+)$', re.M)


@dataclass(frozen=True)
class CpuResult:
    """What one CPU run measured."""

    ready_s: float
    cpu_ms_per_s: float
    cpu_ms_per_s_schedstat: float
    poll_cpu_ms_per_collection: float
    nvml_calls_per_collection: float
    nvml_calls_per_s: float
    collections: float
    rss_mib: float


def _our_collections(port: int) -> float:
    _, body = fetch(port)
    match = COLLECTIONS.search(body)
    return float(match.group(1)) if match else float("nan")


def _count_bursts(path: Path, seconds: float, quiet_s: float) -> int:
    """Collections of the peer: rises of the call counter after at least quiet_s of silence."""
    end = time.monotonic() + seconds
    last_value = read_call_counter(path)
    last_change = time.monotonic()
    bursts = 0
    while True:
        now = time.monotonic()
        if now >= end:
            return bursts
        value = read_call_counter(path)
        if value != last_value:
            if now - last_change >= quiet_s:
                bursts += 1
            last_value, last_change = value, now
        time.sleep(0.02)


def run_cpu(
    exporter: Exporter,
    scenario: str,
    interval_s: float | None,
    env: dict[str, str],
    warmup_s: float,
    window_s: float,
    workdir: Path,
) -> CpuResult:
    """Start, warm up, measure one window, stop."""
    counter = workdir / f"calls-{exporter.name}-{time.monotonic_ns()}"
    run_env = {**env, "FAKE_NVML_CALL_COUNTER": str(counter)}
    running = start(exporter, scenario, interval_s, run_env, workdir / f"{exporter.name}.log")
    try:
        time.sleep(warmup_s)
        pid = running.pid
        tid = thread_id(pid, exporter.poll_thread)
        if tid is None:
            raise RuntimeError(f"{exporter.name}: no thread named {exporter.poll_thread!r}")
        ours = exporter.name == "ours"
        c0 = _our_collections(running.port) if ours else 0.0
        t0, p0, s0, th0 = time.monotonic(), cpu_ticks(pid), cpu_ns(pid), cpu_ns(pid, tid)
        n0 = read_call_counter(counter)
        if ours:
            time.sleep(window_s)
            collections = 0.0
        else:
            interval = interval_s or exporter.default_interval_s
            collections = float(_count_bursts(counter, window_s, 0.25 * interval))
        t1, p1, s1, th1 = time.monotonic(), cpu_ticks(pid), cpu_ns(pid), cpu_ns(pid, tid)
        n1 = read_call_counter(counter)
        if ours:
            collections = _our_collections(running.port) - c0
        rss = rss_kib(pid) / 1024
    finally:
        running.stop()
    elapsed = t1 - t0
    per = collections if collections > 0 else float("nan")
    return CpuResult(
        ready_s=running.ready_s,
        cpu_ms_per_s=(p1 - p0) * TICK_S * 1000 / elapsed,
        cpu_ms_per_s_schedstat=(s1 - s0) / 1e6 / elapsed,
        poll_cpu_ms_per_collection=(th1 - th0) / 1e6 / per,
        nvml_calls_per_collection=(n1 - n0) / per,
        nvml_calls_per_s=(n1 - n0) / elapsed,
        collections=collections,
        rss_mib=rss,
    )


@dataclass(frozen=True)
class HttpResult:
    """Latency at two load levels and the answer's size."""

    loads: list[LoadResult]
    plain_bytes: int
    gzip_bytes: int | None


def run_http(
    exporter: Exporter,
    scenario: str,
    env: dict[str, str],
    warmup_s: float,
    seconds: float,
    levels: list[int],
    workdir: Path,
) -> HttpResult:
    """Scrape latency at each concurrency level, at the exporter's default interval."""
    running = start(exporter, scenario, None, env, workdir / f"{exporter.name}-http.log")
    try:
        time.sleep(warmup_s)
        plain, zipped = sizes(running.port)
        loads = [load(running.port, n, seconds) for n in levels]
    finally:
        running.stop()
    return HttpResult(loads, plain, zipped)


XID_LINE = re.compile(rb'^nvidia_gpu_info\{[^}]*gpu="1"[^}]*\}', re.M)
PCI_LABEL = re.compile(rb'pci_bus_id="([^"]+)"')


def _xid_count(body: bytes) -> float:
    for line in body.splitlines():
        if (
            line.startswith(b"nvidia_gpu_xid_errors_total{")
            and b'gpu="1"' in line
            and b'xid="13"' in line
        ):
            return float(line.rsplit(b" ", 1)[1])
    return 0.0


def run_xid(env: dict[str, str], exporter: Exporter, records: int, workdir: Path) -> list[float]:
    """ms from writing an Xid 13 line to the kernel-log FIFO to its count in /metrics (ours)."""
    from exporter.xid.parser import normalize_pci

    fifo = Path(tempfile.mkdtemp(dir=workdir)) / "kmsg"
    os.mkfifo(fifo)
    running = start(
        exporter,
        "a100-mig",
        None,
        env,
        workdir / "ours-xid.log",
        extra=[f"--path.kmsg={fifo}", "--collector.kmsg=true"],
    )
    latencies: list[float] = []
    try:
        writer = os.open(fifo, os.O_WRONLY)
        _, body = fetch(running.port)
        info = XID_LINE.search(body)
        label = PCI_LABEL.search(info.group(0)) if info else None
        pci = normalize_pci(label.group(1).decode()) if label else None
        if pci is None:
            raise RuntimeError("no pci_bus_id for gpu 1 in /metrics")
        base = _xid_count(body)
        for seq in range(records):
            usec = int(time.monotonic() * 1e6)
            line = f"3,{seq},{usec},-;NVRM: Xid (PCI:{pci}): 13, pid=1, name=bench, SM\n"
            started = time.perf_counter()
            os.write(writer, line.encode())
            while _xid_count(fetch(running.port)[1]) < base + seq + 1:
                if time.perf_counter() - started > 10:
                    raise RuntimeError("Xid did not reach /metrics within 10 s")
                time.sleep(0.002)
            latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(0.05)
        os.close(writer)
    finally:
        running.stop()
    return latencies


def run_long_rss(
    exporters: list[Exporter], env: dict[str, str], seconds: float, workdir: Path
) -> dict[str, float]:
    """RSS (MiB) of each exporter after ``seconds`` running side by side (a100-mig, defaults)."""
    runs = [start(e, "a100-mig", None, env, workdir / f"{e.name}-long.log") for e in exporters]
    try:
        time.sleep(seconds)
        return {r.exporter.name: rss_kib(r.pid) / 1024 for r in runs}
    finally:
        for r in runs:
            r.stop()
