"""The exporter container's resource requests and limits, in every variant.

Requests and a memory limit must be present (a pod without them is the first to be evicted or
may starve its node) and sized from the measured peak: the request covers it, the limit is at
least twice it. A monitor must not request a GPU, which it would take from the workloads. The
negative self-tests at the end prove each check can fail.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy.manifests import VARIANT_NAMES, Obj, container
from tests.deploy.objects import broken, ctr_of, parts

# The largest resident memory measured (16 simulated GPUs, every feature on; the table is in
# docs/install.md and deploy/base/daemonset.yaml). The request must cover it, the limit at
# least double it.
MEASURED_PEAK_MIB = 55


_UNITS = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "K": 1e3 / 2**20, "M": 1e6 / 2**20, "G": 1e9 / 2**20}


def mebibytes(quantity: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i?)?", str(quantity))
    assert match, f"memory quantity {quantity!r}"
    return float(match.group(1)) * (_UNITS[match.group(2)] if match.group(2) else 1 / 2**20)


def resource_problems(daemonset: Obj) -> list[str]:
    resources = container(daemonset).get("resources", {})
    requests, limits = resources.get("requests", {}), resources.get("limits", {})
    problems = []
    for section, key in (("requests", "cpu"), ("requests", "memory"), ("limits", "memory")):
        if key not in resources.get(section, {}):
            problems.append(f"no {section}.{key}")
    if problems:
        return problems
    if mebibytes(requests["memory"]) < MEASURED_PEAK_MIB:
        problems.append(f"memory request {requests['memory']} under the measured peak")
    if mebibytes(limits["memory"]) < 2 * MEASURED_PEAK_MIB:
        problems.append(f"memory limit {limits['memory']} under twice the measured peak")
    if any("nvidia.com" in key for key in (*requests, *limits)):
        problems.append("requests a GPU: a monitor must not take one from the workloads")
    return problems


# --- the tests --------------------------------------------------------------------------


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_resources(name: str) -> None:
    assert resource_problems(parts(name)[1]) == []


# --- negative self-tests: the rule fails on a manifest broken on purpose ----------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d, s: ctr_of(d)["resources"].pop("limits"), "limits.memory"),
        (lambda d, s: ctr_of(d)["resources"]["requests"].update(memory="32Mi"), "measured peak"),
        (lambda d, s: ctr_of(d)["resources"]["limits"].update(memory="100Mi"), "twice"),
        (lambda d, s: ctr_of(d)["resources"]["limits"].update({"nvidia.com/gpu": 1}), "GPU"),
    ],
)
def test_resource_rule_can_fail(change: Any, expected: str) -> None:
    daemonset, _ = broken(change)
    assert any(expected in p for p in resource_problems(daemonset))
