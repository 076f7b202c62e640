"""Per-process memory: pid -> pod through cgroup pod UIDs and the kubelet's allocations."""

from __future__ import annotations

from exporter import metrics
from exporter.attribution import (
    Allocation,
    ContainerAllocation,
    Device,
    DeviceGroup,
    KubeletView,
    PodAllocation,
    ProcessOwner,
    attribute,
    attribute_processes,
    build_samples,
    top_processes,
)
from exporter.model import GpuProcess
from tests.attribution.conftest import GPU0, GPU1, GPU2, MIG_A

D0 = Device("0", GPU0)
D1 = Device("1", GPU1)
DA = Device("2", GPU2, MIG_A)
UID_P = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
UID_Q = "11111111-2222-3333-4444-555555555555"


def proc(device: Device, pid: int, mib: float, kind: str = "compute") -> GpuProcess:
    return GpuProcess(int(device.gpu), device.uuid, device.mig_uuid, pid, mib * 2**20, kind)


def test_exclusive_gpu_and_time_sliced_gpu_resolve_by_elimination():
    # P holds GPU0 alone and shares GPU1 with Q: P's UID is learnt on GPU0, so the other UID
    # on GPU1 must be Q's.
    allocations = [
        Allocation(D0, "ml", "p", "main"),
        Allocation(D1, "ml", "p", "main"),
        Allocation(D1, "ml", "q", "side"),
    ]
    owners = {
        10: ProcessOwner("python", UID_P, "a" * 64),
        11: ProcessOwner("python", UID_P, "a" * 64),
        20: ProcessOwner("vllm", UID_Q, "b" * 64),
    }
    result = attribute_processes(
        [proc(D0, 10, 100), proc(D1, 11, 200), proc(D1, 20, 300)], owners, allocations
    )
    got = {(p.device, p.pid): (p.namespace, p.pod, p.container, p.pod_uid) for p in result}
    assert got == {
        (D0, 10): ("ml", "p", "main", UID_P),
        (D1, 11): ("ml", "p", "main", UID_P),
        (D1, 20): ("ml", "q", "side", UID_Q),
    }


def test_ambiguous_sharing_keeps_pod_uid_only():
    allocations = [Allocation(D1, "a", "p", "c"), Allocation(D1, "b", "q", "c")]
    owners = {1: ProcessOwner("x", UID_P), 2: ProcessOwner("y", UID_Q)}
    result = attribute_processes([proc(D1, 1, 1), proc(D1, 2, 1)], owners, allocations)
    assert {(p.pod_uid, p.pod) for p in result} == {(UID_P, ""), (UID_Q, "")}


def test_compute_and_graphics_and_parent_listing_count_once_and_exited_pids_vanish():
    processes = [
        proc(D0, 5, 64, "compute"),
        proc(D0, 5, 64, "graphics"),
        proc(DA, 6, 32),
        GpuProcess(2, GPU2, "", 6, 32 * 2**20, "compute"),  # the parent GPU lists it too
        proc(D0, 7, 1),  # exited before /proc was read
    ]
    owners = {5: ProcessOwner("Xorg"), 6: ProcessOwner("python", UID_P)}
    result = attribute_processes(processes, owners, [Allocation(DA, "n", "p", "c")])
    assert sorted((p.device, p.pid, p.used_memory_bytes, p.pod) for p in result) == [
        (D0, 5, 64 * 2**20, ""),
        (DA, 6, 32 * 2**20, "p"),
    ]


def test_top_n_per_gpu_and_pod_aggregates():
    allocations = [Allocation(D0, "ml", "p", "main")]
    owners = {pid: ProcessOwner(f"w{pid}", UID_P) for pid in range(1, 6)}
    processes = [proc(D0, pid, pid * 10) for pid in range(1, 6)]
    attributed = attribute_processes(processes, owners, allocations)
    kept, omitted = top_processes(attributed, 2)
    assert [p.pid for p in kept] == [4, 5]
    assert omitted == 3
    samples = build_samples(None, (), attributed, 2)
    assert [labels[3] for labels, _ in samples[metrics.PROCESS_MEMORY_USED.name]] == ["4", "5"]
    assert samples[metrics.PROCESSES_OMITTED.name] == (((), 3.0),)
    labels = samples[metrics.PROCESS_MEMORY_USED.name][0][0]
    assert labels == ("0", GPU0, "", "4", "w4", "ml", "p", "main", UID_P)


def test_pod_memory_and_process_count_per_allocation(directory):

    view = KubeletView(
        (
            PodAllocation(
                "ml", "p", (ContainerAllocation("main", (DeviceGroup("nvidia.com/gpu", (GPU0,)),)),)
            ),
            PodAllocation(
                "ml",
                "idle",
                (ContainerAllocation("c", (DeviceGroup("nvidia.com/mig-1g.10gb", (MIG_A,)),)),),
            ),
        )
    )
    attribution = attribute(view, directory)
    owners = {1: ProcessOwner("a", UID_P), 2: ProcessOwner("b", UID_P)}
    attributed = attribute_processes(
        [proc(D0, 1, 100), proc(D0, 2, 50)], owners, attribution.allocations
    )
    samples = build_samples(attribution, directory, attributed, 10)
    assert dict(samples[metrics.POD_MEMORY_USED.name]) == {
        ("0", GPU0, "", "ml", "p", "main"): 150 * 2**20,
        ("2", GPU2, MIG_A, "ml", "idle", "c"): 0.0,
    }
    assert dict(samples[metrics.POD_PROCESSES.name])[("2", GPU2, MIG_A, "ml", "idle", "c")] == 0.0
