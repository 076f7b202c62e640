"""dashboards/provisioning/: the Grafana provisioning files for users who run Grafana.

No Grafana is installable here (it is not packaged in Debian), so the files are checked
against the structure Grafana's provisioning reader expects (apiVersion 1; datasources with
name/type/access/url; file providers with options.path) and against the dashboards they load:
the datasource type is the one every dashboard's datasource variable selects, and the
provider's path, with the environment variable set as docs/dashboards.md says, holds exactly
the generated dashboards.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dashboards.grafana import DASHBOARD_DIR, EXPECTED_UIDS, load_dashboards

ROOT = Path(__file__).resolve().parents[2]
PROVISIONING = ROOT / "dashboards" / "provisioning"
DATASOURCES = PROVISIONING / "datasources" / "gpu-node-exporter.yaml"
PROVIDERS = PROVISIONING / "dashboards" / "gpu-node-exporter.yaml"
DOCS = ROOT / "docs" / "dashboards.md"
# Grafana expands $VAR and ${VAR} in provisioning files from its environment.
ENV_REF = re.compile(r"\$\{?([A-Z_][A-Z0-9_]*)\}?")
DATASOURCE_KEYS = {
    "name",
    "type",
    "uid",
    "access",
    "url",
    "isDefault",
    "editable",
    "jsonData",
    "secureJsonData",
    "basicAuth",
    "basicAuthUser",
    "orgId",
    "version",
}
PROVIDER_KEYS = {
    "name",
    "orgId",
    "folder",
    "folderUid",
    "type",
    "disableDeletion",
    "updateIntervalSeconds",
    "allowUiUpdates",
    "options",
}


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), f"{path.name}: not a YAML mapping"
    assert document.get("apiVersion") == 1, f"{path.name}: Grafana reads apiVersion 1"
    return document


def expand(value: str, env: dict[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in env, f"{value!r} needs {name}, which the docs do not set"
        return env[name]

    return ENV_REF.sub(substitute, value)


def strings(node: object) -> list[str]:
    """Every string value of a parsed YAML document (comments are not values)."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [text for value in node.values() for text in strings(value)]
    if isinstance(node, list):
        return [text for value in node for text in strings(value)]
    return []


def documented_env() -> set[str]:
    return set(re.findall(r"\bGPU_NODE_EXPORTER_[A-Z_]+\b", DOCS.read_text()))


def test_datasource_is_a_prometheus_the_dashboards_can_select() -> None:
    sources = load(DATASOURCES)["datasources"]
    assert len(sources) == 1
    source = sources[0]
    assert set(source) <= DATASOURCE_KEYS, set(source) - DATASOURCE_KEYS
    assert source["access"] == "proxy"  # the browser never talks to Prometheus directly
    variable_types = {
        variable["query"]
        for dashboard in load_dashboards()
        for variable in dashboard.variables()
        if variable.get("type") == "datasource"
    }
    assert variable_types == {source["type"]} == {"prometheus"}
    url = expand(source["url"], {"GPU_NODE_EXPORTER_PROMETHEUS_URL": "http://prom:9090"})
    assert url == "http://prom:9090"
    assert "GPU_NODE_EXPORTER_PROMETHEUS_URL" in documented_env()


def test_provider_loads_exactly_the_generated_dashboards() -> None:
    providers = load(PROVIDERS)["providers"]
    assert len(providers) == 1
    provider = providers[0]
    assert set(provider) <= PROVIDER_KEYS, set(provider) - PROVIDER_KEYS
    assert provider["type"] == "file"
    assert provider["allowUiUpdates"] is False  # generated files: UI edits would be lost
    path = Path(
        expand(provider["options"]["path"], {"GPU_NODE_EXPORTER_DASHBOARDS": str(DASHBOARD_DIR)})
    )
    assert path.is_dir(), path
    assert tuple(sorted(p.stem for p in path.glob("*.json"))) == EXPECTED_UIDS
    assert "GPU_NODE_EXPORTER_DASHBOARDS" in documented_env()


def test_every_environment_reference_is_documented() -> None:
    used: set[str] = set()
    for path in (DATASOURCES, PROVIDERS):
        used |= {name for value in strings(load(path)) for name in ENV_REF.findall(value)}
    assert used, "the provisioning files name no environment variable"
    assert used <= documented_env(), used - documented_env()


def test_expand_fails_on_an_unset_variable() -> None:
    with pytest.raises(AssertionError, match="NOT_SET"):
        expand("${NOT_SET}/x", {})
