"""NVIDIA GPU / Node: every GPU of one node in a table that drills down to the GPU detail
dashboard, and per-GPU time series side by side.

One node at a time (single-select, the fleet dashboard links here with the node set); the `gpu`
variable narrows the time series to some GPUs of it. Header numbers are about the whole node.
Every per-GPU query is keyed by (node, uuid), so an exporter restart never doubles a GPU, and a
MIG-enabled GPU appears once (its MIG devices are on the detail and MIG dashboards).
"""

from __future__ import annotations

from dashboards import common as c
from dashboards.panels import (
    DashboardSpec,
    Link,
    Options,
    PanelBuilder,
    Query,
    Section,
    Step,
    stat_panel,
    table_panel,
    timeseries_panel,
)

NODE = c.NODE_SEL  # header and table: the whole node
SEL = c.GPU_SEL  # time series: the GPUs picked
KEY = c.GPU_KEY
L = c.LEGEND_GPU
TO_GPU = [c.to_gpu()]
NODE_KEY = "cluster, node"
ENFORCED = 'limit="enforced"'
PCIE_RX = "nvidia_gpu_pcie_receive_bytes_total"


def gpu(metric: str, extra: str = "", selector: str = SEL) -> str:
    return c.per_gpu(metric, selector, extra)


def header_stat(
    title: str,
    description: str,
    expr: str,
    unit: str = "none",
    steps: tuple[Step, ...] = (),
    links: tuple[Link, ...] = (),
) -> PanelBuilder:
    """One of the six node numbers (4 columns wide)."""
    o = Options(width=4, height=4, steps=steps, links=links)
    return stat_panel(title, description, unit, Query(expr), options=o)


BAD_FROM_1 = (Step(None, "green"), Step(1, "red"))
NEUTRAL = (Step(None, "blue"),)
TO_HEALTH = (Link("Health of this node", c.HEALTH, "${node:queryparam}"),)


def header() -> Section:
    return Section(
        "Node",
        [
            header_stat(
                "GPUs",
                "GPUs NVML enumerates on this node (one per physical GPU; MIG devices are not "
                "counted). Fewer than the machine has means a GPU the driver did not bring up: "
                "see the health dashboard.",
                f"count({gpu('nvidia_gpu_info', selector=NODE)})",
                steps=NEUTRAL,
            ),
            header_stat(
                "GPUs up",
                "GPUs that answered NVML in the last collection and have not fallen off the "
                "bus. Lower than GPUs means some GPUs give no readings at all.",
                f"sum({gpu('nvidia_gpu_up', selector=NODE)})",
                steps=NEUTRAL,
            ),
            header_stat(
                "GPUs not answering",
                "GPUs that enumerate but did not answer NVML or fell off the bus (nvidia_gpu_up "
                "0). Anything but 0 needs a look: drain the node or reset the GPU.",
                f"count({gpu('nvidia_gpu_up', selector=NODE)} == 0) or vector(0)",
                steps=BAD_FROM_1,
                links=TO_HEALTH,
            ),
            header_stat(
                "Xid codes (1 h)",
                "Distinct (GPU, Xid code) pairs with an Xid in the last hour, a deliberate fixed "
                "window: from the last-seen timestamps, so Xids logged while the exporter was "
                "down count too. Which codes and how bad: the health dashboard.",
                f"count(gpu_xid:nvidia_gpu_xid_last_seen:age_seconds{{{NODE}}} < 3600) "
                "or vector(0)",
                steps=(Step(None, "green"), Step(1, "orange")),
                links=TO_HEALTH,
            ),
            header_stat(
                "Exporter sources down",
                "Data sources of the exporter on this node (nvml, kmsg, xid, nvml_events, udev, "
                "podresources...) whose last attempt failed or that are stalled. While one is "
                "down some panels or alerts of this node are blind.",
                f"count(max by ({NODE_KEY}, source) "
                f"(nvidia_gpu_exporter_source_up{{{NODE}}}) == 0) or vector(0)",
                steps=BAD_FROM_1,
                links=TO_HEALTH,
            ),
            header_stat(
                "Power draw",
                "Power all GPUs of the node draw now, summed once per physical GPU (a MIG-enabled "
                "GPU's power is its own, never split or added per MIG device).",
                f"sum({gpu('nvidia_gpu_power_usage_watts', selector=NODE)})",
                unit="watt",
                steps=NEUTRAL,
            ),
        ],
    )


def gpu_table() -> Section:
    one_pod = (
        f"label_join(topk by ({KEY}) (1, max by ({KEY}, namespace, pod) "
        f'(nvidia_gpu_pod_info{{{NODE}}})), "pod_ref", "/", "namespace", "pod")'
    )
    pods = (
        f"count by ({KEY}) (max by ({KEY}, namespace, pod) (nvidia_gpu_pod_info{{{NODE}}}))\n"
        f"  * on ({KEY}) group_left (pod_ref) max by ({KEY}, pod_ref) ({one_pod})\n"
        f"or on ({KEY})\n  0 * {gpu('nvidia_gpu_up', selector=NODE)}"
    )
    throttled = (
        f"sum by ({KEY}) (max by ({KEY}, reason) (nvidia_gpu_clock_event_reason_active"
        f'{{{NODE}, reason=~"{c.THROTTLE_REASONS}"}}))'
    )
    ecc = (
        f"max by ({KEY}) (increase(nvidia_gpu_ecc_uncorrected_errors_total"
        f'{{{NODE}, scope="volatile"}}[$__range]))'
    )
    queries = [
        Query(f"max by ({KEY}, model) (nvidia_gpu_info{{{NODE}}})"),
        Query(c.utilization(NODE)),
        Query(
            f"{gpu('nvidia_gpu_memory_used_bytes', selector=NODE)}\n/\n"
            f"{gpu('nvidia_gpu_memory_total_bytes', selector=NODE)}"
        ),
        Query(gpu("nvidia_gpu_temperature_celsius", selector=NODE)),
        Query(
            f"{gpu('nvidia_gpu_power_usage_watts', selector=NODE)}\n/\n"
            f"{gpu('nvidia_gpu_power_limit_watts', ENFORCED, NODE)}"
        ),
        Query(gpu("nvidia_gpu_power_usage_watts", selector=NODE)),
        Query(gpu("nvidia_gpu_performance_state", selector=NODE)),
        Query(throttled),
        Query(ecc),
        Query(
            f"{gpu('nvidia_gpu_recovery_action', selector=NODE)}\nor\n"
            f"0 * {gpu('nvidia_gpu_up', selector=NODE)}"
        ),
        Query(pods),
    ]
    columns = {
        **c.headers("gpu", "model"),
        "Value #B": "Utilization",
        "Value #C": "Memory used",
        "Value #D": "Temperature",
        "Value #E": "Power vs limit",
        "Value #F": "Power",
        "Value #G": "P-state",
        "Value #H": "Throttle reasons",
        "Value #I": "Uncorrected ECC",
        "Value #J": "Recovery action",
        "pod_ref": "Pod",
        "Value #K": "Pods",
        **c.headers("uuid", "node"),
    }
    return Section(
        "GPUs",
        [
            table_panel(
                "GPUs of the node",
                "One row per GPU of the node, now: model, utilization (average over the rate "
                "interval, from the busy-time counter), memory used, temperature, "
                "power against the enforced limit, P-state, active throttle reasons (power, "
                "thermal, hardware slowdown; 0 is normal), new uncorrected ECC errors in the "
                "dashboard's time range (increase over $__range), the driver's recovery action "
                "(none unless an Xid 154 asked for one) and the pod holding it (Pods > 1: "
                "time-sliced or MIG). "
                "Utilization is blank for MIG-enabled GPUs (NVML gives none). Click a row for "
                "the GPU's detail dashboard.",
                "none",
                *queries,
                options=Options(width=24, height=9, links=[c.to_gpu_from_table("Node", "UUID")]),
                columns=columns,
                column_units={
                    "Utilization": "percentunit",
                    "Memory used": "percentunit",
                    "Temperature": "celsius",
                    "Power vs limit": "percentunit",
                    "Power": "watt",
                },
                column_mappings={
                    "P-state": c.PSTATE_MAPPINGS,
                    "Recovery action": c.RECOVERY_MAPPINGS,
                },
            )
        ],
    )


def series(
    title: str, description: str, unit: str, expr: str, legend: str = L, **limits: float
) -> PanelBuilder:
    """A per-GPU time series that links each line to that GPU's detail dashboard."""
    o = Options(links=TO_GPU, min=limits.get("min"), max=limits.get("max"))
    return timeseries_panel(title, description, unit, Query(expr, legend), options=o)


def time_series() -> list[Section]:
    used, total = gpu("nvidia_gpu_memory_used_bytes"), gpu("nvidia_gpu_memory_total_bytes")
    power = gpu("nvidia_gpu_power_usage_watts")
    enforced = gpu("nvidia_gpu_power_limit_watts", ENFORCED)
    pcie = (
        f"{c.both_ways('nvidia_gpu_pcie_transmit_bytes_total', PCIE_RX, SEL)}\nor\n"
        f"{c.per_gpu_by('nvidia_gpu_pcie_throughput_bytes_per_second', 'direction', SEL)}"
    )
    nvlink = c.both_ways(
        "nvidia_gpu_nvlink_transmit_bytes_total", "nvidia_gpu_nvlink_receive_bytes_total", SEL
    )
    direction = f"{L} {{{{direction}}}}"
    return [
        Section(
            "Utilization and memory",
            [
                series(
                    "Utilization",
                    "Share of time a kernel ran, per GPU (0-100 %): the true average from the "
                    "busy-time counter (every NVML sample counted once, so a bursty GPU reads "
                    "its real duty cycle), or the one-sample gauge on an exporter without it. "
                    "A GPU held by a pod that stays near 0 is idle capacity. MIG-enabled GPUs "
                    "have no line (NVML reports no utilization for them).",
                    "percentunit",
                    c.utilization(SEL),
                    min=0,
                    max=1,
                ),
                series(
                    "Memory used",
                    "Device memory in use as a share of each GPU's total (0-100 %). Near 100 % "
                    "the next allocation fails with CUDA out of memory.",
                    "percentunit",
                    f"{used}\n/\n{total}",
                    min=0,
                    max=1,
                ),
            ],
        ),
        Section(
            "Power and temperature",
            [
                series(
                    "Power draw",
                    "Power each GPU draws as NVML samples it, in watts. Lines at the same "
                    "height across GPUs of one job are the healthy picture; one GPU far below "
                    "its peers is waiting or throttled.",
                    "watt",
                    power,
                    min=0,
                ),
                series(
                    "Power vs enforced limit",
                    "Power drawn as a share of each GPU's enforced limit. Pinned at 100 % means "
                    "the power cap holds the clocks down; busy but far below it means the GPU "
                    "waits on something upstream.",
                    "percentunit",
                    f"{power}\n/\n{enforced}",
                    min=0,
                    max=1,
                ),
                series(
                    "Temperature",
                    "GPU core temperature per GPU. The slowdown threshold (usually 85-90 C, per "
                    "GPU on the detail dashboard) is where clocks are cut.",
                    "celsius",
                    gpu("nvidia_gpu_temperature_celsius"),
                ),
                series(
                    "SM clock",
                    "Streaming-multiprocessor clock per GPU. A busy GPU whose SM clock drops "
                    "below its peers' is throttled: the detail dashboard shows the reason.",
                    "hertz",
                    gpu("nvidia_gpu_clock_hertz", 'clock="sm"'),
                    min=0,
                ),
            ],
        ),
        Section(
            "Interconnect",
            [
                series(
                    "PCIe throughput",
                    "Bytes per second over PCIe per GPU, transmit and receive, from the byte "
                    "counters, or NVML's 20 ms sample on GPUs without them. Data loaders "
                    "starving the GPU show as low receive next to low utilization.",
                    "Bps",
                    pcie,
                    direction,
                    min=0,
                ),
                series(
                    "NVLink throughput",
                    "Data bytes per second over all NVLink links per GPU, transmit and receive: "
                    "the collective traffic of multi-GPU jobs. Empty on a healthy node whose "
                    "GPUs have no NVLink (PCIe boards such as T4 or L4).",
                    "Bps",
                    nvlink,
                    direction,
                    min=0,
                ),
            ],
        ),
    ]


def spec() -> DashboardSpec:
    return DashboardSpec(
        uid=c.NODE,
        title=f"{c.TITLE_PREFIX}Node",
        description=(
            "Every GPU of one node: a table that drills down to each GPU's detail, and per-GPU "
            "utilization, memory, power, temperature, clocks and PCIe/NVLink throughput."
        ),
        variables=[c.CLUSTER, c.ONE_NODE_VAR, c.GPU_VAR],
        sections=[header(), gpu_table(), *time_series()],
    )
