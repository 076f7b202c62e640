"""Checklist steps the kubelet answers: the device plugin runs, Kubernetes can allocate every
GPU NVML sees, and a pod (--pod) holds GPUs.

Why allocatable against NVML: a device plugin that marked a GPU unhealthy (after an Xid) or
started before a GPU appeared silently shrinks the node's capacity; only the comparison shows it.
"""

from __future__ import annotations

from collections.abc import Sequence

from exporter.attribution import (
    DEFAULT_DRA_DRIVERS,
    Device,
    DeviceIndex,
    KubeletView,
    attribute,
    resource_wanted,
)
from exporter.diagnose.inputs import KubeletReading, NvmlReading
from exporter.diagnose.options import Options
from exporter.model import GpuIdentity
from exporter.verdict import Finding


def _kubelet_unusable(kubelet: KubeletReading, check: str) -> Finding | None:
    if kubelet.status == "missing":
        return Finding(
            check,
            "skipped",
            None,
            f"{kubelet.detail} (not a Kubernetes node, or the pod-resources directory is not "
            "mounted)",
            "",
        )
    if kubelet.status != "ok":
        return Finding(
            check,
            "failed",
            None,
            f"kubelet pod-resources API: {kubelet.detail}",
            "Check that the kubelet runs (systemctl status kubelet) and that this process may "
            "use its pod-resources socket",
        )
    return None


def device_plugin_check(kubelet: KubeletReading, options: Options) -> Finding:
    """The kubelet advertises nvidia.com/gpu or MIG resources (a device plugin registered)."""
    check = "k8s.device_plugin"
    unusable = _kubelet_unusable(kubelet, check)
    if unusable is not None:
        return unusable
    assert kubelet.view is not None  # noqa: S101 - status ok carries a view
    if kubelet.view.allocatable is None:
        return Finding(
            check,
            "skipped",
            None,
            "the kubelet lacks GetAllocatableResources (Kubernetes older than 1.23 or the "
            "KubeletPodResourcesGetAllocatable feature gate off)",
            "",
        )
    counts: dict[str, int] = {}
    for group in kubelet.view.allocatable:
        if resource_wanted(group.resource, options.resource_prefixes):
            counts[group.resource] = counts.get(group.resource, 0) + len(group.device_ids)
    if not any(counts.values()):
        return Finding(
            check,
            "failed",
            None,
            f"the kubelet advertises no {' or '.join(options.resource_prefixes)}* resource: "
            "the NVIDIA device plugin is not running or did not register",
            "Check the device plugin pod on this node (kubectl get pods -A -o wide "
            "--field-selector spec.nodeName=<node> | grep -i nvidia) and its log",
        )
    text = ", ".join(f"{resource} x{count}" for resource, count in sorted(counts.items()))
    return Finding(check, "passed", None, f"the kubelet advertises {text}", "")


def _unit_name(device: Device, directory: Sequence[GpuIdentity]) -> str:
    """`GPU 3`, or `MIG 1g.10gb (GI 7) on GPU 6`."""
    if not device.mig_uuid:
        return f"GPU {device.gpu}"
    for gpu in directory:
        for mig in gpu.migs:
            if mig.uuid == device.mig_uuid:
                return f"MIG {mig.profile} (GI {mig.gpu_instance}) on GPU {device.gpu}"
    return f"MIG {device.mig_uuid}"


def allocatable_check(kubelet: KubeletReading, nvml: NvmlReading, options: Options) -> Finding:
    """Every GPU (or MIG device) NVML sees is allocatable through the kubelet."""
    check = "k8s.allocatable"
    unusable = _kubelet_unusable(kubelet, check)
    if unusable is not None:
        return unusable
    assert kubelet.view is not None  # noqa: S101 - status ok carries a view
    if nvml.status != "ok":
        return Finding(check, "skipped", None, "needs NVML, which does not work", "")
    if kubelet.view.allocatable is None:
        return Finding(check, "skipped", None, "the kubelet lacks GetAllocatableResources", "")
    attribution = attribute(kubelet.view, nvml.directory, options.resource_prefixes)
    by_device = attribution.allocatable_by_device or {}
    if not by_device and not any((attribution.allocatable_by_resource or {}).values()):
        return Finding(check, "skipped", None, "no GPU resource advertised (k8s.device_plugin)", "")
    # A GPU lost before NVML described it has no UUID to match the kubelet's ids against.
    every = DeviceIndex(nvml.directory).units
    units = [unit for unit in every if unit.uuid]
    lost = [f"GPU {unit.gpu}" for unit in every if not unit.uuid]
    not_compared = f" ({', '.join(lost)} not compared: lost, no UUID)" if lost else ""
    missing = [unit for unit in units if unit not in by_device]
    kind = "GPUs and MIG devices" if any(unit.mig_uuid for unit in units) else "GPUs"
    if missing:
        names = ", ".join(_unit_name(unit, nvml.directory) for unit in missing)
        return Finding(
            check,
            "failed",
            None,
            f"the kubelet advertises {len(units) - len(missing)} of the {len(units)} {kind} "
            f"NVML sees; missing: {names}{not_compared}",
            "The device plugin marked them unhealthy (an Xid, a lost GPU) or started before "
            "they appeared: check its log, then restart the device plugin pod on this node",
        )
    replicas = sum(by_device.values())
    shared = f" ({replicas} device ids: shared or time-sliced)" if replicas > len(units) else ""
    return Finding(
        check,
        "passed",
        None,
        f"all {len(units)} {kind} NVML sees are allocatable{shared}{not_compared}",
        "",
    )


# -- 4. is the pod requesting them -----------------------------------------------------------


def pod_check(kubelet: KubeletReading, nvml: NvmlReading, options: Options) -> Finding | None:
    """--pod NAMESPACE/NAME holds GPUs on this node."""
    if options.pod is None:
        return None
    check = "k8s.pod"
    namespace, name = options.pod
    unusable = _kubelet_unusable(kubelet, check)
    if unusable is not None:
        return unusable
    assert kubelet.view is not None  # noqa: S101 - status ok carries a view
    pods = [pod for pod in kubelet.view.pods if (pod.namespace, pod.name) == (namespace, name)]
    if not pods:
        return Finding(
            check,
            "failed",
            None,
            f"pod {namespace}/{name} is not on this node (the kubelet lists "
            f"{len(kubelet.view.pods)} pods)",
            "Run diagnose on the node the pod is scheduled to (kubectl get pod -o wide); a "
            "Pending pod may be waiting for a free GPU (kubectl describe pod)",
        )
    held: dict[str, list[str]] = {}
    for pod in pods:
        for container in pod.containers:
            for group in container.devices:
                if resource_wanted(group.resource, options.resource_prefixes):
                    held.setdefault(container.name, []).extend(group.device_ids)
            for claim in container.claims:
                if claim.driver in DEFAULT_DRA_DRIVERS:
                    held.setdefault(container.name, []).append(f"{claim.driver}/{claim.device}")
    if not held:
        return Finding(
            check,
            "failed",
            None,
            f"pod {namespace}/{name} holds no GPU: no container has "
            f"{' or '.join(options.resource_prefixes)}* devices",
            "Request GPUs in the container's resources.limits (nvidia.com/gpu: 1); "
            "NVIDIA_VISIBLE_DEVICES without a GPU request gives no GPU",
        )
    names: dict[str, str] = {}
    if nvml.status == "ok":
        view = KubeletView(pods=tuple(pods), allocatable=None)
        for allocation in attribute(view, nvml.directory, options.resource_prefixes).allocations:
            names.setdefault(allocation.container, "")
            unit = _unit_name(allocation.device, nvml.directory)
            names[allocation.container] += (", " if names[allocation.container] else "") + unit
    parts = [
        f"{container}: {names.get(container) or ', '.join(ids)}"
        for container, ids in sorted(held.items())
    ]
    return Finding(check, "passed", None, f"pod {namespace}/{name} holds " + "; ".join(parts), "")
