"""What every dashboard shares: uids, variables, selectors, joins and legends.

The PromQL conventions live here so that the seven dashboards cannot drift apart:

- Selectors always carry `cluster=~"$cluster"` (a hidden variable whose All value `.*` also
  matches series without a cluster label, so one-cluster installs need nothing) and the node
  variable. The node label is added by the scrape config (README, "Kubernetes"), never the pod
  IP in `instance`, which changes when the exporter pod restarts.
- Per-GPU series are keyed by (node, uuid) through `max by (...)`: an exporter restart under a
  new instance would otherwise show a GPU twice for five minutes (dcgm-exporter #237).
- A MIG-enabled GPU's device-level readings (power, temperature, clocks) are shown once per
  uuid; MIG devices are keyed by mig_uuid and never added to their parent.
"""

from __future__ import annotations

from dashboards.panels import Link, Variable

# Stable uids: bookmarks, links and provisioning depend on them. Never change one.
FLEET = "nvidia-gpu-fleet"
NODE = "nvidia-gpu-node"
DETAIL = "nvidia-gpu-detail"
HEALTH = "nvidia-gpu-health"
MIG_PODS = "nvidia-gpu-mig-pods"
COST = "nvidia-gpu-cost"
WORKING = "nvidia-gpu-working"
TITLE_PREFIX = "NVIDIA GPU / "

# -- variables ------------------------------------------------------------------------------

CLUSTER = Variable(
    "cluster",
    "Cluster",
    "label_values(nvidia_gpu_info, cluster)",
    all_value=".*",
    hidden=True,
)
NODE_VAR = Variable("node", "Node", 'label_values(nvidia_gpu_info{cluster=~"$cluster"}, node)')
GPU_VAR = Variable(
    "gpu",
    "GPU (UUID)",
    'label_values(nvidia_gpu_info{cluster=~"$cluster", node=~"$node"}, uuid)',
)
ONE_GPU_VAR = Variable(
    "gpu",
    "GPU (UUID)",
    'label_values(nvidia_gpu_info{cluster=~"$cluster", node=~"$node"}, uuid)',
    multi=False,
    include_all=False,
)
ONE_NODE_VAR = Variable(
    "node",
    "Node",
    'label_values(nvidia_gpu_info{cluster=~"$cluster"}, node)',
    multi=False,
    include_all=False,
)
NAMESPACE_VAR = Variable(
    "namespace",
    "Namespace",
    'label_values(nvidia_gpu_pod_info{cluster=~"$cluster", node=~"$node"}, namespace)',
    all_value=".*",
)

# -- selectors ------------------------------------------------------------------------------

CLUSTER_SEL = 'cluster=~"$cluster"'
NODE_SEL = 'cluster=~"$cluster", node=~"$node"'
GPU_SEL = 'cluster=~"$cluster", node=~"$node", uuid=~"$gpu"'
POD_SEL = 'cluster=~"$cluster", node=~"$node", namespace=~"$namespace"'

GPU_KEY = "cluster, node, gpu, uuid"
LEGEND_GPU = "{{node}} GPU {{gpu}}"
LEGEND_MIG = "{{node}} GPU {{gpu}} {{profile}} ({{gpu_instance}})"
LEGEND_POD = "{{namespace}}/{{pod}} on {{node}} GPU {{gpu}}"


def per_gpu(metric: str, selector: str = NODE_SEL, extra: str = "") -> str:
    """One series per physical GPU, whatever the number of exporter instances that served it."""
    matchers = f"{selector}, {extra}" if extra else selector
    return f"max by ({GPU_KEY}) ({metric}{{{matchers}}})"


def with_model(expr: str) -> str:
    """Adds the model label from nvidia_gpu_info to a per-GPU expression keyed by (node, uuid)."""
    return (
        f"{expr}\n  * on (cluster, node, uuid) group_left (model)\n"
        f"  max by (cluster, node, uuid, model) (nvidia_gpu_info{{{CLUSTER_SEL}}})"
    )


def rate(metric: str, selector: str = NODE_SEL, extra: str = "", by: str = GPU_KEY) -> str:
    """Per-second rate of a counter, deduplicated per GPU."""
    matchers = f"{selector}, {extra}" if extra else selector
    return f"max by ({by}) (rate({metric}{{{matchers}}}[$__rate_interval]))"


# -- shared readings of label values (exporter/metrics.py help texts) ------------------------

# Clock-event reasons that mean "clocks held down" (throttling). gpu_idle, sync_boost and the
# application/display clock settings are reasons too, but no loss of performance.
THROTTLE_REASONS = (
    "sw_power_cap|hw_slowdown|sw_thermal_slowdown|hw_thermal_slowdown|hw_power_brake_slowdown"
    "|board_limit|reliability|thermal"
)
THERMAL_REASONS = "thermal|sw_thermal_slowdown|hw_thermal_slowdown"
POWER_REASONS = "sw_power_cap|hw_power_brake_slowdown"

# nvidia_gpu_performance_state: 0 (P0, maximum performance) to 15 (P15, minimum).
PSTATE_MAPPINGS: dict[str, tuple[str, str]] = {
    str(p): (f"P{p}", color)
    for p, color in enumerate(
        ["dark-green", "green", "green", "semi-dark-green", "light-green", "light-green"]
        + ["yellow"] * 2
        + ["light-blue"] * 4
        + ["blue"] * 4
    )
}

# nvidia_gpu_recovery_action, the driver's Xid 154 request.
RECOVERY_MAPPINGS: dict[str, tuple[str, str]] = {
    "0": ("none", "green"),
    "1": ("GPU reset", "orange"),
    "2": ("node reboot", "red"),
    "3": ("drain P2P", "orange"),
    "4": ("drain and reset", "orange"),
    "5": ("recover IMEX domain", "orange"),
    "6": ("bus reset", "orange"),
    "7": ("system reboot", "red"),
}


# -- activity: utilization counters and GPM profiling (docs/utilization.md) -----------------

BUSY_SECONDS = "nvidia_gpu_utilization_busy_seconds_total"
SAMPLED_SECONDS = "nvidia_gpu_utilization_sampled_seconds_total"
POD_BUSY_SECONDS = "nvidia_gpu_pod_utilization_busy_seconds_total"
# The old one-sample gauge of each engine of the busy-time counters.
UTILIZATION_GAUGES = {
    "gpu": "nvidia_gpu_utilization_ratio",
    "memory": "nvidia_gpu_memory_utilization_ratio",
    "encoder": "nvidia_gpu_encoder_utilization_ratio",
    "decoder": "nvidia_gpu_decoder_utilization_ratio",
}
# "Busy but starved" (docs/utilization.md): a kernel is resident almost all the time, but few
# SMs do anything. Starting points, not NVIDIA figures.
STARVED_UTILIZATION = 0.8
STARVED_SM_ACTIVE = 0.2
# The sentence every panel that needs GPM ends with (tests/dashboards/grafana.py: EMPTY_OK).
NEEDS_GPM = (
    "Hopper and newer only (GPM profiling). Empty on a healthy node whose GPUs are older "
    "(A100, T4, L4: NVML has no GPM for them), or in MIG mode (GPM is then per GPU instance)."
)
NEEDS_MIG_GPM = (
    "Hopper and newer only (GPM per GPU instance). Empty on a healthy node without a "
    "Hopper GPU in MIG mode: an A100 in MIG mode has no activity signal at all."
)


def utilization(
    selector: str = NODE_SEL, engine: str = "gpu", by: str = GPU_KEY, extra: str = ""
) -> str:
    """The true average utilization of `engine` per GPU (0-1), in parentheses.

    Busy seconds over sampled seconds of NVML's sample buffer: every sample counted once, so
    no aliasing on bursty loads, and exact even where the buffer wrapped. GPUs without the
    counters (exporters before them) fall back to the one-sample gauge through `or`; both
    sides are keyed by `by`, so the choice is per GPU. MIG-enabled GPUs have neither."""
    matchers = f'engine="{engine}", {extra}' if extra else f'engine="{engine}"'
    busy = rate(BUSY_SECONDS, selector, matchers, by)
    sampled = rate(SAMPLED_SECONDS, selector, matchers, by)
    gauge_sel = f"{selector}, {extra}" if extra else selector
    gauge = f"max by ({by}) ({UTILIZATION_GAUGES[engine]}{{{gauge_sel}}})"
    return f"(\n  {busy}\n    / on ({by})\n  ({sampled} > 0)\nor\n  {gauge}\n)"


def profiling(name: str, selector: str = NODE_SEL, by: str = GPU_KEY) -> str:
    """GPM activity per GPU (0-1) over the rate interval: rate of the seconds counter
    nvidia_gpu_profiling_<name>_seconds_total (graphics_active, sm_active, tensor_active,
    dram_active; pipe_active with `pipe` in `by`). Only sm_occupancy has no counter."""
    return rate(f"nvidia_gpu_profiling_{name}_seconds_total", selector, by=by)


def sm_occupancy(selector: str = NODE_SEL) -> str:
    """Resident warps over the maximum, per GPU (the one GPM ratio without a counter)."""
    return per_gpu("nvidia_gpu_profiling_sm_occupancy_ratio", selector)


def starved(selector: str = NODE_SEL) -> str:
    """GPUs busy but starved, valued by their utilization: utilization above
    STARVED_UTILIZATION while under STARVED_SM_ACTIVE of the SMs are active."""
    return (
        f"({utilization(selector)} > {STARVED_UTILIZATION})\nand on ({GPU_KEY})\n"
        f"({profiling('sm_active', selector)} < {STARVED_SM_ACTIVE})"
    )


MIG_GI_KEY = "cluster, node, gpu, uuid, gpu_instance"


def mig_profiling(name: str, selector: str = NODE_SEL) -> str:
    """GPM activity per MIG GPU instance (0-1), with the instance's `profile` from
    nvidia_gpu_mig_multiprocessors (GPM is per GPU instance, the MIG series per MIG device:
    topk keeps one profile where a GPU instance holds several compute instances)."""
    activity = rate(f"nvidia_gpu_mig_profiling_{name}_seconds_total", selector, by=MIG_GI_KEY)
    profiles = (
        f"topk by ({MIG_GI_KEY}) (1, group by ({MIG_GI_KEY}, profile) "
        f"(nvidia_gpu_mig_multiprocessors{{{selector}}}))"
    )
    return (
        f"{activity}\n  * on (cluster, node, uuid, gpu_instance) group_left (profile)\n  {profiles}"
    )


def pod_busy(selector: str, by: str, extra: str = "") -> str:
    """GPU time the pods' processes used, in GPUs (0.3 = 30 % of one GPU), summed `by`.
    Deduplicated per container first (several exporter instances)."""
    full = "cluster, node, gpu, uuid, mig_uuid, namespace, pod, container, pod_uid"
    matchers = f'engine="gpu", {extra}' if extra else 'engine="gpu"'
    return f"sum by ({by}) ({rate(POD_BUSY_SECONDS, selector, matchers, full)})"


def pod_share(selector: str, by: str, extra: str = "", gpu_selector: str = NODE_SEL) -> str:
    """Each pod's (or container's, as `by` says) share of its GPU's busy time: its busy rate
    over the busy rate of every process on the GPU (pods and others; `gpu_selector` must not
    narrow to some pods), so the shares of one GPU add up to 1 (docs/utilization.md). Not over
    the GPU's own busy counter: NVML's per-process and device samples can disagree (a
    process's smUtil above the device's), and a share above 1 would mean nothing."""
    all_processes = pod_busy(gpu_selector, "cluster, node, uuid")
    return (
        f"{pod_busy(selector, by, extra)}\n  / on (cluster, node, uuid) group_left ()\n"
        f"  ({all_processes} > 0)"
    )


def pod_or_uid(expr: str) -> str:
    """`expr` with `pod` set to "uid <pod_uid>" where it is empty: processes of pods the
    kubelet's allocations cannot name (several pods time-slicing one GPU and nothing else)
    carry only their cgroup's pod UID. The joined helper label matches `/(.+)` only when
    `pod` is empty."""
    joined = f'label_join({expr}, "pod_or_uid", "/", "pod", "pod_uid")'
    return f'label_replace({joined}, "pod", "uid $1", "pod_or_uid", "/(.+)")'


def per_gpu_by(metric: str, by: str, selector: str = NODE_SEL, extra: str = "") -> str:
    """Like per_gpu, keeping one more label (reason, clock, limit, link...)."""
    matchers = f"{selector}, {extra}" if extra else selector
    return f"max by ({GPU_KEY}, {by}) ({metric}{{{matchers}}})"


def tagged(expr: str, label: str, value: str) -> str:
    """`expr` with a constant label added, so that alternatives can share one target through
    `or` (e.g. the PCIe byte counters, or NVML's sampled throughput where those are missing)."""
    return f'label_replace({expr}, "{label}", "{value}", "", "")'


def both_ways(tx: str, rx: str, selector: str = NODE_SEL) -> str:
    """Per-GPU rates of a transmit and a receive byte counter as one target, told apart by a
    `direction` label (transmit, receive: the values nvidia_gpu_pcie_throughput_bytes_per_second
    uses, so that it can join them with `or` on GPUs without the counters)."""
    return (
        f"{tagged(rate(tx, selector), 'direction', 'transmit')}\n"
        f"or\n{tagged(rate(rx, selector), 'direction', 'receive')}"
    )


# -- links ----------------------------------------------------------------------------------


def to_node(title: str = "Node") -> Link:
    """From a series with a node label to that node's dashboard."""
    return Link(f"{title}: ${{__field.labels.node}}", NODE, "var-node=${__field.labels.node}")


def to_gpu(title: str = "GPU detail") -> Link:
    """From a series with node and uuid labels to the GPU's detail dashboard."""
    return Link(
        f"{title}: ${{__field.labels.node}} GPU ${{__field.labels.gpu}}",
        DETAIL,
        "var-node=${__field.labels.node}&var-gpu=${__field.labels.uuid}",
    )


def to_gpu_from_table(node_field: str = "Node", uuid_field: str = "UUID") -> Link:
    """From a table row to the GPU's detail dashboard; fields are named as the table shows
    them (after renaming)."""
    return Link(
        "GPU detail",
        DETAIL,
        f"var-node=${{__data.fields.{node_field}}}&var-gpu=${{__data.fields.{uuid_field}}}",
    )


# Table column headers for the labels tables show, so every table names a label the same way.
HEADERS = {
    "node": "Node",
    "gpu": "GPU",
    "uuid": "UUID",
    "model": "Model",
    "namespace": "Namespace",
    "pod": "Pod",
    "container": "Container",
    "mig_uuid": "MIG device",
    "profile": "Profile",
    "severity": "Severity",
    "xid": "Xid",
    "source": "Source",
    "driver_version": "Driver",
}


def headers(*labels: str) -> dict[str, str]:
    """Column headers for these labels, in this order (a table's `columns` starts with them)."""
    return {label: HEADERS[label] for label in labels}
