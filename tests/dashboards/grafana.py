"""Reading the generated dashboards (dashboards/json/*.json) the way Grafana does.

Shared by the lint tests and the real-Prometheus panel test, so both walk the same panels and
targets and substitute variables with the same syntax Grafana accepts (`$name`, `${name}`,
`${name:format}`, `[[name]]`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# DASHBOARDS_JSON_DIR points the tests at another directory (drafts written with
# `python -m dashboards --output DIR`); by default they check the committed JSON.
DASHBOARD_DIR = Path(os.environ.get("DASHBOARDS_JSON_DIR") or ROOT / "dashboards" / "json")

# Stable uids (== file stems): bookmarks, links between the dashboards and provisioning depend
# on them, so changing or dropping one must be a deliberate edit of this list too.
EXPECTED_UIDS = (
    "nvidia-gpu-cost",
    "nvidia-gpu-detail",
    "nvidia-gpu-fleet",
    "nvidia-gpu-health",
    "nvidia-gpu-mig-pods",
    "nvidia-gpu-node",
    "nvidia-gpu-working",
)
TAG = "nvidia-gpu"
DATASOURCE_VARIABLE = "datasource"
TEMPLATED_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# The one way a panel declares that no data is fine: this phrase in its description, followed
# by the reason (docs/dashboards.md lists these panels).
EMPTY_OK = "Empty on a healthy node"
_EMPTY_REASON = re.compile(re.escape(EMPTY_OK) + r"\W*(?P<reason>.*)", re.DOTALL)

# Panels that show text or links, not query results.
NON_QUERY_TYPES = {"row", "text", "dashlist", "news", "annolist"}

# Grafana's global variables a query may use.
BUILTIN_VARIABLES = {
    "__rate_interval",
    "__rate_interval_ms",
    "__interval",
    "__interval_ms",
    "__range",
    "__range_s",
    "__range_ms",
    "__from",
    "__to",
    "__url_time_range",
    "__dashboard",
    "__name",
    "__org",
    "__user",
    "__data",
    "__field",
    "__series",
    "__value",
    "__all_variables",
    "__timezone",
}
VARIABLE_REF = re.compile(
    r"\$\{(?P<braced>[A-Za-z_]\w*)(?:[.:][^}]*)?\}"
    r"|\[\[(?P<old>[A-Za-z_]\w*)(?::[^\]]*)?\]\]"
    r"|\$(?P<plain>[A-Za-z_]\w*)"
)


@dataclass(frozen=True)
class Dashboard:
    """One generated file: its path and its JSON model."""

    path: Path
    model: dict[str, Any]

    @property
    def uid(self) -> str:
        return str(self.model.get("uid", ""))

    @property
    def title(self) -> str:
        return str(self.model.get("title", ""))

    def panels(self) -> list[dict[str, Any]]:
        return panels(self.model)

    def variables(self) -> list[dict[str, Any]]:
        return variables(self.model)


def dashboard_paths(directory: Path = DASHBOARD_DIR) -> list[Path]:
    return sorted(directory.glob("*.json"))


def load_dashboards(directory: Path = DASHBOARD_DIR) -> list[Dashboard]:
    return [Dashboard(path, json.loads(path.read_text())) for path in dashboard_paths(directory)]


def panels(model: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows included, with the panels of collapsed rows (which Grafana nests)."""
    found: list[dict[str, Any]] = []
    for panel in model.get("panels", []) or []:
        found.append(panel)
        found.extend(panel.get("panels", []) or [])
    return found


def variables(model: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((model.get("templating") or {}).get("list", []) or [])


def is_query_panel(panel: Mapping[str, Any]) -> bool:
    return panel.get("type") not in NON_QUERY_TYPES


def targets(panel: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(panel.get("targets", []) or [])


def is_instant(target: Mapping[str, Any]) -> bool:
    return target.get("instant") is True


def panel_label(panel: Mapping[str, Any]) -> str:
    return f"panel {panel.get('id')} {panel.get('title', '')!r}"


def empty_reason(panel: Mapping[str, Any]) -> str | None:
    """The reason a panel gives for being allowed to show no data; None if it claims none."""
    match = _EMPTY_REASON.search(str(panel.get("description", "")))
    return match.group("reason").strip() if match else None


def variable_refs(text: str) -> set[str]:
    """Names of the variables `text` uses (`$x`, `${x}`, `${x:fmt}`, `[[x]]`)."""
    return {
        match.group("braced") or match.group("old") or match.group("plain")
        for match in VARIABLE_REF.finditer(text)
    }


def substitute(text: str, value: Callable[[str], str | None]) -> str:
    """`text` with every variable `value` knows replaced; the others are left as written."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("old") or match.group("plain")
        found = value(name)
        return match.group(0) if found is None else found

    return VARIABLE_REF.sub(replace, text)


def iter_strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(JSON path, string) for every string anywhere in a JSON document."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, Mapping):
        for key, child in node.items():
            yield from iter_strings(child, f"{path}.{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from iter_strings(child, f"{path}[{index}]")


def iter_datasources(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(JSON path, value) of every `datasource` key anywhere in a JSON document."""
    if isinstance(node, Mapping):
        for key, child in node.items():
            if key == "datasource":
                yield f"{path}.{key}", child
            yield from iter_datasources(child, f"{path}.{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from iter_datasources(child, f"{path}[{index}]")


_LABEL_VALUES = re.compile(
    r"^\s*label_values\(\s*(?:(?P<selector>.+?)\s*,\s*)?(?P<label>[A-Za-z_]\w*)\s*\)\s*$",
    re.DOTALL,
)


def label_values_query(query: str) -> tuple[str | None, str] | None:
    """(series selector or None, label) of `label_values(selector, label)`; None otherwise."""
    match = _LABEL_VALUES.match(query)
    if match is None:
        return None
    return match.group("selector"), match.group("label")


def variable_query(variable: Mapping[str, Any]) -> str:
    """A query variable's query text (Grafana stores a string or {"query": ...})."""
    query = variable.get("query", "")
    if isinstance(query, Mapping):
        query = query.get("query", "")
    return str(query)
