"""What the rules' long range selectors cost once Prometheus holds their whole window.

A fleet run keeps minutes of data, so a rule reading `[1d]` of every NVLink link is measured on
minutes. Two parts make up for it:

- `range_selectors`: every `metric{...}[window]` in alerts/rules/*.yaml with the series it
  selects per node in the running fleet, so samples read per evaluation round at a 15 s scrape
  (series per node x window / 15 s) are counted, not guessed.
- `decode_rate`: how many samples per second this Prometheus decodes in `max_over_time(...[1d])`
  over a backfilled day (`promtool tsdb create-blocks-from openmetrics`, constant values at
  15 s, which is what a link-up or an ECC counter looks like), timed as an instant query.

samples per round / decode rate is the CPU time one round of those rules needs: a lower bound,
since the joins around them are not counted.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

import yaml
from fleet_stack import FleetPrometheus

from tests.e2e.stack import RULES_DIR, ServiceProcess, http_json, parse_duration
from tests.tools import require_tool

SELECTOR = re.compile(
    r"(?P<metric>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<labels>\{[^}]*\})?\[(?P<window>\d+[smhdw])\]"
)
MIN_WINDOW_S = 3600  # windows of an hour and more; the 5 m and 10 m ones are measured directly


def range_selectors() -> list[dict[str, Any]]:
    """Each long range selector of the rules: the rule's name, selector and window."""
    found = []
    for path in sorted(RULES_DIR.glob("*.yaml")):
        for group in yaml.safe_load(path.read_text()).get("groups", []):
            for rule in group.get("rules", []):
                name = rule.get("record") or rule.get("alert")
                for match in SELECTOR.finditer(str(rule.get("expr", ""))):
                    window = parse_duration(match.group("window"))
                    if window < MIN_WINDOW_S:
                        continue
                    found.append(
                        {
                            "group": group["name"],
                            "rule": name,
                            "selector": match.group("metric") + (match.group("labels") or ""),
                            "window_s": window,
                        }
                    )
    return found


def count_selected(prometheus: FleetPrometheus, nodes: int) -> list[dict[str, Any]]:
    """The long range selectors with the series each selects per node in this fleet."""
    counted = []
    for item in range_selectors():
        result = prometheus.query(f"count({item['selector']})")
        total = float(result[0]["value"][1]) if result else 0.0
        counted.append({**item, "series_per_node": total / nodes})
    return counted


def samples_per_round(selectors: list[dict[str, Any]], nodes: int, scrape_s: float) -> float:
    return float(sum(s["series_per_node"] * nodes * s["window_s"] / scrape_s for s in selectors))


class BackfilledPrometheus(ServiceProcess):
    """A Prometheus with no scrape job over a data directory promtool filled."""

    name = "prometheus-decode"

    def __init__(self, directory: Path, data: Path) -> None:
        super().__init__(directory)
        self.data = data
        self.config_path = directory / "decode.yml"
        self.config_path.write_text("global:\n  scrape_interval: 15s\n")

    def command(self, port: int) -> list[str]:
        return [
            require_tool("prometheus"),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.data}",
            "--storage.tsdb.retention.time=30d",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]


def decode_rate(work: Path, series: int, repeats: int = 5) -> dict[str, Any]:
    """Samples per second Prometheus decodes in max_over_time over a backfilled day."""
    directory = work / "decode"
    directory.mkdir(parents=True)
    step = 15
    end = (int(time.time()) // 3600 - 3) * 3600  # older than the head block's range
    start = end - 86400
    text = directory / "day.om"
    with text.open("w") as out:
        out.write("# TYPE fleet_bench_link_up gauge\n")
        for index in range(series):
            labels = f'{{node="n{index // 96}",link="{index % 96}"}}'
            out.writelines(
                f"fleet_bench_link_up{labels} 1 {ts}\n" for ts in range(start, end + 1, step)
            )
        out.write("# EOF\n")
    data = directory / "data"
    subprocess.run(
        [
            require_tool("promtool"),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(text),
            str(data),
        ],
        check=True,
        capture_output=True,
    )
    text.unlink()
    prometheus = BackfilledPrometheus(directory, data)
    prometheus.start()
    try:
        query = "max(max_over_time(fleet_bench_link_up[1d]))"
        params = urllib.parse.urlencode({"query": query, "time": str(end)})
        timings = []
        for _ in range(repeats + 1):  # the first one reads the blocks from disk: dropped
            began = time.perf_counter()
            reply = http_json(prometheus.port, f"/api/v1/query?{params}")
            timings.append(time.perf_counter() - began)
            assert reply["data"]["result"], f"backfilled data not found: {reply}"
        seconds = statistics.median(timings[1:])
        samples = series * (86400 // step + 1)
        return {
            "series": series,
            "samples": samples,
            "median_s": seconds,
            "samples_per_s": samples / seconds,
        }
    finally:
        prometheus.stop()
