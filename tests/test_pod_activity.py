"""PodBusyCounters: per-process cumulative seconds become per-container counters."""

from __future__ import annotations

import pytest

from exporter import metrics
from exporter.model import GpuProcessActivity, SampleBuilder
from exporter.pod_activity import PodBusyCounters

UUID = "GPU-0"
POD_A = ("0", UUID, "", "ml", "a", "main", "uid-a")
POD_B = ("0", UUID, "", "ml", "b", "main", "uid-b")


def _activity(pid: int, gpu_seconds: float) -> GpuProcessActivity:
    return GpuProcessActivity(0, UUID, pid, (gpu_seconds, gpu_seconds / 2, 0.0, 0.0))


def _values(counters: PodBusyCounters) -> dict[tuple[str, ...], float]:
    out = SampleBuilder()
    counters.samples(out)
    frozen = out.freeze()
    return dict(frozen.get(metrics.POD_UTILIZATION_BUSY.name, ()))


def test_growth_goes_to_the_container_and_survives_a_process_exit() -> None:
    owners = {1: POD_A, 2: POD_A, 3: POD_B}
    counters = PodBusyCounters()
    counters.update(
        [_activity(1, 2.0), _activity(2, 1.0), _activity(3, 4.0)], lambda p: owners[p.pid]
    )
    counters.update([_activity(1, 3.0), _activity(3, 4.5)], lambda p: owners[p.pid])  # pid 2 exited
    values = _values(counters)
    assert values[(*POD_A, "gpu")] == pytest.approx(4.0)  # 2 + 1, then +1 from pid 1
    assert values[(*POD_A, "memory")] == pytest.approx(2.0)
    assert values[(*POD_B, "gpu")] == pytest.approx(4.5)
    assert values[(*POD_B, "encoder")] == 0.0


def test_a_pid_seen_again_after_being_forgotten_counts_from_zero() -> None:
    counters = PodBusyCounters()
    counters.update([_activity(1, 5.0)], lambda _p: POD_A)
    counters.update([_activity(1, 1.0)], lambda _p: POD_A)  # the source forgot and re-tracked it
    assert _values(counters)[(*POD_A, "gpu")] == pytest.approx(6.0)


def test_containers_without_processes_or_allocation_are_dropped() -> None:
    counters = PodBusyCounters()
    counters.update(
        [_activity(1, 1.0), _activity(3, 1.0)], lambda p: POD_A if p.pid == 1 else POD_B
    )
    counters.update([], lambda _p: POD_A, keep=lambda key: key == POD_A)
    values = _values(counters)
    assert (*POD_A, "gpu") in values
    assert (*POD_B, "gpu") not in values
