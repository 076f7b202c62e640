"""From the measured fleet sizes to 1,000 and 10,000 nodes: straight-line fits and their limits.

Every cost here grows with the number of series, and the series grow with the nodes (each node
exports the same families for its GPUs), so each figure is fitted as `a + b * nodes` by least
squares over the measured sizes and read off at the target size. A straight line is the honest
model for series, samples and memory; for rule evaluation and query latency it is a lower bound
(index lookups and joins can grow faster than linearly), which the report says.

Rates measured at a scrape interval shorter than 15 s are scaled to 15 s (samples/s and the
CPU that ingestion costs divide by the interval; series do not depend on it).

Memory is an estimate from a published figure, not a measurement of a big Prometheus: "As of
Prometheus 2.20 a good rule of thumb should be around 3kB per series in the head" (Brian
Brazil, Robust Perception, "Why does Prometheus use so much RAM?",
https://www.robustperception.io/why-does-prometheus-use-so-much-ram/). The slope of the
measured RSS per head series is reported next to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

TARGET_NODES = (1000, 10000)
SCRAPE_15S = 15.0
BYTES_PER_SERIES = 3000  # Robust Perception's rule of thumb for Prometheus >= 2.20
BYTES_PER_SERIES_SOURCE = (
    "about 3 kB per head series (Robust Perception, 'Why does Prometheus use so much RAM?', "
    "rule of thumb for Prometheus >= 2.20)"
)
# The limits "what breaks first" compares against (stated with the results).
LIMITS = {
    "rule_group_s": 15.0,  # a group slower than its interval misses evaluations
    "dashboard_refresh_s": 10.0,  # a fleet dashboard a user waits on
    "memory_gib": 64.0,  # one large Prometheus machine
    "cpu_cores": 8.0,
}


def fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line; through the origin for one point."""
    if len(xs) == 1:
        return 0.0, ys[0] / xs[0] if xs[0] else 0.0
    n = len(xs)
    mean_x = sum(xs) / n
    mean_y = sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx if sxx else 0.0
    return mean_y - slope * mean_x, slope


def at(line: tuple[float, float], nodes: float) -> float:
    return line[0] + line[1] * nodes


def nodes_at_limit(line: tuple[float, float], limit: float) -> float | None:
    """The fleet size where the line reaches `limit`; None where it never grows."""
    if line[1] <= 0:
        return None
    return max((limit - line[0]) / line[1], 0.0)


def long_range_groups(run: dict[str, Any], scrape_s: float) -> dict[str, float]:
    """Samples each rule group's long range selectors read per node and round."""
    groups: dict[str, float] = {}
    for item in run.get("long_range_selectors", []):
        samples = float(item["series_per_node"]) * float(item["window_s"]) / scrape_s
        groups[item["group"]] = groups.get(item["group"], 0.0) + samples
    return groups


def extrapolate(runs: Sequence[dict[str, Any]], decode: dict[str, Any] | None) -> dict[str, Any]:
    """The fitted lines, the figures at TARGET_NODES and the size where each limit is hit."""
    nodes = [float(r["nodes"]) for r in runs]
    scale = [float(r["scrape_interval_s"]) / SCRAPE_15S for r in runs]
    series = fit(nodes, [float(r["head_series"]) for r in runs])
    samples = fit(nodes, [float(r["samples_per_s"]) * s for r, s in zip(runs, scale, strict=True)])
    cpu = fit(
        nodes, [float(r["prometheus_cpu_cores"]) * s for r, s in zip(runs, scale, strict=True)]
    )
    rss = fit(
        [float(r["head_series"]) for r in runs], [float(r["prometheus_rss_bytes"]) for r in runs]
    )
    rules_total = fit(nodes, [float(r["rule_eval_total_median_ms"]) for r in runs])
    groups = sorted({g for r in runs for g in r["rule_groups"]})
    group_lines = {
        g: fit(
            [float(r["nodes"]) for r in runs if g in r["rule_groups"]],
            [float(r["rule_groups"][g]["median_ms"]) for r in runs if g in r["rule_groups"]],
        )
        for g in groups
    }
    dashboards = sorted({d for r in runs for d in r["dashboard_refresh_ms"]})
    refresh_lines = {
        d: fit(nodes, [float(r["dashboard_refresh_ms"].get(d, 0.0)) for r in runs])
        for d in dashboards
    }
    heaviest = [q["key"] for q in runs[-1]["queries"][:5]]
    query_lines = {}
    titles = {}
    for key in heaviest:
        points = [
            (float(r["nodes"]), float(q["median_ms"]))
            for r in runs
            for q in r["queries"]
            if q["key"] == key
        ]
        query_lines[key] = fit([p[0] for p in points], [p[1] for p in points])
        titles[key] = next(q["panel"] for q in runs[-1]["queries"] if q["key"] == key)

    long_range = long_range_groups(runs[-1], SCRAPE_15S)
    rate = float(decode["samples_per_s"]) if decode else 0.0

    targets = []
    for target in TARGET_NODES:
        head = at(series, target)
        worst_group = max(groups, key=lambda g: at(group_lines[g], target)) if groups else ""
        targets.append(
            {
                "nodes": target,
                "gpus": target * int(runs[-1]["gpus"] / runs[-1]["nodes"]),
                "head_series": head,
                "samples_per_s_at_15s": at(samples, target),
                "memory_estimate_gib": head * BYTES_PER_SERIES / 2**30,
                "memory_measured_slope_gib": at(rss, head) / 2**30,
                "cpu_cores_at_15s": at(cpu, target),
                "rule_eval_total_ms": at(rules_total, target),
                "slowest_rule_group": worst_group,
                "slowest_rule_group_ms": at(group_lines[worst_group], target) if groups else 0,
                "dashboard_refresh_ms": {d: at(line, target) for d, line in refresh_lines.items()},
                "long_range_samples_per_round": sum(long_range.values()) * target,
                "long_range_cpu_s_per_round": sum(long_range.values()) * target / rate
                if rate
                else None,
                "heaviest_queries_ms": {
                    titles[k]: at(line, target) for k, line in query_lines.items()
                },
            }
        )

    limits: list[dict[str, Any]] = []
    for group, line in group_lines.items():
        limits.append(
            {
                "what": f"rule group {group} takes longer than its 15 s interval",
                "nodes": nodes_at_limit(line, LIMITS["rule_group_s"] * 1000),
            }
        )
    for dashboard, line in refresh_lines.items():
        limits.append(
            {
                "what": f"{dashboard} refresh (queries in turn) over "
                f"{LIMITS['dashboard_refresh_s']:.0f} s",
                "nodes": nodes_at_limit(line, LIMITS["dashboard_refresh_s"] * 1000),
            }
        )
    for group, per_node in long_range.items():
        if rate and per_node:
            limits.append(
                {
                    "what": f"rule group {group}: its long range selectors alone take longer "
                    "than the 15 s interval (decode estimate)",
                    "nodes": LIMITS["rule_group_s"] * rate / per_node,
                }
            )
    series_limit = LIMITS["memory_gib"] * 2**30 / BYTES_PER_SERIES
    limits.append(
        {
            "what": f"head memory (estimate) over {LIMITS['memory_gib']:.0f} GiB",
            "nodes": nodes_at_limit(series, series_limit),
        }
    )
    limits.append(
        {
            "what": f"Prometheus CPU over {LIMITS['cpu_cores']:.0f} cores at 15 s",
            "nodes": nodes_at_limit(cpu, LIMITS["cpu_cores"]),
        }
    )
    limits = sorted(
        (item for item in limits if item["nodes"] is not None), key=lambda i: i["nodes"]
    )
    return {
        "model": "least-squares line a + b*nodes over the measured sizes",
        "bytes_per_series": BYTES_PER_SERIES,
        "bytes_per_series_source": BYTES_PER_SERIES_SOURCE,
        "limits": LIMITS,
        "series_per_node_slope": series[1],
        "series_intercept": series[0],
        "samples_per_s_per_node_at_15s": samples[1],
        "measured_rss_bytes_per_series_slope": rss[1],
        "rule_eval_ms_per_node": rules_total[1],
        "long_range_samples_per_node_and_round": long_range,
        "decode_samples_per_s": rate or None,
        "targets": targets,
        "breaks_first": limits,
    }
