"""MIG and pods: who holds which GPU or MIG device, and how they use it.

Every pod figure goes through the `nvidia_gpu_pod_info` join series (one per container holding
a GPU or MIG device; pod names are never labels of the GPU series). The MIG maths follows one
rule: a MIG-enabled GPU's capacity lives in its MIG devices, so figures about pods and MIG
devices are keyed by `mig_uuid`, and the parent GPU's own series (its memory, power) are never
added to them. A pod on a whole GPU is found with `mig_uuid=""`, a pod on a MIG device with
`mig_uuid!=""`; a MIG-enabled parent has no pod_info series of its own, so nothing is counted
twice. Several containers of one pod, and several exporter instances, collapse through
`group by` / `max by`.
"""

from __future__ import annotations

from dashboards import common as c
from dashboards.panels import (
    DashboardSpec,
    Options,
    Query,
    Section,
    Step,
    bar_panel,
    stat_panel,
    table_panel,
    text_panel,
    timeseries_panel,
)

POD_KEY = "cluster, node, gpu, uuid, mig_uuid, namespace, pod"
WHOLE_PODS = f'group by ({POD_KEY}) (nvidia_gpu_pod_info{{{c.POD_SEL}, mig_uuid=""}})'
MIG_PODS = f'group by ({POD_KEY}) (nvidia_gpu_pod_info{{{c.POD_SEL}, mig_uuid!=""}})'
MIG_KEY = "cluster, node, gpu, uuid, gpu_instance, compute_instance, profile, mig_uuid"
SHARE = f"gpu_pod:nvidia_gpu_share:ratio{{{c.POD_SEL}}}"
LEGEND_POD_MIG = "{{namespace}}/{{pod}} on {{node}} GPU {{gpu}} {{profile}} ({{gpu_instance}})"
NO_MIG_UTILIZATION = (
    "NVML reports no utilization for a MIG device (nor for its MIG-enabled parent). On Hopper "
    "and newer GPM measures each GPU instance (graphics, SM, tensor and DRAM activity); on an "
    "A100 there is no activity signal in MIG mode, and memory is the figure that remains."
)


def mig(metric: str) -> str:
    """One series per MIG device, whatever the number of exporter instances."""
    return f"max by ({MIG_KEY}) ({metric}{{{c.NODE_SEL}}})"


def on_whole_gpu(metric: str) -> str:
    """Per pod on a whole GPU: the GPU's value of `metric` (time-sliced pods each see it)."""
    return on_whole_gpu_expr(f"max by (cluster, node, uuid) ({metric}{{{c.NODE_SEL}}})")


def on_whole_gpu_expr(expr: str) -> str:
    """Per pod on a whole GPU: the GPU's value of `expr`, keyed by (cluster, node, uuid)."""
    return f"{WHOLE_PODS}\n  * on (cluster, node, uuid) group_left ()\n  {expr}"


GPU_UTILIZATION = c.utilization(by="cluster, node, uuid")
POD_SHARE_KEY = "cluster, node, gpu, uuid, namespace, pod, pod_uid"


def on_mig_device(metric: str) -> str:
    """Per pod on a MIG device: the device's value of `metric`, with its profile and GPU
    instance as labels."""
    return (
        f"{MIG_PODS}\n  * on (cluster, node, uuid, mig_uuid) group_left (gpu_instance, profile)\n"
        f"  max by (cluster, node, uuid, mig_uuid, gpu_instance, profile) "
        f"({metric}{{{c.NODE_SEL}}})"
    )


def gi_rate(name: str) -> str:
    """GPM activity per MIG GPU instance (0-1), keyed by (cluster, node, uuid, gpu_instance)."""
    return c.rate(
        f"nvidia_gpu_mig_profiling_{name}_seconds_total",
        by="cluster, node, uuid, gpu_instance",
    )


def on_gpu_instance(expr: str) -> str:
    """Per pod on a MIG device: the value of `expr` (keyed by GPU instance) for the GPU
    instance of its MIG device; nvidia_gpu_mig_multiprocessors maps mig_uuid to gpu_instance."""
    return (
        f"{MIG_PODS}\n  * on (cluster, node, uuid, mig_uuid) group_left (gpu_instance, profile)\n"
        "  group by (cluster, node, uuid, mig_uuid, gpu_instance, profile) "
        f"(nvidia_gpu_mig_multiprocessors{{{c.NODE_SEL}}})\n"
        f"  * on (cluster, node, uuid, gpu_instance) group_left ()\n  {expr}"
    )


def per_device(expr: str) -> str:
    """Per MIG device (MIG_KEY labels): the value of `expr` (keyed by GPU instance) for the
    device's GPU instance."""
    return (
        f"group by ({MIG_KEY}) (nvidia_gpu_mig_memory_total_bytes{{{c.NODE_SEL}}})\n"
        f"  * on (cluster, node, uuid, gpu_instance) group_left ()\n  {expr}"
    )


def mig_allocated() -> str:
    """Per MIG device: 1 if a pod holds it, 0 if free, with the device's labels. Exists only
    where the exporter reads the kubelet (nvidia_gpu_allocated)."""
    return (
        "max by (cluster, node, uuid, mig_uuid) "
        f'(nvidia_gpu_allocated{{{c.NODE_SEL}, mig_uuid!=""}})\n'
        "  * on (cluster, node, uuid, mig_uuid) group_left (gpu, gpu_instance, compute_instance, "
        "profile)\n"
        f"  group by ({MIG_KEY}) (nvidia_gpu_mig_memory_total_bytes{{{c.NODE_SEL}}})"
    )


def _now() -> Section:
    blue = [Step(None, "blue")]
    return Section(
        "Now",
        [
            stat_panel(
                "Pods holding a GPU",
                "Pods (not containers) that hold at least one whole GPU or MIG device on the "
                "selected nodes and namespaces, from the kubelet's pod-resources API.",
                "short",
                Query(
                    "count(group by (cluster, namespace, pod) "
                    f"(nvidia_gpu_pod_info{{{c.POD_SEL}}})) or vector(0)"
                ),
                options=Options(width=4, height=4, steps=blue),
            ),
            stat_panel(
                "Whole GPUs held",
                "Whole GPUs (not MIG devices) that at least one selected pod holds. A GPU "
                "time-sliced between several pods counts once.",
                "short",
                Query(
                    "count(group by (cluster, node, uuid) "
                    f'(nvidia_gpu_pod_info{{{c.POD_SEL}, mig_uuid=""}})) or vector(0)'
                ),
                options=Options(width=4, height=4, steps=blue),
            ),
            stat_panel(
                "MIG devices held",
                "MIG devices that at least one selected pod holds. Their parent GPUs are not "
                "counted as held whole GPUs.",
                "short",
                Query(
                    "count(group by (cluster, node, uuid, mig_uuid) "
                    f'(nvidia_gpu_pod_info{{{c.POD_SEL}, mig_uuid!=""}})) or vector(0)'
                ),
                options=Options(width=4, height=4, steps=blue),
            ),
            stat_panel(
                "GPU equivalents held",
                "How many physical GPUs the selected pods hold between them: a whole GPU counts "
                "1 (split among pods time-sharing it), a MIG device the share of its parent's "
                "memory it owns (a 1g.10gb device of an 80 GB A100 is about 0.12). Parent GPUs "
                "and their MIG devices are never both counted (gpu_pod:nvidia_gpu_share:ratio, "
                "alerts/rules/cost.yaml).",
                "short",
                Query(f"sum({SHARE}) or vector(0)"),
                options=Options(width=4, height=4, decimals=2, steps=blue),
            ),
            stat_panel(
                "MIG devices free",
                "MIG devices on the selected nodes that no pod holds: capacity ready to "
                "schedule without repartitioning. Counted only on nodes where the exporter "
                "reads the kubelet (nvidia_gpu_allocated).",
                "short",
                Query(f"sum(1 - ({mig_allocated()})) or vector(0)"),
                options=Options(width=4, height=4, steps=blue),
            ),
            stat_panel(
                "MIG-enabled GPUs",
                "GPUs in MIG mode on the selected nodes. Their utilization is not reported by "
                "NVML; their memory is split among the MIG devices below.",
                "short",
                Query(
                    "count(group by (cluster, node, uuid) "
                    f'(nvidia_gpu_info{{{c.NODE_SEL}, mig_mode="enabled"}})) or vector(0)'
                ),
                options=Options(width=4, height=4, steps=blue),
            ),
        ],
    )


def _by_namespace() -> Section:
    whole = (
        "label_replace(count by (namespace) (group by (cluster, node, uuid, namespace) "
        f'(nvidia_gpu_pod_info{{{c.POD_SEL}, mig_uuid=""}})), "profile", "whole GPU", "", "")'
    )
    migs = (
        "count by (namespace, profile) (\n"
        "    group by (cluster, node, uuid, mig_uuid, namespace) "
        f'(nvidia_gpu_pod_info{{{c.POD_SEL}, mig_uuid!=""}})\n'
        "  * on (cluster, node, uuid, mig_uuid) group_left (profile)\n"
        "    group by (cluster, node, uuid, mig_uuid, profile) "
        f"(nvidia_gpu_mig_memory_total_bytes{{{c.NODE_SEL}}})\n)"
    )
    return Section(
        "By namespace",
        [
            bar_panel(
                "GPU equivalents held per namespace",
                "Physical GPUs each namespace holds now: whole GPUs count 1 (split among the "
                "pods time-sharing one), MIG devices their share of the parent's memory. The "
                "sum over namespaces never exceeds the GPUs installed, because a MIG parent "
                "and its MIG devices are never both counted.",
                "short",
                Query(f"sum by (namespace) ({SHARE})", "{{namespace}}"),
                options=Options(width=8, height=8, min=0, decimals=2),
            ),
            bar_panel(
                "Devices held per namespace and profile",
                "What each namespace holds, by kind: whole GPUs (profile 'whole GPU'; a "
                "time-sliced GPU counts once per namespace holding it) and MIG devices by "
                "profile (e.g. 1g.10gb). Counts of devices, not GPU equivalents: a 1g.10gb "
                "device and a whole GPU each count 1 here.",
                "short",
                Query(f"{migs}\nor\n{whole}", "{{namespace}} {{profile}}"),
                options=Options(width=8, height=8, min=0),
            ),
            timeseries_panel(
                "GPU equivalents held per namespace over time",
                "The same share as the bars, over time, stacked: how the fleet's GPUs were "
                "divided among namespaces. Steps show pods starting and ending.",
                "short",
                Query(f"sum by (namespace) ({SHARE})", "{{namespace}}"),
                options=Options(width=8, height=8, min=0),
                stacked=True,
            ),
        ],
    )


def _whole_gpus() -> Section:
    pod_memory = (
        f"max by ({POD_KEY}) (\n"
        "  sum without (container) "
        f"(nvidia_gpu_pod_memory_used_bytes{{{c.POD_SEL}}})\n)"
    )
    return Section(
        "Pods on whole GPUs",
        [
            timeseries_panel(
                "GPU utilization of each pod's GPU",
                "Utilization (share of time a kernel ran, the true average from the busy-time "
                "counter, or the one-sample gauge on older exporters) of the whole GPU each pod "
                "holds. Pods time-sharing one GPU each show the same line: the next panel "
                "splits it between them. MIG devices have none (see the next row).",
                "percentunit",
                Query(on_whole_gpu_expr(GPU_UTILIZATION), c.LEGEND_POD),
                options=Options(width=12, height=8, min=0, max=1),
            ),
            timeseries_panel(
                "Each pod's share of its GPU",
                "Per pod, the share of its GPU's busy time its processes used: rate of "
                "nvidia_gpu_pod_utilization_busy_seconds_total (NVML's per-process "
                "utilization, summed per container) over that of every process on the GPU "
                "(pods or not). On a time-sliced GPU this is who uses it: the shares of one "
                "GPU add up to 1, a pod alone on its GPU reads 1; multiply by the GPU's "
                "utilization for the GPU time used. Pods the kubelet cannot name (several "
                "pods time-slicing a GPU and nothing else) are shown by their cgroup's pod UID "
                "(join kube_pod_info on uid). Empty on a healthy node without "
                "--collector.processes (off by default); not on MIG devices (NVML has no "
                "per-process utilization there).",
                "percentunit",
                Query(
                    c.pod_or_uid(c.pod_share(c.POD_SEL, POD_SHARE_KEY, 'pod_uid!=""')),
                    c.LEGEND_POD,
                ),
                options=Options(width=12, height=8, min=0, max=1),
            ),
            timeseries_panel(
                "GPU memory used on each pod's GPU",
                "Device memory in use on the whole GPU each pod holds (all processes on it; "
                "time-sharing pods each show the GPU's total). Compare with the GPU's memory on "
                "the GPU detail dashboard.",
                "bytes",
                Query(on_whole_gpu("nvidia_gpu_memory_used_bytes"), c.LEGEND_POD),
                options=Options(width=12, height=8, min=0),
            ),
            timeseries_panel(
                "Memory used by each pod's processes",
                "Device memory the pod's own processes use, summed over its containers, on a "
                "whole GPU or a MIG device: this splits a time-shared GPU between its pods. "
                "Empty on a healthy node: it needs --collector.processes (off by default) and "
                "the host's /proc.",
                "bytes",
                Query(pod_memory, "{{namespace}}/{{pod}} on {{node}} GPU {{gpu}} {{mig_uuid}}"),
                options=Options(width=12, height=8, min=0),
            ),
        ],
    )


def _mig_pods() -> Section:
    return Section(
        "Pods on MIG devices",
        [
            text_panel(
                "Activity and memory of MIG devices",
                f"**{NO_MIG_UTILIZATION}** A pod that fills its MIG device's memory needs a "
                "larger profile; one that uses a sliver of it, or whose GPU instance's SMs "
                "idle, could share a smaller one. Rows are MIG devices, keyed by `mig_uuid` and "
                "labelled with their profile and GPU instance; the parent GPU's own readings "
                "are never added to them.",
                width=24,
                height=3,
            ),
            timeseries_panel(
                "MIG memory used per pod",
                "Memory in use on the MIG device each pod holds, by profile and GPU instance. "
                + NO_MIG_UTILIZATION,
                "bytes",
                Query(on_mig_device("nvidia_gpu_mig_memory_used_bytes"), LEGEND_POD_MIG),
                options=Options(width=8, height=8, min=0),
            ),
            timeseries_panel(
                "MIG memory used per pod, share of the device",
                "Memory in use on each pod's MIG device as a share of that device's memory (not "
                "of the parent GPU's). Near 1: the pod is out of room in its profile.",
                "percentunit",
                Query(
                    f"(\n{on_mig_device('nvidia_gpu_mig_memory_used_bytes')}\n)\n/\n"
                    f"(\n{on_mig_device('nvidia_gpu_mig_memory_total_bytes')}\n)",
                    LEGEND_POD_MIG,
                ),
                options=Options(width=8, height=8, min=0, max=1),
            ),
            timeseries_panel(
                "SM activity of each pod's GPU instance",
                "Share of the SMs with work in the MIG GPU instance each pod's MIG device "
                "belongs to (GPM, rate of nvidia_gpu_mig_profiling_sm_active_seconds_total). "
                "Low while the pod holds it: the instance idles and a smaller profile would "
                f"do. {c.NEEDS_MIG_GPM}",
                "percentunit",
                Query(on_gpu_instance(gi_rate("sm_active")), LEGEND_POD_MIG),
                options=Options(width=8, height=8, min=0, max=1),
            ),
        ],
    )


def _pod_table() -> Section:
    rows = (
        f'label_replace({WHOLE_PODS}, "profile", "whole GPU", "", "")\nor\n'
        f"{MIG_PODS}\n  * on (cluster, node, uuid, mig_uuid) group_left (profile)\n"
        "  group by (cluster, node, uuid, mig_uuid, profile) "
        f"(nvidia_gpu_mig_memory_total_bytes{{{c.NODE_SEL}}})"
    )
    used = (
        f"{on_whole_gpu('nvidia_gpu_memory_used_bytes')}\nor\n"
        f"{on_mig_device('nvidia_gpu_mig_memory_used_bytes')}"
    )
    total = (
        f"{on_whole_gpu('nvidia_gpu_memory_total_bytes')}\nor\n"
        f"{on_mig_device('nvidia_gpu_mig_memory_total_bytes')}"
    )
    return Section(
        "Pods",
        [
            table_panel(
                "Pods and the devices they hold",
                "One row per pod and device: the node, GPU and MIG device (profile 'whole GPU' "
                "for a whole GPU), the share of a physical GPU it holds, and the memory in use "
                "on that device (the whole GPU's, or the MIG device's) against its size, the "
                "GPU's utilization and the pod's share of the GPU's busy time (needs "
                "--collector.processes; pods the kubelet cannot name are in the share panel "
                "above, by pod UID). Utilization and share are blank for MIG devices: NVML "
                "reports none. Click a row for the GPU detail dashboard.",
                "short",
                Query(rows),
                Query(f"max by ({POD_KEY}) ({SHARE})"),
                Query(used),
                Query(total),
                Query(on_whole_gpu_expr(GPU_UTILIZATION)),
                Query(c.pod_share(c.POD_SEL, POD_KEY, 'pod!=""')),
                options=Options(width=24, height=9, links=[c.to_gpu_from_table()]),
                columns={
                    **c.headers("namespace", "pod", "node", "gpu", "uuid", "profile", "mig_uuid"),
                    "Value #B": "GPU share",
                    "Value #C": "Memory used",
                    "Value #D": "Memory size",
                    "Value #E": "Utilization",
                    "Value #F": "Share of GPU busy",
                },
                column_units={
                    "Share of GPU busy": "percentunit",
                    "GPU share": "percentunit",
                    "Memory used": "bytes",
                    "Memory size": "bytes",
                    "Utilization": "percentunit",
                },
            ),
        ],
    )


def _layout() -> Section:
    per_gpu = "cluster, node, gpu, uuid"
    devices = mig("nvidia_gpu_mig_memory_total_bytes")
    alloc = mig_allocated()
    return Section(
        "MIG layout",
        [
            table_panel(
                "MIG layout per GPU",
                "One row per MIG-enabled GPU: its MIG devices, how many pods hold and how many "
                "are free, the memory and SMs inside MIG devices, and the parent's memory left "
                "outside any MIG device (unpartitioned slices and driver reserve). Sums are over "
                "the MIG devices only; the parent's own memory series is used once, for the "
                "'outside' column, never added to them. Allocation columns need the kubelet "
                "(nvidia_gpu_allocated). Click a row for the GPU detail dashboard.",
                "short",
                Query(f"count by ({per_gpu}) ({devices})"),
                Query(f"sum by ({per_gpu}) ({alloc})"),
                Query(f"sum by ({per_gpu}) (1 - ({alloc}))"),
                Query(f"sum by ({per_gpu}) ({devices})"),
                Query(f"sum by ({per_gpu}) ({mig('nvidia_gpu_mig_memory_used_bytes')})"),
                Query(
                    f"max by ({per_gpu}) (nvidia_gpu_memory_total_bytes{{{c.NODE_SEL}}})\n"
                    f"  - on ({per_gpu})\n  sum by ({per_gpu}) ({devices})"
                ),
                Query(f"sum by ({per_gpu}) ({mig('nvidia_gpu_mig_multiprocessors')})"),
                options=Options(width=24, height=7, links=[c.to_gpu_from_table()]),
                columns={
                    **c.headers("node", "gpu", "uuid"),
                    "Value #A": "MIG devices",
                    "Value #B": "Held by pods",
                    "Value #C": "Free",
                    "Value #D": "Memory in MIG devices",
                    "Value #E": "MIG memory used",
                    "Value #F": "Memory outside MIG devices",
                    "Value #G": "SMs in MIG devices",
                },
                column_units={
                    "Memory in MIG devices": "bytes",
                    "MIG memory used": "bytes",
                    "Memory outside MIG devices": "bytes",
                },
            ),
            table_panel(
                "MIG devices",
                "One row per MIG device: its parent GPU, profile, GPU and compute instance, "
                "memory size and use, SMs, whether a pod holds it (1) or it is free (0; "
                "blank where the exporter does not read the kubelet), and its GPU instance's "
                "activity and SM activity from GPM (Hopper and newer; blank on an A100). This "
                "is the partitioning of each MIG-enabled GPU as NVML reports it. Click a row "
                "for the parent GPU's detail dashboard.",
                "short",
                Query(devices),
                Query(mig("nvidia_gpu_mig_memory_used_bytes")),
                Query(mig("nvidia_gpu_mig_multiprocessors")),
                Query(alloc),
                Query(per_device(gi_rate("graphics_active"))),
                Query(per_device(gi_rate("sm_active"))),
                options=Options(width=24, height=9, links=[c.to_gpu_from_table()]),
                columns={
                    **c.headers("node", "gpu", "uuid", "profile"),
                    "gpu_instance": "GPU instance",
                    "compute_instance": "Compute instance",
                    "mig_uuid": "MIG device",
                    "Value #A": "Memory size",
                    "Value #B": "Memory used",
                    "Value #C": "SMs",
                    "Value #D": "Held by a pod",
                    "Value #E": "Activity",
                    "Value #F": "SM active",
                },
                column_units={
                    "Memory size": "bytes",
                    "Memory used": "bytes",
                    "Activity": "percentunit",
                    "SM active": "percentunit",
                },
            ),
            bar_panel(
                "MIG devices by profile: held and free",
                "MIG devices of each profile that pods hold and that are free, over the "
                "selected nodes: a profile with none free is where the next pod waits, one "
                "with many free may deserve a different partitioning. Needs the kubelet "
                "(nvidia_gpu_allocated).",
                "short",
                Query(f"sum by (profile) ({alloc})", "{{profile}} held"),
                Query(f"sum by (profile) (1 - ({alloc}))", "{{profile}} free"),
                options=Options(width=8, height=9, min=0),
            ),
            timeseries_panel(
                "Memory used per MIG device",
                "Memory in use on every MIG device of the selected nodes, held or not, keyed by "
                "MIG device (GPU instance in brackets). " + NO_MIG_UTILIZATION,
                "bytes",
                Query(mig("nvidia_gpu_mig_memory_used_bytes"), c.LEGEND_MIG),
                options=Options(width=8, height=9, min=0),
            ),
            timeseries_panel(
                "Activity per MIG GPU instance",
                "Share of time each MIG GPU instance of the selected nodes had a context "
                "active (GPM graphics active, rate of "
                "nvidia_gpu_mig_profiling_graphics_active_seconds_total): the utilization NVML "
                "does not give in MIG mode, per GPU instance (GPU instance in brackets), never "
                f"added to the parent GPU. {c.NEEDS_MIG_GPM}",
                "percentunit",
                Query(c.mig_profiling("graphics_active"), c.LEGEND_MIG),
                options=Options(width=8, height=9, min=0, max=1),
            ),
        ],
    )


def spec() -> DashboardSpec:
    return DashboardSpec(
        uid=c.MIG_PODS,
        title=c.TITLE_PREFIX + "MIG and pods",
        description=(
            "Which pods hold which GPUs and MIG devices, how they use them (each pod's share of "
            "a time-sliced GPU, GPM activity per MIG GPU instance), and how MIG GPUs are "
            "partitioned; parent GPUs and their MIG devices are never added together."
        ),
        variables=[c.CLUSTER, c.NODE_VAR, c.NAMESPACE_VAR],
        sections=[_now(), _by_namespace(), _whole_gpus(), _mig_pods(), _pod_table(), _layout()],
    )
