"""Writes a fleet run: benchmarks/results/fleet.json (everything), fleet.md (the tables) and the
fleet section of docs/performance.md between its markers (the rest of that file, including the
bench helper's section, is left as it is; a missing file is created with both marker pairs).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fleet_model import extrapolate

FLEET_START = "<!-- fleet:start -->"
FLEET_END = "<!-- fleet:end -->"
BENCH_START = "<!-- bench:start -->"
BENCH_END = "<!-- bench:end -->"
SKELETON = f"""# Performance

{BENCH_START}
{BENCH_END}

## Fleet sizing

{FLEET_START}
{FLEET_END}
"""


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _mib(value: float) -> str:
    return f"{value / 2**20:,.0f} MiB"


def measured_table(runs: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "| nodes (GPUs) | scrape | samples/s | head series | series/node | scraped/target "
        "| first-scrape series added/target | rules, all groups (median) | Prometheus RSS "
        "| Prometheus CPU | fleet refresh | cost refresh |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        refresh = r["dashboard_refresh_ms"]
        lines.append(
            f"| {r['nodes']} ({r['gpus']}) | {r['scrape_interval_s']:g} s "
            f"| {_n(r['samples_per_s'], 1)} | {_n(r['head_series'])} "
            f"| {_n(r['head_series_per_node'])} "
            f"| {_n(r['scrape_samples_scraped_per_target'])} "
            f"| {_n(r['scrape_series_added_first_scrape_per_target'])} "
            f"| {r['rule_eval_total_median_ms']:.1f} ms | {_mib(r['prometheus_rss_bytes'])} "
            f"| {r['prometheus_cpu_cores'] * 100:.1f} % of a core "
            f"| {refresh.get('nvidia-gpu-fleet', 0):.0f} ms "
            f"| {refresh.get('nvidia-gpu-cost', 0):.0f} ms |"
        )
    return lines


def rule_table(runs: Sequence[dict[str, Any]]) -> list[str]:
    groups = sorted({g for r in runs for g in r["rule_groups"]})
    header = "| rule group | " + " | ".join(f"{r['nodes']} nodes" for r in runs) + " |"
    lines = [header, "| --- |" + " --- |" * len(runs)]
    for group in groups:
        cells = []
        for r in runs:
            g = r["rule_groups"].get(group)
            cells.append(f"{g['median_ms']:.2f} ms (max {g['max_ms']:.2f})" if g else "-")
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return lines


def slowest_rules_table(run: dict[str, Any]) -> list[str]:
    lines = ["| rule | group | last evaluation |", "| --- | --- | --- |"]
    for rule in run.get("slowest_rules", []):
        lines.append(f"| {rule['rule']} | {rule['group']} | {rule['ms']:.1f} ms |")
    return lines


def query_table(run: dict[str, Any], count: int = 8) -> list[str]:
    lines = [
        "| dashboard | panel | kind | median | max | series |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for q in run["queries"][:count]:
        kind = "instant" if q["instant"] else "range 1 h"
        error = f" (error: {q['error'][:60]})" if q["error"] else ""
        lines.append(
            f"| {q['dashboard']} | {q['panel']}{error} | {kind} | {q['median_ms']:.1f} ms "
            f"| {q['max_ms']:.1f} ms | {q['series']} |"
        )
    return lines


def extrapolation_table(model: dict[str, Any]) -> list[str]:
    lines = [
        "| nodes (GPUs) | head series | samples/s at 15 s | memory (estimate) "
        "| memory (measured slope) | CPU at 15 s | rules per round, all groups "
        "| slowest group | long-range rules per round (decode estimate) "
        "| fleet refresh | cost refresh |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in model["targets"]:
        refresh = t["dashboard_refresh_ms"]
        lines.append(
            f"| {_n(t['nodes'])} ({_n(t['gpus'])}) | {_n(t['head_series'])} "
            f"| {_n(t['samples_per_s_at_15s'])} | {t['memory_estimate_gib']:.1f} GiB "
            f"| {t['memory_measured_slope_gib']:.1f} GiB "
            f"| {t['cpu_cores_at_15s']:.2f} cores | {t['rule_eval_total_ms'] / 1000:.2f} s "
            f"| {t['slowest_rule_group']} {t['slowest_rule_group_ms'] / 1000:.2f} s "
            f"| {_long(t)} "
            f"| {refresh.get('nvidia-gpu-fleet', 0) / 1000:.2f} s "
            f"| {refresh.get('nvidia-gpu-cost', 0) / 1000:.2f} s |"
        )
    return lines


def _long(target: dict[str, Any]) -> str:
    seconds = target.get("long_range_cpu_s_per_round")
    samples = target["long_range_samples_per_round"]
    if seconds is None:
        return f"{samples / 1e6:,.0f} M samples"
    return f"{samples / 1e6:,.0f} M samples, {seconds:,.1f} s"


def long_range_table(run: dict[str, Any], decode: dict[str, Any] | None) -> list[str]:
    lines = [
        "| rule group | rule | selector | window | series per node | samples per node "
        "and round at 15 s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for item in run.get("long_range_selectors", []):
        lines.append(
            f"| {item['group']} | {item['rule']} | `{item['selector']}` "
            f"| {item['window_s'] / 3600:g} h | {item['series_per_node']:.1f} "
            f"| {_n(item['series_per_node'] * item['window_s'] / 15)} |"
        )
    if decode:
        lines += [
            "",
            f"Decoding measured on this machine: `max_over_time(...[1d])` over "
            f"{decode['series']} backfilled series ({_n(decode['samples'])} samples, constant "
            f"values at 15 s) took {decode['median_s'] * 1000:.0f} ms (median of 5): "
            f"{decode['samples_per_s'] / 1e6:,.1f} M samples/s on one query.",
        ]
    return lines


def breaks_list(model: dict[str, Any]) -> list[str]:
    return [
        f"{i}. {item['what']}: at about {_n(item['nodes'])} nodes"
        for i, item in enumerate(model["breaks_first"][:6], 1)
    ]


def section(
    runs: Sequence[dict[str, Any]],
    decode: dict[str, Any] | None,
    machine: dict[str, Any],
    model: dict[str, Any],
) -> str:
    """The Markdown both fleet.md and the docs section carry."""
    run = runs[-1]
    lines = [
        f"Measured {machine['date']} on {machine['cpus']} CPUs ({machine['platform']}, "
        f"Python {machine['python']}, {machine['prometheus']}, checkout "
        f"{machine.get('commit', '?')}) with "
        f"`{machine['command'].strip()}`: one `python -m exporter --simulate={run['scenario']}` "
        "process per node (8 GPUs, 2 in MIG mode, its own FAKE_NVML_NODE identity), one "
        "Prometheus scraping them with alerts/rules/*.yaml, rules evaluated at the scrape "
        f"interval ({run['scrape_interval_s']:g} s in this run), each size measured over "
        f"{run['window_s']:g} s after a warm-up. Exporters, Prometheus and the query client "
        "share the machine's cores.",
        "",
        "### Measured",
        "",
        *measured_table(runs),
        "",
        "Rule evaluation per group (prometheus_rule_group_last_duration_seconds, median over "
        "the window):",
        "",
        *rule_table(runs),
        "",
        f"Slowest rules at {run['nodes']} nodes (/api/v1/rules evaluationTime, one "
        "evaluation at the end of the window):",
        "",
        *slowest_rules_table(run),
        "",
        f"Heaviest dashboard queries at {run['nodes']} nodes (the dashboards opened on the last "
        "hour; range targets as /api/v1/query_range over 1 h at one scrape interval per step, "
        "instant targets as /api/v1/query with $__range = 1h; each the median of "
        "the timings). The TSDB holds only the run's minutes, not a full hour, so "
        "range queries touch fewer samples than on a Prometheus that has been up an hour:",
        "",
        *query_table(run),
        "",
        "### Extrapolated (an estimate, not a measurement)",
        "",
        f"Straight lines fitted over {', '.join(str(r['nodes']) for r in runs)} nodes: "
        f"{model['series_per_node_slope']:,.0f} head series per node (rule outputs included), "
        f"{model['samples_per_s_per_node_at_15s']:,.1f} samples/s per node at a 15 s scrape, "
        f"{model['rule_eval_ms_per_node']:.3f} ms of rule evaluation per node and round. "
        f"Memory (estimate) uses {model['bytes_per_series_source']}; the measured slope is "
        f"{model['measured_rss_bytes_per_series_slope']:,.0f} bytes of Prometheus RSS per extra "
        "head series on this run (small fleets: fixed overhead dominates, so read it as a "
        "rough figure). Rule and query times are lower bounds: joins and regex matchers "
        "grow at least linearly with the series they touch.",
        "",
        *extrapolation_table(model),
        "",
        "Long range selectors of the rules (windows of an hour and more): what one "
        "evaluation round reads once Prometheus holds the whole window. The measured rule "
        "times above do not include this (the run holds minutes of data):",
        "",
        *long_range_table(run, decode),
        "",
        "What reaches its limit first as the fleet grows (limits: a rule group slower than its "
        "15 s interval, a dashboard refresh over 10 s, 64 GiB of head memory, 8 cores):",
        "",
        *breaks_list(model),
    ]
    return "\n".join(lines) + "\n"


def replace_between(text: str, start: str, end: str, body: str) -> str:
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        return text.rstrip() + f"\n\n## Fleet sizing\n\n{start}\n{body}{end}\n"
    return pattern.sub(lambda _m: f"{start}\n{body}{end}", text, count=1)


def write_outputs(
    runs: Sequence[dict[str, Any]],
    decode: dict[str, Any] | None,
    machine: dict[str, Any],
    results: Path,
    docs: Path,
    quick: bool,
) -> list[Path]:
    model = extrapolate(runs, decode)
    results.mkdir(parents=True, exist_ok=True)
    body = section(runs, decode, machine, model)
    json_path = results / "fleet.json"
    json_path.write_text(
        json.dumps(
            {
                "quick": quick,
                "machine": machine,
                "runs": list(runs),
                "decode": decode,
                "extrapolation": model,
            },
            indent=2,
        )
        + "\n"
    )
    md_path = results / "fleet.md"
    md_path.write_text("# Fleet benchmark (`python benchmarks/fleet.py`)\n\n" + body)
    existing = docs.read_text() if docs.exists() else SKELETON
    if BENCH_START not in existing:
        existing = existing.rstrip() + f"\n\n{BENCH_START}\n{BENCH_END}\n"
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(replace_between(existing, FLEET_START, FLEET_END, body))
    return [json_path, md_path, docs]
