"""The shared vocabulary between sources and the publisher: samples and source health.

Samples are plain tuples keyed by family name: a collection of an 8-GPU node makes about a
thousand of them, and tuples keep both the build and the render cheap. Nothing here imports a
foreign library.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

LabelValues = tuple[str, ...]
Sample = tuple[LabelValues, float]
SampleMap = Mapping[str, Sequence[Sample]]


class SampleBuilder:
    """Collects samples per family while a source reads; `freeze()` hands them to the publisher."""

    __slots__ = ("_samples",)

    def __init__(self) -> None:
        self._samples: dict[str, list[Sample]] = {}

    def add(self, family: str, labels: LabelValues, value: float) -> None:
        """Add one sample; the label values follow the family's label names in the catalog."""
        bucket = self._samples.get(family)
        if bucket is None:
            bucket = self._samples[family] = []
        bucket.append((labels, value))

    def extend(self, other: SampleMap) -> None:
        """Append every sample of another map (used to merge per-GPU readings)."""
        for family, samples in other.items():
            bucket = self._samples.get(family)
            if bucket is None:
                bucket = self._samples[family] = []
            bucket.extend(samples)

    def merge(self, other: SampleBuilder) -> None:
        """Append every sample another builder collected (a GPU's reading, once complete)."""
        self.extend(other._samples)

    def freeze(self) -> dict[str, tuple[Sample, ...]]:
        """Return an immutable copy: the publisher may render it from another thread."""
        return {family: tuple(samples) for family, samples in self._samples.items()}


@dataclass(frozen=True, slots=True)
class SourceHealth:
    """How one source is doing; rendered as the nvidia_gpu_exporter_source_* families."""

    up: bool
    duration_seconds: float = 0.0
    last_success_timestamp: float | None = None
    collections: int = 0
    errors: int = 0
    cpu_seconds: float = 0.0
    detail: str = ""


@dataclass(slots=True)
class SourceState:
    """The publisher's record of a source: its latest samples, health and stall watch."""

    samples: Mapping[str, Sequence[Sample]] = field(default_factory=dict)
    health: SourceHealth = field(default_factory=lambda: SourceHealth(up=False))
    busy_since: float | None = None
    stall_after: float = 30.0
    heartbeat_at: float | None = None  # wall time of the last completed wait (event sources)
    heartbeats: int = 0


@dataclass(frozen=True, slots=True)
class MigIdentity:
    """A MIG device as other sources need it (pod attribution, Xid attribution)."""

    gpu_instance: int
    compute_instance: int
    uuid: str
    profile: str
    profile_id: int | None = None
    placement_start: int | None = None
    placement_size: int | None = None


@dataclass(frozen=True, slots=True)
class GpuIdentity:
    """A physical GPU as other sources need it: how to name it and how to find it."""

    index: int
    uuid: str
    pci_bus_id: str
    minor_number: int | None = None
    migs: tuple[MigIdentity, ...] = ()
    lost: bool = False  # NVML reports it lost, or the driver said it fell off the bus


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A process NVML lists on a GPU or MIG device (pid is a host pid)."""

    gpu_index: int
    uuid: str
    mig_uuid: str
    pid: int
    used_memory_bytes: float | None
    kind: str  # "compute" or "graphics"


@dataclass(frozen=True, slots=True)
class GpuProcessActivity:
    """Cumulative busy seconds of one GPU process, from NVML's per-process utilization.

    busy_seconds: (gpu, memory, encoder, decoder), the engines of
    nvidia_gpu_pod_utilization_busy_seconds_total, counted since the exporter first saw the pid.
    """

    gpu_index: int
    uuid: str
    pid: int
    busy_seconds: tuple[float, ...]
