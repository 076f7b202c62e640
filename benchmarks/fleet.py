"""What a GPU fleet costs the Prometheus that scrapes it, measured on a simulated fleet.

For each fleet size: that many `python -m exporter --simulate` nodes (8 GPUs each, a100-mig by
default, each with its own identity), one real Prometheus scraping them with the repo's alert
and recording rules, a warm-up, then a measured window. Recorded per size: samples ingested per
second (the increase of prometheus_tsdb_head_samples_appended_total over the window, what
rate() computes), head series per node, scrape_samples_scraped and the first scrape's
scrape_series_added per target, each rule group's prometheus_rule_group_last_duration_seconds
(median and max over the window), Prometheus' RSS and CPU, and the latency of every query of
the fleet and cost dashboards over 1 h (benchmarks/fleet_queries.py). From the growth between
sizes, benchmarks/fleet_report.py extrapolates to 1,000 and 10,000 nodes at a 15 s scrape.

    python benchmarks/fleet.py                                  # 4, 12, 24 nodes, 15 s scrape
    python benchmarks/fleet.py --sizes 4,12,24 --scrape-interval 5s --duration 60
    python benchmarks/fleet.py --quick                          # smoke test: 2 nodes, ~20 s

A scrape interval shorter than 15 s makes a run shorter; samples/s and rule evaluation rates
are scaled to 15 s in the extrapolation (series counts do not depend on the interval).
Writes benchmarks/results/fleet.md, benchmarks/results/fleet.json and the fleet section of
docs/performance.md (between the fleet markers).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fleet_longrange import count_selected, decode_rate
from fleet_queries import time_dashboards
from fleet_report import write_outputs
from fleet_stack import (
    FleetNode,
    FleetPrometheus,
    node_name,
    read_self_metrics,
    wait_all_up,
)

from tests.e2e.stack import parse_duration

ROOT = Path(__file__).resolve().parent.parent
GPUS_PER_NODE = {"a100-mig": 8, "h100-nvlink": 8, "large-16": 16, "t4": 1}


def _first_value(result: list[dict[str, Any]]) -> list[float]:
    return [float(item["value"][1]) for item in result]


def measure_size(
    nodes: int,
    scenario: str,
    interval: str,
    duration: float,
    repeats: int,
    work: Path,
    pods: bool,
) -> dict[str, Any]:
    """Start `nodes` exporters and a Prometheus, measure, stop everything."""
    scrape_s = parse_duration(interval)
    directory = work / f"fleet-{nodes}"
    directory.mkdir(parents=True)
    fleet = [FleetNode(node_name(i), scenario, interval, directory, pods) for i in range(nodes)]
    prometheus: FleetPrometheus | None = None
    try:
        for node in fleet:
            node.wait_ready()
        prometheus = FleetPrometheus(directory, {n.name: n.port for n in fleet}, interval)
        prometheus.start()
        wait_all_up(prometheus, {n.name for n in fleet}, 10 * scrape_s + 60)
        # Warm-up: every series created and every rule group evaluated twice, so the window
        # measures the steady state and not the first scrape's series creation.
        prometheus.wait_rounds(2, timeout=6 * scrape_s + 60)
        first = read_self_metrics(prometheus.port)
        durations: dict[str, list[float]] = {}
        rss: list[int] = []
        deadline = first.at + duration
        while time.monotonic() < deadline:
            time.sleep(min(scrape_s, max(deadline - time.monotonic(), 0.0)))
            snapshot = read_self_metrics(prometheus.port)
            for group, seconds in snapshot.rule_durations.items():
                durations.setdefault(group, []).append(seconds)
            rss.append(prometheus.rss_bytes())
        last = read_self_metrics(prometheus.port)
        slowest_rules = prometheus.slowest_rules()
        window = last.at - first.at
        scraped = _first_value(prometheus.query('scrape_samples_scraped{job="gpu-node-exporter"}'))
        added = _first_value(
            prometheus.query('max_over_time(scrape_series_added{job="gpu-node-exporter"}[1h])')
        )
        queries = time_dashboards(prometheus.port, scrape_s, repeats)
        long_range = count_selected(prometheus, nodes)
        groups = {
            group: {
                "median_ms": statistics.median(values) * 1000,
                "max_ms": max(values) * 1000,
            }
            for group, values in sorted(durations.items())
        }
        by_dashboard: dict[str, float] = {}
        for timing in queries:
            by_dashboard[timing.dashboard] = by_dashboard.get(timing.dashboard, 0.0) + (
                timing.median_ms
            )
        return {
            "nodes": nodes,
            "gpus": nodes * GPUS_PER_NODE.get(scenario, 8),
            "scenario": scenario,
            "scrape_interval_s": scrape_s,
            "pods": pods,
            "window_s": round(window, 1),
            "samples_per_s": (last.samples_appended - first.samples_appended) / window,
            "head_series": last.head_series,
            "head_series_per_node": last.head_series / nodes,
            "scrape_samples_scraped_per_target": statistics.median(scraped) if scraped else 0,
            "scrape_series_added_first_scrape_per_target": statistics.median(added) if added else 0,
            "rule_groups": groups,
            "slowest_rules": slowest_rules,
            "rule_eval_total_median_ms": sum(g["median_ms"] for g in groups.values()),
            "rule_iterations_missed": last.rule_missed,
            "prometheus_rss_bytes": statistics.median(rss) if rss else prometheus.rss_bytes(),
            "prometheus_heap_inuse_bytes": last.heap_inuse,
            "prometheus_cpu_cores": (last.cpu_seconds - first.cpu_seconds) / window,
            "dashboard_refresh_ms": by_dashboard,
            "queries": [vars(t) for t in queries],
            "long_range_selectors": long_range,
        }
    finally:
        if prometheus is not None:
            prometheus.stop()
        for node in fleet:
            node.stop()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="4,12,24", help="fleet sizes in nodes (comma list)")
    parser.add_argument("--scenario", default="a100-mig", help="fake-driver scenario per node")
    parser.add_argument("--scrape-interval", default="15s", help="scrape and rule interval")
    parser.add_argument("--duration", type=float, default=150.0, help="measured seconds per size")
    parser.add_argument("--repeats", type=int, default=3, help="timings per dashboard query")
    parser.add_argument(
        "--no-pods",
        dest="pods",
        action="store_false",
        help="no fake kubelet: no pod series (the cost dashboard then has nothing to join)",
    )
    parser.add_argument(
        "--decode-series",
        type=int,
        default=480,
        help="series of the backfilled day whose decoding is timed (0: skip)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 nodes, ~20 s")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "performance.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.scrape_interval, args.duration, args.repeats = "2", "1s", 4.0, 1
        args.decode_series = 10
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = sorted({int(s) for s in str(args.sizes).split(",") if s.strip()})
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    runs = []
    try:
        for nodes in sizes:
            print(f"fleet: {nodes} nodes ...", file=sys.stderr, flush=True)
            run = measure_size(
                nodes,
                args.scenario,
                args.scrape_interval,
                args.duration,
                args.repeats,
                work,
                args.pods,
            )
            print(
                f"fleet: {nodes} nodes: {run['samples_per_s']:.0f} samples/s, "
                f"{run['head_series_per_node']:.0f} series/node, "
                f"rules {run['rule_eval_total_median_ms']:.1f} ms",
                file=sys.stderr,
                flush=True,
            )
            runs.append(run)
        decode = decode_rate(work, args.decode_series) if args.decode_series else None
        if decode:
            print(
                f"fleet: decode {decode['samples_per_s'] / 1e6:.1f} M samples/s",
                file=sys.stderr,
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    machine = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "prometheus": FleetPrometheus.version(),
        "commit": FleetPrometheus.commit(ROOT),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python benchmarks/fleet.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    paths = write_outputs(runs, decode, machine, args.results, args.docs, quick=args.quick)
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
