"""The dcgm-exporter compatibility table: which of its metrics we produce, from what, and which
we cannot (with the reason).

Data only, read by scripts/gen_dcgm_compat.py (which renders the rule file and the docs) and by
tests/alerts/test_dcgm_compat.py. Kept apart from the generator so that adding a mapping is an
edit of this table and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from exporter import metrics
from exporter.metrics_activity import PIPES
from exporter.sources.nvml_fields import CLOCK_EVENT_REASONS

RATE_WINDOW = "1m"  # rate() window of the byte counters dcgm-exporter shows as rates

Mig = Literal["copy", "instance", "none"]

# Helper recording rules (valid names: level:metric:operation).
GPU = "dcgm_gpu:nvidia_gpu_info:relabel"
ENTITY = "dcgm_entity:nvidia_gpu_info:relabel"
POD = "dcgm_entity:nvidia_gpu_pod_info:relabel"
SERIES = "dcgm_series:nvidia_gpu_info:relabel"
XID_LATEST = "dcgm_gpu:nvidia_gpu_xid_last_seen:latest"
XID_CODE = "dcgm_gpu:nvidia_gpu_xid_last_seen:code"
HELPERS = (GPU, ENTITY, POD, SERIES, XID_LATEST, XID_CODE)


@dataclass(frozen=True, slots=True)
class Mapping:
    """One dcgm-exporter metric produced from our series.

    `source` is PromQL whose result, grouped by (node, uuid) plus `extra_labels`, is the
    value per physical GPU in our unit; `convert` turns it into dcgm-exporter's unit (a PromQL
    suffix such as "/ 2^20"). `mig` says what a MIG GPU instance shows, as dcgm-exporter does:
    "copy" the GPU's value (a GPU-wide quantity such as power, repeated on every instance),
    "instance" its own value from `mig_source` (labels node, uuid, gpu_instance), "none" no
    series (dcgm-exporter reports none for MIG instances either).
    """

    name: str
    unit: str
    source: str
    notes: str
    convert: str = ""
    mig: Mig = "copy"
    mig_source: str = ""
    extra_labels: tuple[str, ...] = ()
    default: bool = False  # in dcgm-exporter 4.8.2's etc/default-counters.csv
    doc_source: str = ""  # what the docs show instead of `source` when that is long

    @property
    def key(self) -> tuple[str, ...]:
        return ("node", "uuid", *self.extra_labels)


@dataclass(frozen=True, slots=True)
class NotMapped:
    """A dcgm-exporter metric this file does not produce, and why."""

    name: str
    reason: str
    default: bool = False


def _sel(name: str, **matchers: str) -> str:
    inner = ", ".join(f'{label}="{value}"' for label, value in matchers.items())
    return f"{name}{{{inner}}}" if inner else name


def _rate(name: str) -> str:
    return f"rate({name}[{RATE_WINDOW}])"


def _by_gpu(expr: str) -> str:
    return f"max by (node, uuid) ({expr})"


def _clock_event_bitmask() -> str:
    """NVML's (and DCGM's) clock event reasons bitmask rebuilt from our 0/1 per-reason series:
    the sum of bit x active over the reasons the GPU reports."""
    terms = [
        f"max by (node, uuid, reason) "
        f"({_sel(metrics.CLOCK_EVENT_ACTIVE.name, reason=reason)}) * {bit}"
        for bit, reason in CLOCK_EVENT_REASONS
    ]
    return "sum by (node, uuid) (\n    " + "\n  or\n    ".join(terms) + "\n)"


def _gauge(
    name: str,
    unit: str,
    family: metrics.Family,
    notes: str,
    *,
    matchers: dict[str, str] | None = None,
    convert: str = "",
    mig: Mig = "copy",
    mig_source: str = "",
    default: bool = False,
) -> Mapping:
    """A mapping that reads one family of the catalog (optionally one label value of it)."""
    source = _sel(family.name, **(matchers or {}))
    return Mapping(name, unit, source, notes, convert, mig, mig_source, default=default)


M = metrics
_NS = "* 1e9"
_MIB = "/ 2^20"
_MHZ = "/ 1e6"
_PCT = "* 100"

RATIO = "ratio (0-1)"  # dcgm-exporter's unit of its profiling fields
_GPM = (
    "GPM: Hopper and newer only, absent on A100, T4 and older GPUs (as dcgm-exporter's "
    "profiling fields are without its profiling module)."
)
_GPM_GAUGE = (
    "GPM averages over the interval between two collections (`--collection.interval`); DCGM "
    "samples at its own rate (dcgm-exporter's watch interval, 30 s by default), so the two "
    "differ on bursty loads."
)


def _profiling(
    name: str,
    gpu: metrics.Family,
    mig: metrics.Family,
    notes: str,
    *,
    default: bool = False,
) -> Mapping:
    """A GPM ratio gauge, per GPU and per MIG GPU instance (dcgm-exporter reports its
    profiling fields per GPU instance)."""
    return Mapping(
        name,
        RATIO,
        gpu.name,
        f"{notes} {_GPM} {_GPM_GAUGE}",
        mig="instance",
        mig_source=mig.name,
        default=default,
    )


def _pipe(name: str, pipe: str, what: str) -> Mapping:
    """A math pipe's activity: rate() of the GPM pipe counter (there is no gauge per pipe)."""
    if pipe not in PIPES:
        raise ValueError(f"{name}: pipe {pipe!r} is not one of {PIPES}")
    gpu = _rate(_sel(M.GPM.pipe_active_seconds.name, pipe=pipe))
    mig = _rate(_sel(M.MIG_GPM.pipe_active_seconds.name, pipe=pipe))
    return Mapping(
        name,
        RATIO,
        gpu,
        f"Fraction of time the {what} pipe was active: rate over {RATE_WINDOW} of GPM's "
        f'busy-seconds counter `pipe="{pipe}"` (we keep no gauge per pipe). {_GPM} GPM measures '
        f"every collection interval, so this is the average over {RATE_WINDOW}; DCGM samples "
        "at its own rate (dcgm-exporter's watch interval, 30 s by default).",
        mig="instance",
        mig_source=mig,
    )


MAPPINGS: tuple[Mapping, ...] = (
    # --- dcgm-exporter's default counters (etc/default-counters.csv) -------------------------
    _gauge(
        "DCGM_FI_DEV_SM_CLOCK",
        "MHz",
        M.CLOCK,
        "Same NVML clock (nvmlDeviceGetClockInfo, SM domain).",
        matchers={"clock": "sm"},
        convert=_MHZ,
        default=True,
    ),
    _gauge(
        "DCGM_FI_DEV_MEM_CLOCK",
        "MHz",
        M.CLOCK,
        "Same NVML clock (memory domain).",
        matchers={"clock": "memory"},
        convert=_MHZ,
        default=True,
    ),
    _gauge(
        "DCGM_FI_DEV_MEMORY_TEMP",
        "C",
        M.MEMORY_TEMPERATURE,
        "Absent where the GPU has no memory sensor (dcgm-exporter shows a blank or sentinel).",
        default=True,
    ),
    _gauge("DCGM_FI_DEV_GPU_TEMP", "C", M.TEMPERATURE, "Same NVML sensor.", default=True),
    _gauge(
        "DCGM_FI_DEV_POWER_USAGE",
        "W",
        M.POWER_USAGE,
        "Same NVML reading (nvmlDeviceGetPowerUsage). Repeated on every MIG instance as "
        "dcgm-exporter does: `sum` over a MIG GPU's instances over-counts in both.",
        default=True,
    ),
    _gauge(
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "mJ",
        M.ENERGY,
        "Same NVML counter (energy since the driver loaded).",
        convert="* 1000",
        default=True,
    ),
    _gauge(
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
        "count",
        M.PCIE_REPLAYS,
        "Same NVML counter.",
        default=True,
    ),
    _gauge(
        "DCGM_FI_DEV_GPU_UTIL",
        "%",
        M.UTILIZATION,
        "Same NVML utilization gauge, which is what dcgm-exporter shows: one NVML sample per "
        "collection, so on bursty loads it aliases (reads 0 or 100) in both. The alias-free "
        "average is our busy counter, "
        f"`rate({_sel(M.UTILIZATION_BUSY.name, engine='gpu')}[5m])` (docs/utilization.md). "
        "None on MIG instances, as in dcgm-exporter: there DCGM_FI_PROF_GR_ENGINE_ACTIVE "
        "(Hopper and newer) is the activity of each instance.",
        convert=_PCT,
        mig="none",
        default=True,
    ),
    _gauge(
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        "%",
        M.MEMORY_UTILIZATION,
        "Same NVML memory utilization. None on MIG instances.",
        convert=_PCT,
        mig="none",
        default=True,
    ),
    _gauge(
        "DCGM_FI_DEV_ENC_UTIL",
        "%",
        M.ENCODER_UTILIZATION,
        "None on MIG instances.",
        convert=_PCT,
        mig="none",
        default=True,
    ),
    _gauge(
        "DCGM_FI_DEV_DEC_UTIL",
        "%",
        M.DECODER_UTILIZATION,
        "None on MIG instances.",
        convert=_PCT,
        mig="none",
        default=True,
    ),
    Mapping(
        "DCGM_FI_DEV_XID_ERRORS",
        "Xid code",
        f"{XID_CODE} or on (node, uuid) ({GPU} * 0)",
        "The code of the GPU's most recent Xid (largest "
        "`nvidia_gpu_xid_last_seen_timestamp_seconds`), 0 while it has none; label `err_code` "
        "as dcgm-exporter's. No `err_msg`: our catalog's wording is not dcgm-exporter's table "
        "(join `nvidia_gpu_xid_info` on xid). Kernel-log Xids from before the exporter "
        "started count as seen. Codes up to 9999.",
        extra_labels=("err_code",),
        default=True,
        doc_source="code of the newest `nvidia_gpu_xid_last_seen_timestamp_seconds`, else 0",
    ),
    _gauge(
        "DCGM_FI_DEV_FB_FREE",
        "MiB",
        M.MEMORY_FREE,
        "Per MIG instance from `nvidia_gpu_mig_memory_free_bytes`.",
        convert=_MIB,
        mig="instance",
        mig_source=M.MIG_MEMORY_FREE.name,
        default=True,
    ),
    _gauge(
        "DCGM_FI_DEV_FB_USED",
        "MiB",
        M.MEMORY_USED,
        "Per MIG instance from `nvidia_gpu_mig_memory_used_bytes`.",
        convert=_MIB,
        mig="instance",
        mig_source=M.MIG_MEMORY_USED.name,
        default=True,
    ),
    _gauge(
        "DCGM_FI_DEV_FB_RESERVED",
        "MiB",
        M.MEMORY_RESERVED,
        "Whole GPUs only: we have no reserved memory per MIG instance.",
        convert=_MIB,
        mig="none",
        default=True,
    ),
    Mapping(
        "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
        "MB/s",
        f"{_by_gpu(_rate(M.NVLINK_TX_BYTES.name))} + {_by_gpu(_rate(M.NVLINK_RX_BYTES.name))}",
        f"Approximate: transmitted plus received NVLink data bytes per second over "
        f"{RATE_WINDOW}, in MB/s (10^6 B/s) as dcgm-exporter 4.9.0's notes call this field. "
        "Ours counts payload only (NVML's data throughput fields); DCGM's unit and header "
        "accounting are not documented.",
        convert="/ 1e6",
        default=True,
    ),
    _gauge(
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        "rows",
        M.REMAPPED_ROWS,
        "Same NVML counter (nvmlDeviceGetRemappedRows).",
        matchers={"cause": "uncorrectable"},
        default=True,
    ),
    _gauge(
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
        "rows",
        M.REMAPPED_ROWS,
        "Same NVML counter.",
        matchers={"cause": "correctable"},
        default=True,
    ),
    _gauge(
        "DCGM_FI_DEV_ROW_REMAP_FAILURE",
        "0/1",
        M.REMAPPED_ROWS_FAILURE,
        "Same NVML flag.",
        default=True,
    ),
    Mapping(
        "DCGM_FI_PROF_PCIE_TX_BYTES",
        "B/s",
        f"{_by_gpu(_rate(M.PCIE_TX_BYTES.name))} or "
        f"{_by_gpu(_sel(M.PCIE_THROUGHPUT.name, direction='transmit'))}",
        f"Approximate: rate over {RATE_WINDOW} of NVML's PCIe byte counter, or NVML's 20 ms "
        "throughput sample on GPUs without the counter. DCGM's profiling counter includes "
        "packet headers; NVML does not say whether its counter does. None on MIG instances: "
        "DCGM answers N/A for them, PCIe traffic having no per-instance meaning to it "
        "(NVIDIA/DCGM#88), so GPM's `nvidia_gpu_mig_profiling_pcie_bytes_total` is not "
        "passed off as this field.",
        mig="none",
        default=True,
    ),
    Mapping(
        "DCGM_FI_PROF_PCIE_RX_BYTES",
        "B/s",
        f"{_by_gpu(_rate(M.PCIE_RX_BYTES.name))} or "
        f"{_by_gpu(_sel(M.PCIE_THROUGHPUT.name, direction='receive'))}",
        "As DCGM_FI_PROF_PCIE_TX_BYTES, received bytes; none on MIG instances either.",
        mig="none",
        default=True,
    ),
    _profiling(
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
        M.GPM.graphics_active,
        M.MIG_GPM.graphics_active,
        "Fraction of time a graphics or compute context was active (GPM's graphics activity). "
        "Unlike DCGM_FI_DEV_GPU_UTIL it exists per MIG instance.",
        default=True,
    ),
    _profiling(
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
        M.GPM.tensor_active,
        M.MIG_GPM.tensor_active,
        "GPM's any-tensor activity (HMMA, IMMA, DMMA and DFMA); dcgm-exporter's help text "
        'names HMMA: `nvidia_gpu_profiling_pipe_active_seconds_total{pipe="tensor_hmma"}` is '
        "HMMA alone.",
        default=True,
    ),
    _profiling(
        "DCGM_FI_PROF_DRAM_ACTIVE",
        M.GPM.dram_active,
        M.MIG_GPM.dram_active,
        "Device memory bandwidth used as a fraction of peak (GPM); DCGM words it as the "
        "fraction of cycles the memory interface is active.",
        default=True,
    ),
    # --- shipped in dcgm-exporter's CSV but commented out (opt-in) ------------------------------
    _profiling(
        "DCGM_FI_PROF_SM_ACTIVE",
        M.GPM.sm_active,
        M.MIG_GPM.sm_active,
        "Fraction of time an SM had a warp resident, averaged over all SMs (GPM).",
    ),
    _profiling(
        "DCGM_FI_PROF_SM_OCCUPANCY",
        M.GPM.sm_occupancy,
        M.MIG_GPM.sm_occupancy,
        "Resident warps as a fraction of the SMs' maximum (GPM; a gauge only, no counter).",
    ),
    _pipe("DCGM_FI_PROF_PIPE_FP64_ACTIVE", "fp64", "FP64 (non-tensor)"),
    _pipe("DCGM_FI_PROF_PIPE_FP32_ACTIVE", "fp32", "FP32 (non-tensor)"),
    _pipe("DCGM_FI_PROF_PIPE_FP16_ACTIVE", "fp16", "FP16 (non-tensor)"),
    _gauge(
        "DCGM_FI_DEV_POWER_VIOLATION",
        "ns",
        M.CLOCK_EVENT_DURATION,
        "Same NVML counter (field 74, power policy); dcgm-exporter #589 fixed the unit to ns.",
        matchers={"reason": "sw_power_cap"},
        convert=_NS,
    ),
    _gauge(
        "DCGM_FI_DEV_THERMAL_VIOLATION",
        "ns",
        M.CLOCK_EVENT_DURATION,
        "Same NVML counter (field 75, thermal policy).",
        matchers={"reason": "thermal"},
        convert=_NS,
    ),
    _gauge(
        "DCGM_FI_DEV_SYNC_BOOST_VIOLATION",
        "ns",
        M.CLOCK_EVENT_DURATION,
        "Same NVML counter (field 76).",
        matchers={"reason": "sync_boost"},
        convert=_NS,
    ),
    _gauge(
        "DCGM_FI_DEV_BOARD_LIMIT_VIOLATION",
        "ns",
        M.CLOCK_EVENT_DURATION,
        "Same NVML counter (field 77).",
        matchers={"reason": "board_limit"},
        convert=_NS,
    ),
    _gauge(
        "DCGM_FI_DEV_LOW_UTIL_VIOLATION",
        "ns",
        M.CLOCK_EVENT_DURATION,
        "Same NVML counter (field 78, low utilization policy).",
        matchers={"reason": "gpu_idle"},
        convert=_NS,
    ),
    _gauge(
        "DCGM_FI_DEV_RELIABILITY_VIOLATION",
        "ns",
        M.CLOCK_EVENT_DURATION,
        "Same NVML counter (field 79).",
        matchers={"reason": "reliability"},
        convert=_NS,
    ),
    _gauge(
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        "errors",
        M.ECC_CORRECTED,
        "Same NVML counter (single-bit = corrected).",
        matchers={"scope": "volatile"},
    ),
    _gauge(
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "errors",
        M.ECC_UNCORRECTED,
        "Same NVML counter (double-bit = uncorrected).",
        matchers={"scope": "volatile"},
    ),
    _gauge(
        "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
        "errors",
        M.ECC_CORRECTED,
        "Same NVML counter.",
        matchers={"scope": "aggregate"},
    ),
    _gauge(
        "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
        "errors",
        M.ECC_UNCORRECTED,
        "Same NVML counter.",
        matchers={"scope": "aggregate"},
    ),
    _gauge(
        "DCGM_FI_DEV_RETIRED_SBE",
        "pages",
        M.RETIRED_PAGES,
        "Same NVML count (pre-Ampere GPUs).",
        matchers={"cause": "single_bit"},
    ),
    _gauge(
        "DCGM_FI_DEV_RETIRED_DBE",
        "pages",
        M.RETIRED_PAGES,
        "Same NVML count.",
        matchers={"cause": "double_bit"},
    ),
    _gauge(
        "DCGM_FI_DEV_RETIRED_PENDING",
        "0/1",
        M.RETIRED_PAGES_PENDING,
        "NVML's pending flag: 1 while a retirement waits for a reset.",
    ),
    _gauge(
        "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
        "errors",
        M.NVLINK_ERRORS,
        "Summed over links, as DCGM's _TOTAL.",
        matchers={"error": "crc_flit"},
    ),
    _gauge(
        "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL",
        "errors",
        M.NVLINK_ERRORS,
        "Summed over links.",
        matchers={"error": "crc_data"},
    ),
    _gauge(
        "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
        "errors",
        M.NVLINK_ERRORS,
        "Summed over links.",
        matchers={"error": "replay"},
    ),
    _gauge(
        "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
        "errors",
        M.NVLINK_ERRORS,
        "Summed over links.",
        matchers={"error": "recovery"},
    ),
    _gauge(
        "DCGM_FI_DEV_POWER_MGMT_LIMIT",
        "W",
        M.POWER_LIMIT,
        "The current power management limit.",
        matchers={"limit": "current"},
    ),
    # --- other DCGM fields teams add to their CSV ------------------------------------------------
    _gauge(
        "DCGM_FI_DEV_POWER_MGMT_LIMIT_MIN",
        "W",
        M.POWER_LIMIT,
        "Lowest settable limit.",
        matchers={"limit": "min"},
    ),
    _gauge(
        "DCGM_FI_DEV_POWER_MGMT_LIMIT_MAX",
        "W",
        M.POWER_LIMIT,
        "Highest settable limit.",
        matchers={"limit": "max"},
    ),
    _gauge(
        "DCGM_FI_DEV_POWER_MGMT_LIMIT_DEF",
        "W",
        M.POWER_LIMIT,
        "Default limit.",
        matchers={"limit": "default"},
    ),
    _gauge(
        "DCGM_FI_DEV_ENFORCED_POWER_LIMIT",
        "W",
        M.POWER_LIMIT,
        "The limit the driver enforces after every limiter.",
        matchers={"limit": "enforced"},
    ),
    _gauge(
        "DCGM_FI_DEV_VIDEO_CLOCK",
        "MHz",
        M.CLOCK,
        "Video encoder/decoder clock.",
        matchers={"clock": "video"},
        convert=_MHZ,
    ),
    _gauge(
        "DCGM_FI_DEV_MAX_SM_CLOCK",
        "MHz",
        M.MAX_CLOCK,
        "Maximum SM clock.",
        matchers={"clock": "sm"},
        convert=_MHZ,
    ),
    _gauge(
        "DCGM_FI_DEV_MAX_MEM_CLOCK",
        "MHz",
        M.MAX_CLOCK,
        "Maximum memory clock.",
        matchers={"clock": "memory"},
        convert=_MHZ,
    ),
    _gauge(
        "DCGM_FI_DEV_MAX_VIDEO_CLOCK",
        "MHz",
        M.MAX_CLOCK,
        "Maximum video clock.",
        matchers={"clock": "video"},
        convert=_MHZ,
    ),
    _gauge(
        "DCGM_FI_DEV_SLOWDOWN_TEMP",
        "C",
        M.TEMPERATURE_THRESHOLD,
        "NVML's slowdown threshold.",
        matchers={"threshold": "slowdown"},
    ),
    _gauge(
        "DCGM_FI_DEV_SHUTDOWN_TEMP",
        "C",
        M.TEMPERATURE_THRESHOLD,
        "NVML's shutdown threshold.",
        matchers={"threshold": "shutdown"},
    ),
    _gauge(
        "DCGM_FI_DEV_GPU_MAX_OP_TEMP",
        "C",
        M.TEMPERATURE_THRESHOLD,
        "NVML's maximum GPU operating temperature.",
        matchers={"threshold": "gpu_max"},
    ),
    _gauge(
        "DCGM_FI_DEV_MEM_MAX_OP_TEMP",
        "C",
        M.TEMPERATURE_THRESHOLD,
        "NVML's maximum memory operating temperature.",
        matchers={"threshold": "memory_max"},
    ),
    _gauge(
        "DCGM_FI_DEV_FB_TOTAL",
        "MiB",
        M.MEMORY_TOTAL,
        "Per MIG instance from `nvidia_gpu_mig_memory_total_bytes`.",
        convert=_MIB,
        mig="instance",
        mig_source=M.MIG_MEMORY_TOTAL.name,
    ),
    _gauge(
        "DCGM_FI_DEV_BAR1_TOTAL",
        "MiB",
        M.BAR1_TOTAL,
        "BAR1 aperture size.",
        convert=_MIB,
    ),
    _gauge("DCGM_FI_DEV_BAR1_USED", "MiB", M.BAR1_USED, "BAR1 in use.", convert=_MIB),
    Mapping(
        "DCGM_FI_DEV_BAR1_FREE",
        "MiB",
        f"{_by_gpu(M.BAR1_TOTAL.name)} - {_by_gpu(M.BAR1_USED.name)}",
        "Total minus used.",
        convert=_MIB,
    ),
    _gauge(
        "DCGM_FI_DEV_PSTATE",
        "P-state",
        M.PERFORMANCE_STATE,
        "0 (P0, maximum) to 15.",
    ),
    _gauge(
        "DCGM_FI_DEV_FAN_SPEED",
        "%",
        M.FAN_SPEED,
        "Absent on passively cooled boards.",
        convert=_PCT,
    ),
    _gauge(
        "DCGM_FI_DEV_PCIE_LINK_GEN",
        "generation",
        M.PCIE_LINK_GENERATION,
        "Current PCIe link generation.",
    ),
    _gauge(
        "DCGM_FI_DEV_PCIE_LINK_WIDTH",
        "lanes",
        M.PCIE_LINK_WIDTH,
        "Current PCIe link width.",
    ),
    _gauge(
        "DCGM_FI_DEV_PCIE_MAX_LINK_GEN",
        "generation",
        M.PCIE_LINK_MAX_GENERATION,
        "Maximum PCIe link generation.",
    ),
    _gauge(
        "DCGM_FI_DEV_PCIE_MAX_LINK_WIDTH",
        "lanes",
        M.PCIE_LINK_MAX_WIDTH,
        "Maximum PCIe link width.",
    ),
    _gauge("DCGM_FI_DEV_ECC_CURRENT", "0/1", M.ECC_MODE, "Current ECC mode."),
    _gauge(
        "DCGM_FI_DEV_ROW_REMAP_PENDING",
        "0/1",
        M.REMAPPED_ROWS_PENDING,
        "Row remap waiting for a GPU reset (not in dcgm-exporter's CSV).",
    ),
    Mapping(
        "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
        "bitmask",
        _clock_event_bitmask(),
        "NVML's clock event (throttle) reasons bitmask, rebuilt from "
        "`nvidia_gpu_clock_event_reason_active` (bit x flag, summed); reasons a GPU does not "
        "support count as 0.",
        doc_source="sum of bit x `nvidia_gpu_clock_event_reason_active{reason}`",
    ),
    Mapping(
        "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
        "bitmask",
        _clock_event_bitmask(),
        "The same bitmask under its name before DCGM 3.3.",
        doc_source="as DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
    ),
    _gauge(
        "DCGM_FI_DEV_CLOCKS_EVENT_REASON_SW_POWER_CAP_NS",
        "ns",
        M.CLOCK_EVENT_DURATION,
        "DCGM 4 name of the power violation counter (same NVML field 74).",
        matchers={"reason": "sw_power_cap"},
        convert=_NS,
    ),
    _gauge(
        "DCGM_FI_DEV_CLOCKS_EVENT_REASON_SYNC_BOOST_NS",
        "ns",
        M.CLOCK_EVENT_DURATION,
        "DCGM 4 name of the sync boost counter (NVML field 76).",
        matchers={"reason": "sync_boost"},
        convert=_NS,
    ),
    _gauge(
        "DCGM_FI_DEV_CLOCKS_EVENT_REASON_SW_THERM_SLOWDOWN_NS",
        "ns",
        M.CLOCK_EVENT_DURATION,
        "NVML field 269.",
        matchers={"reason": "sw_thermal_slowdown"},
        convert=_NS,
    ),
    _gauge(
        "DCGM_FI_DEV_CLOCKS_EVENT_REASON_HW_THERM_SLOWDOWN_NS",
        "ns",
        M.CLOCK_EVENT_DURATION,
        "NVML field 270.",
        matchers={"reason": "hw_thermal_slowdown"},
        convert=_NS,
    ),
    _gauge(
        "DCGM_FI_DEV_CLOCKS_EVENT_REASON_HW_POWER_BRAKE_SLOWDOWN_NS",
        "ns",
        M.CLOCK_EVENT_DURATION,
        "NVML field 271.",
        matchers={"reason": "hw_power_brake_slowdown"},
        convert=_NS,
    ),
    Mapping(
        "DCGM_FI_PROF_NVLINK_TX_BYTES",
        "B/s",
        _by_gpu(_rate(M.NVLINK_TX_BYTES.name)),
        f"Approximate: rate over {RATE_WINDOW} of NVML's NVLink data counter. DCGM's profiling "
        "counter includes protocol headers, ours is payload only: it reads lower.",
    ),
    Mapping(
        "DCGM_FI_PROF_NVLINK_RX_BYTES",
        "B/s",
        _by_gpu(_rate(M.NVLINK_RX_BYTES.name)),
        "As DCGM_FI_PROF_NVLINK_TX_BYTES, received bytes.",
    ),
)

# The label-type row of the default CSV: a label on every series, not a metric.
DRIVER_VERSION_LABEL = "DCGM_FI_DRIVER_VERSION"

NOT_MAPPED: tuple[NotMapped, ...] = (
    NotMapped(
        "DCGM_FI_DEV_VGPU_LICENSE_STATUS",
        "vGPU licensing state: we read no vGPU APIs (bare-metal and passthrough GPUs have no "
        "licence to report).",
        default=True,
    ),
    NotMapped(
        "DCGM_FI_DEV_NVLINK_BANDWIDTH_L0",
        "per-link: our NVLink byte counters are summed over all links.",
    ),
    NotMapped(
        "DCGM_FI_NVML_VERSION",
        "label-type row; our catalog has the CUDA driver version, not the NVML version.",
    ),
    NotMapped(
        "DCGM_FI_DEV_BRAND",
        "label-type row, off in dcgm-exporter's defaults: it is the `brand` label of "
        "`nvidia_gpu_info` (join on UUID) rather than a label on every series.",
    ),
    NotMapped(
        "DCGM_FI_DEV_SERIAL",
        "label-type row, off by default: the `serial` label of `nvidia_gpu_info`.",
    ),
    NotMapped(
        "DCGM_FI_DEV_VBIOS_VERSION",
        "label-type row, off by default: the `vbios_version` label of `nvidia_gpu_info`.",
    ),
    NotMapped("DCGM_FI_DEV_OEM_INFOROM_VER", "we do not read InfoROM versions."),
    NotMapped("DCGM_FI_DEV_ECC_INFOROM_VER", "we do not read InfoROM versions."),
    NotMapped("DCGM_FI_DEV_POWER_INFOROM_VER", "we do not read InfoROM versions."),
    NotMapped("DCGM_FI_DEV_INFOROM_IMAGE_VER", "we do not read InfoROM versions."),
    NotMapped(
        "DCGM_EXP_XID_ERRORS_COUNT",
        "exporter-computed: the Xid samples in DCGM's cache over a sliding 5-minute window, "
        "bounded by that cache's retention; not imitated here. Use "
        "`gpu_xid:nvidia_gpu_xid_errors:increase10m` (alerts/rules/recording.yaml): Xids per "
        "GPU and code in 10 minutes, a code's first Xid included.",
    ),
    NotMapped(
        "DCGM_EXP_CLOCK_EVENTS_COUNT",
        "a count of DCGM samples per clock-event bit in a sliding window, which depends on "
        "DCGM's sampling; use `nvidia_gpu_clock_event_duration_seconds_total` (time, not "
        "samples) or DCGM_FI_DEV_CLOCKS_EVENT_REASONS above.",
    ),
    NotMapped(
        "DCGM_EXP_GPU_HEALTH_STATUS",
        "DCGM's health watches (PASS/WARN/FAIL per subsystem) have no NVML counterpart; see "
        "`nvidia_gpu_up`, `nvidia_gpu_fallen_off_bus`, `nvidia_gpu_recovery_action` and the "
        "Xid alerts.",
    ),
    NotMapped(
        "DCGM_EXP_P2P_STATUS",
        "we do not read the NVLink peer-to-peer status matrix.",
    ),
)


# -- rendering -------------------------------------------------------------------------------
