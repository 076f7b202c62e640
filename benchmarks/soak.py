"""Soak: the simulated node under faults, Xids and scrapers for a long run, then a verdict.

    python benchmarks/soak.py --minutes 30      # the long run (also: make soak)
    python benchmarks/soak.py --minutes 3       # the CI variant (tests/test_soak.py)

It starts `python -m exporter --simulate --collection.interval=1s` as a subprocess with the fake
driver's faults file (FAKE_NVML_FAULTS) and --path.kmsg on a FIFO, then for the whole run:

- scraper threads GET /metrics back to back (every answer must be a 200);
- a writer streams Xid records in kmsg format for every simulated GPU (bus ids read from
  nvidia_gpu_info), with garbage lines, oversized lines and bad HTTP requests between them;
- a rotator injects a new NVML fault every few seconds: per-function errors on one GPU, slow
  calls, GPUs lost and recovered, NVML as a whole failing for a moment;
- a sampler reads the exporter's /proc/<pid>/status (VmRSS, Threads) and the series count.

Criteria (exit code 1 if any fails): every scrape answered; the exporter's thread count after
the run equals the count after warm-up (no thread died, none leaked) and the process is alive;
resident memory grew less than 5 MB after warm-up; the series count stayed bounded; Xids written
equal Xids counted on /metrics; SIGTERM ends the exporter with code 0.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exporter.fakenvml.control import FaultFile

RSS_GROWTH_LIMIT_KB = 5 * 1024
SERIES_GROWTH_LIMIT = 1.25  # max series after warm-up / median after warm-up
XID_CODES = (13, 31, 43, 45, 48, 63, 64, 74, 92, 94, 95)  # 79 is left out: it marks the GPU lost
FAULT_FUNCTIONS = (
    "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetTemperatureV",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetUtilizationRates",
    "nvmlDeviceGetClockInfo",
    "nvmlDeviceGetFieldValues",
    "nvmlDeviceGetComputeRunningProcesses",
    "nvmlDeviceGetCurrentClocksEventReasons",
    "nvmlDeviceGetPerformanceState",
    "nvmlDeviceGetBAR1MemoryInfo",
    "nvmlDeviceGetUUID",
    "nvmlDeviceGetMigMode",
    "field:83",
    "field:165",
)
FAULT_CODES = (
    "UNKNOWN",
    "NOT_SUPPORTED",
    "NO_PERMISSION",
    "TIMEOUT",
    "GPU_IS_LOST",
    "RESET_REQUIRED",
)
BAD_HTTP = (
    b"GET /metrics?x=" + b"A" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"BREW /coffee HTTP/1.1\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello on the plain port
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\r\n\r\n\r\n",
)


@dataclass
class Stats:
    scrapes_ok: int = 0
    scrapes_failed: int = 0
    scrape_errors: Counter[str] = field(default_factory=Counter)
    xids_written: Counter[tuple[str, str]] = field(default_factory=Counter)  # (gpu, xid)
    garbage_lines: int = 0
    bad_http: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    recoveries: int = 0
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)  # t, rss, thr, ser
    lock: threading.Lock = field(default_factory=threading.Lock)


def port_from_log(path: Path) -> int:
    """The port an exporter started on `127.0.0.1:0` bound, from its exporter_started line."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return 0
    for line in lines:
        if '"exporter_started"' in line:
            try:
                return int(json.loads(line)["port"])
            except (ValueError, KeyError):
                return 0
    return 0


def http_get(port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def proc_status(pid: int) -> tuple[int, int]:
    """(VmRSS in kB, Threads) of a process."""
    rss = threads = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, threads


def series_count(text: str) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def kmsg_record(seq: int, text: str) -> bytes:
    return f"3,{seq},{int(time.monotonic() * 1e6)},-;{text}\n".encode()


def xid_text(bus_id: str, xid: int) -> str:
    # nvidia_gpu_info's pci_bus_id is 00000000:07:00.0; the kernel writes PCI:0000:07:00.
    domain, bus, devfn = bus_id.split(":")
    return f"NVRM: Xid (PCI:{domain[-4:]}:{bus}:{devfn.split('.')[0]}): {xid}, pid=1, name=soak"


class Soak:
    def __init__(self, minutes: float, scrapers: int, fault_every: float, xid_every: float):
        self.duration = minutes * 60.0
        self.scrapers = scrapers
        self.fault_every = fault_every
        self.xid_every = xid_every
        self.stats = Stats()
        self.stop = threading.Event()
        # Seeded for a reproducible fault sequence; nothing here is security-relevant.
        self.rng = random.Random(1234)  # noqa: S311
        self.tmp = Path(tempfile.mkdtemp(prefix="gpu-exporter-soak-"))
        self.faults = FaultFile(self.tmp / "faults")
        self.fifo = self.tmp / "kmsg"
        os.mkfifo(self.fifo)
        self.port = 0  # bound by the exporter on :0, read from its log
        self.log_path = self.tmp / "exporter.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.gpus: dict[str, str] = {}  # gpu index -> pci bus id
        self.seq = 0
        self.warm_index = 0

    # -- the exporter ---------------------------------------------------------------------

    def start_exporter(self) -> None:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                "--simulate",
                "--collection.interval=1s",
                "--web.listen-address=127.0.0.1:0",  # no window for another to take it
                f"--path.kmsg={self.fifo}",
                "--path.pod-resources-socket=/nonexistent/kubelet.sock",
                "--collector.udev=false",
                "--log.format=json",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.faults.env()},
            cwd=Path(__file__).resolve().parents[1],
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.port = self.port or port_from_log(self.log_path)
            if not self.port:
                time.sleep(0.05)
                continue
            try:
                if http_get(self.port, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        else:
            raise SystemExit(f"exporter not ready in 60 s; log: {self.log_path}")
        _, body = http_get(self.port, "/metrics")
        for gpu, bus in re.findall(
            r'nvidia_gpu_info\{gpu="(\d+)",[^}]*pci_bus_id="([^"]+)"', body.decode()
        ):
            self.gpus[gpu] = bus
        if not self.gpus:
            raise SystemExit("no nvidia_gpu_info series with pci_bus_id on /metrics")

    # -- load ------------------------------------------------------------------------------

    def scraper(self) -> None:
        while not self.stop.is_set():
            try:
                status, _ = http_get(self.port, "/metrics")
            except OSError as err:
                with self.stats.lock:
                    self.stats.scrapes_failed += 1
                    self.stats.scrape_errors[type(err).__name__] += 1
                continue
            with self.stats.lock:
                if status == 200:
                    self.stats.scrapes_ok += 1
                else:
                    self.stats.scrapes_failed += 1
                    self.stats.scrape_errors[f"HTTP {status}"] += 1
            self.stop.wait(0.02)

    def xid_writer(self) -> None:
        with open(self.fifo, "wb", buffering=0) as writer:
            while not self.stop.wait(self.xid_every):
                gpu = self.rng.choice(sorted(self.gpus))
                xid = self.rng.choice(XID_CODES)
                self.seq += 1
                writer.write(kmsg_record(self.seq, xid_text(self.gpus[gpu], xid)))
                self.stats.xids_written[(gpu, str(xid))] += 1
                if self.rng.random() < 0.5:  # bad input between the records
                    writer.write(self.garbage())
                    self.stats.garbage_lines += 1

    def garbage(self) -> bytes:
        kind = self.rng.randrange(4)
        if kind == 0:
            raw = bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 300)))
            return raw.replace(b"\n", b" ") + b"\n"
        if kind == 1:
            return b"x" * 20000 + b"\n"  # oversized: dropped by the framer
        if kind == 2:
            self.seq += 1
            return kmsg_record(self.seq, "NVRM: Xid (PCI:zzzz): notanumber, pid=")
        return b"7,notaseq,abc,-;\xff\xfe half a header\n"

    def bad_http(self) -> None:
        while not self.stop.wait(1.0):
            payload = self.rng.choice(BAD_HTTP)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    sock.sendall(payload)
                    sock.shutdown(socket.SHUT_WR)
                    sock.recv(4096)
            except OSError:
                pass
            self.stats.bad_http += 1

    def rotator(self) -> None:
        lost: str | None = None
        while not self.stop.wait(self.fault_every):
            self.faults.clear()
            if lost is not None:
                self.stats.recoveries += 1
                lost = None
            kind = self.rng.choices(
                ("error", "slow", "lost", "nvml-down", "none"), weights=(5, 2, 2, 1, 1)
            )[0]
            gpu = int(self.rng.choice(sorted(self.gpus)))
            if kind == "error":
                self.faults.add_fault(
                    self.rng.choice(FAULT_FUNCTIONS), gpu, self.rng.choice(FAULT_CODES)
                )
            elif kind == "slow":
                delay = self.rng.choice((200, 800, 2500))
                self.faults.add_fault(self.rng.choice(FAULT_FUNCTIONS), gpu, 0, delay_ms=delay)
            elif kind == "lost":
                self.faults.lost(gpu)
                lost = str(gpu)
            elif kind == "nvml-down":
                self.faults.add_fault("nvmlDeviceGetCount", None, "DRIVER_NOT_LOADED")
            self.stats.faults[kind] += 1

    def sampler(self, started: float) -> None:
        assert self.process is not None
        while not self.stop.wait(2.0):
            try:
                rss, threads = proc_status(self.process.pid)
                _, body = http_get(self.port, "/metrics")
            except OSError:
                continue
            with self.stats.lock:
                self.stats.samples.append(
                    (time.monotonic() - started, rss, threads, series_count(body.decode()))
                )

    # -- run and verdict ---------------------------------------------------------------------

    def run(self) -> dict[str, object]:
        self.start_exporter()
        assert self.process is not None
        started = time.monotonic()
        threads = [threading.Thread(target=self.scraper, daemon=True) for _ in range(self.scrapers)]
        threads += [
            threading.Thread(target=self.xid_writer, daemon=True),
            threading.Thread(target=self.rotator, daemon=True),
            threading.Thread(target=self.bad_http, daemon=True),
            threading.Thread(target=self.sampler, args=(started,), daemon=True),
        ]
        for thread in threads:
            thread.start()
        warmup = min(60.0, self.duration * 0.25)
        exited_early = False
        while time.monotonic() - started < self.duration:
            if self.process.poll() is not None:
                exited_early = True
                break
            time.sleep(0.5)
        self.stop.set()
        for thread in threads:
            thread.join(10)
        self.faults.clear()
        final_text = self.settled_metrics() if not exited_early else ""
        final_rss, final_threads = proc_status(self.process.pid) if not exited_early else (0, 0)
        counted = self.counted_xids(final_text)
        code, stop_seconds = self.stop_exporter()
        return self.verdict(warmup, final_rss, final_threads, counted, code, stop_seconds)

    def settled_metrics(self, timeout: float = 20.0) -> str:
        """/metrics once the cleared faults are gone: NVML up and not stalled, every GPU up.

        Why wait for it rather than a fixed time: a slow-call fault (up to 2.5 s) injected just
        before the clear may still be running, and the final checks and SIGTERM must not
        measure it.
        """
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = http_get(self.port, "/metrics")[1].decode()
            settled = (
                'nvidia_gpu_exporter_source_up{source="nvml"} 1' in text
                and 'nvidia_gpu_exporter_source_stalled{source="nvml"} 0' in text
                and re.search(r"^nvidia_gpu_up\{[^}]*\} 0", text, re.MULTILINE) is None
            )
            if settled:
                time.sleep(0.5)  # and one more moment for the last Xids to be published
                return http_get(self.port, "/metrics")[1].decode()
            time.sleep(0.1)
        return text

    def counted_xids(self, text: str) -> Counter[tuple[str, str]]:
        counted: Counter[tuple[str, str]] = Counter()
        for labels, value in re.findall(r"nvidia_gpu_xid_errors_total\{([^}]*)\} (\S+)", text):
            parsed = dict(re.findall(r'(\w+)="([^"]*)"', labels))
            if float(value):
                counted[(parsed.get("gpu", ""), parsed.get("xid", ""))] += int(float(value))
        return counted

    def stop_exporter(self) -> tuple[int, float]:
        assert self.process is not None
        if self.process.poll() is not None:
            return self.process.returncode, 0.0
        begun = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = -9
        return code, time.monotonic() - begun

    def verdict(
        self,
        warmup: float,
        final_rss: int,
        final_threads: int,
        counted: Counter[tuple[str, str]],
        code: int,
        stop_seconds: float,
    ) -> dict[str, object]:
        stats = self.stats
        after = [s for s in stats.samples if s[0] >= warmup] or stats.samples[-1:]
        first = after[: min(3, len(after))]
        last = after[-min(3, len(after)) :]
        rss_warm = statistics.mean(s[1] for s in first) if first else 0.0
        rss_end = statistics.mean(s[1] for s in last) if last else 0.0
        threads_warm = first[0][2] if first else 0
        series = [s[3] for s in after]
        series_median = statistics.median(series) if series else 0
        written = sum(stats.xids_written.values())
        total_counted = sum(counted.values())
        checks = {
            "scrapes answered (all)": stats.scrapes_failed == 0 and stats.scrapes_ok > 0,
            "threads alive (all)": final_threads == threads_warm and final_threads > 0,
            "RSS growth after warm-up < 5 MB": rss_end - rss_warm < RSS_GROWTH_LIMIT_KB,
            "series count bounded": bool(series)
            and max(series) <= SERIES_GROWTH_LIMIT * series_median,
            "Xids written == counted": counted == stats.xids_written,
            "SIGTERM exit 0 within 2 s": code == 0 and stop_seconds < 2.0,
        }
        return {
            "duration_s": round(self.duration),
            "scrapers": self.scrapers,
            "scrapes_ok": stats.scrapes_ok,
            "scrapes_failed": stats.scrapes_failed,
            "scrape_errors": dict(stats.scrape_errors),
            "scrapes_per_s": round(stats.scrapes_ok / self.duration, 1),
            "faults_injected": dict(stats.faults),
            "faults_total": sum(n for kind, n in stats.faults.items() if kind != "none"),
            "gpus_lost_and_recovered": stats.recoveries,
            "bad_kmsg_lines": stats.garbage_lines,
            "bad_http_requests": stats.bad_http,
            "xids_written": written,
            "xids_counted": total_counted,
            "threads_after_warmup": threads_warm,
            "threads_final": final_threads,
            "rss_after_warmup_kb": round(rss_warm),
            "rss_final_kb": round(rss_end),
            "rss_growth_kb": round(rss_end - rss_warm),
            "rss_final_sample_kb": final_rss,
            "series_median": series_median,
            "series_min": min(series) if series else 0,
            "series_max": max(series) if series else 0,
            "exit_code": code,
            "stop_seconds": round(stop_seconds, 3),
            "log": str(self.log_path),
            "checks": checks,
            "passed": all(checks.values()),
        }


def print_report(report: dict[str, object]) -> None:
    width = max(len(key) for key in report)
    print("\nsoak report")
    for key, value in report.items():
        if key != "checks":
            print(f"  {key:<{width}}  {value}")
    print("criteria")
    checks = report["checks"]
    assert isinstance(checks, dict)
    for name, ok in checks.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--scrapers", type=int, default=4)
    parser.add_argument("--fault-every", type=float, default=3.0, help="seconds between faults")
    parser.add_argument("--xid-every", type=float, default=0.25, help="seconds between Xids")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    report = Soak(args.minutes, args.scrapers, args.fault_every, args.xid_every).run()
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
