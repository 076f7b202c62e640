"""Where the DaemonSet's pods run and how they are replaced, in every variant.

GPU nodes only (nodeSelector nvidia.com/gpu.present), the usual GPU taints tolerated (by
Kubernetes' own matching rule, itself tested here): a monitor that lands on no GPU node, or is
kept off tainted ones, watches nothing. system-node-critical priority (and the ResourceQuota
that admits it), a RollingUpdate with maxUnavailable and, with hostNetwork, no surge (the new
pod could not bind the host port), no version in the immutable selector, and a termination grace
period of at most 10 s. The negative self-tests at the end prove each check can fail.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.manifests import NAME, VARIANT_NAMES, Obj, one, render
from tests.deploy.objects import broken, parts, pod_spec

GPU_TAINTS = (  # (key, value, effect) as GPU platforms set them
    ("nvidia.com/gpu", "", "NoSchedule"),
    ("nvidia.com/gpu", "present", "NoSchedule"),
    ("nvidia.com/gpu", "true", "NoExecute"),
    ("sku", "gpu", "NoSchedule"),
)


def tolerates(toleration: Obj, key: str, value: str, effect: str) -> bool:
    """Kubernetes' rule: effect empty or equal; Exists matches any value (and, without a key,
    any key); Equal (the default) needs key and value equal."""
    if toleration.get("effect") not in (None, "", effect):
        return False
    operator = toleration.get("operator", "Equal")
    if operator == "Exists":
        return toleration.get("key") in (None, "", key)
    return toleration.get("key") == key and toleration.get("value", "") == value


def scheduling_problems(daemonset: Obj) -> list[str]:
    spec = pod_spec(daemonset)
    problems = []
    if spec.get("nodeSelector", {}).get("nvidia.com/gpu.present") != "true":
        problems.append("nodeSelector lacks nvidia.com/gpu.present: 'true'")
    tolerations = spec.get("tolerations", [])
    for key, value, effect in GPU_TAINTS:
        if not any(tolerates(t, key, value, effect) for t in tolerations):
            problems.append(f"taint {key}={value}:{effect} not tolerated")
    if spec.get("priorityClassName") != "system-node-critical":
        problems.append("priorityClassName is not system-node-critical")
    strategy = daemonset["spec"].get("updateStrategy", {})
    rolling = strategy.get("rollingUpdate", {})
    if strategy.get("type") != "RollingUpdate" or "maxUnavailable" not in rolling:
        problems.append("updateStrategy is not RollingUpdate with maxUnavailable")
    if spec.get("hostNetwork") and rolling.get("maxSurge", 0) not in (0, "0", "0%"):
        problems.append("maxSurge with hostNetwork: the new pod cannot bind port 9445")
    selector = daemonset["spec"]["selector"]["matchLabels"]
    if any("version" in key for key in selector):
        problems.append(f"version label in the immutable selector: {selector}")
    if int(spec.get("terminationGracePeriodSeconds", 30)) > 10:
        problems.append("terminationGracePeriodSeconds over 10 s")
    return problems


# --- the tests --------------------------------------------------------------------------


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_scheduling(name: str) -> None:
    assert scheduling_problems(parts(name)[1]) == []


def test_quota_admits_the_priority_class() -> None:
    objs = render("base")
    quota = one(objs, "ResourceQuota", f"{NAME}-critical-pods")
    classes = quota["spec"]["scopeSelector"]["matchExpressions"][0]["values"]
    assert pod_spec(one(objs, "DaemonSet"))["priorityClassName"] in classes


def test_toleration_matcher() -> None:
    assert tolerates({"operator": "Exists"}, "nvidia.com/gpu", "", "NoSchedule")
    assert tolerates(
        {"key": "sku", "value": "gpu", "effect": "NoSchedule"}, "sku", "gpu", "NoSchedule"
    )
    assert not tolerates({"key": "sku", "value": "cpu"}, "sku", "gpu", "NoSchedule")
    assert not tolerates(
        {"key": "a", "operator": "Exists", "effect": "NoSchedule"}, "a", "", "NoExecute"
    )


# --- negative self-tests: the rule fails on a manifest broken on purpose ----------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d, s: pod_spec(d)["nodeSelector"].pop("nvidia.com/gpu.present"), "nodeSelector"),
        (
            lambda d, s: pod_spec(d).update(tolerations=[{"key": "other", "operator": "Exists"}]),
            "taint nvidia.com/gpu",
        ),
        (
            lambda d, s: pod_spec(d).update(
                tolerations=[
                    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                ]
            ),
            "NoExecute",
        ),
        (
            lambda d, s: d["spec"]["selector"]["matchLabels"].update(
                {"app.kubernetes.io/version": "1"}
            ),
            "selector",
        ),
        (lambda d, s: d["spec"]["updateStrategy"]["rollingUpdate"].update(maxSurge=1), "maxSurge"),
    ],
)
def test_scheduling_rule_can_fail(change: Any, expected: str) -> None:
    daemonset, _ = broken(change)
    assert any(expected in problem for problem in scheduling_problems(daemonset))
