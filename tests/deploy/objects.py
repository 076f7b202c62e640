"""What the semantic tests of tests/deploy read out of a rendered variant, and how they break one.

The semantic tests check what the rendered manifests must mean, beyond being schema-valid, in
every variant: test_scheduling, test_probes, test_privileges, test_resources, test_command_line
and test_scraping. Each rule there is a function returning the problems it finds (empty: fine),
so that the same function is run on every variant and, in the negative self-tests, on a
manifest broken on purpose (`broken`), proving it can fail. This module holds what more than one
of them reads: the pod spec, the container's environment, volume mounts and command line.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.deploy.manifests import Obj, container, one, render


def pod_spec(daemonset: Obj) -> Obj:
    spec: Obj = daemonset["spec"]["template"]["spec"]
    return spec


def env_of(ctr: Obj) -> dict[str, str]:
    return {item["name"]: str(item.get("value", "")) for item in ctr.get("env", [])}


def mounts_by_path(daemonset: Obj) -> dict[str, tuple[Obj, Obj]]:
    """mountPath -> (volumeMount, volume)."""
    volumes = {volume["name"]: volume for volume in pod_spec(daemonset).get("volumes", [])}
    return {
        mount["mountPath"]: (mount, volumes[mount["name"]])
        for mount in container(daemonset).get("volumeMounts", [])
    }


def command_line(ctr: Obj) -> tuple[dict[str, str], dict[str, str]]:
    """Flags (--name=value) and GPU_NODE_EXPORTER_* variables of the container."""
    flags: dict[str, str] = {}
    for arg in ctr.get("args", []):
        name, _, value = arg.partition("=")
        flags[name] = value
    env = {k: v for k, v in env_of(ctr).items() if k.startswith("GPU_NODE_EXPORTER_")}
    return flags, env


def parts(name: str) -> tuple[list[Obj], Obj, Obj]:
    objs = render(name)
    return objs, one(objs, "DaemonSet"), one(objs, "ServiceAccount")


def broken(change: Any) -> tuple[Obj, Obj]:
    _, daemonset, service_account = parts("base")
    daemonset, service_account = copy.deepcopy(daemonset), copy.deepcopy(service_account)
    change(daemonset, service_account)
    return daemonset, service_account


def ctr_of(daemonset: Obj) -> Obj:
    return container(daemonset)
