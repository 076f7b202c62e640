"""NVIDIA GPU / GPU detail: every metric family of one GPU, for the on-call question "what is
wrong with this GPU, and since when".

One node and one GPU (single-select; the node and fleet dashboards link here with both set).
Every query is keyed by (node, uuid) through `max by`, so an exporter restart under a new pod
IP never shows the GPU twice. In MIG mode the GPU's own readings (power, temperature, clocks)
are shown once, and the MIG devices are shown per mig_uuid, never added to the parent.
"""

from __future__ import annotations

from collections.abc import Sequence

from dashboards import common as c
from dashboards.detail_profiling import profiling
from dashboards.panels import (
    DashboardSpec,
    Link,
    Options,
    PanelBuilder,
    Query,
    Section,
    Step,
    stat_panel,
    state_panel,
    table_panel,
    timeseries_panel,
)

SEL = c.GPU_SEL
KEY = c.GPU_KEY
L = c.LEGEND_GPU


def gpu(metric: str, extra: str = "") -> str:
    return c.per_gpu(metric, SEL, extra)


def readings(*metrics: tuple[str, str]) -> list[Query]:
    """One query per (metric, what it is) pair, each series named "<node> GPU <n> <what>"."""
    return [Query(gpu(metric), f"{L} {what}") for metric, what in metrics]


def gpu_by(metric: str, by: str, extra: str = "") -> str:
    return c.per_gpu_by(metric, by, SEL, extra)


def increase(metric: str, by: str = "", extra: str = "") -> str:
    """New counts per rate interval (per GPU, optionally kept apart by one more label)."""
    keys = f"{KEY}, {by}" if by else KEY
    matchers = f"{SEL}, {extra}" if extra else SEL
    return f"max by ({keys}) (increase({metric}{{{matchers}}}[$__rate_interval]))"


def small_stat(
    title: str,
    description: str,
    expr: str,
    mappings: dict[str, tuple[str, str]] | None = None,
    steps: Sequence[Step] = (),
    links: Sequence[Link] = (),
) -> PanelBuilder:
    """One of the eight header numbers (3 columns wide)."""
    o = Options(width=3, height=4, mappings=mappings or {}, steps=steps, links=links)
    return stat_panel(title, description, "none", Query(expr), options=o)


ON_OFF = {"0": ("off", "text"), "1": ("on", "green")}
ACTIVE = {"0": ("inactive", "green"), "1": ("active", "orange")}
LINK_UP = {"0": ("down", "red"), "1": ("up", "green")}
RECOVERY_OR_NONE = f"{gpu('nvidia_gpu_recovery_action')}\nor\n0 * {gpu('nvidia_gpu_up')}"
ENFORCED = gpu("nvidia_gpu_power_limit_watts", 'limit="enforced"')
MIG_KEY = f"{KEY}, gpu_instance, compute_instance, profile, mig_uuid"


def mig(metric: str) -> str:
    return f"max by ({MIG_KEY}) ({metric}{{{SEL}}})"


POD_CONTAINER = f"{KEY}, mig_uuid, namespace, pod, container"
PROCESSES = f"{gpu('nvidia_gpu_processes')}\nor\nsum by ({KEY}) ({mig('nvidia_gpu_mig_processes')})"
THROTTLING = f'reason=~"{c.THROTTLE_REASONS}"'
THROTTLED_COUNT = (
    f"sum by ({KEY}) ({gpu_by('nvidia_gpu_clock_event_reason_active', 'reason', THROTTLING)})"
)
XID_AGE = f"gpu_xid:nvidia_gpu_xid_last_seen:age_seconds{{{SEL}}}"
PCIE_RX = "nvidia_gpu_pcie_receive_bytes_total"
NVLINK_TX, NVLINK_RX = (
    "nvidia_gpu_nvlink_transmit_bytes_total",
    "nvidia_gpu_nvlink_receive_bytes_total",
)


def identity() -> Section:
    info_labels = (
        "model, brand, architecture, compute_capability, driver_version, cuda_driver_version, "
        "vbios_version, serial, pci_bus_id, mig_mode, persistence_mode"
    )
    columns = {
        **c.headers("node", "gpu", "model"),
        "brand": "Brand",
        "uuid": "UUID",
        "serial": "Serial",
        "pci_bus_id": "PCI bus id",
        "architecture": "Architecture",
        "compute_capability": "Compute capability",
        "driver_version": "Driver",
        "cuda_driver_version": "CUDA (driver)",
        "vbios_version": "VBIOS",
        "mig_mode": "MIG mode",
        "persistence_mode": "Persistence mode",
    }
    return Section(
        "Identity",
        [
            table_panel(
                "GPU identity",
                "Who this GPU is: model, serial, PCI bus id, driver, CUDA and VBIOS versions, MIG "
                "and persistence mode, from nvidia_gpu_info. Quote the serial and PCI bus id in an "
                "RMA or a vendor ticket.",
                "none",
                Query(f"max by ({KEY}, {info_labels}) (nvidia_gpu_info{{{SEL}}})"),
                options=Options(width=24, height=4),
                columns=columns,
            ),
            small_stat(
                "Answering NVML",
                "Whether the GPU answered NVML in the last collection and has not fallen off the "
                "bus (nvidia_gpu_up). While it is down every value panel below is empty on "
                "purpose: no reading is better than a stale one.",
                gpu("nvidia_gpu_up"),
                mappings={"0": ("no", "red"), "1": ("yes", "green")},
                links=[Link("All GPUs of this node", c.NODE, "${node:queryparam}")],
            ),
            small_stat(
                "Fallen off the bus",
                "Whether NVML reports the GPU lost or the driver said it fell off the bus (Xid "
                "79); it stays yes until a GPU reset or driver reload brings it back.",
                gpu("nvidia_gpu_fallen_off_bus"),
                mappings={"0": ("no", "green"), "1": ("yes", "red")},
            ),
            small_stat(
                "P-state",
                "Performance state now: P0 is maximum performance, P8 and above idle. A busy GPU "
                "that is not in P0 (or P2 for compute) is held back; see the throttle reasons.",
                gpu("nvidia_gpu_performance_state"),
                mappings=c.PSTATE_MAPPINGS,
            ),
            small_stat(
                "Throttle reasons active",
                "How many clock-event reasons hold the clocks down now (power cap, thermal and "
                "hardware slowdown, power brake, board limit, reliability); idle and clock "
                "settings are not counted. 0 is the normal state.",
                THROTTLED_COUNT,
                steps=[Step(None, "green"), Step(1, "orange")],
            ),
            small_stat(
                "ECC mode",
                "Whether ECC is enabled (current mode). Datacenter GPUs run with ECC on; off means "
                "memory errors go undetected and the ECC panels below read nothing.",
                gpu("nvidia_gpu_ecc_enabled"),
                mappings=ON_OFF,
            ),
            small_stat(
                "Recovery action",
                "The recovery the driver asked for in its last Xid 154 (GPU reset, node reboot, "
                "drain...). none: no Xid 154 since the exporter started or in the kernel log it "
                "read at start (the series exists only after one).",
                RECOVERY_OR_NONE,
                mappings=c.RECOVERY_MAPPINGS,
            ),
            small_stat(
                "Processes",
                "Processes using the GPU now; in MIG mode the sum over its MIG devices (the parent "
                "reports none itself, so nothing is counted twice). 0 on an allocated GPU means "
                "the pod holds it without using it.",
                PROCESSES,
                steps=[Step(None, "blue")],
            ),
            small_stat(
                "Xid codes (24 h)",
                "Xid codes this GPU logged in the last 24 hours (a deliberate fixed window), from "
                "the last-seen timestamps, so Xids logged while the exporter was down count too. "
                "Details on the health dashboard.",
                f"count({XID_AGE} < 86400) or vector(0)",
                steps=[Step(None, "green"), Step(1, "orange")],
                links=[Link("Health of this node", c.HEALTH, "${node:queryparam}")],
            ),
        ],
    )


def utilization_and_memory() -> Section:
    return Section(
        "Utilization and memory",
        [
            timeseries_panel(
                "Utilization",
                "Share of time a kernel ran (compute), device memory was read or written "
                "(memory), and the video encoder and decoder were busy (0-100 %): the true "
                "average from the busy-time counters (every NVML sample counted once, so a "
                "bursty load reads its real duty cycle), or the one-sample gauges on an "
                "exporter without them. Empty on a healthy node when the GPU is in MIG mode: "
                "NVML reports no utilization for a MIG-enabled GPU (see the MIG section for "
                "its GPU instances' activity).",
                "percentunit",
                *[
                    Query(c.utilization(SEL, engine), f"{L} {what}")
                    for engine, what in (
                        ("gpu", "compute"),
                        ("memory", "memory"),
                        ("encoder", "encoder"),
                        ("decoder", "decoder"),
                    )
                ],
                options=Options(width=8, min=0, max=1),
            ),
            timeseries_panel(
                "Device memory",
                "Device memory used, free and reserved by the driver, against the total. Used "
                "close to total means the next allocation fails (CUDA out of memory).",
                "bytes",
                *readings(
                    ("nvidia_gpu_memory_used_bytes", "used"),
                    ("nvidia_gpu_memory_free_bytes", "free"),
                    ("nvidia_gpu_memory_reserved_bytes", "reserved"),
                    ("nvidia_gpu_memory_total_bytes", "total"),
                ),
                options=Options(width=8, min=0),
            ),
            timeseries_panel(
                "BAR1 memory",
                "BAR1 (the window through which the CPU and peers map GPU memory) used against "
                "its total. Full BAR1 breaks GPUDirect and peer mappings, not CUDA allocations.",
                "bytes",
                Query(gpu("nvidia_gpu_bar1_memory_used_bytes"), f"{L} used"),
                Query(gpu("nvidia_gpu_bar1_memory_total_bytes"), f"{L} total"),
                options=Options(width=8, min=0),
            ),
        ],
    )


def power_and_thermals() -> Section:
    limits = "limit"
    return Section(
        "Power and temperature",
        [
            timeseries_panel(
                "Power: sampled vs energy counter, and limits",
                "Power draw as NVML samples it next to the average from the energy counter "
                "(rate of nvidia_gpu_energy_joules_total, in watts), and the power limits. Where "
                "they disagree trust the energy counter: the sample is a 1 s (or shorter) "
                "window. Draw pinned at the enforced limit means the power cap throttles.",
                "watt",
                Query(gpu("nvidia_gpu_power_usage_watts"), f"{L} sampled"),
                Query(c.rate("nvidia_gpu_energy_joules_total", SEL), f"{L} energy counter"),
                Query(gpu_by("nvidia_gpu_power_limit_watts", limits), f"{L} {{{{limit}}}} limit"),
                options=Options(width=16, min=0),
            ),
            stat_panel(
                "Energy over the range",
                "Energy the GPU used in the dashboard's time range, in kWh: increase of the "
                "energy counter over $__range (deliberately the whole range, not a rate "
                "interval). A driver reload resets the counter; increase() accounts for it.",
                "kwatth",
                Query(
                    f"max by ({KEY}) (increase(nvidia_gpu_energy_joules_total{{{SEL}}}[$__range]))"
                    " / 3.6e6"
                ),
                options=Options(width=4, height=8, decimals=2, steps=[Step(None, "blue")]),
            ),
            stat_panel(
                "Power vs enforced limit",
                "Power drawn now as a share of the enforced limit. A GPU under heavy load far "
                "below its limit is waiting on something upstream (data loading, CPU, network).",
                "percentunit",
                Query(f"{gpu('nvidia_gpu_power_usage_watts')}\n/\n{ENFORCED}"),
                options=Options(
                    width=4,
                    height=8,
                    min=0,
                    max=1,
                    steps=[Step(None, "blue"), Step(0.3, "green"), Step(0.95, "orange")],
                ),
            ),
            timeseries_panel(
                "Temperatures vs thresholds",
                "Core and memory (HBM) temperature against the GPU's own thresholds: slowdown "
                "(clocks cut), gpu_max and memory_max (the highest for normal operation) and "
                "shutdown. Boards without a memory sensor show the core only.",
                "celsius",
                Query(
                    f"{c.tagged(gpu('nvidia_gpu_temperature_celsius'), 'sensor', 'core')}\nor\n"
                    f"{c.tagged(gpu('nvidia_gpu_memory_temperature_celsius'), 'sensor', 'memory')}",
                    f"{L} {{{{sensor}}}}",
                ),
                Query(
                    gpu_by("nvidia_gpu_temperature_threshold_celsius", "threshold"),
                    f"{L} {{{{threshold}}}} threshold",
                ),
                options=Options(width=16),
            ),
            timeseries_panel(
                "Fan speed",
                "Intended fan speed as a share of the maximum. Empty on a healthy node with "
                "passively cooled GPUs (SXM modules and most datacenter PCIe boards, all the "
                "simulated ones): NVML has no fan to report for them.",
                "percentunit",
                Query(gpu("nvidia_gpu_fan_speed_ratio"), L),
                options=Options(width=8, min=0, max=1),
            ),
        ],
    )


def clocks_and_throttling() -> Section:
    reasons = "nvidia_gpu_clock_event_reason_active"
    return Section(
        "Clocks and throttling",
        [
            timeseries_panel(
                "Clocks vs max clocks",
                "Current clock per domain (graphics, SM, memory, video) against its maximum. SM "
                "clocks well below the max on a busy GPU mean throttling: the panels below say "
                "why.",
                "hertz",
                Query(gpu_by("nvidia_gpu_clock_hertz", "clock"), f"{L} {{{{clock}}}}"),
                Query(gpu_by("nvidia_gpu_max_clock_hertz", "clock"), f"{L} {{{{clock}}}} max"),
            ),
            timeseries_panel(
                "Throttle time share",
                "Share of time the clocks were held down, per reason, from the duration counters "
                "(rate of nvidia_gpu_clock_event_duration_seconds_total: seconds per second). "
                "Unlike the 0/1 reasons it sees throttling between two scrapes. gpu_idle is not "
                "a problem; sustained thermal or power-brake shares are.",
                "percentunit",
                Query(
                    c.rate(
                        "nvidia_gpu_clock_event_duration_seconds_total", SEL, by=f"{KEY}, reason"
                    ),
                    f"{L} {{{{reason}}}}",
                ),
                options=Options(min=0, max=1),
            ),
            state_panel(
                "Throttle reasons over time",
                "One row per clock-event reason the GPU supports: orange while the reason holds "
                "clocks down at the scrape, green while not. gpu_idle, sync_boost and the clock "
                "settings are informational; thermal, power and hardware slowdowns cost "
                "performance.",
                "none",
                Query(gpu_by(reasons, "reason"), f"{{{{reason}}}} ({L})"),
                options=Options(width=12, height=9, mappings=ACTIVE),
            ),
            state_panel(
                "P-state over time",
                "Performance state over time: P0 (dark green) is maximum performance, P2 is "
                "usual under CUDA compute, P8 and higher (blue) are idle states. Drops out of "
                "P0/P2 while busy line up with throttle reasons.",
                "none",
                Query(gpu("nvidia_gpu_performance_state"), L),
                options=Options(width=12, height=9, mappings=c.PSTATE_MAPPINGS),
            ),
        ],
    )


def memory_errors() -> Section:
    ecc_c, ecc_u = (
        "nvidia_gpu_ecc_corrected_errors_total",
        "nvidia_gpu_ecc_uncorrected_errors_total",
    )
    return Section(
        "ECC and memory repair",
        [
            timeseries_panel(
                "ECC errors",
                "New ECC errors per rate interval, corrected (single-bit) and uncorrected "
                "(double-bit), by scope: volatile counts since the driver loaded, aggregate "
                "over the GPU's life. Corrected errors are repaired; any uncorrected error "
                "stopped or corrupted the application that touched the memory.",
                "short",
                Query(increase(ecc_c, "scope"), f"{L} corrected {{{{scope}}}}"),
                Query(increase(ecc_u, "scope"), f"{L} uncorrected {{{{scope}}}}"),
                options=Options(width=8, min=0),
            ),
            timeseries_panel(
                "Remapped rows",
                "Memory rows remapped by cause (Ampere and newer), and the pending (needs a GPU "
                "reset) and failure (needs replacement) flags. Empty on a healthy node when the "
                "GPU is older than Ampere (it retires pages instead, next panel) or has MIG "
                "instances (NVML cannot read row remapping then).",
                "short",
                Query(gpu_by("nvidia_gpu_remapped_rows", "cause"), f"{L} {{{{cause}}}}"),
                *readings(
                    ("nvidia_gpu_remapped_rows_pending", "pending"),
                    ("nvidia_gpu_remapped_rows_failure", "failure"),
                ),
                options=Options(width=8, min=0),
            ),
            timeseries_panel(
                "Retired pages",
                "Memory pages retired by cause (single_bit, double_bit) and the pending flag "
                "(retired at the next reset). Empty on a healthy node with Ampere or newer GPUs: "
                "they remap rows instead (previous panel).",
                "short",
                Query(gpu_by("nvidia_gpu_retired_pages", "cause"), f"{L} {{{{cause}}}}"),
                Query(gpu("nvidia_gpu_retired_pages_pending"), f"{L} pending"),
                options=Options(width=8, min=0),
            ),
        ],
    )


def pcie() -> Section:
    return Section(
        "PCIe",
        [
            timeseries_panel(
                "PCIe link vs max",
                "Current PCIe link generation and width (lanes) against the GPU's maximum. "
                "Below the maximum under load means the link trained down (riser, slot or "
                "BIOS): x8 on an x16 GPU halves host-device bandwidth. At idle the generation "
                "may drop to save power.",
                "none",
                *readings(
                    ("nvidia_gpu_pcie_link_generation", "generation"),
                    ("nvidia_gpu_pcie_link_max_generation", "max generation"),
                    ("nvidia_gpu_pcie_link_width", "width"),
                    ("nvidia_gpu_pcie_link_max_width", "max width"),
                ),
                options=Options(width=8, min=0, decimals=0),
            ),
            timeseries_panel(
                "PCIe throughput",
                "Bytes per second over PCIe, transmit and receive, from the byte counters, or "
                "NVML's 20 ms throughput sample on GPUs without them.",
                "Bps",
                Query(
                    f"{c.both_ways('nvidia_gpu_pcie_transmit_bytes_total', PCIE_RX, SEL)}\nor\n"
                    f"{gpu_by('nvidia_gpu_pcie_throughput_bytes_per_second', 'direction')}",
                    f"{L} {{{{direction}}}}",
                ),
                options=Options(width=8, min=0),
            ),
            timeseries_panel(
                "PCIe replays",
                "PCIe replays (link-level retransmissions) per rate interval. A steady stream "
                "points at a marginal link: reseat the GPU or check the riser.",
                "short",
                Query(increase("nvidia_gpu_pcie_replays_total"), L),
                options=Options(width=8, min=0),
            ),
        ],
    )


NO_NVLINK = (
    "Empty on a healthy node when the GPU has no NVLink (PCIe boards such as T4 or L4): "
    "NVML reports no links for it."
)


def nvlink() -> Section:
    return Section(
        "NVLink",
        [
            state_panel(
                "NVLink links up",
                f"One row per NVLink link: green while up, red while down. A down link cuts "
                f"peer bandwidth and can hang collectives. {NO_NVLINK}",
                "none",
                Query(gpu_by("nvidia_gpu_nvlink_link_up", "link"), f"{L} link {{{{link}}}}"),
                options=Options(width=8, height=8, mappings=LINK_UP),
            ),
            timeseries_panel(
                "NVLink errors",
                "NVLink errors per rate interval over all links, by kind (CRC flit and data, "
                f"replay, recovery, ECC). Replays and recoveries that keep coming mean a bad link. "
                f"{NO_NVLINK}",
                "short",
                Query(increase("nvidia_gpu_nvlink_errors_total", "error"), f"{L} {{{{error}}}}"),
                options=Options(width=8, min=0),
            ),
            timeseries_panel(
                "NVLink throughput",
                f"Data bytes per second over all NVLink links, transmit and receive. {NO_NVLINK}",
                "Bps",
                Query(
                    c.both_ways(NVLINK_TX, NVLINK_RX, SEL),
                    f"{L} {{{{direction}}}}",
                ),
                options=Options(width=8, min=0),
            ),
        ],
    )


def processes() -> Section:
    return Section(
        "Processes and pods",
        [
            timeseries_panel(
                "Processes",
                "Processes on the GPU over time (in MIG mode the sum over its MIG devices; the "
                "parent reports none itself). Compare with the pods holding it.",
                "short",
                Query(
                    PROCESSES,
                    L,
                ),
                options=Options(width=8, min=0),
            ),
            timeseries_panel(
                "Process memory",
                "Device memory per process (host pid and name), the top N per GPU. Empty on a "
                "healthy node unless the exporter runs with --collector.processes (off by "
                "default).",
                "bytes",
                Query(
                    gpu_by("nvidia_gpu_process_memory_used_bytes", "pid, process_name"),
                    f"{L} {{{{process_name}}}} ({{{{pid}}}})",
                ),
                options=Options(width=8, min=0),
            ),
            table_panel(
                "Pods holding this GPU",
                "Containers the kubelet gave this GPU or one of its MIG devices (mig_uuid set), "
                "from nvidia_gpu_pod_info, with each container's share of the GPU's busy time "
                "(nvidia_gpu_pod_utilization_busy_seconds_total over that of every process on "
                "the GPU: the shares of a time-sliced GPU add up to 1). The share needs "
                "--collector.processes and a whole GPU (NVML has no per-process utilization "
                "in MIG mode). Empty on a healthy node when no pod holds the GPU, or outside "
                "Kubernetes.",
                "none",
                Query(gpu_by("nvidia_gpu_pod_info", "mig_uuid, namespace, pod, container")),
                Query(c.pod_share(SEL, POD_CONTAINER, 'pod!=""', SEL)),
                options=Options(width=8, height=8),
                columns={
                    **c.headers("namespace", "pod", "container", "mig_uuid"),
                    "Value #B": "Share of GPU busy",
                },
                column_units={"Share of GPU busy": "percentunit"},
            ),
        ],
    )


NOT_MIG = (
    "Empty on a healthy node when the GPU is not in MIG mode (no MIG devices to show). "
    "Values are per MIG device and never added to the parent GPU's."
)


def mig_devices() -> Section:
    return Section(
        "MIG devices",
        [
            timeseries_panel(
                "MIG device memory",
                f"Memory in use on each MIG device of this GPU against its size. {NOT_MIG}",
                "bytes",
                Query(mig("nvidia_gpu_mig_memory_used_bytes"), f"{c.LEGEND_MIG} used"),
                Query(mig("nvidia_gpu_mig_memory_total_bytes"), f"{c.LEGEND_MIG} total"),
                options=Options(width=12, min=0),
            ),
            timeseries_panel(
                "GPU instance activity",
                "Per MIG GPU instance of this GPU, from GPM: graphics active (the instance's "
                "utilization; NVML gives none in MIG mode) and SM active (share of the "
                "instance's SMs with work). Values are per GPU instance, never added to the "
                f"parent GPU's. {c.NEEDS_MIG_GPM}",
                "percentunit",
                Query(c.mig_profiling("graphics_active", SEL), f"{c.LEGEND_MIG} graphics active"),
                Query(c.mig_profiling("sm_active", SEL), f"{c.LEGEND_MIG} SM active"),
                options=Options(width=12, min=0, max=1),
            ),
            table_panel(
                "MIG devices",
                f"Each MIG device of this GPU: profile, GPU and compute instance, SMs, memory "
                f"used and total, processes. {NOT_MIG}",
                "none",
                Query(mig("nvidia_gpu_mig_multiprocessors")),
                Query(mig("nvidia_gpu_mig_memory_used_bytes")),
                Query(mig("nvidia_gpu_mig_memory_total_bytes")),
                Query(mig("nvidia_gpu_mig_processes")),
                options=Options(width=24, height=8),
                columns={
                    "profile": "Profile",
                    "gpu_instance": "GPU instance",
                    "compute_instance": "Compute instance",
                    "mig_uuid": "MIG UUID",
                    "Value #A": "SMs",
                    "Value #B": "Memory used",
                    "Value #C": "Memory total",
                    "Value #D": "Processes",
                },
                column_units={"Memory used": "bytes", "Memory total": "bytes"},
            ),
        ],
    )


def spec() -> DashboardSpec:
    return DashboardSpec(
        uid=c.DETAIL,
        title=f"{c.TITLE_PREFIX}GPU detail",
        description=(
            "Every metric family of one GPU: identity, utilization, GPM profiling, memory, "
            "power and energy, "
            "temperatures, clocks, throttle reasons and P-state over time, ECC and memory "
            "repair, PCIe, NVLink, processes, pods and MIG devices."
        ),
        variables=[c.CLUSTER, c.ONE_NODE_VAR, c.ONE_GPU_VAR],
        sections=[
            identity(),
            utilization_and_memory(),
            profiling(),
            power_and_thermals(),
            clocks_and_throttling(),
            memory_errors(),
            pcie(),
            nvlink(),
            processes(),
            mig_devices(),
        ],
    )
