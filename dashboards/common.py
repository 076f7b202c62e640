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
