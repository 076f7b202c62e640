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


# Series text ("name{a="x",b="y"} ") by (sample name, label values): the same series come back
# every collection, so each one is formatted once. Cleared when it grows past the bound, so
# churning label values (pods, processes) cannot grow it without limit.
_SERIES_CACHE: dict[tuple[str, tuple[str, ...]], str] = {}
SERIES_CACHE_LIMIT = 200_000


def _series_text(sample_name: str, prefixes: tuple[str, ...], labels: tuple[str, ...]) -> str:
    key = (sample_name, labels)
    text = _SERIES_CACHE.get(key)
    if text is None:
        if len(_SERIES_CACHE) >= SERIES_CACHE_LIMIT:
            _SERIES_CACHE.clear()
        pairs = ",".join(
            prefix + escape_label_value(label) + '"'
            for prefix, label in zip(prefixes, labels, strict=True)
        )
        text = _SERIES_CACHE[key] = f"{sample_name}{{{pairs}}} " if prefixes else f"{sample_name} "
    return text


def _render_family(
    family: Family, samples: Iterable[Sample], openmetrics: bool, out: list[str]
) -> None:
    name = family.base_name if openmetrics else family.name
    out.append(f"# HELP {name} {_escape_help(family.help)}\n")
    out.append(f"# TYPE {name} {family.kind}\n")
    sample_name = family.name
    prefixes = _label_prefixes(family)
    append = out.append
    for labels, value in samples:
        append(_series_text(sample_name, prefixes, labels))
        append(format_value(value))
        append("\n")


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
