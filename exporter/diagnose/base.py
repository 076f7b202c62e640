"""Shared pieces of the diagnose checks: the run's inputs, the host, naming helpers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from exporter import metrics
from exporter.diagnose.inputs import (
    KmsgReading,
    KubeletReading,
    ListReading,
    NvmlReading,
)
from exporter.model import SampleMap

_INFO = {name: position for position, name in enumerate(metrics.INFO_LABELS)}
GIB = 1024**3


@dataclass(frozen=True, slots=True)
class Host:
    """What the checks need to know about now: wall time, time since boot, the node's name."""

    now: float
    uptime: float
    node: str


@dataclass(frozen=True, slots=True)
class Readings:
    """Every input of one run."""

    nvml: NvmlReading
    kubelet: KubeletReading
    kmsg: KmsgReading
    pci: ListReading
    dev: ListReading


def info_rows(samples: SampleMap) -> list[tuple[str, ...]]:
    """The label values of every nvidia_gpu_info sample."""
    return [labels for labels, _ in samples.get(metrics.INFO.name, ())]


def info(samples: SampleMap, label: str) -> str:
    """One nvidia_gpu_info label of the first GPU (driver and CUDA versions are node-wide)."""
    rows = info_rows(samples)
    return rows[0][_INFO[label]] if rows else ""


def gpu_list(indexes: Sequence[str]) -> str:
    """`GPU 0-5,7` for a set of GPU indexes."""
    numbers = sorted(int(index) for index in indexes if index.isdigit())
    runs: list[str] = []
    start = previous = None
    for number in [*numbers, None]:
        if number is not None and previous is not None and number == previous + 1:
            previous = number
            continue
        if start is not None:
            runs.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = number
    return ("GPU " if len(numbers) == 1 else "GPUs ") + ",".join(runs) if runs else "no GPU"


def gib(value: float) -> str:
    return f"{value / GIB:.1f} GiB"
