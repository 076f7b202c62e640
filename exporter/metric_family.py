"""The shape of a metric family and the label sets families share.

Separate from exporter/metrics.py so the catalog can live in more than one module (the activity
families are in exporter/metrics_activity.py) without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["gauge", "counter"]

GPU_LABELS: tuple[str, ...] = ("gpu", "uuid")
MIG_LABELS: tuple[str, ...] = (
    "gpu",
    "uuid",
    "gpu_instance",
    "compute_instance",
    "profile",
    "mig_uuid",
)
INFO_LABELS: tuple[str, ...] = (
    "gpu",
    "uuid",
    "model",
    "brand",
    "architecture",
    "compute_capability",
    "driver_version",
    "cuda_driver_version",
    "vbios_version",
    "serial",
    "pci_bus_id",
    "mig_mode",
    "persistence_mode",
)


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: its name (counters include `_total`), type, help and label names."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    group: str

    @property
    def base_name(self) -> str:
        """The OpenMetrics family name: counters lose their `_total` suffix there."""
        if self.kind == "counter" and self.name.endswith("_total"):
            return self.name[: -len("_total")]
        return self.name


def gpu_family(name: str, kind: Kind, help_: str, group: str, *extra: str) -> Family:
    return Family(f"nvidia_gpu_{name}", kind, help_, (*GPU_LABELS, *extra), group)


def mig_family(name: str, kind: Kind, help_: str) -> Family:
    return Family(f"nvidia_gpu_mig_{name}", kind, help_, MIG_LABELS, "mig")


def self_family(name: str, kind: Kind, help_: str, *labels: str) -> Family:
    return Family(f"nvidia_gpu_exporter_{name}", kind, help_, labels, "exporter")


POD_LABELS: tuple[str, ...] = ("gpu", "uuid", "mig_uuid", "namespace", "pod", "container")
