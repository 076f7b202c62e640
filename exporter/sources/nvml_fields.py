"""Which NVML field ids we batch through nvmlDeviceGetFieldValues, and how each becomes a sample.

Pure data, no pynvml: field ids are the NVML_FI_DEV_* numbers from nvml.h (pynvml lacks some, for
example 308), listed with the metric family, the extra label values and the factor that converts
NVML's unit to the Prometheus base unit. The startup probe drops the ids a GPU does not support,
so listing an id here costs nothing on GPUs without it.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter import metrics

ALL_LINKS_SCOPE = 0xFFFFFFFF  # scopeId that asks NVLink throughput fields for the sum of all links
NVLINK_LINK_COUNT = 91  # NVML_FI_DEV_NVLINK_LINK_COUNT, read once at enumeration
ECC_CURRENT = 1  # NVML_FI_DEV_ECC_CURRENT
NVLINK_GET_STATE = 165  # NVML_FI_DEV_NVLINK_GET_STATE, scopeId = link; 1 = active

MILLI = 1e-3
NANO = 1e-9
KIBI = 1024.0


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One batched field: id, scope, the family it feeds, extra label values, unit factor."""

    field_id: int
    family: str
    extra_labels: tuple[str, ...] = ()
    scale: float = 1.0
    scope: int = 0


PER_GPU_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(ECC_CURRENT, metrics.ECC_MODE.name),
    FieldSpec(3, metrics.ECC_CORRECTED.name, ("volatile",)),
    FieldSpec(4, metrics.ECC_UNCORRECTED.name, ("volatile",)),
    FieldSpec(5, metrics.ECC_CORRECTED.name, ("aggregate",)),
    FieldSpec(6, metrics.ECC_UNCORRECTED.name, ("aggregate",)),
    FieldSpec(29, metrics.RETIRED_PAGES.name, ("single_bit",)),
    FieldSpec(30, metrics.RETIRED_PAGES.name, ("double_bit",)),
    FieldSpec(31, metrics.RETIRED_PAGES_PENDING.name),
    FieldSpec(142, metrics.REMAPPED_ROWS.name, ("correctable",)),
    FieldSpec(143, metrics.REMAPPED_ROWS.name, ("uncorrectable",)),
    FieldSpec(144, metrics.REMAPPED_ROWS_PENDING.name),
    FieldSpec(145, metrics.REMAPPED_ROWS_FAILURE.name),
    FieldSpec(83, metrics.ENERGY.name, scale=MILLI),
    FieldSpec(82, metrics.MEMORY_TEMPERATURE.name),
    FieldSpec(187, metrics.POWER_LIMIT.name, ("min",), MILLI),
    FieldSpec(188, metrics.POWER_LIMIT.name, ("max",), MILLI),
    FieldSpec(189, metrics.POWER_LIMIT.name, ("default",), MILLI),
    FieldSpec(190, metrics.POWER_LIMIT.name, ("current",), MILLI),
    FieldSpec(94, metrics.PCIE_REPLAYS.name),
    FieldSpec(197, metrics.PCIE_TX_BYTES.name),
    FieldSpec(198, metrics.PCIE_RX_BYTES.name),
    FieldSpec(74, metrics.CLOCK_EVENT_DURATION.name, ("sw_power_cap",), NANO),
    FieldSpec(75, metrics.CLOCK_EVENT_DURATION.name, ("thermal",), NANO),
    FieldSpec(76, metrics.CLOCK_EVENT_DURATION.name, ("sync_boost",), NANO),
    FieldSpec(77, metrics.CLOCK_EVENT_DURATION.name, ("board_limit",), NANO),
    FieldSpec(78, metrics.CLOCK_EVENT_DURATION.name, ("gpu_idle",), NANO),
    FieldSpec(79, metrics.CLOCK_EVENT_DURATION.name, ("reliability",), NANO),
    FieldSpec(269, metrics.CLOCK_EVENT_DURATION.name, ("sw_thermal_slowdown",), NANO),
    FieldSpec(270, metrics.CLOCK_EVENT_DURATION.name, ("hw_thermal_slowdown",), NANO),
    FieldSpec(271, metrics.CLOCK_EVENT_DURATION.name, ("hw_power_brake_slowdown",), NANO),
)

# Only asked for on GPUs whose link count (field 91) is above zero.
NVLINK_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(38, metrics.NVLINK_ERRORS.name, ("crc_flit",)),
    FieldSpec(45, metrics.NVLINK_ERRORS.name, ("crc_data",)),
    FieldSpec(52, metrics.NVLINK_ERRORS.name, ("replay",)),
    FieldSpec(59, metrics.NVLINK_ERRORS.name, ("recovery",)),
    FieldSpec(160, metrics.NVLINK_ERRORS.name, ("ecc_data",)),
    FieldSpec(138, metrics.NVLINK_TX_BYTES.name, scale=KIBI, scope=ALL_LINKS_SCOPE),
    FieldSpec(139, metrics.NVLINK_RX_BYTES.name, scale=KIBI, scope=ALL_LINKS_SCOPE),
)


def nvlink_state_fields(link_count: int) -> tuple[FieldSpec, ...]:
    """Per-link state in the batch; GPUs without field 165 fall back to nvmlDeviceGetNvLinkState."""
    return tuple(
        FieldSpec(NVLINK_GET_STATE, metrics.NVLINK_UP.name, (str(link),), scope=link)
        for link in range(link_count)
    )


# Clock-event (throttle) reason bits, nvml.h nvmlClocksEventReason*.
CLOCK_EVENT_REASONS: tuple[tuple[int, str], ...] = (
    (0x001, "gpu_idle"),
    (0x002, "applications_clocks_setting"),
    (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal_slowdown"),
    (0x040, "hw_thermal_slowdown"),
    (0x080, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
    (0x200, "board_limit"),
    (0x400, "reliability"),
)

# nvmlClockType_t values and their label.
CLOCK_DOMAINS: tuple[tuple[int, str], ...] = (
    (0, "graphics"),
    (1, "sm"),
    (2, "memory"),
    (3, "video"),
)

# nvmlTemperatureThresholds_t values and their label.
TEMPERATURE_THRESHOLDS: tuple[tuple[int, str], ...] = (
    (0, "shutdown"),
    (1, "slowdown"),
    (2, "memory_max"),
    (3, "gpu_max"),
)

ARCHITECTURES: dict[int, str] = {
    2: "kepler",
    3: "maxwell",
    4: "pascal",
    5: "volta",
    6: "turing",
    7: "ampere",
    8: "ada",
    9: "hopper",
    10: "blackwell",
}
