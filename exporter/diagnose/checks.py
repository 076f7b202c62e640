"""The node checklist: readings in, Findings out, in the order new GPU engineers are given.

Is the GPU visible to the node (driver loaded), is the device plugin running, does Kubernetes
know the GPUs (allocatable), does the pod request them, can the container see them, is the CUDA
version compatible, does the model fit; then the GPU-health questions (Xid, ECC, row remapping,
thermal, PCIe, NVLink, mixed models, persistence) from exporter.verdict.

Why pure functions: every check's passing and failing case is a few lines of data in a test,
and the words a user reads (evidence and next step) are reviewed in these modules.
"""

from __future__ import annotations

from exporter.diagnose.base import Host, Readings
from exporter.diagnose.fit import memory_check
from exporter.diagnose.health import HEALTH_CHECKS, health_checks
from exporter.diagnose.kube import allocatable_check, device_plugin_check, pod_check
from exporter.diagnose.node import cuda_check, devices_check, driver_check, pci_check
from exporter.diagnose.options import Options
from exporter.verdict import Finding

_FIRST = ("gpu.answering", "gpu.fallen_off_bus")
_HEALTH_ORDER = {
    check: position for position, check in enumerate(("gpu.recovery_action", *HEALTH_CHECKS))
}


def checklist(readings: Readings, options: Options, host: Host) -> list[Finding]:
    """Every check of one run, in checklist order."""
    nvml, kubelet = readings.nvml, readings.kubelet
    findings = [driver_check(nvml), pci_check(readings.pci, nvml, options)]
    health = health_checks(readings, host)
    findings += [f for f in health if f.check in _FIRST]
    findings.append(device_plugin_check(kubelet, options))
    findings.append(allocatable_check(kubelet, nvml, options))
    pod = pod_check(kubelet, nvml, options)
    if pod is not None:
        findings.append(pod)
    findings.append(devices_check(readings.dev, nvml, options))
    findings.append(cuda_check(nvml, options))
    fits = memory_check(nvml, options)
    if fits is not None:
        findings.append(fits)
    rest = [f for f in health if f.check not in _FIRST]
    rest.sort(key=lambda f: _HEALTH_ORDER.get(f.check, len(_HEALTH_ORDER)))  # stable sort
    return findings + rest
