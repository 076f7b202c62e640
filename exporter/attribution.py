"""Which pod owns which GPU: pure mapping from kubelet allocations to NVML devices.

Why pure: the kubelet client (sources/podresources.py) and /proc reader (sources/procfs.py) do
the I/O; everything that decides "device id X is GPU 3, MIG device Y, held by pod P" lives here,
so every id format the device plugins and the DRA driver produce is tested without a socket.

Device ids the kubelet reports (reference/nvml-api.md section 8.4 and 8.7):
- `GPU-<uuid>`: a whole GPU (`nvidia.com/gpu`); `MIG-<uuid>`: a MIG device (`nvidia.com/mig-*`,
  or `nvidia.com/gpu` with mig-strategy=single); legacy `MIG-GPU-<parent>/<gi>/<ci>` (pre-R470).
- `<id>::<n>`: replica n of a time-sliced or MPS device; several pods map to one device.
- GKE's own plugin: `nvidia<minor>`, `nvidia<minor>/gi<gi>`, either with `/vgpu<n>`.
- DRA (driver `gpu.nvidia.com`): `gpu-<minor>` and
  `gpu-<minor>-mig-<profileId>-<placementStart>-<placementSize>`, matched through NVML's minor
  numbers and GPU-instance placements.

The series built here never put pod names on GPU series: `nvidia_gpu_pod_info` is a join
series, so pod churn adds and removes only its own series.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from exporter import metrics
from exporter.model import GpuIdentity, GpuProcess, SampleBuilder, SampleMap

DEFAULT_RESOURCE_PREFIXES: tuple[str, ...] = ("nvidia.com/gpu", "nvidia.com/mig-")
DEFAULT_DRA_DRIVERS: tuple[str, ...] = ("gpu.nvidia.com",)

_GKE = re.compile(r"^nvidia(\d+)(?:/gi(\d+))?(?:/vgpu\d+)?$")
_LEGACY_MIG = re.compile(r"^MIG-(GPU-[0-9A-Za-z-]+)/(\d+)/(\d+)$")
_DRA_GPU = re.compile(r"^gpu-(\d+)$")
_DRA_MIG = re.compile(r"^gpu-(\d+)-mig-(\d+)-(\d+)-(\d+)$")


# -- what the kubelet said (filled by sources/podresources.py) --------------------------------


@dataclass(frozen=True, slots=True)
class DeviceGroup:
    """One `ContainerDevices`: a resource name and the device ids allocated (or allocatable)."""

    resource: str
    device_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ClaimDevice:
    """One DRA `ClaimResource`: a device a resource claim gave to the container."""

    driver: str
    pool: str
    device: str
    share_id: str = ""


@dataclass(frozen=True, slots=True)
class ContainerAllocation:
    """A container (init and sidecar containers included) with its devices and DRA devices."""

    name: str
    devices: tuple[DeviceGroup, ...] = ()
    claims: tuple[ClaimDevice, ...] = ()


@dataclass(frozen=True, slots=True)
class PodAllocation:
    """A pod as the kubelet lists it: no UID (the API does not carry one), namespace and name."""

    namespace: str
    name: str
    containers: tuple[ContainerAllocation, ...] = ()


@dataclass(frozen=True, slots=True)
class KubeletView:
    """One refresh of the pod-resources API; `allocatable` is None where the call is missing."""

    pods: tuple[PodAllocation, ...]
    allocatable: tuple[DeviceGroup, ...] | None = None


# -- what the exporter makes of it -------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Device:
    """A schedulable unit: a whole GPU (mig_uuid "") or a MIG device. gpu "" = not in NVML."""

    gpu: str
    uuid: str
    mig_uuid: str = ""


@dataclass(frozen=True, slots=True, order=True)
class Allocation:
    """One container holding one device; the labels of `nvidia_gpu_pod_info`."""

    device: Device
    namespace: str
    pod: str
    container: str

    def labels(self) -> tuple[str, str, str, str, str, str]:
        """Label values in the order of metrics.POD_INFO."""
        d = self.device
        return (d.gpu, d.uuid, d.mig_uuid, self.namespace, self.pod, self.container)


@dataclass(frozen=True, slots=True)
class Attribution:
    """The mapped allocations of one refresh and what could not be mapped."""

    allocations: tuple[Allocation, ...]
    allocated_by_resource: Mapping[str, int]
    allocatable_by_resource: Mapping[str, int] | None
    allocatable_by_device: Mapping[Device, int] | None
    unmapped_ids: tuple[str, ...]


class DeviceIndex:
    """Lookups from every id form to NVML's devices, built once per directory."""

    def __init__(self, directory: Sequence[GpuIdentity]) -> None:
        self.units: list[Device] = []
        self._by_uuid: dict[str, Device] = {}
        self._by_mig_uuid: dict[str, Device] = {}
        self._by_minor: dict[int, GpuIdentity] = {}
        self._gi: dict[tuple[str, int], list[Device]] = defaultdict(list)
        self._ci: dict[tuple[str, int, int], Device] = {}
        self._placement: dict[tuple[int, int, int, int], list[Device]] = defaultdict(list)
        for gpu in directory:
            whole = Device(str(gpu.index), gpu.uuid, "")
            self._by_uuid[gpu.uuid] = whole
            if gpu.minor_number is not None:
                self._by_minor[gpu.minor_number] = gpu
            if not gpu.migs:
                self.units.append(whole)
            for mig in gpu.migs:
                device = Device(str(gpu.index), gpu.uuid, mig.uuid)
                self.units.append(device)
                self._by_mig_uuid[mig.uuid] = device
                self._gi[(gpu.uuid, mig.gpu_instance)].append(device)
                self._ci[(gpu.uuid, mig.gpu_instance, mig.compute_instance)] = device
                if gpu.minor_number is not None and None not in (
                    mig.profile_id,
                    mig.placement_start,
                    mig.placement_size,
                ):
                    key = (
                        gpu.minor_number,
                        int(mig.profile_id or 0),
                        int(mig.placement_start or 0),
                        int(mig.placement_size or 0),
                    )
                    self._placement[key].append(device)

    def resolve_device_id(self, device_id: str) -> tuple[Device, ...]:  # noqa: PLR0911 - one return per id form
        """Devices a device-plugin id names; empty when the id's form is unknown.

        A `GPU-`/`MIG-` id that NVML does not list still yields a device (gpu "") so the pod
        is attributed to the uuid the kubelet gave, never silently dropped.
        """
        base = device_id.split("::", 1)[0].strip()
        if base.startswith("MIG-"):
            known = self._by_mig_uuid.get(base)
            if known is not None:
                return (known,)
            legacy = _LEGACY_MIG.match(base)
            if legacy:
                parent, gi, ci = legacy.group(1), int(legacy.group(2)), int(legacy.group(3))
                found = self._ci.get((parent, gi, ci))
                return (found,) if found else (Device("", parent, ""),)
            return (Device("", "", base),)
        if base.startswith("GPU-"):
            return (self._by_uuid.get(base) or Device("", base, ""),)
        gke = _GKE.match(base)
        if gke:
            gpu = self._by_minor.get(int(gke.group(1)))
            if gpu is None:
                return ()
            if gke.group(2) is None:
                return (self._by_uuid[gpu.uuid],)
            return tuple(self._gi.get((gpu.uuid, int(gke.group(2))), ()))
        return ()

    def resolve_claim(self, claim: ClaimDevice) -> tuple[Device, ...]:
        """Devices a DRA device name names (`gpu-<minor>`, `gpu-<minor>-mig-<p>-<s>-<n>`)."""
        whole = _DRA_GPU.match(claim.device)
        if whole:
            gpu = self._by_minor.get(int(whole.group(1)))
            return (self._by_uuid[gpu.uuid],) if gpu else ()
        mig = _DRA_MIG.match(claim.device)
        if mig:
            key = (int(mig.group(1)), int(mig.group(2)), int(mig.group(3)), int(mig.group(4)))
            return tuple(self._placement.get(key, ()))
        return ()


def resource_wanted(resource: str, prefixes: Iterable[str]) -> bool:
    """True for GPU resources: `nvidia.com/gpu` also matches `nvidia.com/gpu.shared`."""
    return any(resource.startswith(prefix) for prefix in prefixes)


def attribute(
    view: KubeletView,
    directory: Sequence[GpuIdentity],
    prefixes: Sequence[str] = DEFAULT_RESOURCE_PREFIXES,
    dra_drivers: Sequence[str] = DEFAULT_DRA_DRIVERS,
) -> Attribution:
    """Map every GPU allocation of every pod and container to NVML devices."""
    index = DeviceIndex(directory)
    allocations: set[Allocation] = set()
    unmapped: set[str] = set()
    allocated_by_resource: dict[str, int] = defaultdict(int)
    for pod in view.pods:
        for container in pod.containers:
            for group in container.devices:
                if not resource_wanted(group.resource, prefixes):
                    continue
                allocated_by_resource[group.resource] += len(group.device_ids)
                for device_id in group.device_ids:
                    devices = index.resolve_device_id(device_id)
                    if not devices or any(d.gpu == "" for d in devices):
                        unmapped.add(device_id)
                    for device in devices:
                        allocations.add(Allocation(device, pod.namespace, pod.name, container.name))
            for claim in container.claims:
                if claim.driver not in dra_drivers:
                    continue
                allocated_by_resource[f"dra:{claim.driver}"] += 1
                devices = index.resolve_claim(claim)
                if not devices:
                    unmapped.add(f"{claim.driver}/{claim.pool}/{claim.device}")
                for device in devices:
                    allocations.add(Allocation(device, pod.namespace, pod.name, container.name))
    allocatable_by_resource: dict[str, int] | None = None
    allocatable_by_device: dict[Device, int] | None = None
    if view.allocatable is not None:
        allocatable_by_resource = defaultdict(int)
        allocatable_by_device = defaultdict(int)
        for group in view.allocatable:
            if not resource_wanted(group.resource, prefixes):
                continue
            allocatable_by_resource[group.resource] += len(group.device_ids)
            for device_id in group.device_ids:
                for device in index.resolve_device_id(device_id):
                    if device.gpu:
                        allocatable_by_device[device] += 1
    return Attribution(
        allocations=tuple(sorted(allocations)),
        allocated_by_resource=dict(allocated_by_resource),
        allocatable_by_resource=None
        if allocatable_by_resource is None
        else dict(allocatable_by_resource),
        allocatable_by_device=None
        if allocatable_by_device is None
        else dict(allocatable_by_device),
        unmapped_ids=tuple(sorted(unmapped)),
    )


# -- processes ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcessOwner:
    """What /proc says about a GPU process: its name and the pod/container its cgroup names."""

    name: str
    pod_uid: str = ""
    container_id: str = ""


@dataclass(frozen=True, slots=True)
class AttributedProcess:
    """A GPU process with its owner; namespace/pod/container "" where not determined."""

    device: Device
    pid: int
    name: str
    used_memory_bytes: float
    pod_uid: str
    namespace: str
    pod: str
    container: str


def _dedupe(processes: Sequence[GpuProcess]) -> dict[tuple[Device, int], float]:
    """One entry per (device, pid): a process listed as compute and graphics counts once, and
    a process seen on a MIG device is not repeated on its parent GPU."""
    on_mig = {(p.uuid, p.pid) for p in processes if p.mig_uuid}
    merged: dict[tuple[Device, int], float] = {}
    for process in processes:
        if not process.mig_uuid and (process.uuid, process.pid) in on_mig:
            continue
        key = (Device(str(process.gpu_index), process.uuid, process.mig_uuid), process.pid)
        memory = process.used_memory_bytes or 0.0
        merged[key] = max(merged.get(key, 0.0), memory)
    return merged


def _infer_pods(
    uids_on_device: Mapping[Device, set[str]],
    holders: Mapping[Device, set[tuple[str, str]]],
) -> dict[str, tuple[str, str]]:
    """Pod UID -> (namespace, pod), where the allocations leave only one possibility.

    The pod-resources API has no pod UID and the cgroup has no pod name. A device held by one
    pod, with processes of one pod UID on it, ties the two; each tie removes candidates from
    shared devices, so time-sliced GPUs resolve when their pods also hold other devices.
    """
    mapping: dict[str, tuple[str, str]] = {}
    changed = True
    while changed:
        changed = False
        taken = set(mapping.values())
        for device, uids in uids_on_device.items():
            open_uids = uids - mapping.keys()
            open_pods = holders.get(device, set()) - taken
            if len(open_uids) == 1 and len(open_pods) == 1:
                uid = next(iter(open_uids))
                mapping[uid] = next(iter(open_pods))
                taken = set(mapping.values())
                changed = True
    return mapping


def attribute_processes(
    processes: Sequence[GpuProcess],
    owners: Mapping[int, ProcessOwner],
    allocations: Sequence[Allocation],
) -> list[AttributedProcess]:
    """Join NVML processes with /proc owners and the kubelet's allocations."""
    merged = _dedupe(processes)
    holders: dict[Device, set[tuple[str, str]]] = defaultdict(set)
    containers: dict[tuple[Device, str, str], set[str]] = defaultdict(set)
    for allocation in allocations:
        pod_key = (allocation.namespace, allocation.pod)
        holders[allocation.device].add(pod_key)
        containers[(allocation.device, *pod_key)].add(allocation.container)
    uids_on_device: dict[Device, set[str]] = defaultdict(set)
    for device, pid in merged:
        owner = owners.get(pid)
        if owner is not None and owner.pod_uid:
            uids_on_device[device].add(owner.pod_uid)
    pods = _infer_pods(uids_on_device, holders)
    result: list[AttributedProcess] = []
    for (device, pid), memory in merged.items():
        owner = owners.get(pid)
        if owner is None:
            continue  # the process exited between NVML's list and our /proc read
        namespace, pod = pods.get(owner.pod_uid, ("", ""))
        container = ""
        if pod:
            names = containers.get((device, namespace, pod), set())
            container = next(iter(names)) if len(names) == 1 else ""
        result.append(
            AttributedProcess(
                device, pid, owner.name, memory, owner.pod_uid, namespace, pod, container
            )
        )
    return result


def top_processes(
    processes: Sequence[AttributedProcess], top_n: int
) -> tuple[list[AttributedProcess], int]:
    """The `top_n` processes by memory on each physical GPU, and how many were left out."""
    by_gpu: dict[str, list[AttributedProcess]] = defaultdict(list)
    for process in processes:
        by_gpu[process.device.uuid].append(process)
    kept: list[AttributedProcess] = []
    omitted = 0
    for listed in by_gpu.values():
        listed.sort(key=lambda p: (-p.used_memory_bytes, p.pid))
        kept.extend(listed[:top_n])
        omitted += max(0, len(listed) - top_n)
    kept.sort(key=lambda p: (p.device, p.pid))
    return kept, omitted


# -- samples -----------------------------------------------------------------------------------


def build_samples(
    attribution: Attribution | None,
    directory: Sequence[GpuIdentity],
    processes: Sequence[AttributedProcess] | None,
    top_n: int,
) -> SampleMap:
    """The attribution families; kubelet families only with a view, process ones when captured."""
    out = SampleBuilder()
    add = out.add
    allocations = attribution.allocations if attribution else ()
    if attribution is not None:
        for allocation in allocations:
            add(metrics.POD_INFO.name, allocation.labels(), 1.0)
        index = DeviceIndex(directory)
        held = {a.device for a in allocations if a.device.gpu}
        for device in sorted(set(index.units) | held):
            labels = (device.gpu, device.uuid, device.mig_uuid)
            add(metrics.ALLOCATED.name, labels, 1.0 if device in held else 0.0)
            if attribution.allocatable_by_device is not None:
                count = attribution.allocatable_by_device.get(device, 0)
                add(metrics.ALLOCATABLE.name, labels, float(count))
        for resource, count in sorted(attribution.allocated_by_resource.items()):
            add(metrics.NODE_ALLOCATED_DEVICES.name, (resource,), float(count))
        if attribution.allocatable_by_resource is not None:
            for resource, count in sorted(attribution.allocatable_by_resource.items()):
                add(metrics.NODE_ALLOCATABLE_DEVICES.name, (resource,), float(count))
        add(metrics.UNMAPPED_DEVICE_IDS.name, (), float(len(attribution.unmapped_ids)))
    if processes is None:
        return out.freeze()
    per_pod: dict[Allocation, list[float]] = {a: [0.0, 0.0] for a in allocations}
    for process in processes:
        if not process.pod:
            continue
        for allocation in allocations:
            if (
                allocation.device == process.device
                and allocation.namespace == process.namespace
                and allocation.pod == process.pod
                and (not process.container or allocation.container == process.container)
            ):
                per_pod[allocation][0] += 1.0
                per_pod[allocation][1] += process.used_memory_bytes
                break
    for allocation, (process_count, memory) in per_pod.items():
        if allocation.device.gpu:
            add(metrics.POD_PROCESSES.name, allocation.labels(), process_count)
            add(metrics.POD_MEMORY_USED.name, allocation.labels(), memory)
    kept, omitted = top_processes(processes, top_n)
    for process in kept:
        d = process.device
        process_labels = (
            d.gpu,
            d.uuid,
            d.mig_uuid,
            str(process.pid),
            process.name,
            process.namespace,
            process.pod,
            process.container,
            process.pod_uid,
        )
        add(metrics.PROCESS_MEMORY_USED.name, process_labels, process.used_memory_bytes)
    add(metrics.PROCESSES_OMITTED.name, (), float(omitted))
    return out.freeze()
