"""Collection cost on the simulated nodes: CPU and wall time per NVML collection and per render.

Run: `make bench` (or `python benchmarks/collection.py [--rounds N]`). Prints a Markdown table;
the figures are for this machine and the fake driver (whose per-call cost is a C function call,
close to but below a real driver's), so compare ratios across scenarios, not absolute numbers
across machines.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.fakenvml import library_path
from exporter.logs import configure_logging
from exporter.render import render
from exporter.sources.nvml import NvmlSource


def _library() -> str:
    return str(library_path())


def measure(scenario: str, rounds: int) -> dict[str, float]:
    os.environ["FAKE_NVML_SCENARIO"] = scenario
    source = NvmlSource(library_path=_library())
    source.open()
    try:
        for _ in range(5):
            source.collect()
        cpu, wall, render_cpu = [], [], []
        series = 0
        for _ in range(rounds):
            c0, w0 = time.thread_time(), time.perf_counter()
            samples = source.collect()
            cpu.append(time.thread_time() - c0)
            wall.append(time.perf_counter() - w0)
            r0 = time.thread_time()
            render([samples])
            render_cpu.append(time.thread_time() - r0)
            series = sum(len(v) for v in samples.values())
        gpus = len(source.directory())
    finally:
        source.close()
    cpu.sort()
    return {
        "gpus": gpus,
        "series": series,
        "cpu_ms_median": statistics.median(cpu) * 1e3,
        "cpu_ms_p90": cpu[int(len(cpu) * 0.9)] * 1e3,
        "wall_ms_median": statistics.median(wall) * 1e3,
        "render_cpu_ms_median": statistics.median(render_cpu) * 1e3,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--scenarios", default="t4,a100-mig,h100-nvlink,large-16")
    args = parser.parse_args()
    configure_logging("warning")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"rounds per scenario: {args.rounds}\n")
    print(
        "| scenario | GPUs | series | collection CPU ms (median) | p90 | wall ms (median) | "
        "render CPU ms (median) | CPU ms per GPU |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for scenario in args.scenarios.split(","):
        r = measure(scenario, args.rounds)
        print(
            f"| {scenario} | {r['gpus']:.0f} | {r['series']:.0f} | {r['cpu_ms_median']:.2f} | "
            f"{r['cpu_ms_p90']:.2f} | {r['wall_ms_median']:.2f} | "
            f"{r['render_cpu_ms_median']:.2f} | {r['cpu_ms_median'] / r['gpus']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
