"""How Prometheus finds and scrapes the exporter, in every variant.

The Service is named after the job the alerts expect (up{job=...}), selects the pods, targets
the container's named port and publishes unready addresses (an exporter whose NVML is down must
stay a target, not vanish from the targets). The ServiceMonitor selects the Service, scrapes its
port with honorLabels (exported_namespace/exported_pod) and adds the node label; with tls, HTTPS
and the Service's DNS name as serverName, and credentials with basic auth. The plain-Prometheus
scrape config passes promtool with the rendered rules. The negative self-tests at the end prove
each check can fail.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import (
    BY_NAME,
    DEPLOY,
    NAME,
    NAMESPACE,
    ROOT,
    VARIANT_NAMES,
    Obj,
    container,
    of_kind,
    one,
    render,
)
from tests.tools import require_tool


def alert_job() -> str:
    jobs: set[str] = set(
        re.findall(r'up\{job="([^"]+)"\}', (ROOT / "alerts/rules/exporter.yaml").read_text())
    )
    assert len(jobs) == 1, jobs
    return jobs.pop()


def scrape_problems(objs: list[Obj], *, tls: bool, basic_auth: bool) -> list[str]:
    daemonset, (service,) = one(objs, "DaemonSet"), of_kind(objs, "Service")
    pod_labels = daemonset["spec"]["template"]["metadata"]["labels"]
    problems = []
    if service["metadata"]["name"] != alert_job():
        problems.append(f"Service name (the job) is not {alert_job()!r}, which the alerts use")
    if not service["spec"]["selector"].items() <= pod_labels.items():
        problems.append("Service selector does not select the pods")
    container_ports = {port["name"] for port in container(daemonset)["ports"]}
    service_ports = {port["name"]: port for port in service["spec"]["ports"]}
    for port in service_ports.values():
        if port.get("targetPort") not in container_ports:
            problems.append(f"Service targetPort {port.get('targetPort')} is not a container port")
    if not service["spec"].get("publishNotReadyAddresses"):
        problems.append("an unready exporter (NVML down) would vanish from the targets")
    for monitor in of_kind(objs, "ServiceMonitor"):
        if monitor["metadata"].get("namespace") != service["metadata"].get("namespace"):
            problems.append("ServiceMonitor is not in the Service's namespace")
        if (
            not monitor["spec"]["selector"]["matchLabels"].items()
            <= service["metadata"]["labels"].items()
        ):
            problems.append("ServiceMonitor selector does not select the Service")
        for endpoint in monitor["spec"]["endpoints"]:
            if endpoint.get("port") not in service_ports:
                problems.append(f"ServiceMonitor port {endpoint.get('port')!r} not in the Service")
            if endpoint.get("honorLabels") is not True:
                problems.append("honorLabels is not true (exported_namespace/exported_pod)")
            if not any(
                r.get("sourceLabels") == ["__meta_kubernetes_pod_node_name"]
                and r.get("targetLabel") == "node"
                for r in endpoint.get("relabelings", [])
            ):
                problems.append("no node label from __meta_kubernetes_pod_node_name")
            scheme = endpoint.get("scheme", "http")
            if scheme != ("https" if tls else "http"):
                problems.append(f"ServiceMonitor scheme {scheme} with tls={tls}")
            if tls:
                server_name = endpoint.get("tlsConfig", {}).get("serverName")
                wanted = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
                if server_name != wanted:
                    problems.append(f"tlsConfig.serverName {server_name}, want {wanted}")
            if basic_auth and "basicAuth" not in endpoint:
                problems.append("basic auth on, but the ServiceMonitor sends no credentials")
    return problems


# --- the tests --------------------------------------------------------------------------


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_scraping(name: str) -> None:
    variant = BY_NAME[name]
    tls = variant.has("tls")
    assert scrape_problems(render(name), tls=tls, basic_auth=variant.has("basic-auth")) == []


def test_plain_prometheus_scrape_config(tmp_path: Path) -> None:
    """promtool checks the snippet and the rules from the rendered ConfigMap. Debian's
    promtool is built without Kubernetes discovery, so the discovery block is checked here
    and replaced by a static target for promtool."""
    promtool = require_tool("promtool")
    snippet = yaml.safe_load(
        (DEPLOY / "overlays/plain-prometheus/prometheus-scrape-config.yaml").read_text()
    )
    objs = render("plain-prometheus")
    daemonset = one(objs, "DaemonSet")
    (job,) = snippet["scrape_configs"]
    assert job["job_name"] == alert_job()
    assert job["honor_labels"] is True
    (sd,) = job.pop("kubernetes_sd_configs")
    assert sd == {"role": "pod", "namespaces": {"names": [NAMESPACE]}}
    keeps = {
        tuple(r["source_labels"]): r["regex"]
        for r in job["relabel_configs"]
        if r.get("action") == "keep"
    }
    pod_labels = daemonset["spec"]["template"]["metadata"]["labels"]
    assert (
        keeps[("__meta_kubernetes_pod_label_app_kubernetes_io_name",)]
        == pod_labels["app.kubernetes.io/name"]
    )
    assert keeps[("__meta_kubernetes_pod_container_port_name",)] in {
        p["name"] for p in container(daemonset)["ports"]
    }
    assert any(r.get("target_label") == "node" for r in job["relabel_configs"])
    job["static_configs"] = [{"targets": ["127.0.0.1:9445"]}]
    rules = tmp_path / "rules"
    rules.mkdir()
    for key, text in one(objs, "ConfigMap", f"{NAME}-rules")["data"].items():
        (rules / key).write_text(text)
    snippet["rule_files"] = [str(rules / "*.yaml")]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(snippet))
    result = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(list(rules.iterdir()))} rule files found" in result.stdout


# --- negative self-tests: the rule fails on a manifest broken on purpose ----------------


def _break_scrape(objs: list[Obj], what: str) -> None:
    monitor = one(objs, "ServiceMonitor")["spec"]["endpoints"][0]
    service = one(objs, "Service")
    if what == "port":
        monitor["port"] = "http-metrics"
    elif what == "honor":
        monitor["honorLabels"] = False
    elif what == "node":
        monitor["relabelings"] = []
    elif what == "job":
        service["metadata"]["name"] = "dcgm-exporter"
    elif what == "target":
        service["spec"]["ports"][0]["targetPort"] = 9400
    elif what == "unready":
        service["spec"].pop("publishNotReadyAddresses")


@pytest.mark.parametrize(
    ("what", "expected"),
    [
        ("port", "not in the Service"),
        ("honor", "honorLabels"),
        ("node", "node label"),
        ("job", "the job"),
        ("target", "targetPort"),
        ("unready", "vanish"),
    ],
)
def test_scrape_rule_can_fail(what: str, expected: str) -> None:
    objs = render("prometheus-operator")
    _break_scrape(objs, what)
    assert any(expected in p for p in scrape_problems(objs, tls=False, basic_auth=False))


def test_scrape_rule_wants_tls_settings() -> None:
    problems = scrape_problems(render("prometheus-operator"), tls=True, basic_auth=True)
    assert any("scheme" in p for p in problems)
    assert any("serverName" in p for p in problems)
    assert any("credentials" in p for p in problems)
