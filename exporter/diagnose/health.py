"""The GPU-health questions for diagnose: the samples the exporter would publish, judged by
exporter.verdict (the status page's rules), plus what only a one-shot run needs (a kernel log it
cannot read, Xid lines without a timestamp).
"""

from __future__ import annotations

from exporter import metrics
from exporter.diagnose.base import Host, Readings
from exporter.diagnose.inputs import KmsgReading, NvmlReading
from exporter.model import GpuIdentity, SampleBuilder, SampleMap
from exporter.verdict import NO_XID_EVIDENCE, Finding, gpu_findings, short_bus_id, xid_finding
from exporter.xid.parser import normalize_pci

HEALTH_CHECKS = (
    "gpu.xid",
    "gpu.ecc_uncorrected",
    "gpu.row_remap",
    "gpu.thermal",
    "gpu.pcie_link",
    "gpu.nvlink",
    "node.mixed_models",
    "gpu.persistence_mode",
)


def _by_pci(nvml: NvmlReading) -> dict[str, GpuIdentity]:
    found = {}
    for gpu in nvml.directory:
        key = normalize_pci(gpu.pci_bus_id) if gpu.pci_bus_id else None
        if key is not None:
            found[key] = gpu
    return found


def health_samples(nvml: NvmlReading, kmsg: KmsgReading, host: Host) -> SampleMap:
    """NVML's samples plus what the Xid source would add: last-seen times, fallen-off-bus.

    Only timed Xids of GPUs NVML lists go into the samples; the others (`other_xids`) are
    told with the address the kernel printed, which a sample's gpu/uuid labels cannot carry.
    """
    out = SampleBuilder()
    out.extend(nvml.samples)
    by_pci = _by_pci(nvml)
    last: dict[tuple[str, str, str], float] = {}
    recovery: dict[tuple[str, str], float] = {}
    for xid in kmsg.xids:
        gpu = by_pci.get(xid.event.pci)
        if xid.uptime is None or gpu is None:
            continue
        labels = (str(gpu.index), gpu.uuid)
        seen = host.now - (host.uptime - xid.uptime)
        key = (*labels, str(xid.event.xid))
        last[key] = max(seen, last.get(key, float("-inf")))
        if xid.event.recovery_action is not None:
            recovery[labels] = xid.event.recovery_action
    for key, seen in last.items():
        out.add(metrics.XID_LAST_SEEN.name, key, seen)
    for labels, action in recovery.items():
        out.add(metrics.RECOVERY_ACTION.name, labels, action)
    for gpu in nvml.directory:  # as the exporter: NVML's lost flag; backlog Xids set no flag
        out.add(metrics.FALLEN_OFF_BUS.name, (str(gpu.index), gpu.uuid), float(gpu.lost))
    return out.freeze()


def other_xids(nvml: NvmlReading, kmsg: KmsgReading, host: Host) -> list[Finding]:
    """Xids on an address no GPU NVML lists has (a lost GPU has none), or without a time."""
    by_pci = _by_pci(nvml)
    timed = {(x.event.pci, x.event.xid) for x in kmsg.xids if x.uptime is not None}
    latest: dict[tuple[str, int], float | None] = {}
    for xid in kmsg.xids:
        key = (xid.event.pci, xid.event.xid)
        if xid.event.pci in by_pci and key in timed:
            continue  # in the samples
        seen = None if xid.uptime is None else host.now - (host.uptime - xid.uptime)
        previous = latest.get(key)
        latest[key] = (
            seen if previous is None or (seen is not None and seen > previous) else previous
        )
    findings = []
    for (pci, code), seen in sorted(latest.items()):
        gpu = by_pci.get(pci)
        if gpu is not None:
            where, index = f"GPU {gpu.index} ({short_bus_id(gpu.pci_bus_id)})", str(gpu.index)
        else:
            where, index = f"{pci}.0 (an address no GPU in NVML's list has)", None
        findings.append(xid_finding(index, where, code, seen, host.now))
    return findings


def health_checks(readings: Readings, host: Host) -> list[Finding]:
    """gpu.answering, gpu.fallen_off_bus and every exporter.verdict check."""
    nvml, kmsg = readings.nvml, readings.kmsg
    if nvml.status != "ok":
        return [
            Finding(check, "skipped", None, "needs NVML, which does not work (nvml.driver)", "")
            for check in ("gpu.answering", *HEALTH_CHECKS)
        ]
    findings = gpu_findings(health_samples(nvml, kmsg, host), host.now)
    if kmsg.status != "ok":
        findings = [f for f in findings if not (f.check == "gpu.xid" and f.level == "passed")]
        findings.append(
            Finding(
                "gpu.xid",
                "skipped",
                None,
                f"kernel log unreadable ({kmsg.detail})",
                "Run as root, or allow /dev/kmsg in the container (component "
                "deploy/overlays/kmsg), or point --path.kmsg at a saved log",
            )
        )
        return findings
    extra = other_xids(nvml, kmsg, host)
    with_xids = {f.gpu for f in extra}
    findings = [
        f
        for f in findings
        if not (f.check == "gpu.xid" and f.gpu in with_xids and f.evidence == NO_XID_EVIDENCE)
    ]
    return findings + extra
