"""GPU-health verdicts over the exporter's own samples: one rule set for diagnose and the page.

Why pure functions over a SampleMap: `gpu-node-exporter diagnose` and the node status page (`/`)
must say the same thing about the same GPU. Both already hold a SampleMap (diagnose from one
collection of its own, the page from the publisher's last collection), so the rules read
families by name from exporter.metrics and never call NVML, the kubelet or the kernel log:
the page stays off NVML on the request path, and every rule is testable from a literal map.

Levels: `failed` means act now (a GPU that is gone, data loss, a replacement); `warning` means
degraded or worth a look (lost performance, a pending reset); `skipped` means the GPU does not
report the input (a T4 has no NVLink), never "fine".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from exporter import metrics
from exporter.model import LabelValues, SampleMap
from exporter.xid.catalog import XidCatalog, XidInfo, default_catalog

Level = Literal["passed", "warning", "failed", "skipped"]
LEVELS: tuple[Level, ...] = ("passed", "warning", "failed", "skipped")
_RANK: dict[str, int] = {"skipped": 0, "passed": 1, "warning": 2, "failed": 3}

# A critical Xid older than this is history (warning), not an emergency (failed): the kernel
# ring buffer can hold Xids from days ago that a reset already dealt with.
RECENT_XID_SECONDS = 24 * 3600.0
# A PCIe link trains down to save power while idle; a lower generation only means something
# while the GPU is busy.
PCIE_LOAD_RATIO = 0.3
FALLEN_OFF_BUS_XID = 79
NO_XID_EVIDENCE = "no Xid errors"

# Next steps per catalog action, in plain words ({gpu} is the GPU index).
_ACTION_STEPS: dict[str, str] = {
    "reboot_node": "Cordon and drain the node, power-cycle it; replace the GPU if it recurs",
    "reset_gpu": (
        "Drain the GPU's pods and reset it (nvidia-smi -r -i {gpu}) or reboot the node; "
        "replace the GPU if it recurs"
    ),
    "drain_and_rma": (
        "Cordon and drain the node and reset the GPU; the GPU needs replacement (RMA)"
    ),
    "restart_app": (
        "Restart the application that used the GPU; if other applications hit it too, check the GPU"
    ),
    "per_message": "Follow the recovery action the driver printed with this Xid",
    "none": "No action unless it recurs; if it does, check the GPU with the vendor's diagnostics",
}
_RECOVERY_ACTIONS: dict[int, tuple[str, str]] = {
    1: ("GPU reset required", "Drain the GPU's pods and reset it (nvidia-smi -r -i {gpu})"),
    2: ("node reboot required", "Cordon and drain the node and reboot it"),
    3: ("drain P2P required", "Drain the GPU's peer-to-peer (NVLink) workloads"),
    4: ("drain and reset required", "Drain the GPU's pods, then reset the GPU"),
    5: ("IMEX domain recovery required", "Recover the IMEX domain of this node"),
    6: ("bus reset required", "Cordon and drain the node and reset the PCIe bus (reboot)"),
    7: ("system reboot required", "Cordon and drain the node and reboot it"),
}
_THERMAL_REASONS: dict[str, Level] = {
    "hw_thermal_slowdown": "failed",
    "sw_thermal_slowdown": "warning",
    "hw_slowdown": "warning",
}
_INFO = {name: position for position, name in enumerate(metrics.INFO_LABELS)}


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's result: a stable id, the level, evidence in numbers and the next step."""

    check: str
    level: Level
    gpu: str | None  # GPU index as text; None for node-wide findings
    evidence: str
    next_step: str  # "" when passed


def worst(levels: Sequence[Level]) -> Level:
    """The most serious level (failed > warning > passed > skipped); passed when empty."""
    result: Level = "passed"
    best = -1
    for level in levels:
        if _RANK[level] > best:
            result, best = level, _RANK[level]
    return result


def gpu_verdict(findings: Sequence[Finding], gpu: str) -> Level:
    """The worst level among one GPU's findings ("passed" if it has none)."""
    return worst([finding.level for finding in findings if finding.gpu == gpu])


def short_bus_id(bus_id: str) -> str:
    """NVML's `00000000:07:00.0` as the kernel prints it, `0000:07:00.0`."""
    head, sep, rest = bus_id.partition(":")
    if sep and len(head) == 8 and head.startswith("0000"):
        return f"{head[4:]}:{rest}".lower()
    return bus_id.lower()


def age_text(seconds: float) -> str:
    """A compact, deterministic age: `45 s`, `12 min`, `3 h`, `2 d`."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


class _Gpus:
    """The samples of one map, indexed by family and GPU index (label 0) once."""

    def __init__(self, samples: SampleMap) -> None:
        self.by: dict[str, dict[str, list[tuple[LabelValues, float]]]] = {}
        for family, rows in samples.items():
            if not rows or family not in metrics.BY_NAME:
                continue
            if "gpu" not in metrics.BY_NAME[family].labels[:1]:
                continue
            bucket = self.by.setdefault(family, {})
            for labels, value in rows:
                bucket.setdefault(labels[0] if labels else "", []).append((labels, value))
        indexes = set(self.by.get(metrics.UP.name, {})) | set(self.by.get(metrics.INFO.name, {}))
        indexes.discard("")
        self.indexes = sorted(indexes, key=lambda text: (len(text), text))

    def rows(self, family: metrics.Family, gpu: str) -> list[tuple[LabelValues, float]]:
        return self.by.get(family.name, {}).get(gpu, [])

    def value(self, family: metrics.Family, gpu: str, *extra: str) -> float | None:
        width = len(metrics.GPU_LABELS)
        for labels, value in self.rows(family, gpu):
            if labels[width:] == extra:
                return value
        return None

    def info(self, gpu: str, label: str) -> str:
        rows = self.rows(metrics.INFO, gpu)
        return rows[0][0][_INFO[label]] if rows else ""

    def name(self, gpu: str) -> str:
        """`GPU 3 (0000:07:00.0)`, or `GPU 3` without a bus id."""
        bus = self.info(gpu, "pci_bus_id")
        return f"GPU {gpu} ({short_bus_id(bus)})" if bus else f"GPU {gpu}"


def _answering(gpus: _Gpus, gpu: str) -> Finding | None:
    up = gpus.value(metrics.UP, gpu)
    if up is None or gpus.value(metrics.FALLEN_OFF_BUS, gpu) == 1.0:
        return None  # gpu.fallen_off_bus says it all
    if up == 1.0:
        return Finding("gpu.answering", "passed", gpu, "answers NVML", "")
    return Finding(
        "gpu.answering",
        "failed",
        gpu,
        f"{gpus.name(gpu)} does not answer NVML (nvidia_gpu_up 0: lost or needs a reset)",
        _ACTION_STEPS["reset_gpu"].format(gpu=gpu),
    )


def _fallen(gpus: _Gpus, gpu: str, now: float) -> Finding | None:
    fallen = gpus.value(metrics.FALLEN_OFF_BUS, gpu)
    if fallen is None:
        if gpus.value(metrics.UP, gpu) == 0.0:
            return None  # gpu.answering reports it
        return Finding("gpu.fallen_off_bus", "passed", gpu, "on the bus", "")
    if fallen != 1.0:
        return Finding("gpu.fallen_off_bus", "passed", gpu, "on the bus", "")
    seen = gpus.value(metrics.XID_LAST_SEEN, gpu, str(FALLEN_OFF_BUS_XID))
    when = f", Xid 79 {age_text(now - seen)} ago" if seen is not None else ""
    return Finding(
        "gpu.fallen_off_bus",
        "failed",
        gpu,
        f"{gpus.name(gpu)} has fallen off the bus (nvidia_gpu_fallen_off_bus 1{when}) and does "
        "not answer NVML",
        _ACTION_STEPS["reboot_node"],
    )


def _description(info: XidInfo) -> str:
    return info.name.partition(": ")[2] or info.name


def xid_finding(
    gpu: str | None,
    where: str,
    code: int,
    seen: float | None,
    now: float,
    catalog: XidCatalog | None = None,
) -> Finding:
    """One Xid code on one GPU: level from the catalog's severity and the Xid's age.

    `seen` None (a log line without a timestamp) is judged as recent: an Xid of unknown age
    may be from a minute ago.
    """
    info = (catalog or default_catalog()).get(code)
    age = 0.0 if seen is None else now - seen
    when = "at an unknown time" if seen is None else f"{age_text(age)} ago"
    level: Level = "passed"
    if info.severity == "critical":
        level = "failed" if age <= RECENT_XID_SECONDS else "warning"
    elif info.severity == "warning":
        level = "warning"
    step = "" if level == "passed" else _ACTION_STEPS.get(info.action, _ACTION_STEPS["none"])
    return Finding(
        "gpu.xid",
        level,
        gpu,
        f"Xid {code} on {where} {when}: {_description(info)}",
        step.format(gpu=gpu if gpu is not None else "N"),
    )


def _xids(gpus: _Gpus, gpu: str, now: float, catalog: XidCatalog) -> list[Finding]:
    findings = []
    width = len(metrics.GPU_LABELS)
    for labels, seen in sorted(gpus.rows(metrics.XID_LAST_SEEN, gpu), key=lambda row: -row[1]):
        code = labels[width]
        if code.isdigit():
            findings.append(xid_finding(gpu, gpus.name(gpu), int(code), seen, now, catalog))
    if not findings:
        findings.append(Finding("gpu.xid", "passed", gpu, NO_XID_EVIDENCE, ""))
    return findings


def _recovery(gpus: _Gpus, gpu: str) -> Finding | None:
    action = gpus.value(metrics.RECOVERY_ACTION, gpu)
    if action is None:
        return None
    if action == 0:
        return Finding("gpu.recovery_action", "passed", gpu, "driver asks for no recovery", "")
    words, step = _RECOVERY_ACTIONS.get(int(action), (f"action {int(action)}", "See docs/xid.md"))
    return Finding(
        "gpu.recovery_action",
        "failed",
        gpu,
        f"the driver's last Xid 154 on {gpus.name(gpu)}: {words}",
        step.format(gpu=gpu),
    )


def _ecc(gpus: _Gpus, gpu: str) -> Finding:
    volatile = gpus.value(metrics.ECC_UNCORRECTED, gpu, "volatile")
    aggregate = gpus.value(metrics.ECC_UNCORRECTED, gpu, "aggregate")
    enabled = gpus.value(metrics.ECC_MODE, gpu)
    check = "gpu.ecc_uncorrected"
    if volatile is None and aggregate is None:
        if enabled == 0.0:
            return Finding(
                check,
                "warning",
                gpu,
                "ECC is disabled: memory errors go undetected",
                f"Enable ECC (nvidia-smi -e 1 -i {gpu}) and reset the GPU",
            )
        return Finding(check, "skipped", gpu, "the GPU reports no ECC counters", "")
    if volatile:
        return Finding(
            check,
            "failed",
            gpu,
            f"{volatile:.0f} uncorrected ECC errors since the driver loaded "
            f"({aggregate or 0:.0f} in the GPU's lifetime)",
            _ACTION_STEPS["reset_gpu"].format(gpu=gpu),
        )
    if aggregate:
        return Finding(
            check,
            "warning",
            gpu,
            f"0 uncorrected ECC errors since the driver loaded, {aggregate:.0f} in the GPU's "
            "lifetime",
            "Watch for new ones; check row remapping (or retired pages) for this GPU",
        )
    return Finding(check, "passed", gpu, "0 uncorrected ECC errors", "")


def _row_remap(gpus: _Gpus, gpu: str) -> Finding:
    check = "gpu.row_remap"
    failure = gpus.value(metrics.REMAPPED_ROWS_FAILURE, gpu)
    pending = gpus.value(metrics.REMAPPED_ROWS_PENDING, gpu)
    retired_pending = gpus.value(metrics.RETIRED_PAGES_PENDING, gpu)
    correctable = gpus.value(metrics.REMAPPED_ROWS, gpu, "correctable") or 0.0
    uncorrectable = gpus.value(metrics.REMAPPED_ROWS, gpu, "uncorrectable") or 0.0
    rows = f"{correctable:.0f} correctable, {uncorrectable:.0f} uncorrectable rows remapped"
    if failure == 1.0:
        return Finding(
            check,
            "failed",
            gpu,
            f"a row remapping failed ({rows})",
            _ACTION_STEPS["drain_and_rma"],
        )
    if pending == 1.0:
        return Finding(
            check,
            "warning",
            gpu,
            f"a row remapping waits for a GPU reset ({rows})",
            f"Drain the GPU's pods and reset it (nvidia-smi -r -i {gpu}) so the remap takes effect",
        )
    if retired_pending == 1.0:
        return Finding(
            check,
            "warning",
            gpu,
            "a page retirement waits for a GPU reset or driver reload",
            f"Drain the GPU's pods and reset it (nvidia-smi -r -i {gpu})",
        )
    if failure is None and pending is None and retired_pending is None:
        reason = "the GPU reports no row remapping or page retirement"
        if gpus.info(gpu, "mig_mode") == "enabled":
            reason = "row remapping is not readable while MIG instances exist"
        return Finding(check, "skipped", gpu, reason, "")
    if failure is None and pending is None:
        return Finding(check, "passed", gpu, "no page retirement pending", "")
    return Finding(check, "passed", gpu, f"no remap pending or failed ({rows})", "")


def _thermal(gpus: _Gpus, gpu: str) -> Finding:
    check = "gpu.thermal"
    width = len(metrics.GPU_LABELS)
    active = {labels[width]: value for labels, value in gpus.rows(metrics.CLOCK_EVENT_ACTIVE, gpu)}
    temperature = gpus.value(metrics.TEMPERATURE, gpu)
    slowdown = gpus.value(metrics.TEMPERATURE_THRESHOLD, gpu, "slowdown")
    temp_text = f"{temperature:.0f} °C" if temperature is not None else "temperature unknown"
    if slowdown is not None:
        temp_text += f" (slowdown at {slowdown:.0f} °C)"
    slowed = [reason for reason in _THERMAL_REASONS if active.get(reason) == 1.0]
    if slowed:
        return Finding(
            check,
            worst([_THERMAL_REASONS[reason] for reason in slowed]),
            gpu,
            f"clocks held down by {', '.join(slowed)} at {temp_text}",
            "Check the node's cooling: airflow, fans, inlet temperature, blocked vents",
        )
    if temperature is not None and slowdown is not None and temperature >= slowdown:
        return Finding(
            check,
            "warning",
            gpu,
            f"{temp_text}: at the slowdown threshold",
            "Check the node's cooling: airflow, fans, inlet temperature, blocked vents",
        )
    if not active and temperature is None:
        return Finding(check, "skipped", gpu, "the GPU reports no clock reasons or temperature", "")
    return Finding(check, "passed", gpu, "no thermal slowdown", "")


def _pcie(gpus: _Gpus, gpu: str) -> Finding:
    check = "gpu.pcie_link"
    generation = gpus.value(metrics.PCIE_LINK_GENERATION, gpu)
    max_generation = gpus.value(metrics.PCIE_LINK_MAX_GENERATION, gpu)
    width = gpus.value(metrics.PCIE_LINK_WIDTH, gpu)
    max_width = gpus.value(metrics.PCIE_LINK_MAX_WIDTH, gpu)
    if generation is None or max_generation is None or width is None or max_width is None:
        return Finding(check, "skipped", gpu, "the GPU reports no PCIe link state", "")
    link = f"Gen{generation:.0f} x{width:.0f} of Gen{max_generation:.0f} x{max_width:.0f}"
    step = "Reseat the GPU or its riser and check the slot's BIOS PCIe settings"
    if width < max_width:
        return Finding(check, "warning", gpu, f"link width below max: {link}", step)
    if generation >= max_generation:
        return Finding(check, "passed", gpu, f"{link}", "")
    load = gpus.value(metrics.UTILIZATION, gpu)
    if load is not None and load >= PCIE_LOAD_RATIO:
        return Finding(
            check,
            "warning",
            gpu,
            f"link generation below max under load: {link} at {load:.0%} utilization",
            step,
        )
    load_text = "unknown utilization" if load is None else f"{load:.0%} utilization"
    return Finding(
        check,
        "passed",
        gpu,
        f"{link} at {load_text} (links train down when idle; judged only under load)",
        "",
    )


def _nvlink(gpus: _Gpus, gpu: str) -> Finding:
    check = "gpu.nvlink"
    width = len(metrics.GPU_LABELS)
    links = gpus.rows(metrics.NVLINK_UP, gpu)
    if not links:
        return Finding(check, "skipped", gpu, "no NVLink links", "")
    down = sorted((labels[width] for labels, value in links if value != 1.0), key=int)
    if not down:
        return Finding(check, "passed", gpu, f"{len(links)} of {len(links)} links up", "")
    return Finding(
        check,
        "failed",
        gpu,
        f"NVLink link {', '.join(down)} down ({len(links) - len(down)} of {len(links)} up)",
        f"Drain the GPU's pods and reset it (nvidia-smi -r -i {gpu}); check the fabric manager "
        "and NVSwitch; replace the GPU or baseboard if the link stays down",
    )


def _persistence(gpus: _Gpus, gpu: str) -> Finding:
    check = "gpu.persistence_mode"
    mode = gpus.info(gpu, "persistence_mode")
    if mode == "enabled":
        return Finding(check, "passed", gpu, "persistence mode on", "")
    if mode == "disabled":
        return Finding(
            check,
            "warning",
            gpu,
            "persistence mode off: the driver tears the GPU down when no program holds it, "
            "so every job start pays the initialisation",
            "Run nvidia-persistenced on the node (or nvidia-smi -pm 1)",
        )
    return Finding(check, "skipped", gpu, "persistence mode not reported", "")


def _mixed_models(gpus: _Gpus) -> Finding:
    models: dict[str, int] = {}
    for gpu in gpus.indexes:
        model = gpus.info(gpu, "model")
        if model:
            models[model] = models.get(model, 0) + 1
    if not models:
        return Finding("node.mixed_models", "skipped", None, "no GPU model reported", "")
    counted = ", ".join(f"{count}x {model}" for model, count in sorted(models.items()))
    if len(models) == 1:
        return Finding("node.mixed_models", "passed", None, f"one model: {counted}", "")
    return Finding(
        "node.mixed_models",
        "warning",
        None,
        f"{len(models)} GPU models on one node: {counted}",
        "Label the node per model (GPU feature discovery) or split it, so a pod asking for "
        "nvidia.com/gpu gets the model it was sized for",
    )


def _unknown_gpu_xids(gpus: _Gpus, now: float, catalog: XidCatalog) -> list[Finding]:
    """Xids on a PCI address no GPU NVML lists (empty gpu label)."""
    findings = []
    width = len(metrics.GPU_LABELS)
    for labels, seen in gpus.by.get(metrics.XID_LAST_SEEN.name, {}).get("", []):
        code = labels[width]
        if code.isdigit():
            where = "a PCI address no GPU NVML lists"
            findings.append(xid_finding(None, where, int(code), seen, now, catalog))
    return findings


def gpu_findings(
    samples: SampleMap, now: float, catalog: XidCatalog | None = None
) -> list[Finding]:
    """Every per-GPU and node-wide health check over one sample map, GPUs in index order."""
    catalog = catalog or default_catalog()
    gpus = _Gpus(samples)
    findings: list[Finding] = []
    for gpu in gpus.indexes:
        for maybe in (_answering(gpus, gpu), _fallen(gpus, gpu, now)):
            if maybe is not None:
                findings.append(maybe)
        findings.extend(_xids(gpus, gpu, now, catalog))
        recovery = _recovery(gpus, gpu)
        if recovery is not None:
            findings.append(recovery)
        if gpus.value(metrics.UP, gpu) == 0.0:
            continue  # a GPU that does not answer has no value series to judge
        findings.extend(
            (
                _ecc(gpus, gpu),
                _row_remap(gpus, gpu),
                _thermal(gpus, gpu),
                _pcie(gpus, gpu),
                _nvlink(gpus, gpu),
                _persistence(gpus, gpu),
            )
        )
    findings.extend(_unknown_gpu_xids(gpus, now, catalog))
    if gpus.indexes:
        findings.append(_mixed_models(gpus))
    return findings
