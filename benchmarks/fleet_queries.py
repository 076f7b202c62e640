"""The fleet dashboards' queries, timed against the fleet's Prometheus.

The queries come from dashboards/json/nvidia-gpu-fleet.json and nvidia-gpu-cost.json, with the
variables resolved the way Grafana opens the dashboard (tests/dashboards/grafana.py's
substitution; `All` of a multi-value variable becomes the regex of every value, as in
tests/dashboards/test_panels_prometheus.py). A dashboard opened on the last hour: every
range target runs as /api/v1/query_range over that hour at a step of one scrape interval
(Grafana's step for a 1 h panel is below the scrape interval, so it is clamped to it); a target
the panel marks instant runs as /api/v1/query at the end with $__range = 1h, as Grafana sends
it (timing the cost panels' `[$__range:1m]` subqueries at 240 steps would cost 240 times what
a refresh does). The sum of the medians is one dashboard refresh run query after query.
Each is timed `repeats` times in turn and the median kept: the spread on a shared 2-core
machine is large, the median is what a user sees most of the time.
"""

from __future__ import annotations

import re
import statistics
import sys
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.dashboards.grafana import (
    Dashboard,
    is_instant,
    is_query_panel,
    label_values_query,
    load_dashboards,
    substitute,
    targets,
    variable_query,
    variable_refs,
)
from tests.e2e.stack import http_json

FLEET_DASHBOARDS = ("nvidia-gpu-fleet", "nvidia-gpu-cost")
RANGE_SECONDS = 3600


@dataclass(frozen=True)
class QueryTiming:
    dashboard: str
    key: str  # uid#panel-id/refId: the same target at every fleet size
    panel: str
    expr: str
    instant: bool  # timed as /api/v1/query (else /api/v1/query_range over 1 h)
    median_ms: float
    max_ms: float
    series: int  # series in the result
    error: str = ""


def _api(port: int, path: str, params: Sequence[tuple[str, str]]) -> dict[str, Any]:
    reply = http_json(port, f"/api/v1/{path}?" + urllib.parse.urlencode(params))
    if reply.get("status") != "success":
        raise ValueError(str(reply)[:300])
    data = reply["data"]
    return dict(data) if isinstance(data, dict) else {"values": data}


def _regex_all(values: Sequence[str]) -> str:
    escaped = [re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", v) for v in values]
    if not escaped:
        return ".*"  # no values yet (e.g. no pods): Grafana's All then matches anything
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def resolve_variables(
    port: int, dashboard: Dashboard, start: float, end: float, scrape_s: float
) -> dict[str, str]:
    """Each variable's value when the dashboard opens on the last hour (All where offered)."""
    rate_interval = int(max(4 * scrape_s, 2 * scrape_s))
    values = {
        "__rate_interval": f"{rate_interval}s",
        "__interval": f"{int(scrape_s)}s",
        "__range": f"{int(end - start)}s",
        "__range_s": str(int(end - start)),
    }
    for variable in dashboard.variables():
        name = str(variable.get("name"))
        if variable.get("type") == "datasource":
            values[name] = "prometheus"
            continue
        options: list[str] = []
        if variable.get("type") == "query":
            parsed = label_values_query(substitute(variable_query(variable), values.get))
            if parsed is not None:
                selector, label = parsed
                params = [("start", f"{start:.3f}"), ("end", f"{end:.3f}")]
                if selector:
                    params.append(("match[]", selector))
                options = sorted(_api(port, f"label/{label}/values", params)["values"])
        else:
            options = [o.strip() for o in variable_query(variable).split(",") if o.strip()]
        if variable.get("includeAll"):
            values[name] = str(variable.get("allValue") or _regex_all(options))
        else:
            values[name] = options[0] if options else ""
    return values


def _time_one(
    port: int, expr: str, start: float, end: float, step: float, instant: bool
) -> tuple[float, int]:
    if instant:
        path, params = "query", [("query", expr), ("time", f"{end:.3f}")]
    else:
        path = "query_range"
        params = [
            ("query", expr),
            ("start", f"{start:.3f}"),
            ("end", f"{end:.3f}"),
            ("step", f"{step}"),
        ]
    began = time.perf_counter()
    data = _api(port, path, params)
    elapsed = (time.perf_counter() - began) * 1000
    return elapsed, len(data.get("result", []))


def time_dashboards(port: int, scrape_s: float, repeats: int) -> list[QueryTiming]:
    """Every target of the fleet dashboards, timed over the last hour (slowest first)."""
    end = time.time()
    start = end - RANGE_SECONDS
    chosen = [d for d in load_dashboards() if d.uid in FLEET_DASHBOARDS]
    timings: list[QueryTiming] = []
    for dashboard in chosen:
        values = resolve_variables(port, dashboard, start, end, scrape_s)
        for panel in dashboard.panels():
            if not is_query_panel(panel):
                continue
            for target in targets(panel):
                expr = substitute(str(target.get("expr", "")), values.get)
                if not expr.strip() or variable_refs(expr):
                    continue
                title = f"{panel.get('title', '')} [{target.get('refId', '')}]"
                samples: list[float] = []
                series = 0
                error = ""
                for _ in range(repeats):
                    try:
                        elapsed, series = _time_one(
                            port, expr, start, end, scrape_s, is_instant(target)
                        )
                    except ValueError as err:
                        error = str(err)
                        break
                    samples.append(elapsed)
                timings.append(
                    QueryTiming(
                        dashboard=dashboard.uid,
                        key=f"{dashboard.uid}#{panel.get('id')}/{target.get('refId', '')}",
                        panel=title,
                        expr=expr,
                        instant=is_instant(target),
                        median_ms=statistics.median(samples) if samples else 0.0,
                        max_ms=max(samples) if samples else 0.0,
                        series=series,
                        error=error,
                    )
                )
    return sorted(timings, key=lambda t: t.median_ms, reverse=True)
