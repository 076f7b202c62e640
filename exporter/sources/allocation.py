"""The attribution source: joins the kubelet view, NVML's directory and /proc, every interval.

Why a separate polled source (driven by exporter.poller.Poller): it never calls the kubelet or
NVML itself. It reads the last kubelet view (held by sources/podresources.py, which owns grpc),
the last NVML directory and process list (held by NvmlSource), and /proc for the few GPU pids,
so a slow kubelet or a hung NVML call can never delay it, and its samples replace each other
whole on every interval. It imports no foreign library, so per-process attribution works even
with pod attribution off (then processes carry pod_uid but no pod name).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from exporter.config import Config
from exporter.model import GpuIdentity, GpuProcess, GpuProcessActivity, SampleBuilder, SampleMap
from exporter.poller import Poller
from exporter.publisher import Publisher

if TYPE_CHECKING:
    from exporter.attribution import Allocation, AttributedProcess, KubeletView
    from exporter.sources.nvml import NvmlSource
    from exporter.sources.podresources import PodResourcesSource
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
        resource_prefixes: Sequence[str] | None = None,
        dra_drivers: Sequence[str] | None = None,
        top_n: int = 10,
        activity: Callable[[], Sequence[GpuProcessActivity]] | None = None,
    ) -> None:
        """`kubelet_view` None: pod attribution off; `processes` None: per-process off.

        `activity`: the NVML source's cumulative per-process busy seconds, turned into
        nvidia_gpu_pod_utilization_busy_seconds_total (with `processes` only).

        `resource_prefixes`, `dra_drivers` None: exporter.attribution's defaults. The join
        logic is imported here, not at module level: with attribution and per-process series
        off (the default off Kubernetes) this source is never built and costs nothing.
        """
        from exporter import attribution
        from exporter.sources.procfs import ProcReader

        self._directory = directory
        self._kubelet_view = kubelet_view
        self._processes = processes
        self._procfs = procfs or ProcReader()
        self._prefixes = tuple(
            attribution.DEFAULT_RESOURCE_PREFIXES
            if resource_prefixes is None
            else resource_prefixes
        )
        self._dra_drivers = tuple(
            attribution.DEFAULT_DRA_DRIVERS if dra_drivers is None else dra_drivers
        )
        self._top_n = top_n
        self._activity = activity
        from exporter.pod_activity import PodBusyCounters

        self._pod_busy = PodBusyCounters()

    def open(self) -> None:
        """Nothing to acquire: the inputs are other sources' last results."""

    def close(self) -> None:
        """Nothing to release."""

    def collect(self) -> SampleMap:
        """Join the latest inputs into samples (pure apart from reading /proc)."""
        from exporter.attribution import attribute, attribute_processes, build_samples

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
            activity = self._activity() if self._activity is not None else ()
            pids = {process.pid for process in listed} | {process.pid for process in activity}
            owners = self._procfs.read_many(pids)
            allocations = attribution.allocations if attribution else ()
            attributed = attribute_processes(listed, owners, allocations)
            if self._activity is not None:
                self._count_pod_busy(activity, attributed, allocations)
        samples = build_samples(attribution, directory, attributed, self._top_n)
        if self._activity is None or self._processes is None:
            return samples
        out = SampleBuilder()
        out.extend(samples)
        self._pod_busy.samples(out)
        return out.freeze()

    def _count_pod_busy(
        self,
        activity: Sequence[GpuProcessActivity],
        attributed: Sequence[AttributedProcess],
        allocations: Sequence[Allocation],
    ) -> None:
        by_pid = {(p.device.uuid, p.pid): p for p in attributed if not p.device.mig_uuid}

        def container_of(process: GpuProcessActivity) -> tuple[str, ...]:
            owner = by_pid.get((process.uuid, process.pid))
            gpu = str(process.gpu_index)
            if owner is None:
                return (gpu, process.uuid, "", "", "", "", "")
            return (
                gpu,
                process.uuid,
                "",
                owner.namespace,
                owner.pod,
                owner.container,
                owner.pod_uid,
            )

        held = {(a.device.uuid, a.namespace, a.pod) for a in allocations if a.device.gpu}

        def still_allocated(key: tuple[str, ...]) -> bool:
            return bool(key[4]) and (key[1], key[3], key[4]) in held

        self._pod_busy.update(activity, container_of, still_allocated)


# -- wiring (called by exporter.app) -------------------------------------------------------


def pod_attribution_wanted(mode: str, socket_path: str) -> bool:
    """`on`/`off` as asked; `auto` turns on when the socket or its directory exists.

    The directory counts because the DaemonSet mounts the directory (so a restarted kubelet's
    new socket is seen) and the kubelet may be restarting when the exporter starts. On a
    laptop or a non-Kubernetes host neither exists, so grpc is never imported there.
    """
    if mode == "on":
        return True
    if mode == "off":
        return False
    return os.path.exists(socket_path) or os.path.isdir(os.path.dirname(socket_path))


@dataclass
class AttributionParts:
    """What the application starts and stops for attribution; both None when it is off."""

    pod_resources: PodResourcesSource | None = None
    poller: Poller | None = None

    def start(self) -> None:
        """Start the kubelet refresher and the attribution poll thread."""
        if self.pod_resources is not None:
            self.pod_resources.start()
        if self.poller is not None:
            self.poller.start()

    def stop(self, timeout: float) -> None:
        """Join both threads within `timeout` in all (the stop event is already set)."""
        deadline = time.monotonic() + timeout
        if self.poller is not None:
            self.poller.join(timeout)
        remaining = max(0.0, deadline - time.monotonic())
        if self.pod_resources is not None and self.pod_resources.join(remaining):
            self.pod_resources.close()


def build_attribution(
    config: Config, nvml: NvmlSource, publisher: Publisher, stop: threading.Event
) -> AttributionParts:
    """Build the kubelet refresher (importing grpc only now) and the attribution poller."""
    parts = AttributionParts()
    if pod_attribution_wanted(config.pod_attribution, config.pod_resources_socket):
        from exporter.sources.podresources import PodResourcesSource

        refresh = min(max(config.interval_seconds, 1.0), 30.0)
        parts.pod_resources = PodResourcesSource(
            config.pod_resources_socket,
            publisher,
            stop=stop,
            refresh_seconds=refresh,
            ttl_seconds=max(6 * refresh, 30.0),
        )
    if parts.pod_resources is None and not config.processes:
        return parts
    from exporter.sources.procfs import ProcReader

    source = AllocationSource(
        nvml.directory,
        parts.pod_resources.view if parts.pod_resources is not None else None,
        nvml.processes if config.processes else None,
        procfs=ProcReader(config.procfs_path),
        resource_prefixes=config.resource_prefixes,
        top_n=config.processes_top_n,
        activity=nvml.process_activity if config.processes else None,
    )
    parts.poller = Poller(source, publisher, config.interval_seconds, stop)
    return parts
