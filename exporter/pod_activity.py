"""Per-container busy-seconds counters from the NVML source's per-process counters.

Why here and not in the NVML source: a process's pod is known only after the /proc and kubelet
join of the attribution source, which runs on its own thread. The NVML source therefore keeps
cumulative seconds per (GPU, pid); this accumulator adds each pid's growth since it last looked
to the pid's container, so a container's counter never goes back when one of its processes
exits, and nothing is counted twice when the two threads' intervals do not line up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from exporter import metrics
from exporter.metrics_activity import UTILIZATION_ENGINES
from exporter.model import GpuProcessActivity, LabelValues, SampleBuilder

#: gpu, uuid, mig_uuid, namespace, pod, container, pod_uid; pod fields "" for no pod.
ContainerKey = LabelValues


class PodBusyCounters:
    """Accumulates busy seconds per container and GPU (see the module doc)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, int], tuple[float, ...]] = {}
        self._totals: dict[ContainerKey, list[float]] = {}

    def update(
        self,
        activity: Sequence[GpuProcessActivity],
        container_of: Callable[[GpuProcessActivity], ContainerKey],
        keep: Callable[[ContainerKey], bool] = lambda _key: False,
    ) -> None:
        """Add every process's growth to its container; drop containers gone and idle.

        `keep`: containers with no live process whose series stay (their pod still holds the
        GPU: a counter that vanished between two training steps would look like a reset).
        """
        live: set[ContainerKey] = set()
        seen: dict[tuple[str, int], tuple[float, ...]] = {}
        for process in activity:
            key = (process.uuid, process.pid)
            before = self._seen.get(key, (0.0,) * len(process.busy_seconds))
            seen[key] = process.busy_seconds
            container = container_of(process)
            live.add(container)
            total = self._totals.setdefault(container, [0.0] * len(UTILIZATION_ENGINES))
            for engine, (now, then) in enumerate(zip(process.busy_seconds, before, strict=True)):
                # A smaller value means the source forgot the pid and saw it again: all new.
                total[engine] += now - then if now >= then else now
        self._seen = seen
        for container in [c for c in self._totals if c not in live and not keep(c)]:
            del self._totals[container]

    def samples(self, out: SampleBuilder) -> None:
        """nvidia_gpu_pod_utilization_busy_seconds_total for every container kept."""
        name = metrics.POD_UTILIZATION_BUSY.name
        for container, totals in sorted(self._totals.items()):
            for engine, seconds in zip(UTILIZATION_ENGINES, totals, strict=True):
                out.add(name, (*container, engine), seconds)
