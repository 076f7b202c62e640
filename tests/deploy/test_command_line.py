"""The exporter's command line in the manifests, in every variant, checked against the real CLI.

Every flag and GPU_NODE_EXPORTER_* variable is one the CLI defines, spelled out in full
(argparse would accept an abbreviation such as --log.form), written --name=value, and not a
development one (--simulate); the values parse with the exporter's own parser; the paths they
name (kernel log, pod-resources socket, host /proc, web config) are mounted from where they
should come, with CAP_SYSLOG exactly when the kernel log is read. The components that change the
command line (processes, tls) do what they say, and the example's web config names the mounted
certificate. The negative self-tests at the end prove each check can fail.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.cli import FLAGS, config_from_args, env_name
from exporter.config import ConfigError
from tests.deploy.manifests import (
    DEPLOY,
    NAME,
    NAMESPACE,
    VARIANT_NAMES,
    Obj,
    container,
    one,
    render,
)
from tests.deploy.objects import broken, command_line, ctr_of, mounts_by_path, parts, pod_spec

KNOWN_FLAGS = {flag for flag, _, _ in FLAGS} | {"--simulate"}
KNOWN_ENV = {env_name(flag) for flag in KNOWN_FLAGS}
NOT_IN_PRODUCTION = {"--simulate"}


def command_line_problems(ctr: Obj) -> list[str]:
    """Unknown, abbreviated or production-unsuitable flags and variables."""
    problems = []
    if ctr.get("command"):
        problems.append("command overrides the image's entrypoint")
    for arg in ctr.get("args", []):
        if not arg.startswith("--") or "=" not in arg:
            problems.append(f"{arg!r}: write flags as --name=value")
    flags, env = command_line(ctr)
    problems += [f"unknown flag {flag}" for flag in flags if flag not in KNOWN_FLAGS]
    problems += [f"unknown variable {name}" for name in env if name not in KNOWN_ENV]
    for flag in NOT_IN_PRODUCTION:
        if flag in flags or env_name(flag) in env:
            problems.append(f"{flag} in a production manifest")
    return problems


def parse_problems(ctr: Obj) -> list[str]:
    """The values parse with the exporter's own CLI (the web config file is checked apart:
    it exists only in the pod)."""
    flags, env = command_line(ctr)
    argv = [f"{flag}={value}" for flag, value in flags.items() if flag != "--web.config.file"]
    saved = dict(os.environ)
    try:
        for name in [n for n in os.environ if n.startswith("GPU_NODE_EXPORTER_")]:
            del os.environ[name]
        os.environ.update({k: v for k, v in env.items() if k != env_name("--web.config.file")})
        config_from_args(argv)
    except ConfigError as err:
        return [str(err)]
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return []


def path_problems(daemonset: Obj) -> list[str]:
    """Every path the exporter is told to read is mounted from where it should come."""
    flags, env = command_line(container(daemonset))

    def setting(flag: str, default: str) -> str:
        return flags.get(flag) or env.get(env_name(flag)) or default

    mounts = mounts_by_path(daemonset)

    def host_path(path: str) -> str | None:
        entry = mounts.get(path)
        return None if entry is None else entry[1].get("hostPath", {}).get("path")

    problems = []
    capabilities = container(daemonset).get("securityContext", {}).get("capabilities", {})
    syslog = "SYSLOG" in capabilities.get("add", [])
    if setting("--collector.kmsg", "true") == "true":
        if host_path(setting("--path.kmsg", "/dev/kmsg")) != "/dev/kmsg":
            problems.append("--path.kmsg is not the host's /dev/kmsg")
        if not syslog:
            problems.append("the kernel log is on without CAP_SYSLOG (dmesg_restrict=1 nodes)")
    elif syslog or "/dev/kmsg" in mounts:
        problems.append("the kernel log is off but CAP_SYSLOG or /dev/kmsg is still granted")
    socket = setting("--path.pod-resources-socket", "/var/lib/kubelet/pod-resources/kubelet.sock")
    if host_path(str(Path(socket).parent)) != "/var/lib/kubelet/pod-resources":
        problems.append("the pod-resources socket's directory is not mounted from the host")
    if setting("--collector.processes", "false") == "true":
        procfs = setting("--path.procfs", "/proc")
        if host_path(procfs) != "/proc":
            problems.append(f"--path.procfs {procfs} is not the host's /proc")
    web_config = setting("--web.config.file", "")
    if web_config and "secret" not in mounts.get(str(Path(web_config).parent), ({}, {}))[1]:
        problems.append(f"--web.config.file {web_config} is not in a mounted Secret")
    return problems


# --- the tests --------------------------------------------------------------------------


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_command_line(name: str) -> None:
    ctr = container(parts(name)[1])
    assert command_line_problems(ctr) == []
    assert parse_problems(ctr) == []


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_paths_are_mounted(name: str) -> None:
    assert path_problems(parts(name)[1]) == []


def test_processes_component_turns_processes_on() -> None:
    _, env = command_line(container(parts("operator+processes")[1]))
    assert env.get(env_name("--collector.processes")) == "true"
    assert env.get(env_name("--path.procfs")) == "/host/proc"
    assert not pod_spec(parts("operator+processes")[1]).get("hostPID")


def test_tls_component_sets_the_web_config() -> None:
    _, env = command_line(container(parts("operator+tls")[1]))
    assert env.get(env_name("--web.config.file"), "").endswith("/web-config.yml")


def test_example_web_config_names_the_mounted_certificate() -> None:
    web = yaml.safe_load((DEPLOY / "examples/prometheus-operator-tls/web-config.yml").read_text())
    mounts = mounts_by_path(one(render("example-prometheus-operator-tls"), "DaemonSet"))
    for key in ("cert_file", "key_file"):
        directory = str(Path(web["tls_server_config"][key]).parent)
        assert "secret" in mounts[directory][1], f"{key} is not in a mounted Secret"
    secret = one(render("example-prometheus-operator-tls"), "Secret", f"{NAME}-web-config")
    assert secret["metadata"]["namespace"] == NAMESPACE


# --- negative self-tests: the rule fails on a manifest broken on purpose ----------------


@pytest.mark.parametrize(
    ("arg", "env", "expected"),
    [
        ("--colector.processes=true", None, "unknown flag --colector.processes"),
        ("--log.form=json", None, "unknown flag --log.form"),  # argparse would take it
        ("--log.format", None, "--name=value"),
        ("--simulate=a100-mig", None, "production"),
        (None, ("GPU_NODE_EXPORTER_COLECTOR_PROCESSES", "true"), "unknown variable"),
        (None, ("GPU_NODE_EXPORTER_SIMULATE", "t4"), "production"),
    ],
)
def test_command_line_rule_can_fail(
    arg: str | None, env: tuple[str, str] | None, expected: str
) -> None:
    ctr = copy.deepcopy(container(parts("base")[1]))
    if arg:
        ctr["args"].append(arg)
    if env:
        ctr["env"].append({"name": env[0], "value": env[1]})
    assert any(expected in p for p in command_line_problems(ctr))


@pytest.mark.parametrize(
    ("arg", "env"),
    [
        ("--collection.interval=5 seconds", None),
        (None, ("GPU_NODE_EXPORTER_COLLECTOR_PROCESSES", "yes please")),
        ("--log.format=text", None),
    ],
)
def test_parse_rule_can_fail(arg: str | None, env: tuple[str, str] | None) -> None:
    ctr = copy.deepcopy(container(parts("base")[1]))
    if arg:
        ctr["args"].append(arg)
    if env:
        ctr["env"].append({"name": env[0], "value": env[1]})
    assert parse_problems(ctr) != []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d, s: ctr_of(d)["args"].extend(["--collector.kmsg=true", "--path.kmsg=/h/k"]),
            "--path.kmsg",
        ),
        (lambda d, s: ctr_of(d)["args"].append("--collector.kmsg=true"), "CAP_SYSLOG"),
        (
            lambda d, s: ctr_of(d)["securityContext"]["capabilities"].update(add=["SYSLOG"]),
            "still granted",
        ),
        (
            lambda d, s: ctr_of(d)["args"].append("--path.pod-resources-socket=/run/k.sock"),
            "pod-resources",
        ),
        (
            lambda d, s: ctr_of(d)["env"].append(
                {"name": "GPU_NODE_EXPORTER_COLLECTOR_PROCESSES", "value": "true"}
            ),
            "--path.procfs",
        ),
        (lambda d, s: ctr_of(d)["args"].append("--web.config.file=/etc/web.yml"), "Secret"),
    ],
)
def test_path_rule_can_fail(change: Any, expected: str) -> None:
    daemonset, _ = broken(change)
    assert any(expected in p for p in path_problems(daemonset))
