"""With the kubelet hanging, /metrics keeps answering fast and NVML collections keep their pace.

Runs exporter.app.Application on the simulated node (--simulate) with a fake kubelet whose
every call hangs, for --seconds; meanwhile one client scrapes /metrics in a loop. Prints the
scrape latency percentiles and the intervals between NVML collections (from the nvml
source's collection counter), plus the podresources source's health.

    python benchmarks/kubelet_hang.py [--seconds 20] [--interval 1s]

Acceptance (issue 4): p99 scrape latency under 10 ms, collection intervals equal to
--collection.interval.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import itertools

from exporter.app import Application
from exporter.cli import config_from_args
from tests.fakekubelet import Behaviour, FakeKubelet


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def scrape_loop(
    port: int, seconds: float, results: multiprocessing.Queue[tuple[list[float], list[float], str]]
) -> None:
    """Scrape every 10 ms; note latencies and when the nvml collection counter moves."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    latencies: list[float] = []
    collection_times: list[float] = []
    last_count = -1.0
    body = ""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        t0 = time.perf_counter()
        connection.request("GET", "/metrics")
        body = connection.getresponse().read().decode()
        latencies.append(time.perf_counter() - t0)
        for line in body.splitlines():
            if line.startswith('nvidia_gpu_exporter_collections_total{source="nvml"}'):
                count = float(line.rsplit(" ", 1)[1])
                if count != last_count:
                    if last_count >= 0:
                        collection_times.append(time.monotonic())
                    last_count = count
        time.sleep(0.01)
    up = next(
        (
            line
            for line in body.splitlines()
            if line.startswith('nvidia_gpu_exporter_source_up{source="podresources"}')
        ),
        "podresources source_up absent (attribution off)",
    )
    results.put((latencies, collection_times, up))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--interval", default="1s")
    parser.add_argument(
        "--attribution", default="on", choices=("on", "off"), help="off: the baseline run"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        socket = Path(tmp) / "kubelet.sock"
        hang = threading.Event()
        kubelet = FakeKubelet(socket, Behaviour(hang=hang)).start()
        config = config_from_args(
            [
                "--simulate",
                "--web.listen-address=127.0.0.1:0",
                f"--collection.interval={args.interval}",
                f"--path.pod-resources-socket={socket}",
                f"--collector.pod-attribution={args.attribution}",
                "--log.level=error",
            ]
        )
        app = Application(config)
        app.start()
        # The scraper runs in its own process, like Prometheus: in-process it would compete
        # with the exporter for the GIL and measure itself.
        results: multiprocessing.Queue[tuple[list[float], list[float], str]] = (
            multiprocessing.Queue()
        )
        scraper = multiprocessing.Process(
            target=scrape_loop, args=(app.server.port, args.seconds, results)
        )
        scraper.start()
        latencies, collection_times, up = results.get(timeout=args.seconds + 30)
        scraper.join(5)
        kubelet_calls = dict(kubelet.behaviour.calls)
        hang.set()
        app.stop()
        kubelet.stop()
    gaps = [b - a for a, b in itertools.pairwise(collection_times)]
    ms = [value * 1000 for value in latencies]
    print(f"kubelet: every call hangs; calls received {kubelet_calls}; {up}")
    print(f"scrapes: {len(ms)} in {args.seconds:g}s")
    print(
        f"scrape latency ms: p50 {percentile(ms, 0.50):.2f}  p95 {percentile(ms, 0.95):.2f}  "
        f"p99 {percentile(ms, 0.99):.2f}  max {max(ms):.2f}"
    )
    if gaps:
        print(
            f"nvml collection intervals s (config {args.interval}): n={len(gaps)} "
            f"mean {statistics.mean(gaps):.3f}  min {min(gaps):.3f}  max {max(gaps):.3f}"
        )
    ok = percentile(ms, 0.99) < 10.0 and bool(gaps)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
