"""Every device-id form of item 2 of issue 4 maps to the expected nvidia_gpu_pod_info series."""

from __future__ import annotations

from exporter import metrics
from exporter.attribution import (
    ClaimDevice,
    ContainerAllocation,
    DeviceGroup,
    KubeletView,
    PodAllocation,
    attribute,
    build_samples,
)
from exporter.model import GpuIdentity
from tests.attribution.conftest import GPU0, GPU1, GPU2, GPU3, MIG_A, MIG_B


def pod(namespace: str, name: str, *containers: ContainerAllocation) -> PodAllocation:
    return PodAllocation(namespace, name, containers)


def gpus(name: str, resource: str, *ids: str) -> ContainerAllocation:
    return ContainerAllocation(name, devices=(DeviceGroup(resource, ids),))


def info(
    view: KubeletView, directory: tuple[GpuIdentity, ...], **kw: object
) -> set[tuple[str, ...]]:
    samples = build_samples(attribute(view, directory, **kw), directory, None, 10)  # type: ignore[arg-type]
    return {labels for labels, value in samples.get(metrics.POD_INFO.name, ()) if value == 1.0}


def test_whole_gpus_container_with_two_gpus(directory):
    view = KubeletView((pod("ml", "train-0", gpus("trainer", "nvidia.com/gpu", GPU0, GPU3)),))
    assert info(view, directory) == {
        ("0", GPU0, "", "ml", "train-0", "trainer"),
        ("3", GPU3, "", "ml", "train-0", "trainer"),
    }


def test_mig_mixed_strategy_and_single_strategy(directory):
    view = KubeletView(
        (
            pod("a", "p1", gpus("c", "nvidia.com/mig-1g.10gb", MIG_A)),
            pod("b", "p2", gpus("c", "nvidia.com/gpu", MIG_B)),  # mig-strategy=single
        )
    )
    assert info(view, directory) == {
        ("2", GPU2, MIG_A, "a", "p1", "c"),
        ("2", GPU2, MIG_B, "b", "p2", "c"),
    }


def test_time_slicing_replicas_several_pods_one_gpu(directory):
    view = KubeletView(
        (
            pod("t1", "a", gpus("main", "nvidia.com/gpu.shared", f"{GPU1}::0")),
            pod("t2", "b", gpus("main", "nvidia.com/gpu.shared", f"{GPU1}::3")),
            # one container holding two replicas of the same GPU is one series
            pod("t3", "c", gpus("main", "nvidia.com/gpu", f"{GPU0}::1", f"{GPU0}::2")),
            pod("t4", "d", gpus("main", "nvidia.com/mig-3g.40gb", f"{MIG_B}::0")),  # EKS MIG
        )
    )
    assert info(view, directory) == {
        ("1", GPU1, "", "t1", "a", "main"),
        ("1", GPU1, "", "t2", "b", "main"),
        ("0", GPU0, "", "t3", "c", "main"),
        ("2", GPU2, MIG_B, "t4", "d", "main"),
    }


def test_legacy_mig_ids_and_gke_ids(directory):
    view = KubeletView(
        (
            pod("x", "legacy", gpus("c", "nvidia.com/mig-1g.10gb", f"MIG-{GPU2}/7/0")),
            pod("x", "gke-whole", gpus("c", "nvidia.com/gpu", "nvidia5")),
            pod("x", "gke-mig", gpus("c", "nvidia.com/gpu", "nvidia2/gi2/vgpu1")),
        )
    )
    assert info(view, directory) == {
        ("2", GPU2, MIG_A, "x", "legacy", "c"),
        ("3", GPU3, "", "x", "gke-whole", "c"),
        ("2", GPU2, MIG_B, "x", "gke-mig", "c"),
    }


def test_dra_devices_map_through_minor_numbers_and_placement(directory):
    claims = (
        ClaimDevice("gpu.nvidia.com", "node-1", "gpu-5"),  # minor 5 is NVML index 3
        ClaimDevice("gpu.nvidia.com", "node-1", "gpu-2-mig-9-4-4"),
        ClaimDevice("gpu.nvidia.com", "node-1", "gpu-2-mig-19-0-1", share_id="s1"),
        ClaimDevice("other.example.com", "node-1", "gpu-0"),  # another driver: not ours
    )
    view = KubeletView((pod("dra", "job", ContainerAllocation("w", claims=claims)),))
    attribution = attribute(view, directory)
    assert {a.labels() for a in attribution.allocations} == {
        ("3", GPU3, "", "dra", "job", "w"),
        ("2", GPU2, MIG_B, "dra", "job", "w"),
        ("2", GPU2, MIG_A, "dra", "job", "w"),
    }
    assert attribution.allocated_by_resource == {"dra:gpu.nvidia.com": 3}
    assert attribution.unmapped_ids == ()


def test_dra_unknown_device_is_counted_unmapped(directory):
    claims = (
        ClaimDevice("gpu.nvidia.com", "n", "gpu-9"),
        ClaimDevice("gpu.nvidia.com", "n", "gpu-2-mig-19-3-1"),
    )
    attribution = attribute(
        KubeletView((pod("d", "p", ContainerAllocation("c", claims=claims)),)), directory
    )
    assert attribution.allocations == ()
    assert attribution.unmapped_ids == (
        "gpu.nvidia.com/n/gpu-2-mig-19-3-1",
        "gpu.nvidia.com/n/gpu-9",
    )


def test_resource_prefixes_are_configurable(directory):
    view = KubeletView(
        (
            pod("p", "a", gpus("c", "nvidia.com/pgpu", GPU0)),
            pod("p", "b", gpus("c", "example.com/fpga", GPU1)),
        )
    )
    assert info(view, directory) == set()
    assert info(view, directory, prefixes=("nvidia.com/gpu", "nvidia.com/pgpu")) == {
        ("0", GPU0, "", "p", "a", "c")
    }


def test_any_namespace_init_containers_and_unknown_gpu(directory):
    unknown = "GPU-99999999-9999-9999-9999-999999999999"
    view = KubeletView(
        (
            pod(
                "kube-system",
                "loader",
                gpus("fetch-weights", "nvidia.com/gpu", GPU0),  # an init container
                gpus("serve", "nvidia.com/gpu", GPU0),
            ),
            pod("team-b", "ghost", gpus("c", "nvidia.com/gpu", unknown)),
        )
    )
    attribution = attribute(view, directory)
    assert {a.labels() for a in attribution.allocations} == {
        ("0", GPU0, "", "kube-system", "loader", "fetch-weights"),
        ("0", GPU0, "", "kube-system", "loader", "serve"),
        ("", unknown, "", "team-b", "ghost", "c"),  # kept: joins on uuid still work
    }
    assert attribution.unmapped_ids == (unknown,)


def test_allocated_and_allocatable_per_device(directory):
    view = KubeletView(
        (pod("a", "p", gpus("c", "nvidia.com/gpu", f"{GPU1}::0")),),
        allocatable=(
            DeviceGroup("nvidia.com/gpu", (GPU0, f"{GPU1}::0", f"{GPU1}::1", f"{GPU1}::2")),
            DeviceGroup("nvidia.com/mig-1g.10gb", (MIG_A,)),
            DeviceGroup("cpu.example.com/x", ("1",)),
        ),
    )
    samples = build_samples(attribute(view, directory), directory, None, 10)
    allocated = dict(samples[metrics.ALLOCATED.name])
    assert allocated == {
        ("0", GPU0, ""): 0.0,
        ("1", GPU1, ""): 1.0,
        ("2", GPU2, MIG_A): 0.0,
        ("2", GPU2, MIG_B): 0.0,
        ("3", GPU3, ""): 0.0,
    }
    allocatable = dict(samples[metrics.ALLOCATABLE.name])
    assert allocatable[("1", GPU1, "")] == 3.0  # three time-sliced replicas
    assert allocatable[("3", GPU3, "")] == 0.0  # not offered: unhealthy or not advertised
    assert allocatable[("2", GPU2, MIG_A)] == 1.0
    assert dict(samples[metrics.NODE_ALLOCATABLE_DEVICES.name]) == {
        ("nvidia.com/gpu",): 4.0,
        ("nvidia.com/mig-1g.10gb",): 1.0,
    }
    assert dict(samples[metrics.NODE_ALLOCATED_DEVICES.name]) == {("nvidia.com/gpu",): 1.0}


def test_pod_churn_never_changes_gpu_series_labels(directory):
    before = KubeletView((pod("a", "p1", gpus("c", "nvidia.com/gpu", GPU0)),))
    after = KubeletView((pod("b", "p2", gpus("c", "nvidia.com/gpu", GPU1, MIG_A)),))
    first = build_samples(attribute(before, directory), directory, None, 10)
    second = build_samples(attribute(after, directory), directory, None, 10)
    for family in (metrics.ALLOCATED.name,):
        assert [labels for labels, _ in first[family]] == [labels for labels, _ in second[family]]
    assert first[metrics.POD_INFO.name] != second[metrics.POD_INFO.name]


def test_no_view_means_no_kubernetes_series(directory):
    assert build_samples(None, directory, None, 10) == {}
