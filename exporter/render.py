"""Render samples as Prometheus text (0.0.4) or OpenMetrics (1.0.0) exposition.

Why not prometheus_client's generate_latest: the exposition is rebuilt from a fresh snapshot
every collection, and a direct renderer over plain tuples is several times cheaper than building
MetricFamily objects first. Families come out in catalog order and samples in the order sources
added them, so the output is deterministic (golden files depend on that).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from exporter.metrics import CATALOG, Family
from exporter.model import Sample, SampleMap

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def escape_label_value(value: str) -> str:
    """Escape a label value as both formats require: backslash, double quote and newline."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """Shortest exact text for a sample value; integers without a fraction."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _label_prefixes(family: Family) -> tuple[str, ...]:
    return tuple(f'{name}="' for name in family.labels)


def _render_family(
    family: Family, samples: Iterable[Sample], openmetrics: bool, out: list[str]
) -> None:
    name = family.base_name if openmetrics else family.name
    out.append(f"# HELP {name} {_escape_help(family.help)}\n")
    out.append(f"# TYPE {name} {family.kind}\n")
    sample_name = family.name
    prefixes = _label_prefixes(family)
    for labels, value in samples:
        if prefixes:
            pairs = ",".join(
                prefix + escape_label_value(label) + '"'
                for prefix, label in zip(prefixes, labels, strict=True)
            )
            out.append(f"{sample_name}{{{pairs}}} {format_value(value)}\n")
        else:
            out.append(f"{sample_name} {format_value(value)}\n")


def render(parts: Sequence[SampleMap], openmetrics: bool = False, tail: str = "") -> str:
    """Render the families present in any part, in catalog order, then `tail` verbatim.

    `tail` carries exposition produced elsewhere (the process metrics); OpenMetrics gets its
    closing `# EOF` after it.
    """
    out: list[str] = []
    for family in CATALOG:
        merged: list[Sample] = []
        for part in parts:
            samples = part.get(family.name)
            if samples:
                merged.extend(samples)
        if merged:
            _render_family(family, merged, openmetrics, out)
    out.append(tail)
    if openmetrics:
        out.append("# EOF\n")
    return "".join(out)
