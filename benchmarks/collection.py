"""Collection cost on the simulated nodes: CPU, wall time and NVML calls per collection.

Run: `make bench-collection` (or `python benchmarks/collection.py [--rounds N] [--processes]`).
Prints a Markdown table; the figures are for this machine and the fake driver (whose per-call
cost is a C function call, close to but below a real driver's), so compare ratios across
scenarios and checkouts, not absolute numbers across machines.

Steady state, not a burst: before each round the fake driver's scenario clock moves on by one
collection interval (--interval, default 5 s), and the source measures GPM intervals with that
clock, so every collection reads a full interval of utilization samples (30 per engine at the
H100's 1/6 s sample period) and computes GPM metrics, as it does on a node. Back-to-back
collections in real time would find no new samples and skip GPM, and look cheaper than they are.

Before/after: the script also runs in a checkout from before the activity readers existed
(`git worktree add /tmp/old <commit>` then run this file from the new checkout with
`--repo /tmp/old`); NvmlSource's `clock` argument is passed only where it exists.
"""

from __future__ import annotations

import argparse
import inspect
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def _load(repo: Path) -> tuple[Any, ...]:
    """The modules of `repo` (this checkout, or an older one for the before figures)."""
    sys.path.insert(0, str(repo))
    from exporter.fakenvml import library_path
    from exporter.fakenvml.control import FakeNvmlControl
    from exporter.logs import configure_logging
    from exporter.render import render
    from exporter.sources.nvml import NvmlSource

    return library_path, FakeNvmlControl, configure_logging, render, NvmlSource


def _series_per_gpu(samples: Any) -> dict[str, int]:
    """Series whose first two labels are gpu and uuid, per GPU (MIG devices count to theirs)."""
    counts: dict[str, int] = {}
    for entries in samples.values():
        for labels, _ in entries:
            if len(labels) >= 2 and str(labels[1]).startswith("GPU-"):
                counts[labels[0]] = counts.get(labels[0], 0) + 1
    return counts


def measure(
    parts: tuple[Any, ...], scenario: str, rounds: int, interval: float, processes: bool
) -> dict[str, float]:
    library_path, control_class, _, render, source_class = parts
    library = str(library_path())
    os.environ["FAKE_NVML_SCENARIO"] = scenario
    control = control_class(library)
    now = 1000.0
    control.set_time(now)
    options: dict[str, object] = {"library_path": library, "capture_processes": processes}
    if "clock" in inspect.signature(source_class).parameters:
        options["clock"] = control.get_time
    source = source_class(**options)
    source.open()
    try:
        for _ in range(5):
            now += interval
            control.set_time(now)
            source.collect()
        cpu, wall, render_cpu, calls = [], [], [], []
        series = 0
        for _ in range(rounds):
            now += interval
            control.set_time(now)
            control.reset_call_count()
            c0, w0 = time.thread_time(), time.perf_counter()
            samples = source.collect()
            cpu.append(time.thread_time() - c0)
            wall.append(time.perf_counter() - w0)
            calls.append(control.call_count())
            r0 = time.thread_time()
            render([samples])
            render_cpu.append(time.thread_time() - r0)
            series = sum(len(v) for v in samples.values())
        per_gpu = _series_per_gpu(samples)
        gpus = len(source.directory())
        mig_gpus = {str(gpu.index) for gpu in source.directory() if gpu.migs}
    finally:
        source.close()
        control.set_time(-1.0)
    cpu.sort()
    return {
        "gpus": gpus,
        "series": series,
        "per_gpu_whole": max((n for gpu, n in per_gpu.items() if gpu not in mig_gpus), default=0),
        "per_gpu_mig": max((n for gpu, n in per_gpu.items() if gpu in mig_gpus), default=0),
        "calls": statistics.median(calls),
        "cpu_ms_median": statistics.median(cpu) * 1e3,
        "cpu_ms_p90": cpu[int(len(cpu) * 0.9)] * 1e3,
        "wall_ms_median": statistics.median(wall) * 1e3,
        "render_cpu_ms_median": statistics.median(render_cpu) * 1e3,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--scenarios", default="t4,a100-mig,h100-nvlink,h100-mig,large-16")
    parser.add_argument("--interval", type=float, default=5.0, help="scenario seconds per round")
    parser.add_argument("--processes", action="store_true", help="the process collector on")
    parser.add_argument(
        "--repo", type=Path, default=Path(__file__).resolve().parent.parent, help="checkout"
    )
    args = parser.parse_args()
    parts = _load(args.repo.resolve())
    parts[2]("warning")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(
        f"checkout: {args.repo.name}; rounds per scenario: {args.rounds}; "
        f"interval {args.interval:g} s; process collector {'on' if args.processes else 'off'}\n"
    )
    print(
        "| scenario | GPUs | series | series per GPU (whole / MIG) | NVML calls | "
        "collection CPU ms (median) | p90 | wall ms (median) | render CPU ms (median) | "
        "CPU ms per GPU |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for scenario in args.scenarios.split(","):
        r = measure(parts, scenario, args.rounds, args.interval, args.processes)
        print(
            f"| {scenario} | {r['gpus']:.0f} | {r['series']:.0f} | "
            f"{r['per_gpu_whole']:.0f} / {r['per_gpu_mig'] or '-'} | {r['calls']:.0f} | "
            f"{r['cpu_ms_median']:.2f} | {r['cpu_ms_p90']:.2f} | {r['wall_ms_median']:.2f} | "
            f"{r['render_cpu_ms_median']:.2f} | {r['cpu_ms_median'] / r['gpus']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
