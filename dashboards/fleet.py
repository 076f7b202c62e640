"""Fleet overview: how many GPUs, of which models, how busy, how healthy, and who holds them.

The page an SRE opens first and a capacity owner opens weekly. It reads the recording rules of
alerts/rules (node:*, namespace_model:*, model:*) where they exist, so it stays fast on a fleet
of thousands of nodes, and raw series only where a rule would add nothing.
"""

from __future__ import annotations

from dashboards import common as c
from dashboards.panels import (
    DashboardSpec,
    Link,
    Options,
    Query,
    Section,
    Step,
    bar_panel,
    stat_panel,
    table_panel,
    timeseries_panel,
)

GPUS = f"max by (cluster, node, uuid, model) (nvidia_gpu_info{{{c.NODE_SEL}}})"
FIRING = 'ALERTS{alertname=~"NvidiaGpu.*", alertstate="firing", ' + c.NODE_SEL + "}"
RED_IF_ANY = [Step(None, "green"), Step(1, "red")]


def _header() -> Section:
    return Section(
        "Fleet now",
        [
            stat_panel(
                "GPUs",
                "GPUs NVML enumerates on the selected nodes, each counted once (by node and "
                "UUID) however many exporter instances served it.",
                "short",
                Query(f"count({GPUS}) or vector(0)"),
                options=Options(width=3, height=4, steps=[Step(None, "blue")]),
            ),
            stat_panel(
                "GPU nodes",
                "Nodes with at least one GPU enumerated by the exporter.",
                "short",
                Query(f"count(count by (cluster, node) ({GPUS})) or vector(0)"),
                options=Options(width=3, height=4, steps=[Step(None, "blue")]),
            ),
            stat_panel(
                "GPUs not answering",
                "GPUs that are enumerated but whose last NVML reads failed (nvidia_gpu_up 0): "
                "lost, hung or fallen off the bus. Anything above 0 needs a look at the Health "
                "dashboard.",
                "short",
                Query(
                    f"count(max by (cluster, node, uuid) (nvidia_gpu_up{{{c.NODE_SEL}}}) == 0)"
                    " or vector(0)"
                ),
                options=Options(width=3, height=4, steps=RED_IF_ANY),
            ),
            stat_panel(
                "Fallen off the bus",
                "GPUs the driver reported lost (Xid 79 or NVML GPU_IS_LOST) and that have not "
                "come back. Each one pages; the node needs a drain and a power cycle.",
                "short",
                Query(
                    "count(max by (cluster, node, uuid) "
                    f"(nvidia_gpu_fallen_off_bus{{{c.NODE_SEL}}}) == 1) or vector(0)"
                ),
                options=Options(width=3, height=4, steps=RED_IF_ANY),
            ),
            stat_panel(
                "GPU alerts firing",
                "NvidiaGpu* alerts firing now on the selected nodes (ALERTS series of this "
                "Prometheus). Fleet-wide alerts without a node label are counted in the Health "
                "dashboard.",
                "short",
                Query(f"count({FIRING}) or vector(0)"),
                options=Options(width=3, height=4, steps=[Step(None, "green"), Step(1, "orange")]),
            ),
            stat_panel(
                "Average utilization",
                "Mean utilization of whole GPUs over the last rate interval, from the "
                "busy-time counters (MIG-enabled GPUs report none): the share of time a kernel "
                "ran, not how much of the GPU it used (see Is it really working?).",
                "percentunit",
                Query(f"avg({c.utilization()})"),
                options=Options(
                    width=3,
                    height=4,
                    min=0,
                    max=1,
                    steps=[Step(None, "red"), Step(0.3, "orange"), Step(0.6, "green")],
                ),
            ),
            stat_panel(
                "Power draw",
                "Total power drawn by the selected GPUs now (an instant sum, never a sum over "
                "the time range). Each physical GPU counts once, MIG or not.",
                "watt",
                Query(f"sum({c.per_gpu('nvidia_gpu_power_usage_watts')})"),
                options=Options(width=3, height=4, steps=[Step(None, "blue")]),
            ),
            stat_panel(
                "Memory in use",
                "Framebuffer memory used across the selected GPUs, as a share of their total.",
                "percentunit",
                Query(
                    f"sum({c.per_gpu('nvidia_gpu_memory_used_bytes')})"
                    f" / sum({c.per_gpu('nvidia_gpu_memory_total_bytes')})"
                ),
                options=Options(width=3, height=4, min=0, max=1, steps=[Step(None, "blue")]),
            ),
        ],
    )


def _by_model() -> Section:
    util = c.with_model(c.utilization())
    mem_used = c.with_model(c.per_gpu("nvidia_gpu_memory_used_bytes"))
    mem_total = c.with_model(c.per_gpu("nvidia_gpu_memory_total_bytes"))
    power = c.with_model(c.per_gpu("nvidia_gpu_power_usage_watts"))
    return Section(
        "By model",
        [
            table_panel(
                "GPU models",
                "One row per GPU model: how many GPUs and nodes, their mean utilization, memory "
                "in use, power drawn now, and how many whole GPUs no pod holds (idle capacity "
                "you could schedule).",
                "short",
                Query(f"count by (model) ({GPUS})"),
                Query(f"count by (model) (count by (cluster, node, model) ({GPUS}))"),
                Query(f"avg by (model) ({util})"),
                Query(f"sum by (model) ({mem_used}) / sum by (model) ({mem_total})"),
                Query(f"sum by (model) ({power})"),
                Query(f"sum by (model) (model:nvidia_gpu_unallocated:count{{{c.CLUSTER_SEL}}})"),
                options=Options(width=24, height=7),
                columns={
                    "model": "Model",
                    "Value #A": "GPUs",
                    "Value #B": "Nodes",
                    "Value #C": "Utilization",
                    "Value #D": "Memory used",
                    "Value #E": "Power",
                    "Value #F": "Unallocated",
                },
                column_units={
                    "Utilization": "percentunit",
                    "Memory used": "percentunit",
                    "Power": "watt",
                },
            ),
        ],
    )


def _allocation() -> Section:
    sel = c.CLUSTER_SEL
    return Section(
        "Allocation",
        [
            bar_panel(
                "Whole GPUs allocated by namespace and model",
                "Whole GPUs held by pods (from the kubelet's pod-resources API), per namespace "
                "and GPU model. A time-sliced GPU counts once per namespace holding it. MIG "
                "devices are counted in the next panel, never added to whole GPUs.",
                "short",
                Query(
                    "sum by (namespace, model) "
                    f"(namespace_model:nvidia_gpu_allocated:count{{{sel}}})",
                    "{{namespace}} {{model}}",
                ),
                options=Options(width=8, height=8),
            ),
            bar_panel(
                "Allocated but idle (4 h under 5 %)",
                "Whole GPUs a pod holds whose average utilization stayed under 5 % for the last "
                "4 hours, per namespace and model: the first place to reclaim capacity. "
                "Empty on a healthy node: no allocated GPU has been idle for 4 hours.",
                "short",
                Query(
                    "sum by (namespace, model) "
                    f"(namespace_model:nvidia_gpu_allocated_idle:count{{{sel}}})",
                    "{{namespace}} {{model}}",
                ),
                options=Options(width=8, height=8),
            ),
            bar_panel(
                "MIG devices allocated by namespace and model",
                "MIG devices held by pods, per namespace and the model of their parent GPU. "
                "Empty on a healthy node: only nodes with MIG devices handed to pods show here.",
                "short",
                Query(
                    "sum by (namespace, model) "
                    f"(namespace_model:nvidia_gpu_mig_allocated:count{{{sel}}})",
                    "{{namespace}} {{model}}",
                ),
                options=Options(width=8, height=8),
            ),
            timeseries_panel(
                "Allocated versus unallocated whole GPUs",
                "Whole GPUs held by pods and whole answering GPUs no pod holds, over time, per "
                "model. MIG-enabled GPUs are left out of both (their devices are allocated one "
                "by one).",
                "short",
                Query(
                    f"sum by (model) (namespace_model:nvidia_gpu_allocated:count{{{sel}}})",
                    "allocated {{model}}",
                ),
                Query(
                    f"sum by (model) (model:nvidia_gpu_unallocated:count{{{sel}}})",
                    "unallocated {{model}}",
                ),
                options=Options(width=24, height=8, min=0),
            ),
        ],
    )


def _over_time() -> Section:
    sel = c.NODE_SEL
    to_node = [c.to_node()]
    return Section(
        "Nodes over time",
        [
            timeseries_panel(
                "Utilization per node",
                "Mean utilization of each node's whole GPUs. Click a line for the node's "
                "dashboard.",
                "percentunit",
                Query(f"node:nvidia_gpu_utilization_ratio:avg{{{sel}}}", "{{node}}"),
                options=Options(width=12, min=0, max=1, links=to_node),
            ),
            timeseries_panel(
                "Memory used per node",
                "Framebuffer memory in use on each node, as a share of the node's GPU memory.",
                "percentunit",
                Query(
                    f"node:nvidia_gpu_memory_used_bytes:sum{{{sel}}}"
                    f" / node:nvidia_gpu_memory_total_bytes:sum{{{sel}}}",
                    "{{node}}",
                ),
                options=Options(width=12, min=0, max=1, links=to_node),
            ),
            timeseries_panel(
                "Power per node",
                "Power drawn by each node's GPUs (each physical GPU once).",
                "watt",
                Query(f"node:nvidia_gpu_power_usage_watts:sum{{{sel}}}", "{{node}}"),
                options=Options(width=12, min=0, links=to_node),
            ),
            timeseries_panel(
                "Hottest GPU per node",
                "The highest GPU core temperature on each node. Compare with the slowdown "
                "threshold on the GPU detail dashboard (typically 85-90 °C on data-centre GPUs).",
                "celsius",
                Query(
                    f"max by (cluster, node) (nvidia_gpu_temperature_celsius{{{sel}}})",
                    "{{node}}",
                ),
                options=Options(width=12, links=to_node),
            ),
            timeseries_panel(
                "GPU alerts firing",
                "NvidiaGpu* alerts firing over time, per alert and node. "
                "Empty on a healthy node: nothing is firing.",
                "short",
                Query(
                    "count by (alertname, node) "
                    '(ALERTS{alertname=~"NvidiaGpu.*", alertstate="firing", '
                    f"{c.CLUSTER_SEL}}})",
                    "{{alertname}} {{node}}",
                ),
                options=Options(width=24, min=0),
                stacked=True,
            ),
        ],
    )


def _nodes() -> Section:
    sel = c.NODE_SEL
    return Section(
        "Nodes",
        [
            table_panel(
                "GPU nodes",
                "One row per node: GPUs enumerated and answering, mean utilization, memory, "
                "power and the driver it runs. A node with fewer GPUs answering than enumerated "
                "has a sick GPU. Click a row for the node's dashboard.",
                "short",
                Query(f"node:nvidia_gpu_info:count{{{sel}}}"),
                Query(f"node:nvidia_gpu_up:sum{{{sel}}}"),
                Query(f"node:nvidia_gpu_utilization_ratio:avg{{{sel}}}"),
                Query(
                    f"node:nvidia_gpu_memory_used_bytes:sum{{{sel}}}"
                    f" / node:nvidia_gpu_memory_total_bytes:sum{{{sel}}}"
                ),
                Query(f"node:nvidia_gpu_power_usage_watts:sum{{{sel}}}"),
                Query(f"node_driver_version:nvidia_gpu_info:count{{{sel}}}"),
                options=Options(
                    width=24,
                    height=8,
                    links=[Link("Node dashboard", c.NODE, "var-node=${__data.fields.Node}")],
                ),
                columns={
                    **c.headers("node", "driver_version"),
                    "Value #A": "GPUs",
                    "Value #B": "Answering",
                    "Value #C": "Utilization",
                    "Value #D": "Memory used",
                    "Value #E": "Power",
                },
                column_units={
                    "Utilization": "percentunit",
                    "Memory used": "percentunit",
                    "Power": "watt",
                },
            ),
        ],
    )


def spec() -> DashboardSpec:
    return DashboardSpec(
        uid=c.FLEET,
        title=c.TITLE_PREFIX + "Fleet overview",
        description="Every GPU node at a glance: models, load, health, alerts and allocation.",
        variables=[c.CLUSTER, c.NODE_VAR],
        sections=[_header(), _by_model(), _allocation(), _over_time(), _nodes()],
    )
