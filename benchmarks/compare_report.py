"""Turn raw per-run samples into rows (median, min-max, ours/peer) and write them out.

Why separate: the same rows go to three places (latest.json, latest.md and the section of
docs/performance.md between the bench markers), and what a row means (unit, settings of
each side, why a ratio is or is not given) must read the same in all of them.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

START = "<!-- bench:start -->"
END = "<!-- bench:end -->"


@dataclass
class Row:
    """One measured quantity for one case; values per run for each side."""

    section: str
    metric: str
    case: str
    unit: str
    ours_setting: str
    peer_setting: str
    note: str = ""
    ours: list[float] = field(default_factory=list)
    peer: list[float] = field(default_factory=list)
    compare: bool = True  # False: the two sides do not measure the same thing

    def stats(self, side: str) -> dict[str, float] | None:
        """median/min/max of one side's finite values, None when it has none."""
        values = [v for v in (self.ours if side == "ours" else self.peer) if math.isfinite(v)]
        if not values:
            return None
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    def ratio(self) -> float | None:
        """ours/peer of the medians, where both measure the same thing."""
        ours, peer = self.stats("ours"), self.stats("peer")
        if not self.compare or ours is None or peer is None or peer["median"] == 0:
            return None
        return ours["median"] / peer["median"]

    def as_json(self) -> dict[str, Any]:
        """Everything, including every run's value."""
        data = asdict(self)
        data["ours_stats"] = self.stats("ours")
        data["peer_stats"] = self.stats("peer")
        data["ratio_ours_over_peer"] = self.ratio()
        return data


def _num(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def cell(stats: dict[str, float] | None) -> str:
    """`median (min-max)`, or a dash when not measured."""
    if stats is None:
        return "-"
    if stats["min"] == stats["max"]:
        return _num(stats["median"])
    return f"{_num(stats['median'])} ({_num(stats['min'])}-{_num(stats['max'])})"


def table(rows: list[Row]) -> str:
    """The Markdown table, one block per section."""
    out: list[str] = []
    section = None
    order = list(dict.fromkeys(r.section for r in rows))
    for row in sorted(rows, key=lambda r: order.index(r.section)):
        if row.section != section:
            section = row.section
            out += [
                "",
                f"**{section}**",
                "",
                "| metric | case | ours (median, min-max) | peer (median, min-max) | ours/peer | "
                "ours setting | peer setting | note |",
                "| --- | --- | --- | --- | --- | --- | --- | --- |",
            ]
        ratio = row.ratio()
        ratio_text = f"{ratio:.2f}" if ratio is not None else "n/a"
        out.append(
            f"| {row.metric} ({row.unit}) | {row.case} | {cell(row.stats('ours'))} | "
            f"{cell(row.stats('peer'))} | {ratio_text} | {row.ours_setting} | {row.peer_setting} | "
            f"{row.note} |"
        )
    return "\n".join(out).lstrip("\n") + "\n"


def machine_block(meta: dict[str, Any]) -> str:
    """The header lines that say where and how the figures were taken."""
    lines = [f"- {key}: {value}" for key, value in meta.items()]
    return "\n".join(lines) + "\n"


def markdown(meta: dict[str, Any], rows: list[Row], notes: list[str]) -> str:
    """latest.md: machine, settings, the table, what was left out."""
    parts = [
        "# gpu-node-exporter vs nvitop-exporter (benchmarks/compare.py)",
        "",
        machine_block(meta),
        table(rows),
    ]
    if notes:
        parts += ["", "Notes:", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(parts)


def write_results(directory: Path, meta: dict[str, Any], rows: list[Row], notes: list[str]) -> None:
    """latest.json (every run) and latest.md."""
    directory.mkdir(parents=True, exist_ok=True)
    payload = {"machine": meta, "notes": notes, "rows": [r.as_json() for r in rows]}
    (directory / "latest.json").write_text(json.dumps(payload, indent=2) + "\n")
    (directory / "latest.md").write_text(markdown(meta, rows, notes))


def write_docs(path: Path, meta: dict[str, Any], rows: list[Row], notes: list[str]) -> None:
    """Replace the text between the bench markers (creating the file with them if needed)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Performance\n\n{START}\n{END}\n")
    text = path.read_text()
    if START not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    body = "\n".join(
        [
            "",
            "Written by `make bench` (`python benchmarks/compare.py`); do not edit by hand.",
            "",
            machine_block(meta),
            table(rows),
            *(["Notes:", "", *[f"- {n}" for n in notes], ""] if notes else []),
        ]
    )
    path.write_text(f"{head}{START}\n{body}\n{END}{tail}")
