"""Activity families: busy-time counters, profiling metrics (GPM) and per-pod utilization.

Why counters next to the gauges: nvidia_gpu_utilization_ratio is one NVML sample (1/6 s to 1 s)
per collection, so a 15 s scrape of a bursty GPU reads 0 or 1 depending on phase. A counter of
busy seconds built from every sample NVML kept, or from GPM's measurement of the whole interval
between two collections, makes `rate()` over any window the true average. See
docs/utilization.md for which question each family answers and how to query it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from exporter.metric_family import GPU_LABELS, POD_LABELS, Family

UTILIZATION_ENGINES: tuple[str, ...] = ("gpu", "memory", "encoder", "decoder")

UTILIZATION_BUSY = Family(
    "nvidia_gpu_utilization_busy_seconds_total",
    "counter",
    "Seconds the engine was busy, summed over every NVML utilization sample (engine: gpu = a "
    "kernel ran, memory = device memory was read or written, encoder, decoder). rate() is the "
    "true average utilization over any window, with no sampling gaps.",
    (*GPU_LABELS, "engine"),
    "utilization",
)
UTILIZATION_SAMPLED = Family(
    "nvidia_gpu_utilization_sampled_seconds_total",
    "counter",
    "Seconds covered by the samples counted in nvidia_gpu_utilization_busy_seconds_total; it "
    "grows slower than wall time only when NVML's sample buffer wrapped between collections.",
    (*GPU_LABELS, "engine"),
    "utilization",
)

#: The `pipe` label of the pipe families, in catalog order.
PIPES: tuple[str, ...] = (
    "fp64",
    "fp32",
    "fp16",
    "integer",
    "tensor_hmma",
    "tensor_imma",
    "tensor_dmma",
    "tensor_dfma",
)


@dataclass(frozen=True, slots=True)
class ProfilingFamilies:
    """The GPM families of one scope: a whole GPU, or one MIG GPU instance."""

    graphics_active: Family
    graphics_active_seconds: Family
    sm_active: Family
    sm_active_seconds: Family
    sm_occupancy: Family
    tensor_active: Family
    tensor_active_seconds: Family
    pipe_active_seconds: Family
    dram_active: Family
    dram_active_seconds: Family
    pcie_bytes: Family | None  # per GPU instance only: a whole GPU has the PCIe byte counters
    nvlink_bytes: Family | None  # likewise (nvidia_gpu_nvlink_*_bytes_total)

    def all(self) -> tuple[Family, ...]:
        """Every family of this scope, in declaration order."""
        found = (getattr(self, f.name) for f in fields(self))
        return tuple(family for family in found if family is not None)


def _profiling(
    prefix: str, labels: tuple[str, ...], scope: str, throughput: bool
) -> ProfilingFamilies:
    def ratio(name: str, what: str, *extra: str) -> Family:
        return Family(
            f"{prefix}{name}_ratio",
            "gauge",
            f"{what} (0-1), averaged over the interval between the last two collections "
            f"({scope}; GPM, Hopper and newer).",
            (*labels, *extra),
            "profiling",
        )

    def seconds(name: str, what: str, *extra: str) -> Family:
        return Family(
            f"{prefix}{name}_seconds_total",
            "counter",
            f"Seconds of {what}, from GPM ({scope}); rate() is the average over any window.",
            (*labels, *extra),
            "profiling",
        )

    def bytes_total(name: str, what: str) -> Family:
        return Family(
            f"{prefix}{name}_bytes_total",
            "counter",
            f"{what} in bytes, from GPM ({scope}; direction transmit or receive).",
            (*labels, "direction"),
            "profiling",
        )

    return ProfilingFamilies(
        graphics_active=ratio(
            "graphics_active", "Fraction of time a graphics or compute context was active"
        ),
        graphics_active_seconds=seconds("graphics_active", "graphics or compute activity"),
        sm_active=ratio("sm_active", "Fraction of time an SM had a warp resident, over all SMs"),
        sm_active_seconds=seconds("sm_active", "SM activity (SM-seconds / SM count)"),
        sm_occupancy=ratio("sm_occupancy", "Resident warps as a fraction of the SMs' maximum"),
        tensor_active=ratio("tensor_active", "Fraction of time any tensor core pipe was busy"),
        tensor_active_seconds=seconds("tensor_active", "tensor core activity"),
        pipe_active_seconds=seconds(
            "pipe_active",
            "math pipe activity (pipe: fp64, fp32, fp16, integer and the tensor kinds "
            "tensor_hmma, tensor_imma, tensor_dmma, tensor_dfma; a counter only, to stay within "
            "the series budget: rate() is the ratio)",
            "pipe",
        ),
        dram_active=ratio("dram_active", "Device memory bandwidth used, as a fraction of peak"),
        dram_active_seconds=seconds("dram_active", "peak-bandwidth-equivalent memory traffic"),
        pcie_bytes=bytes_total("pcie", "PCIe traffic") if throughput else None,
        nvlink_bytes=bytes_total("nvlink", "NVLink traffic over all links") if throughput else None,
    )


GPM_FAMILIES = _profiling("nvidia_gpu_profiling_", GPU_LABELS, "whole GPU", throughput=False)
MIG_GPM_FAMILIES = _profiling(
    "nvidia_gpu_mig_profiling_",
    (*GPU_LABELS, "gpu_instance"),
    "one MIG GPU instance",
    throughput=True,
)

POD_UTILIZATION_BUSY = Family(
    "nvidia_gpu_pod_utilization_busy_seconds_total",
    "counter",
    "Seconds the container's processes kept the GPU busy, from NVML's per-process utilization "
    "(engine gpu, memory, encoder, decoder; needs --collector.processes; not on MIG). On a "
    "time-sliced or MPS GPU the containers' rates add up to the GPU's. pod_uid is the cgroup's "
    "pod UID (namespace/pod stay empty where the kubelet's allocations cannot name the pod: "
    "join kube_pod_info on uid); all empty for processes of no pod.",
    (*POD_LABELS, "pod_uid", "engine"),
    "kubernetes",
)
