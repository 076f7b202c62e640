"""Read samples back from a rendered exposition (a small parser, enough for our families)."""

from __future__ import annotations

import re

from exporter.publisher import Publisher

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, line
        labels = dict(_LABEL.findall(match.group(2) or ""))
        out.setdefault(match.group(1), []).append((labels, float(match.group(3))))
    return out


def values(text: str, family: str, *label_names: str) -> dict[tuple[str, ...], float]:
    """{(label values in the given order): value} for one family."""
    return {
        tuple(labels.get(name, "") for name in label_names): value
        for labels, value in parse(text).get(family, [])
    }


def exposition(publisher: Publisher) -> str:
    publisher.render_now()
    return publisher.exposition(openmetrics=False).body.decode()
