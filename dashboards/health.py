"""NVIDIA GPU / Health: the on-call view of what is broken, across the nodes picked.

Xids by code with the catalog's names, GPUs that fell off the bus or went missing, the driver's
recovery actions, memory errors and repairs, thermal and power throttling, the NVIDIA GPU
alerts that fire, and whether the exporter itself sees everything (its sources).

Most panels here are empty on a healthy fleet, and say so in their description; the numbers at
the top show 0 instead (a count of nothing is 0, never a made-up reading).
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
    state_panel,
    table_panel,
    timeseries_panel,
)

SEL = c.NODE_SEL
KEY = c.GPU_KEY
L = c.LEGEND_GPU
SOURCE_KEY = "cluster, node, source"
SOURCE_LEGEND = "{{node}} {{source}}"
XID_KEY = f"{KEY}, xid"
CATALOG = "fleet:nvidia_gpu_xid_info:dedup"
XID_AGE = f"gpu_xid:nvidia_gpu_xid_last_seen:age_seconds{{{SEL}}}"
XID_10M = f"gpu_xid:nvidia_gpu_xid_errors:increase10m{{{SEL}}}"
NODE_FROM_TABLE = Link("Node dashboard", c.NODE, "var-node=${__data.fields.Node}")
YES_BAD = {"0": ("no", "green"), "1": ("yes", "red")}
ALERTS = f'ALERTS{{alertstate="firing", alertname=~"NvidiaGpu.*", {c.CLUSTER_SEL}, node=~"$node|"}}'


def gpu(metric: str, extra: str = "") -> str:
    return c.per_gpu(metric, SEL, extra)


def source(metric: str) -> str:
    return f"max by ({SOURCE_KEY}) ({metric}{{{SEL}}})"


def source_rate(metric: str, by: str = SOURCE_KEY) -> str:
    return f"max by ({by}) (rate({metric}{{{SEL}}}[$__rate_interval]))"


def count_or_zero(expr: str) -> str:
    return f"count(\n  {expr}\n) or vector(0)"


def now_stat(title: str, description: str, expr: str, warn: bool = False) -> PanelBuilder:
    """One of the twelve numbers at the top: green at 0, red (orange with warn) from 1."""
    steps = [Step(None, "green"), Step(1, "orange" if warn else "red")]
    o = Options(width=4, height=4, steps=steps)
    return stat_panel(title, description, "none", Query(expr), options=o)


def now() -> Section:
    thermal_power = f'reason=~"{c.THERMAL_REASONS}|{c.POWER_REASONS}"'
    return Section(
        "Now",
        [
            now_stat(
                "GPUs fallen off the bus",
                "GPUs that NVML reports lost or that the driver said fell off the bus (Xid 79). "
                "They will not answer again without a GPU reset or a reboot: drain the node.",
                count_or_zero(f"{gpu('nvidia_gpu_fallen_off_bus')} == 1"),
            ),
            now_stat(
                "GPUs not answering NVML",
                "GPUs that enumerate but did not answer NVML in the last collection "
                "(nvidia_gpu_up 0): no readings come from them.",
                count_or_zero(f"{gpu('nvidia_gpu_up')} == 0"),
            ),
            now_stat(
                "GPUs missing from NVML",
                "NVIDIA GPUs the PCI bus shows (udev) minus those NVML enumerates, summed over "
                "the nodes: GPUs the driver did not bring up. Empty on a healthy node when the "
                "udev source is off (--collector.udev=false, and always under --simulate): "
                "without it the exporter cannot see the PCI bus.",
                "sum(clamp_min(\n"
                f"  max by (cluster, node) (nvidia_gpu_exporter_pci_gpus{{{SEL}}})\n"
                "  - on (cluster, node)\n"
                f"  max by (cluster, node) (nvidia_gpu_exporter_gpus{{{SEL}}}),\n  0\n))",
            ),
            now_stat(
                "Recovery actions requested",
                "GPUs whose driver asked for a recovery action in an Xid 154 (GPU reset, node "
                "reboot, drain...). Which action: the recovery-action panel below.",
                count_or_zero(f"{gpu('nvidia_gpu_recovery_action')} > 0"),
            ),
            now_stat(
                "Alerts firing",
                "Alerts of the bundled rules (alertname NvidiaGpu*) firing now for the nodes "
                "picked, plus fleet-wide ones without a node. The list is further down.",
                f"count({ALERTS}) or vector(0)",
            ),
            now_stat(
                "Exporter sources down",
                "Exporter data sources (per node) whose last attempt failed or that are stalled. "
                "While one is down the GPU panels or alerts it feeds are blind on that node.",
                count_or_zero(f"{source('nvidia_gpu_exporter_source_up')} == 0"),
            ),
            now_stat(
                "Xid codes (24 h)",
                "Distinct (GPU, Xid code) pairs with an Xid in the last 24 hours (a deliberate "
                "fixed window), from the last-seen timestamps, so Xids logged while the exporter "
                "was down count too.",
                count_or_zero(f"{XID_AGE} < 86400"),
                warn=True,
            ),
            now_stat(
                "Critical Xid codes (24 h)",
                "Of those, the pairs whose code the Xid catalog rates critical (the GPU or node "
                "needs action, e.g. 48 double-bit ECC, 79 fallen off the bus, 119 GSP timeout).",
                count_or_zero(
                    f'{XID_AGE} < 86400\n  and on (xid) {CATALOG}{{severity="critical"}}'
                ),
            ),
            now_stat(
                "Uncorrectable ECC errors",
                "New uncorrectable (volatile) ECC errors in the dashboard's time range "
                "(increase over $__range), over the GPUs picked. Each one stopped or corrupted "
                "an application.",
                f"sum(max by ({KEY}) (increase(nvidia_gpu_ecc_uncorrected_errors_total"
                f'{{{SEL}, scope="volatile"}}[$__range]))) or vector(0)',
            ),
            now_stat(
                "Row remap failures",
                "GPUs whose memory could not remap a failing row: an RMA candidate, drain it.",
                count_or_zero(f"{gpu('nvidia_gpu_remapped_rows_failure')} == 1"),
            ),
            now_stat(
                "Memory repairs pending",
                "GPUs with a row remap or page retirement waiting for the next GPU reset: "
                "schedule one when the GPU is free.",
                count_or_zero(
                    f"{gpu('nvidia_gpu_remapped_rows_pending')} == 1\n  or\n  "
                    f"{gpu('nvidia_gpu_retired_pages_pending')} == 1"
                ),
                warn=True,
            ),
            now_stat(
                "GPUs throttled (thermal or power)",
                "GPUs with a thermal or power clock-event reason active at the last scrape "
                "(power cap, power brake, software or hardware thermal slowdown). A few under "
                "full load is normal (power cap); many, or thermal ones, are not.",
                count_or_zero(
                    f"max by ({KEY}) (nvidia_gpu_clock_event_reason_active{{{SEL}, "
                    f"{thermal_power}}}) == 1"
                ),
                warn=True,
            ),
        ],
    )


def xids() -> Section:
    named = f"* on (xid) group_left (name, severity, action) {CATALOG}"
    return Section(
        "Xid errors",
        [
            timeseries_panel(
                "Xids by code",
                "Xids per GPU and code, named from the Xid catalog: each point counts the Xids "
                "of the 10 minutes before it (the fresh-series-aware recording rule), so one "
                "Xid shows as a 10-minute plateau of 1. Empty on a healthy node: no Xid in "
                "the time range.",
                "short",
                Query(
                    f"max by ({XID_KEY}) ({XID_10M} > 0)\n{named}",
                    f"{L} Xid {{{{xid}}}} {{{{name}}}}",
                ),
                options=Options(width=24, height=8, min=0, links=[c.to_gpu()]),
            ),
            table_panel(
                "Xids in the last 24 hours",
                "One row per GPU and Xid code seen in the last 24 hours (a deliberate fixed "
                "window, backlog from before an exporter restart included): the catalog's name, "
                "severity and recommended action, how long ago it last happened, and the most "
                "Xids of that code in any 10 minutes (bursts of application Xids point at the "
                "GPU or a crash-looping job). Empty on a healthy node: no Xid in 24 hours. "
                "Click a row for the GPU's detail dashboard.",
                "none",
                Query(f"max by ({XID_KEY}) ({XID_AGE} < 86400)\n{named}"),
                Query(f"max by ({XID_KEY}) (max_over_time({XID_10M}[24h])) > 0"),
                options=Options(width=24, height=8, links=[c.to_gpu_from_table("Node", "UUID")]),
                columns={
                    **c.headers("node", "gpu", "xid"),
                    "name": "Name",
                    "severity": "Severity",
                    "action": "Action",
                    "Value #A": "Last seen",
                    "Value #B": "Most in 10 min",
                    "uuid": "UUID",
                },
                column_units={"Last seen": "s", "Most in 10 min": "short"},
            ),
        ],
    )


def lost_gpus() -> Section:
    kinds = [
        (f"max by (cluster, node) (nvidia_gpu_exporter_pci_gpus{{{SEL}}})", "on the PCI bus"),
        (f"max by (cluster, node) (nvidia_gpu_exporter_gpus{{{SEL}}})", "enumerated by NVML"),
        (f"sum by (cluster, node) ({gpu('nvidia_gpu_up')})", "answering NVML"),
    ]
    seen = "\nor\n".join(c.tagged(expr, "seen", kind) for expr, kind in kinds)
    trouble = f"({gpu('nvidia_gpu_fallen_off_bus')} == 1 or {gpu('nvidia_gpu_up')} == 0)"
    return Section(
        "Lost and missing GPUs",
        [
            timeseries_panel(
                "GPUs seen per node",
                "Per node, the GPUs on the PCI bus (udev), those NVML enumerates and those that "
                "answer NVML. The three lines sit on top of each other on a healthy node; a gap "
                "is a GPU the driver did not bring up (bus > NVML) or one that stopped answering "
                "(NVML > answering). The PCI-bus line needs the udev source.",
                "short",
                Query(seen, "{{node}} {{seen}}"),
                options=Options(width=8, min=0, decimals=0, links=[c.to_node()]),
            ),
            table_panel(
                "GPUs fallen off the bus or not answering",
                "Every GPU that fell off the bus or does not answer NVML, with its model. Empty "
                "on a healthy node: every GPU answers. A GPU that fell off the bus needs a GPU "
                "reset or a reboot; one that does not answer may come back on its own.",
                "none",
                Query(f"max by ({KEY}, model) (nvidia_gpu_info{{{SEL}}}) and on ({KEY}) {trouble}"),
                Query(f"{gpu('nvidia_gpu_fallen_off_bus')} and on ({KEY}) {trouble}"),
                Query(f"{gpu('nvidia_gpu_up')} and on ({KEY}) {trouble}"),
                options=Options(width=8, height=8, links=[c.to_gpu_from_table("Node", "UUID")]),
                columns={
                    **c.headers("node", "gpu", "model"),
                    "Value #B": "Fallen off the bus",
                    "Value #C": "Answering NVML",
                    "uuid": "UUID",
                },
                column_mappings={
                    "Fallen off the bus": YES_BAD,
                    "Answering NVML": {"0": ("no", "red"), "1": ("yes", "green")},
                },
            ),
            state_panel(
                "Recovery actions",
                "The recovery action the driver asked for in each GPU's last Xid 154, over "
                "time: none, GPU reset, node reboot, drain P2P, drain and reset, recover IMEX "
                "domain, bus reset, system reboot (red: reboots). Empty on a healthy node: the "
                "series exists only once the driver logged an Xid 154 for the GPU.",
                "none",
                Query(gpu("nvidia_gpu_recovery_action"), L),
                options=Options(width=8, height=8, mappings=c.RECOVERY_MAPPINGS),
            ),
        ],
    )


def memory_and_throttling() -> Section:
    pending = {"1": ("yes", "orange")}
    thermal_power = f'reason=~"{c.THERMAL_REASONS}|{c.POWER_REASONS}"'
    return Section(
        "Memory errors and throttling",
        [
            timeseries_panel(
                "New uncorrectable ECC errors",
                "Uncorrectable (volatile) ECC errors per GPU in the 10 minutes before each "
                "point (the recording rule the ECC alert uses, which ignores counts the GPU had "
                "before it was first scraped). Empty on a healthy node: no uncorrectable error.",
                "short",
                Query(f"gpu:nvidia_gpu_ecc_uncorrected_volatile:increase10m{{{SEL}}} > 0", L),
                options=Options(width=8, min=0, links=[c.to_gpu()]),
            ),
            table_panel(
                "Memory repairs failed or pending",
                "GPUs with a failed row remap (replace the GPU), a row remap pending or a page "
                "retirement pending (both applied at the next GPU reset). Empty on a healthy "
                "node: no GPU needs a memory repair.",
                "none",
                Query(f"{gpu('nvidia_gpu_remapped_rows_failure')} == 1"),
                Query(f"{gpu('nvidia_gpu_remapped_rows_pending')} == 1"),
                Query(f"{gpu('nvidia_gpu_retired_pages_pending')} == 1"),
                options=Options(width=8, height=8, links=[c.to_gpu_from_table("Node", "UUID")]),
                columns={
                    **c.headers("node", "gpu"),
                    "Value #A": "Remap failed",
                    "Value #B": "Remap pending",
                    "Value #C": "Retirement pending",
                    "uuid": "UUID",
                },
                column_mappings={
                    "Remap failed": {"1": ("yes", "red")},
                    "Remap pending": pending,
                    "Retirement pending": pending,
                },
            ),
            timeseries_panel(
                "GPUs throttled, by reason",
                "How many GPUs had each thermal or power clock-event reason active at each "
                "scrape (0 when none). sw_power_cap under full load is expected; thermal "
                "slowdowns and the hardware power brake are not.",
                "short",
                Query(
                    f"sum by (reason) (max by ({KEY}, reason) "
                    f"(nvidia_gpu_clock_event_reason_active{{{SEL}, {thermal_power}}}))",
                    "{{reason}}",
                ),
                options=Options(width=8, min=0, decimals=0),
            ),
            timeseries_panel(
                "Throttle time share, thermal and power",
                "Share of time each GPU's clocks were held down for a thermal or power reason "
                "(rate of the throttle duration counters), only GPUs above 0. Sustained thermal "
                "shares above 20 % fire NvidiaGpuThermalThrottling. Empty on a healthy node "
                "when no GPU is throttled for temperature or power.",
                "percentunit",
                Query(
                    c.rate(
                        "nvidia_gpu_clock_event_duration_seconds_total",
                        SEL,
                        thermal_power,
                        by=f"{KEY}, reason",
                    )
                    + " > 0",
                    f"{L} {{{{reason}}}}",
                ),
                options=Options(width=24, min=0, max=1, links=[c.to_gpu()]),
            ),
        ],
    )


def alerts() -> Section:
    return Section(
        "Alerts",
        [
            table_panel(
                "Firing NVIDIA GPU alerts",
                "Every alert of the bundled rules (alertname NvidiaGpu*) firing now, with its "
                "severity and the node, GPU, Xid or link it is about; fleet-wide alerts have no "
                "node. Empty on a healthy node: no NVIDIA GPU alert fires.",
                "none",
                Query(ALERTS),
                options=Options(width=24, height=7),
                columns={
                    "alertname": "Alert",
                    **c.headers("severity", "node", "gpu", "xid"),
                    "link": "NVLink link",
                    **c.headers("source", "uuid"),
                },
            ),
        ],
    )


def exporter_health() -> Section:
    last = f"nvidia_gpu_exporter_source_last_success_timestamp_seconds{{{SEL}}}"
    age = f"max by ({SOURCE_KEY}) (time() - {last})"
    return Section(
        "Exporter sources",
        [
            table_panel(
                "Sources per node",
                "Each data source of each node's exporter: up (last attempt worked and not "
                "stalled), stalled (inside one collection past its limit: a hung NVML call), "
                "seconds since it last proved working (within seconds while it works), the "
                "last collection's duration, and collections and failed collections per second.",
                "none",
                Query(source("nvidia_gpu_exporter_source_up")),
                Query(source("nvidia_gpu_exporter_source_stalled")),
                Query(age),
                Query(source("nvidia_gpu_exporter_source_duration_seconds")),
                Query(source_rate("nvidia_gpu_exporter_collections_total")),
                Query(source_rate("nvidia_gpu_exporter_collection_errors_total")),
                options=Options(width=24, height=8, links=[NODE_FROM_TABLE]),
                columns={
                    **c.headers("node", "source"),
                    "Value #A": "Up",
                    "Value #B": "Stalled",
                    "Value #C": "Last success",
                    "Value #D": "Duration",
                    "Value #E": "Collections/s",
                    "Value #F": "Errors/s",
                },
                column_units={
                    "Last success": "s",
                    "Duration": "s",
                    "Collections/s": "ops",
                    "Errors/s": "ops",
                },
                column_mappings={
                    "Up": {"0": ("down", "red"), "1": ("up", "green")},
                    "Stalled": YES_BAD,
                },
            ),
            state_panel(
                "Source up over time",
                "One row per node and source: green while the source works, red while its "
                "attempts fail or it is stalled. nvml down means no GPU readings; kmsg, xid or "
                "nvml_events down means Xids may go unseen; udev down, GPUs leaving the bus.",
                "none",
                Query(source("nvidia_gpu_exporter_source_up"), SOURCE_LEGEND),
                options=Options(
                    width=12, height=8, mappings={"0": ("down", "red"), "1": ("up", "green")}
                ),
            ),
            timeseries_panel(
                "Time since last success",
                "Seconds since each source last completed a collection (event sources: a wait). "
                "Within a few seconds while it works; above 60 s for 5 minutes fires "
                "NvidiaGpuExporterCollectionStale.",
                "s",
                Query(age, SOURCE_LEGEND),
                options=Options(width=12, min=0),
            ),
            timeseries_panel(
                "Collection errors",
                "Collections per second that failed as a whole, per node and source. Any steady "
                "rate means a source is failing; the exporter log says why.",
                "ops",
                Query(source_rate("nvidia_gpu_exporter_collection_errors_total"), SOURCE_LEGEND),
                options=Options(width=8, min=0),
            ),
            timeseries_panel(
                "NVML errors by call and code",
                "NVML calls per second that failed, by call and return code (NOT_SUPPORTED is "
                "not counted: that is a field the GPU lacks). Empty on a healthy node: no NVML "
                "call fails.",
                "ops",
                Query(
                    source_rate(
                        "nvidia_gpu_exporter_nvml_errors_total", "cluster, node, call, code"
                    ),
                    "{{node}} {{call}} {{code}}",
                ),
                options=Options(width=8, min=0),
            ),
            timeseries_panel(
                "Kernel log records",
                "Kernel log records read per second by result (xid, other, malformed, unframed, "
                "unparsed_xid: an Xid line the parser could not read, i.e. a new driver format), "
                "and records lost (overwritten before the exporter read them). Lost or "
                "unparsed records mean Xids may have been missed.",
                "ops",
                Query(
                    source_rate("nvidia_gpu_exporter_kmsg_records_total", "cluster, node, result"),
                    "{{node}} {{result}}",
                ),
                Query(
                    source_rate("nvidia_gpu_exporter_kmsg_records_lost_total", "cluster, node"),
                    "{{node}} lost",
                ),
                options=Options(width=8, min=0),
            ),
        ],
    )


def spec() -> DashboardSpec:
    return DashboardSpec(
        uid=c.HEALTH,
        title=f"{c.TITLE_PREFIX}Health",
        description=(
            "What is broken: Xids by code with the catalog's names, GPUs fallen off the bus or "
            "missing, recovery actions, ECC errors and memory repairs, thermal and power "
            "throttling, firing NVIDIA GPU alerts and the exporter's own sources."
        ),
        variables=[c.CLUSTER, c.NODE_VAR],
        sections=[now(), xids(), lost_gpus(), memory_and_throttling(), alerts(), exporter_health()],
    )
