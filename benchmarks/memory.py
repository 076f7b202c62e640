"""Resident memory of the exporter on the simulated node, side by side with other checkouts.

Starts `python -m exporter --simulate` from each tree in turn (this checkout first, then every
`--peer` directory, e.g. a `git worktree` of an older commit), scrapes /metrics every 0.25 s
while the exporter collects every second, and reads VmRSS and VmHWM from /proc/<pid>/status at
the end. Each tree runs `--rounds` times, interleaved, and the medians are printed with the
ratio to this checkout, so a claim like "N MB less" comes from one run on one machine.

    python benchmarks/memory.py                                     # this checkout alone
    git worktree add /tmp/peer HEAD~3 && python benchmarks/memory.py --peer /tmp/peer
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def status_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in kB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def measure(tree: Path, scenario: str, seconds: float) -> dict[str, int]:
    """One exporter run from `tree`; its memory after `seconds` of collection and scraping."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(tree)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter",
            f"--simulate={scenario}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--collection.interval=1s",
            "--log.level=warning",
        ],
        cwd=tree,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"exporter from {tree} did not become ready") from None
                time.sleep(0.05)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            with urllib.request.urlopen(url, timeout=5) as r:
                r.read()
            time.sleep(0.25)
        return status_kb(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peer", action="append", default=[], type=Path, help="another tree")
    parser.add_argument("--scenario", default="a100-mig")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trees = [ROOT, *(peer.resolve() for peer in args.peer)]
    results: dict[Path, list[dict[str, int]]] = {tree: [] for tree in trees}
    for _ in range(args.rounds):
        for tree in trees:
            results[tree].append(measure(tree, args.scenario, args.seconds))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()};"
        f" scenario {args.scenario}, {args.seconds:.0f} s each, {args.rounds} rounds (medians)"
    )
    base = statistics.median(run["VmRSS"] for run in results[ROOT])
    for tree, runs in results.items():
        rss = statistics.median(run["VmRSS"] for run in runs)
        hwm = statistics.median(run["VmHWM"] for run in runs)
        print(
            f"{tree!s:40s} RSS {rss / 1024:6.1f} MiB  peak {hwm / 1024:6.1f} MiB"
            f"  ratio to this checkout {rss / base:.2f}"
        )


if __name__ == "__main__":
    main()
