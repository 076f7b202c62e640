"""The attribution source: joins the kubelet view, NVML's directory and /proc, every interval.

Why a separate polled source (driven by exporter.poller.Poller): it never calls the kubelet or
NVML itself. It reads the last kubelet view (held by sources/podresources.py, which owns grpc),
the last NVML directory and process list (held by NvmlSource), and /proc for the few GPU pids,
so a slow kubelet or a hung NVML call can never delay it, and its samples replace each other
whole on every interval. It imports no foreign library, so per-process attribution works even
with pod attribution off (then processes carry pod_uid but no pod name).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from exporter.attribution import (
    DEFAULT_DRA_DRIVERS,
    DEFAULT_RESOURCE_PREFIXES,
    KubeletView,
    attribute,
    attribute_processes,
    build_samples,
)
from exporter.model import GpuIdentity, GpuProcess, SampleMap
from exporter.sources.procfs import ProcReader

SOURCE_NAME = "attribution"


class AllocationSource:
    """A PolledSource that publishes nvidia_gpu_pod_info, allocation and process families."""

    name = SOURCE_NAME

    def __init__(
        self,
        directory: Callable[[], Sequence[GpuIdentity]],
        kubelet_view: Callable[[], KubeletView | None] | None,
        processes: Callable[[], Sequence[GpuProcess]] | None,
        *,
        procfs: ProcReader | None = None,
        resource_prefixes: Sequence[str] = DEFAULT_RESOURCE_PREFIXES,
        dra_drivers: Sequence[str] = DEFAULT_DRA_DRIVERS,
        top_n: int = 10,
    ) -> None:
        """`kubelet_view` None: pod attribution off; `processes` None: per-process off."""
        self._directory = directory
        self._kubelet_view = kubelet_view
        self._processes = processes
        self._procfs = procfs or ProcReader()
        self._prefixes = tuple(resource_prefixes)
        self._dra_drivers = tuple(dra_drivers)
        self._top_n = top_n

    def open(self) -> None:
        """Nothing to acquire: the inputs are other sources' last results."""

    def close(self) -> None:
        """Nothing to release."""

    def collect(self) -> SampleMap:
        """Join the latest inputs into samples (pure apart from reading /proc)."""
        directory = self._directory()
        view = self._kubelet_view() if self._kubelet_view is not None else None
        attribution = (
            attribute(view, directory, self._prefixes, self._dra_drivers)
            if view is not None
            else None
        )
        attributed = None
        if self._processes is not None:
            listed = self._processes()
            owners = self._procfs.read_many({process.pid for process in listed})
            allocations = attribution.allocations if attribution else ()
            attributed = attribute_processes(listed, owners, allocations)
        return build_samples(attribution, directory, attributed, self._top_n)
