"""Checklist step 7, does the model fit: --need-memory against every whole GPU and MIG device.

Why both free and total: "fits now" decides whether a pod can start on this node at this
moment; "fits by total" decides whether it can ever run here, which is the question after an
out-of-memory error.
"""

from __future__ import annotations

from collections.abc import Sequence

from exporter import metrics
from exporter.diagnose.base import gib, gpu_list
from exporter.diagnose.inputs import NvmlReading
from exporter.diagnose.options import Options
from exporter.verdict import Finding


def _memory_units(nvml: NvmlReading) -> list[tuple[str, str, float, float]]:
    """(gpu index, name, total, free) of every whole GPU and MIG device that answers."""
    values: dict[tuple[str, ...], dict[str, float]] = {}
    for family, key in (
        (metrics.MEMORY_TOTAL, "total"),
        (metrics.MEMORY_FREE, "free"),
        (metrics.MIG_MEMORY_TOTAL, "total"),
        (metrics.MIG_MEMORY_FREE, "free"),
    ):
        for labels, value in nvml.samples.get(family.name, ()):
            values.setdefault(labels, {})[key] = value
    units = []
    mig_parents = {labels[0] for labels in values if len(labels) > 2}
    for labels, memory in values.items():
        if "total" not in memory or "free" not in memory:
            continue
        if len(labels) > 2:
            name = f"GPU {labels[0]} MIG {labels[4]} (GI {labels[2]})"
        elif labels[0] in mig_parents:
            continue  # a MIG-enabled GPU's memory is its instances'
        else:
            name = f"GPU {labels[0]}"
        units.append((labels[0], name, memory["total"], memory["free"]))
    units.sort(key=lambda unit: (int(unit[0]) if unit[0].isdigit() else 0, unit[1]))
    return units


def _names(units: Sequence[tuple[str, str, float, float]]) -> str:
    whole = [unit[0] for unit in units if " MIG " not in unit[1]]
    parts = [gpu_list(whole)] if whole else []
    parts += [unit[1] for unit in units if " MIG " in unit[1]]
    return ", ".join(parts)


def memory_check(nvml: NvmlReading, options: Options) -> Finding | None:
    """--need-memory SIZE: which GPUs and MIG devices hold it now (free) and at all (total)."""
    if options.need_memory_bytes is None:
        return None
    check = "model.fits"
    if nvml.status != "ok":
        return Finding(check, "skipped", None, "needs NVML, which does not work", "")
    need = options.need_memory_bytes
    asked = f"{options.need_memory_text} ({gib(need)})"
    units = _memory_units(nvml)
    if not units:
        return Finding(check, "skipped", None, "no GPU reports its memory", "")
    by_free = [unit for unit in units if unit[3] >= need]
    by_total = [unit for unit in units if unit[2] >= need]
    if by_free:
        return Finding(
            check,
            "passed",
            None,
            f"{asked} fits now on {_names(by_free)}; by total memory on {_names(by_total)}",
            "",
        )
    if by_total:
        freest = max(units, key=lambda unit: unit[3])
        return Finding(
            check,
            "warning",
            None,
            f"{asked} fits by total memory on {_names(by_total)}, but none has it free now "
            f"(most free: {freest[1]}, {gib(freest[3])})",
            "Wait for (or move) the pods using those GPUs, or schedule onto one that is free",
        )
    largest = max(units, key=lambda unit: unit[2])
    return Finding(
        check,
        "failed",
        None,
        f"{asked} fits on no GPU or MIG device: the largest is {largest[1]} with {gib(largest[2])}",
        "Shard the model over several GPUs (tensor or pipeline parallelism), quantize it, or "
        "run it on a node with larger GPUs (or a larger MIG profile)",
    )
