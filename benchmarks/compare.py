"""Side by side: gpu-node-exporter vs nvitop-exporter 1.7.2 on the same fake driver.

Run: `make bench` (or `python benchmarks/compare.py [--runs N] [--long] [--quick]`).

Why one command: performance claims must come from both exporters measured in one run on
one machine, interleaved (ours, peer, ours, peer ...) so that noise from a shared machine
hits both, several runs each, reported as medians with the min-max spread. Both load the
same fake libnvidia-ml.so.1 (ours through --simulate, the peer through LD_LIBRARY_PATH) with
the same scenario and a per-call latency (FAKE_NVML_CALL_LATENCY_US, spun in the calling
thread like a driver ioctl's kernel time) so a design that makes many NVML calls is not
flattered. The peer lives in its own venv under ~/.cache/gpu-node-exporter/.

Writes benchmarks/results/latest.md and latest.json and the table between the bench markers
of docs/performance.md. `--quick` is the smoke-test mode (1 run, short windows, a subset of
rows) and should be pointed at a temporary --output-dir and --docs.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from compare_measure import CpuResult, HttpResult, run_cpu, run_http, run_long_rss, run_xid  # noqa: E402
from compare_procs import Exporter, ours, peer, peer_python, peer_version  # noqa: E402
from compare_report import Row, write_docs, write_results  # noqa: E402

from exporter.fakenvml import build_fake_driver  # noqa: E402

T = TypeVar("T")


@dataclass(frozen=True)
class Case:
    """A node shape: scenario plus, optionally, a synthetic process count."""

    label: str
    scenario: str
    processes: int | None = None

    def env(self) -> dict[str, str]:
        """Fake-driver variables of this case."""
        return {} if self.processes is None else {"FAKE_NVML_PROCESSES": str(self.processes)}


CASES = [
    Case("1 GPU (t4)", "t4"),
    Case("8 GPUs (h100-nvlink)", "h100-nvlink"),
    Case("16 GPUs (large-16)", "large-16"),
    Case("8 GPUs, 2 in MIG (a100-mig)", "a100-mig"),
    Case("0 GPU processes (h100-nvlink)", "h100-nvlink", 0),
    Case("100 GPU processes (h100-nvlink)", "h100-nvlink", 100),
    Case("1000 GPU processes (h100-nvlink)", "h100-nvlink", 1000),
]
QUICK_CASES = [CASES[0], CASES[3]]
LEVELS = [1, 50]


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def checkout() -> str:
    """Commit of this tree and whether it has uncommitted changes (what was measured)."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=HERE,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            check=False,
            text=True,
            cwd=HERE,
        ).stdout.splitlines()
    except OSError:
        return "unknown"
    return f"{rev or 'unknown'}" + (f" + {len(dirty)} modified files" if dirty else "")


def our_version() -> str:
    """Installed version of this project (the checkout under `pip install -e`)."""
    try:
        return metadata.version("gpu-node-exporter")
    except metadata.PackageNotFoundError:
        return "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=2, help="runs per exporter per row (default 2)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke mode: 1 run, short windows, few rows"
    )
    parser.add_argument(
        "--long", action="store_true", help="also RSS after 10 minutes (both side by side)"
    )
    parser.add_argument("--long-seconds", type=float, default=600.0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--latency-us", type=int, default=20, help="FAKE_NVML_CALL_LATENCY_US (default 20)"
    )
    parser.add_argument(
        "--warmup", type=float, default=None, help="seconds after ready (3; quick 0.5)"
    )
    parser.add_argument("--window", type=float, default=None, help="min CPU window s (10; quick 2)")
    parser.add_argument(
        "--http-seconds", type=float, default=None, help="per load level (5; quick 1)"
    )
    parser.add_argument("--xid-records", type=int, default=None, help="per run (20; quick 2)")
    parser.add_argument(
        "--no-peer", action="store_true", help="measure ours only (peer cannot be installed)"
    )
    parser.add_argument("--output-dir", type=Path, default=HERE / "results")
    parser.add_argument("--docs", type=Path, default=HERE.parent / "docs" / "performance.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = 1
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 3.0)
    args.window = args.window if args.window is not None else (2.0 if args.quick else 10.0)
    args.http_seconds = (
        args.http_seconds if args.http_seconds is not None else (1.0 if args.quick else 5.0)
    )
    args.xid_records = (
        args.xid_records if args.xid_records is not None else (2 if args.quick else 20)
    )
    return args


def _safe(label: str, notes: list[str], fn: Callable[[], T]) -> T | None:
    """Run one measurement; a failure is reported in the notes instead of ending the run."""
    try:
        return fn()
    except Exception as err:
        traceback.print_exc()
        notes.append(f"{label} failed: {err}")
        return None


class Plan:
    """Rows keyed by (section, metric, case), created on first use, kept in insertion order."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str], Row] = {}

    def row(
        self,
        section: str,
        metric: str,
        case: str,
        unit: str,
        ours_s: str,
        peer_s: str,
        note: str = "",
        compare: bool = True,
    ) -> Row:
        key = (section, metric, case)
        if key not in self.rows:
            self.rows[key] = Row(section, metric, case, unit, ours_s, peer_s, note, compare=compare)
        return self.rows[key]


def _interval_settings(interval: str) -> tuple[float | None, str, str, str]:
    if interval == "default":
        return (
            None,
            "--collection.interval default (5 s)",
            "--interval default (1 s)",
            "intervals differ: 5 s vs 1 s",
        )
    return 1.0, "--collection.interval=1s", "--interval default (1 s) = same runs as default", ""


def record_cpu(plan: Plan, case: Case, interval: str, side: str, result: CpuResult | None) -> None:
    """File one CPU run's figures into its rows."""
    _, ours_s, peer_s, note = _interval_settings(interval)
    name = f"{case.label} @ {interval}"
    nan = float("nan")
    r = result
    rows = [
        (
            "CPU, nobody scraping",
            "whole-process CPU, /proc/<pid>/stat",
            "ms per s",
            r.cpu_ms_per_s if r else nan,
            note,
        ),
        (
            "CPU, nobody scraping",
            "whole-process CPU, schedstat",
            "ms per s",
            r.cpu_ms_per_s_schedstat if r else nan,
            "sum of live threads' schedstat (ns): same window, finer than stat's 10 ms ticks",
        ),
        (
            "Per collection",
            "poll-thread CPU per collection",
            "ms",
            r.poll_cpu_ms_per_collection if r else nan,
            "schedstat ns of the thread; ours: thread poll-nvml; peer: its main thread"
            " (runs the collect loop, also host and per-process psutil metrics)",
        ),
        (
            "Per collection",
            "NVML calls per collection",
            "calls",
            r.nvml_calls_per_collection if r else nan,
            "ours: all calls in the window / collections, so the nvml-events thread's"
            " waits are included",
        ),
        (
            "Per collection",
            "NVML calls per second",
            "calls/s",
            r.nvml_calls_per_s if r else nan,
            note,
        ),
    ]
    if interval == "default":
        rows += [
            ("Memory and start", "RSS after warm-up", "MiB", r.rss_mib if r else nan, ""),
            (
                "Memory and start",
                "start to first ready scrape",
                "s",
                r.ready_s if r else nan,
                "process start to first 200 with GPU series",
            ),
        ]
    for section, metric, unit, value, row_note in rows:
        row = plan.row(section, metric, name, unit, ours_s, peer_s, row_note)
        (row.ours if side == "ours" else row.peer).append(value)


def record_http(plan: Plan, side: str, result: HttpResult | None) -> None:
    """File one HTTP run's figures."""
    section = "HTTP /metrics (a100-mig, default intervals)"
    ours_s, peer_s = "defaults", "defaults"
    nan = float("nan")
    values: list[tuple[str, str, str, float, str]] = []
    for i, level in enumerate(LEVELS):
        load = result.loads[i] if result else None
        case = f"{level} concurrent scraper{'s' if level > 1 else ''}"
        note = "closed loop, new connection per request, connect to last byte"
        if level > 1:
            note += (
                "; peer's server listens with backlog 5 (socketserver default), so 50"
                " simultaneous connects overflow it and SYN retries (1, 3, 7 ... s) set its p99"
            )
        values += [
            ("latency p50", case, "ms", load.p50_ms if load else nan, note),
            ("latency p99", case, "ms", load.p99_ms if load else nan, note),
            (
                "throughput",
                case,
                "req/s",
                load.rps if load else nan,
                "load generator shares the 2 cores",
            ),
        ]
    values += [
        (
            "response size",
            "plain",
            "bytes",
            float(result.plain_bytes) if result else nan,
            "different metric sets",
        ),
        (
            "response size",
            "Accept-Encoding: gzip",
            "bytes",
            float(result.gzip_bytes) if result and result.gzip_bytes is not None else nan,
            "different metric sets; '-' = not offered",
        ),
    ]
    for metric, case, unit, value, note in values:
        row = plan.row(section, metric, case, unit, ours_s, peer_s, note)
        (row.ours if side == "ours" else row.peer).append(value)


def measure(args: argparse.Namespace, workdir: Path) -> tuple[list[Row], list[str]]:
    """Every row, interleaved ours/peer inside each run."""
    notes: list[str] = []
    sides: list[Exporter] = [ours()] if args.no_peer else [ours(), peer()]
    env = {"FAKE_NVML_CALL_LATENCY_US": str(args.latency_us)}
    cases = QUICK_CASES if args.quick else CASES
    intervals = ["1 s"] if args.quick else ["default", "1 s"]
    plan = Plan()
    for run in range(args.runs):
        for case in cases:
            for interval in intervals:
                interval_s, *_ = _interval_settings(interval)
                for side in sides:
                    if side.name == "peer" and interval == "1 s" and "default" in intervals:
                        continue  # the peer's default is 1 s: its default runs are its 1 s runs
                    window = max(args.window, 3 * (interval_s or side.default_interval_s))
                    label = f"run {run + 1} {side.name} {case.label} @ {interval}"
                    print(label, file=sys.stderr, flush=True)
                    result = _safe(
                        label,
                        notes,
                        partial(
                            run_cpu,
                            side,
                            case.scenario,
                            interval_s,
                            {**env, **case.env()},
                            args.warmup,
                            window,
                            workdir,
                        ),
                    )
                    record_cpu(plan, case, interval, side.name, result)
                    if side.name == "peer" and "default" in intervals and interval == "default":
                        record_cpu(plan, case, "1 s", "peer", result)
        for side in sides:
            print(f"run {run + 1} {side.name} http", file=sys.stderr, flush=True)
            http = _safe(
                f"run {run + 1} {side.name} http",
                notes,
                partial(
                    run_http,
                    side,
                    "a100-mig",
                    env,
                    args.warmup + 1,
                    args.http_seconds,
                    LEVELS,
                    workdir,
                ),
            )
            record_http(plan, side.name, http)
        print(f"run {run + 1} ours xid", file=sys.stderr, flush=True)
        xids = _safe(
            f"run {run + 1} xid", notes, lambda: run_xid(env, sides[0], args.xid_records, workdir)
        )
        section = "Xid (ours only: the peer has no Xid source)"
        for metric, fn in (
            ("Xid record to /metrics, median", statistics.median),
            ("Xid record to /metrics, max", max),
        ):
            row = plan.row(
                section,
                metric,
                "a100-mig, kernel-log FIFO",
                "ms",
                "--path.kmsg=FIFO",
                "n/a",
                "ours only",
                compare=False,
            )
            row.ours.append(fn(xids) if xids else float("nan"))
    long_row = plan.row(
        "Memory and start",
        "RSS after 10 minutes",
        "8 GPUs, 2 in MIG (a100-mig) @ default",
        "MiB",
        "defaults",
        "defaults",
    )
    if args.long:
        print("long RSS (both side by side)", file=sys.stderr, flush=True)
        rss = _safe("long RSS", notes, lambda: run_long_rss(sides, env, args.long_seconds, workdir))
        for name, value in (rss or {}).items():
            (long_row.ours if name == "ours" else long_row.peer).append(value)
        long_row.note = f"one run each, side by side for {args.long_seconds:.0f} s"
    else:
        long_row.note = "skipped: run with --long"
        notes.append(
            "RSS after 10 minutes skipped (default run);"
            " `python benchmarks/compare.py --long` measures it."
        )
    if args.no_peer:
        notes.append("peer not measured (--no-peer)")
    if args.quick:
        notes.append(
            "--quick: smoke-test mode (1 run, short windows, subset of rows): not figures to quote"
        )
    return list(plan.rows.values()), notes


def machine(args: argparse.Namespace) -> dict[str, Any]:
    """Where and how: machine, versions, settings (taken before measuring: the load average)."""
    peer_v = "not measured" if args.no_peer else peer_version(peer_python())
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "gpu-node-exporter": f"{our_version()} (checkout {checkout()})",
        "nvitop-exporter": peer_v,
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "fake NVML latency": f"FAKE_NVML_CALL_LATENCY_US={args.latency_us}"
        " (spun in the calling thread, every entry point)",
        "runs": f"{args.runs} per exporter per row, interleaved ours, peer",
        "CPU window": f"{args.warmup:g} s warm-up after ready, then max({args.window:g} s,"
        " 3 intervals), nobody scraping",
        "ours flags": "--simulate=<scenario> --collector.processes=true"
        " --collector.pod-attribution=off --collector.kmsg=false [--collection.interval=1s]",
        "peer flags": "--bind-address 127.0.0.1 --port <p> (--interval left at its 1 s default);"
        " LD_LIBRARY_PATH=<fake driver dir>, FAKE_NVML_SCENARIO=<scenario>",
    }


def main(argv: list[str] | None = None) -> int:
    """Measure, then write results and the docs section."""
    args = parse_args(argv)
    build_fake_driver()
    meta = machine(args)
    with tempfile.TemporaryDirectory(prefix="compare-") as tmp:
        rows, notes = measure(args, Path(tmp))
    write_results(args.output_dir, meta, rows, notes)
    write_docs(args.docs, meta, rows, notes)
    print((args.output_dir / "latest.md").read_text())
    return 1 if any(" failed: " in n for n in notes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
