"""The metric catalog: every family the exporter can serve, in one place.

Why one catalog: the renderer, the README's metric reference, the alert-rule tests and the
dashboards all read names from here, so a renamed metric breaks a test instead of an alert.
Families are rendered in catalog order, which keeps the exposition (and golden files) stable.
"""

from __future__ import annotations

from exporter import metric_family as _family
from exporter import metrics_activity as _activity
from exporter.metric_family import gpu_family, mig_family, self_family

# Re-exported: the catalog's users read the shapes from here.
Family = _family.Family
Kind = _family.Kind
GPU_LABELS = _family.GPU_LABELS
MIG_LABELS = _family.MIG_LABELS
INFO_LABELS = _family.INFO_LABELS
POD_LABELS = _family.POD_LABELS

_gpu = gpu_family
_mig = mig_family
_self = self_family


# Identity
INFO = Family(
    "nvidia_gpu_info",
    "gauge",
    "Static identity of a GPU, always 1: model, driver, VBIOS, PCI bus id, MIG and persistence "
    "mode.",
    INFO_LABELS,
    "identity",
)
UP = _gpu(
    "up",
    "gauge",
    "1 if the GPU answered NVML in the last collection and has not fallen off the bus since; "
    "while 0 its value series are absent.",
    "identity",
)

# Utilization
UTILIZATION = _gpu(
    "utilization_ratio",
    "gauge",
    "Fraction of the last sample period in which a kernel ran on the GPU (0-1).",
    "utilization",
)
MEMORY_UTILIZATION = _gpu(
    "memory_utilization_ratio",
    "gauge",
    "Fraction of the last sample period in which device memory was read or written (0-1).",
    "utilization",
)
ENCODER_UTILIZATION = _gpu(
    "encoder_utilization_ratio", "gauge", "Video encoder utilization (0-1).", "utilization"
)
DECODER_UTILIZATION = _gpu(
    "decoder_utilization_ratio", "gauge", "Video decoder utilization (0-1).", "utilization"
)

# Busy-time counters and profiling (GPM): defined in exporter/metrics_activity.py, bound here
# because CATALOG follows the order names are bound in this module.
UTILIZATION_BUSY = _activity.UTILIZATION_BUSY
UTILIZATION_SAMPLED = _activity.UTILIZATION_SAMPLED
GPM = _activity.GPM_FAMILIES
MIG_GPM = _activity.MIG_GPM_FAMILIES

# Memory
MEMORY_TOTAL = _gpu("memory_total_bytes", "gauge", "Total device memory in bytes.", "memory")
MEMORY_USED = _gpu("memory_used_bytes", "gauge", "Device memory in use in bytes.", "memory")
MEMORY_FREE = _gpu("memory_free_bytes", "gauge", "Device memory free in bytes.", "memory")
MEMORY_RESERVED = _gpu(
    "memory_reserved_bytes",
    "gauge",
    "Device memory reserved by the driver and firmware in bytes.",
    "memory",
)
BAR1_TOTAL = _gpu("bar1_memory_total_bytes", "gauge", "Total BAR1 memory in bytes.", "memory")
BAR1_USED = _gpu("bar1_memory_used_bytes", "gauge", "BAR1 memory in use in bytes.", "memory")

# Power and energy
POWER_USAGE = _gpu(
    "power_usage_watts",
    "gauge",
    "Power draw in watts as NVML reports it (a 1 s average on Ampere and newer, except GA100).",
    "power",
)
POWER_LIMIT = _gpu(
    "power_limit_watts",
    "gauge",
    "Power limits in watts: limit is current, enforced, default, min or max.",
    "power",
    "limit",
)
ENERGY = _gpu(
    "energy_joules_total",
    "counter",
    "Energy consumed since the driver was last loaded, in joules.",
    "power",
)

# Temperature and cooling
TEMPERATURE = _gpu("temperature_celsius", "gauge", "GPU core temperature in degrees C.", "thermal")
MEMORY_TEMPERATURE = _gpu(
    "memory_temperature_celsius",
    "gauge",
    "Device memory (HBM) temperature in degrees C.",
    "thermal",
)
TEMPERATURE_THRESHOLD = _gpu(
    "temperature_threshold_celsius",
    "gauge",
    "Temperature thresholds set by the GPU: threshold is shutdown, slowdown, gpu_max or "
    "memory_max.",
    "thermal",
    "threshold",
)
FAN_SPEED = _gpu(
    "fan_speed_ratio",
    "gauge",
    "Intended fan speed as a fraction of the maximum (0-1); absent on passively cooled boards.",
    "thermal",
)

# Clocks
CLOCK = _gpu(
    "clock_hertz", "gauge", "Current clock frequency in hertz, by clock domain.", "clocks", "clock"
)
MAX_CLOCK = _gpu(
    "max_clock_hertz",
    "gauge",
    "Maximum clock frequency in hertz, by clock domain.",
    "clocks",
    "clock",
)
PERFORMANCE_STATE = _gpu(
    "performance_state",
    "gauge",
    "Performance state, 0 (P0, maximum) to 15 (P15, minimum).",
    "clocks",
)
CLOCK_EVENT_ACTIVE = _gpu(
    "clock_event_reason_active",
    "gauge",
    "1 while this reason holds clocks down (throttling), 0 otherwise; one series per reason the "
    "GPU supports.",
    "clocks",
    "reason",
)
CLOCK_EVENT_DURATION = _gpu(
    "clock_event_duration_seconds_total",
    "counter",
    "Cumulative time clocks were held down for this reason, in seconds.",
    "clocks",
    "reason",
)

# ECC, retired pages, row remapping
ECC_MODE = _gpu("ecc_enabled", "gauge", "1 if ECC is enabled (current mode).", "ecc")
ECC_CORRECTED = _gpu(
    "ecc_corrected_errors_total",
    "counter",
    "Corrected (single-bit) ECC errors; scope volatile resets at driver load, aggregate is "
    "lifetime.",
    "ecc",
    "scope",
)
ECC_UNCORRECTED = _gpu(
    "ecc_uncorrected_errors_total",
    "counter",
    "Uncorrected (double-bit) ECC errors; scope volatile resets at driver load, aggregate is "
    "lifetime.",
    "ecc",
    "scope",
)
RETIRED_PAGES = _gpu(
    "retired_pages",
    "gauge",
    "Memory pages retired (pre-Ampere GPUs), by cause single_bit or double_bit.",
    "ecc",
    "cause",
)
RETIRED_PAGES_PENDING = _gpu(
    "retired_pages_pending",
    "gauge",
    "1 if a page retirement waits for the next driver reload or GPU reset.",
    "ecc",
)
REMAPPED_ROWS = _gpu(
    "remapped_rows",
    "gauge",
    "Memory rows remapped (Ampere and newer), by cause correctable or uncorrectable.",
    "ecc",
    "cause",
)
REMAPPED_ROWS_PENDING = _gpu(
    "remapped_rows_pending",
    "gauge",
    "1 if a row remapping waits for a GPU reset.",
    "ecc",
)
REMAPPED_ROWS_FAILURE = _gpu(
    "remapped_rows_failure",
    "gauge",
    "1 if a row remapping failed: the GPU needs replacement.",
    "ecc",
)

# PCIe
PCIE_LINK_GENERATION = _gpu(
    "pcie_link_generation", "gauge", "Current PCIe link generation.", "pcie"
)
PCIE_LINK_MAX_GENERATION = _gpu(
    "pcie_link_max_generation", "gauge", "Maximum PCIe link generation of the GPU.", "pcie"
)
PCIE_LINK_WIDTH = _gpu("pcie_link_width", "gauge", "Current PCIe link width in lanes.", "pcie")
PCIE_LINK_MAX_WIDTH = _gpu(
    "pcie_link_max_width", "gauge", "Maximum PCIe link width in lanes.", "pcie"
)
PCIE_REPLAYS = _gpu(
    "pcie_replays_total", "counter", "PCIe replay events (link-level retransmissions).", "pcie"
)
PCIE_TX_BYTES = _gpu(
    "pcie_transmit_bytes_total", "counter", "Bytes the GPU transmitted over PCIe.", "pcie"
)
PCIE_RX_BYTES = _gpu(
    "pcie_receive_bytes_total", "counter", "Bytes the GPU received over PCIe.", "pcie"
)
PCIE_THROUGHPUT = _gpu(
    "pcie_throughput_bytes_per_second",
    "gauge",
    "PCIe throughput sampled over 20 ms by NVML, only where the byte counters are unsupported.",
    "pcie",
    "direction",
)

# NVLink
NVLINK_UP = _gpu(
    "nvlink_link_up", "gauge", "1 if this NVLink link is active, 0 if it is down.", "nvlink", "link"
)
NVLINK_ERRORS = _gpu(
    "nvlink_errors_total",
    "counter",
    "NVLink errors summed over all links, by error: crc_flit, crc_data, replay, recovery, "
    "ecc_data.",
    "nvlink",
    "error",
)
NVLINK_TX_BYTES = _gpu(
    "nvlink_transmit_bytes_total",
    "counter",
    "Data bytes transmitted over all NVLink links.",
    "nvlink",
)
NVLINK_RX_BYTES = _gpu(
    "nvlink_receive_bytes_total",
    "counter",
    "Data bytes received over all NVLink links.",
    "nvlink",
)

# Processes and MIG
PROCESSES = _gpu(
    "processes",
    "gauge",
    "Processes using the GPU (compute and graphics); on MIG-enabled GPUs see the MIG series.",
    "processes",
)
MIG_MEMORY_TOTAL = _mig("memory_total_bytes", "gauge", "Memory of the MIG device in bytes.")
MIG_MEMORY_USED = _mig("memory_used_bytes", "gauge", "Memory in use on the MIG device in bytes.")
MIG_MEMORY_FREE = _mig("memory_free_bytes", "gauge", "Memory free on the MIG device in bytes.")
MIG_PROCESSES = _mig("processes", "gauge", "Processes running on the MIG device.")
MIG_MULTIPROCESSORS = _mig(
    "multiprocessors", "gauge", "Streaming multiprocessors (SMs) assigned to the MIG device."
)

# The exporter's own health
SOURCE_UP = _self(
    "source_up",
    "gauge",
    "1 if the source's last attempt succeeded and it is not stalled, else 0.",
    "source",
)
SOURCE_DURATION = _self(
    "source_duration_seconds",
    "gauge",
    "Wall-clock duration of the source's last collection in seconds.",
    "source",
)
SOURCE_LAST_SUCCESS = _self(
    "source_last_success_timestamp_seconds",
    "gauge",
    "Unix time the source last proved working: its last successful collection, or for an "
    "event source (kmsg, nvml_events, xid, udev, web_config) its last completed wait; within "
    "seconds of now while it works.",
    "source",
)
SOURCE_STALLED = _self(
    "source_stalled",
    "gauge",
    "1 while the source is inside one collection for longer than its stall limit (a hung call).",
    "source",
)
COLLECTIONS = _self(
    "collections_total",
    "counter",
    "Collections attempted by the source; for an event source, wait cycles completed.",
    "source",
)
COLLECTION_ERRORS = _self(
    "collection_errors_total",
    "counter",
    "Collections by the source that failed as a whole.",
    "source",
)
COLLECTION_CPU = _self(
    "collection_cpu_seconds_total",
    "counter",
    "CPU time the source's collections used, in seconds.",
    "source",
)
NVML_ERRORS = _self(
    "nvml_errors_total",
    "counter",
    "NVML calls that failed with an error other than NOT_SUPPORTED, by call and return code.",
    "call",
    "code",
)
GPUS = _self("gpus", "gauge", "GPUs NVML enumerates (physical devices).")
MIG_DEVICES = _self("mig_devices", "gauge", "MIG devices NVML enumerates.")
BUILD_INFO = _self(
    "build_info",
    "gauge",
    "Build information of the exporter, always 1.",
    "version",
    "python_version",
    "pynvml_version",
)
SCRAPES = _self(
    "http_requests_total",
    "counter",
    "HTTP requests served, by path and status code.",
    "path",
    "code",
)
RENDER_DURATION = _self(
    "render_duration_seconds",
    "gauge",
    "Time spent rendering the last exposition, in seconds.",
)


# Xid errors and lost GPUs (exporter/xid/, exporter/sources/kmsg.py, udev.py; docs/xid.md)
XID_ERRORS = _gpu(
    "xid_errors_total",
    "counter",
    "Xid errors seen since the exporter started (kernel log or NVML events, each Xid once); "
    "critical codes start at 0 for every GPU. Empty uuid: an address no known GPU has.",
    "xid",
    "xid",
)
MIG_XID_ERRORS = Family(
    "nvidia_gpu_mig_xid_errors_total",
    "counter",
    "Xid errors the driver attributed to a MIG GPU instance (and compute instance), since start.",
    (*MIG_LABELS, "xid"),
    "xid",
)
XID_LAST_SEEN = _gpu(
    "xid_last_seen_timestamp_seconds",
    "gauge",
    "Unix time of the last Xid with this code on this GPU, including Xids still in the kernel "
    "ring buffer from before the exporter started.",
    "xid",
    "xid",
)
XID_INFO = Family(
    "nvidia_gpu_xid_info",
    "gauge",
    "NVIDIA's Xid catalog, always 1: name, category, severity (critical, warning, info) and "
    "recommended action per code. Every node exports it: join on xid through a "
    "fleet-deduplicated recording rule (alerts/rules).",
    ("xid", "name", "category", "severity", "action"),
    "xid",
)
RECOVERY_ACTION = _gpu(
    "recovery_action",
    "gauge",
    "Recovery action the driver asked for in its last Xid 154: 0 none, 1 GPU reset, 2 node "
    "reboot, 3 drain P2P, 4 drain and reset, 5 recover IMEX domain, 6 bus reset, 7 system reboot.",
    "xid",
)
FALLEN_OFF_BUS = _gpu(
    "fallen_off_bus",
    "gauge",
    "1 if NVML reports the GPU lost, or the driver said it fell off the bus (Xid 79 or its "
    "fallen-off-bus text) and NVML has not answered for it again after a reset; else 0.",
    "xid",
)
XID_EVENTS = _self(
    "xid_reports_total",
    "counter",
    "Xid reports received, by source (kmsg or nvml); one Xid usually arrives from both.",
    "source",
)
XID_DUPLICATES = _self(
    "xid_duplicates_total",
    "counter",
    "Xid reports recognised as a second report of an Xid already counted.",
)
KMSG_RECORDS = _self(
    "kmsg_records_total",
    "counter",
    "Kernel log records read, by result: xid (an Xid or fallen-off-bus), other, malformed, "
    "unframed (no kmsg header), unparsed_xid (an NVRM Xid line the parser could not read).",
    "result",
)
KMSG_RECORDS_LOST = _self(
    "kmsg_records_lost_total",
    "counter",
    "Kernel log records overwritten before the exporter read them (sequence gaps after EPIPE).",
)
PCI_GPUS = _self(
    "pci_gpus",
    "gauge",
    "NVIDIA GPUs (vendor 0x10de, display or 3D controller class) the PCI bus shows (udev); "
    "compare with nvidia_gpu_exporter_gpus and nvidia_gpu_up.",
)


# Kubernetes attribution (issue 4): join series, never labels on the GPU series themselves.
POD_INFO = Family(
    "nvidia_gpu_pod_info",
    "gauge",
    "1 for every container holding a GPU or MIG device (kubelet pod-resources); mig_uuid is "
    "empty for a whole GPU. Join on uuid or mig_uuid.",
    POD_LABELS,
    "kubernetes",
)
ALLOCATED = Family(
    "nvidia_gpu_allocated",
    "gauge",
    "1 if at least one container holds this GPU or MIG device, 0 if none does.",
    ("gpu", "uuid", "mig_uuid"),
    "kubernetes",
)
ALLOCATABLE = Family(
    "nvidia_gpu_allocatable",
    "gauge",
    "Device ids the kubelet can allocate for this GPU or MIG device: 1, or the replica count "
    "when time-sliced or shared with MPS; 0 when the kubelet does not offer it (unhealthy).",
    ("gpu", "uuid", "mig_uuid"),
    "kubernetes",
)
NODE_ALLOCATABLE_DEVICES = Family(
    "nvidia_gpu_node_allocatable_devices",
    "gauge",
    "Device ids the kubelet can allocate, by resource name (GetAllocatableResources).",
    ("resource",),
    "kubernetes",
)
NODE_ALLOCATED_DEVICES = Family(
    "nvidia_gpu_node_allocated_devices",
    "gauge",
    "Device ids allocated to containers, by resource name (dra:<driver> for DRA claims).",
    ("resource",),
    "kubernetes",
)
POD_PROCESSES = Family(
    "nvidia_gpu_pod_processes",
    "gauge",
    "GPU processes of the container on this GPU or MIG device (needs --collector.processes).",
    POD_LABELS,
    "kubernetes",
)
POD_MEMORY_USED = Family(
    "nvidia_gpu_pod_memory_used_bytes",
    "gauge",
    "Device memory used by the container's processes on this GPU or MIG device, in bytes "
    "(needs --collector.processes).",
    POD_LABELS,
    "kubernetes",
)
POD_UTILIZATION_BUSY = _activity.POD_UTILIZATION_BUSY
PROCESS_MEMORY_USED = Family(
    "nvidia_gpu_process_memory_used_bytes",
    "gauge",
    "Device memory used by one process, in bytes; the top N processes per GPU only "
    "(--collector.processes.top-n). pid is a host pid.",
    (*POD_LABELS[:3], "pid", "process_name", "namespace", "pod", "container", "pod_uid"),
    "processes",
)
PROCESSES_OMITTED = _self(
    "process_series_omitted",
    "gauge",
    "GPU processes left out of nvidia_gpu_process_memory_used_bytes by the top-N cap.",
)
UNMAPPED_DEVICE_IDS = _self(
    "pod_resources_unmapped_devices",
    "gauge",
    "Device ids the kubelet allocated that match no GPU or MIG device NVML lists.",
)

# Web config (--web.config.file; published by the app only when the flag is set)
WEB_CONFIG_RELOAD_OK = _self(
    "web_config_last_reload_successful",
    "gauge",
    "1 if the last load of --web.config.file succeeded, 0 if it failed (the previous config "
    "stays in force).",
)
WEB_CONFIG_LOADED = _self(
    "web_config_last_reload_success_timestamp_seconds",
    "gauge",
    "Unix time the web config in force was loaded.",
)


def _catalog() -> tuple[Family, ...]:
    found: list[Family] = []
    for value in list(globals().values()):
        if isinstance(value, Family):
            found.append(value)
        elif isinstance(value, _activity.ProfilingFamilies):
            found.extend(value.all())
    return tuple(found)


CATALOG: tuple[Family, ...] = _catalog()
BY_NAME: dict[str, Family] = {family.name: family for family in CATALOG}
