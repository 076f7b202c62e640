"""The DaemonSet's liveness, readiness and startup probes, in every variant.

/healthz for liveness (and startup), /readyz for readiness, on the container's named port, which
is the port the exporter listens on. Liveness has a generous timeout and failure budget: a busy
node must not get a healthy exporter restarted. HTTPS with the tls component; tcpSocket with
basic auth, since the kubelet sends no credentials and a 401 would count as a failed probe. The
negative self-tests at the end prove each check can fail.
"""

from __future__ import annotations

from typing import Any

import pytest

from exporter.cli import env_name
from tests.deploy.manifests import BY_NAME, VARIANT_NAMES, Obj, container
from tests.deploy.objects import broken, command_line, ctr_of, parts


def probe_problems(daemonset: Obj, *, tls: bool, basic_auth: bool) -> list[str]:
    ctr = container(daemonset)
    ports = {port["name"]: port["containerPort"] for port in ctr.get("ports", [])}
    problems = []
    expected = {
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
        "startupProbe": "/healthz",
    }
    for kind, path in expected.items():
        probe = ctr.get(kind)
        if probe is None:
            if kind != "startupProbe":
                problems.append(f"no {kind}")
            continue
        if basic_auth:
            if "tcpSocket" not in probe or "httpGet" in probe:
                problems.append(f"{kind}: basic auth needs a tcpSocket probe (401 = failure)")
                continue
            port = probe["tcpSocket"]["port"]
        else:
            get = probe.get("httpGet")
            if get is None:
                problems.append(f"{kind} is not an httpGet probe")
                continue
            if get.get("path") != path:
                problems.append(f"{kind} probes {get.get('path')}, not {path}")
            scheme = get.get("scheme", "HTTP")
            if scheme != ("HTTPS" if tls else "HTTP"):
                problems.append(f"{kind} scheme {scheme} with tls={tls}")
            port = get["port"]
        if port not in ports:
            problems.append(f"{kind} port {port!r} is not a named container port")
    liveness = ctr.get("livenessProbe", {})
    if int(liveness.get("timeoutSeconds", 1)) < 5:
        problems.append("liveness timeoutSeconds under 5 s: a busy node would kill it")
    budget = int(liveness.get("periodSeconds", 10)) * int(liveness.get("failureThreshold", 3))
    if budget < 60:
        problems.append(f"liveness restarts after {budget} s of misses (want >= 60 s)")
    if ports.get("metrics") != listen_port(daemonset):
        problems.append(f"port 'metrics' {ports.get('metrics')} is not the listen port")
    return problems


def listen_port(daemonset: Obj) -> int:
    flags, env = command_line(container(daemonset))
    address = flags.get("--web.listen-address") or env.get(
        env_name("--web.listen-address"), ":9445"
    )
    return int(address.rpartition(":")[2])


# --- the tests --------------------------------------------------------------------------


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_probes(name: str) -> None:
    variant = BY_NAME[name]
    tls = variant.has("tls")
    basic_auth = variant.has("basic-auth")
    assert probe_problems(parts(name)[1], tls=tls, basic_auth=basic_auth) == []


# --- negative self-tests: the rule fails on a manifest broken on purpose ----------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d, s: ctr_of(d)["livenessProbe"].update(timeoutSeconds=1), "timeoutSeconds"),
        (lambda d, s: ctr_of(d)["livenessProbe"].update(failureThreshold=1), "restarts after"),
        (
            lambda d, s: ctr_of(d)["readinessProbe"]["httpGet"].update(path="/healthz"),
            "not /readyz",
        ),
        (
            lambda d, s: ctr_of(d)["livenessProbe"]["httpGet"].update(port="http"),
            "named container port",
        ),
        (lambda d, s: ctr_of(d)["ports"][0].update(containerPort=9400), "listen port"),
        (lambda d, s: ctr_of(d)["livenessProbe"]["httpGet"].update(scheme="HTTPS"), "scheme"),
    ],
)
def test_probe_rule_can_fail(change: Any, expected: str) -> None:
    daemonset, _ = broken(change)
    assert any(expected in p for p in probe_problems(daemonset, tls=False, basic_auth=False))


def test_probe_rule_wants_tcp_with_basic_auth() -> None:
    daemonset = parts("operator+tls")[1]
    assert any("tcpSocket" in p for p in probe_problems(daemonset, tls=True, basic_auth=True))
