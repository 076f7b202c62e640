"""What the exporter's pod may do on the node, in every variant: as little as it needs.

It runs on every GPU node with host paths mounted, so its container gets a read-only root
filesystem, no privilege escalation, no privileged mode, every capability dropped but SYSLOG
(the kernel log), seccomp RuntimeDefault, no hostPID/hostIPC and no service-account token;
every hostPath is one of the known ones and mounted read-only. GPU access comes from the NVIDIA
runtime with NVML only (no NVIDIA_MIG_* variables, which it refuses without CAP_SYS_ADMIN). The
namespace admits such pods. The negative self-tests at the end prove each check can fail.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.manifests import VARIANT_NAMES, Obj, container, one, render
from tests.deploy.objects import broken, ctr_of, env_of, mounts_by_path, parts, pod_spec

ALLOWED_HOST_PATHS = {"/dev/kmsg", "/var/lib/kubelet/pod-resources", "/proc"}
ALLOWED_CAPABILITIES = {"SYSLOG"}


def privilege_problems(daemonset: Obj, service_account: Obj) -> list[str]:
    spec = pod_spec(daemonset)
    ctr = container(daemonset)
    context: Obj = ctr.get("securityContext", {})
    problems = []
    for field in ("hostPID", "hostIPC"):
        if spec.get(field):
            problems.append(f"{field}: true")
    if context.get("privileged"):
        problems.append("privileged container")
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    if context.get("readOnlyRootFilesystem") is not True:
        problems.append("readOnlyRootFilesystem is not true")
    capabilities = context.get("capabilities", {})
    if capabilities.get("drop") != ["ALL"]:
        problems.append(f"capabilities.drop is {capabilities.get('drop')}, not [ALL]")
    extra = set(capabilities.get("add", [])) - ALLOWED_CAPABILITIES
    if extra:
        problems.append(f"capabilities added beyond SYSLOG: {sorted(extra)}")
    seccomp = context.get("seccompProfile") or spec.get("securityContext", {}).get("seccompProfile")
    if (seccomp or {}).get("type") != "RuntimeDefault":
        problems.append("seccompProfile is not RuntimeDefault")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append("pod mounts a service-account token")
    if service_account.get("automountServiceAccountToken") is not False:
        problems.append("ServiceAccount automounts its token")
    for path, (mount, volume) in mounts_by_path(daemonset).items():
        host = volume.get("hostPath")
        if host is None:
            continue
        if host["path"] not in ALLOWED_HOST_PATHS:
            problems.append(f"unexpected hostPath {host['path']}")
        if mount.get("readOnly") is not True:
            problems.append(f"hostPath {host['path']} mounted writable at {path}")
    env = env_of(ctr)
    if spec.get("runtimeClassName") != "nvidia" or env.get("NVIDIA_VISIBLE_DEVICES") != "all":
        problems.append("GPU access: runtimeClassName nvidia and NVIDIA_VISIBLE_DEVICES=all")
    if env.get("NVIDIA_DRIVER_CAPABILITIES") != "utility":
        problems.append("NVIDIA_DRIVER_CAPABILITIES is not just utility (NVML)")
    mig = sorted(name for name in env if name.startswith("NVIDIA_MIG_"))
    if mig:
        problems.append(f"{mig}: the NVIDIA runtime refuses them without CAP_SYS_ADMIN")
    return problems


# --- the tests --------------------------------------------------------------------------


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_privileges(name: str) -> None:
    _, daemonset, service_account = parts(name)
    assert privilege_problems(daemonset, service_account) == []


def test_namespace_admits_hostpath_pods() -> None:
    labels = one(render("base"), "Namespace")["metadata"]["labels"]
    assert labels.get("pod-security.kubernetes.io/enforce") == "privileged"


# --- negative self-tests: the rule fails on a manifest broken on purpose ----------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d, s: pod_spec(d).update(hostPID=True), "hostPID"),
        (lambda d, s: ctr_of(d)["securityContext"].update(privileged=True), "privileged"),
        (lambda d, s: ctr_of(d)["securityContext"].pop("allowPrivilegeEscalation"), "Escalation"),
        (
            lambda d, s: ctr_of(d)["securityContext"].update(readOnlyRootFilesystem=False),
            "readOnly",
        ),
        (
            lambda d, s: ctr_of(d)["securityContext"]["capabilities"].update(drop=["NET_RAW"]),
            "drop",
        ),
        (
            lambda d, s: ctr_of(d)["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
            "SYS_ADMIN",
        ),
        (lambda d, s: pod_spec(d).pop("securityContext"), "seccomp"),
        (lambda d, s: pod_spec(d).pop("automountServiceAccountToken"), "token"),
        (lambda d, s: s.update(automountServiceAccountToken=True), "ServiceAccount"),
        (lambda d, s: ctr_of(d)["volumeMounts"][0].update(readOnly=False), "writable"),
        (
            lambda d, s: pod_spec(d)["volumes"][0]["hostPath"].update(path="/"),
            "unexpected hostPath",
        ),
        (lambda d, s: pod_spec(d).pop("runtimeClassName"), "runtimeClassName"),
        (
            lambda d, s: ctr_of(d)["env"].append(
                {"name": "NVIDIA_MIG_MONITOR_DEVICES", "value": "all"}
            ),
            "CAP_SYS_ADMIN",
        ),
    ],
)
def test_privilege_rule_can_fail(change: Any, expected: str) -> None:
    daemonset, service_account = broken(change)
    assert any(expected in p for p in privilege_problems(daemonset, service_account))
