"""Is it really working? Utilization next to power, clocks, memory traffic and interconnect.

NVML's utilization is the share of time *any* kernel ran, however small: a GPU at 100 % can
be running one thread block. Power is the honest second opinion: a GPU that is really
computing draws a large share of its power limit. The rule of thumb: an A100 (400 W limit)
drawing 80 W under "heavy" load is waiting on something upstream (data loading, the CPU, the
network or storage), not computing. This dashboard puts the two side by side per GPU and adds
what explains the gap: SM clocks against their maximum, throttle reasons, memory-controller
load and PCIe/NVLink traffic. On Hopper and newer, GPM profiling measures the work itself (SM,
tensor-core and DRAM activity), and the profiling row names the GPUs that are busy but starved.

Utilization is the true average from the busy-time counters (every NVML sample counted once,
docs/utilization.md), with the old one-sample gauge as the fallback for exporters without them.

Power share uses the *enforced* limit (nvidia_gpu_power_limit_watts{limit="enforced"}): the
limit the driver applies after every limiter (the software limit an admin set, out-of-band
limits), not the board's default or maximum.
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

SEL = c.GPU_SEL
BUSY = 0.5  # utilization from which a GPU counts as busy
LOW_POWER = 0.4  # power share below which a busy GPU is suspect
UTIL = c.utilization(SEL)
MEMORY_UTIL = c.utilization(SEL, "memory")
POWER = c.per_gpu("nvidia_gpu_power_usage_watts", SEL)
LIMIT = c.per_gpu("nvidia_gpu_power_limit_watts", SEL, 'limit="enforced"')
POWER_SHARE = f"{POWER}\n/ on ({c.GPU_KEY})\n{LIMIT}"
SM_CLOCK = c.per_gpu("nvidia_gpu_clock_hertz", SEL, 'clock="sm"')
SM_MAX_CLOCK = c.per_gpu("nvidia_gpu_max_clock_hertz", SEL, 'clock="sm"')
SM_SHARE = f"{SM_CLOCK}\n/ on ({c.GPU_KEY})\n{SM_MAX_CLOCK}"
THROTTLE_REASONS = (
    "sw_power_cap|hw_slowdown|sw_thermal_slowdown|hw_thermal_slowdown|hw_power_brake_slowdown"
)
BUSY_BUT_COLD = f"({POWER_SHARE}) < {LOW_POWER}\nand on ({c.GPU_KEY})\n({UTIL}) >= {BUSY}"
MIG_NOTE = (
    "MIG-enabled GPUs report no utilization, so they appear in the power panels only (the "
    "MIG and pods dashboard shows their GPU instances' GPM activity)."
)
SM_ACTIVE = c.profiling("sm_active", SEL)
STARVED = c.starved(SEL)

HOW_TO_READ = f"""\
**Utilization is not work.** NVML's utilization is the share of time *any* kernel ran, however \
small. Read it next to **power as a share of the enforced limit**: a GPU that really computes \
draws most of its limit. Rule of thumb: an A100 (400 W) drawing 80 W under "heavy" load is \
*waiting on something upstream*: data loading, the CPU, the network or storage.

- **Busy and hot** (utilization and power share both high): working. Check *SM clock vs max* \
and *throttle reasons*; a capped clock means it could do more.
- **Busy but cold** (utilization ≥ {BUSY:.0%}, power < {LOW_POWER:.0%} of the limit): tiny \
kernels, synchronisation or a starved input pipeline. Look at PCIe/NVLink traffic and the \
host's CPU and I/O.
- **Memory utilization high, power moderate**: memory-bound kernels; more SMs will not help.
- **Busy but starved** (Hopper and newer: utilization above {c.STARVED_UTILIZATION:.0%}, SM \
active under {c.STARVED_SM_ACTIVE:.0%}): a kernel is always resident but few SMs work. The \
profiling row measures the work directly (GPM); on older GPUs power remains the proxy.

Utilization here is the true average from the busy-time counters, not one NVML sample: a \
bursty GPU reads its real duty cycle. {MIG_NOTE}"""


def _now() -> Section:
    return Section(
        "Now",
        [
            text_panel("How to read this dashboard", HOW_TO_READ, width=24, height=9),
            stat_panel(
                "Busy GPUs",
                f"Selected GPUs whose utilization is at least {BUSY:.0%} now (a kernel ran "
                "most of the last rate interval, from the busy-time counter). MIG-enabled GPUs "
                "report none and are not counted.",
                "short",
                Query(f"count(({UTIL}) >= {BUSY}) or vector(0)"),
                options=Options(width=4, height=4, steps=[Step(None, "blue")]),
            ),
            stat_panel(
                "Busy but drawing little power",
                f"Busy GPUs (utilization ≥ {BUSY:.0%}) drawing under {LOW_POWER:.0%} of their "
                "enforced power limit: busy on paper, waiting in practice (data loading, CPU, "
                "network). 0 is the healthy value; the table below names them.",
                "short",
                Query(f"count({BUSY_BUT_COLD}) or vector(0)"),
                options=Options(width=4, height=4, steps=[Step(None, "green"), Step(1, "orange")]),
            ),
            stat_panel(
                "Average utilization",
                "Mean utilization of the selected whole GPUs over the last rate interval (the "
                "busy-time counter, alias-free): the share of time a kernel ran, not how much "
                "of the GPU it used.",
                "percentunit",
                Query(f"avg({UTIL})"),
                options=Options(width=4, height=4, min=0, max=1, steps=[Step(None, "blue")]),
            ),
            stat_panel(
                "Average power share",
                "Mean power draw of the selected GPUs as a share of each one's enforced power "
                "limit (MIG-enabled GPUs included: power is per physical GPU). Well below the "
                "average utilization means the GPUs are busy but not working hard.",
                "percentunit",
                Query(f"avg({POWER_SHARE})"),
                options=Options(width=4, height=4, min=0, max=1, steps=[Step(None, "blue")]),
            ),
            stat_panel(
                "Average SM clock share",
                "Mean SM clock of the selected GPUs as a share of its maximum. Low while busy: "
                "a power or thermal cap (see throttle reasons) or an application clock "
                "setting holds the GPU back.",
                "percentunit",
                Query(f"avg({SM_SHARE})"),
                options=Options(width=4, height=4, min=0, max=1, steps=[Step(None, "blue")]),
            ),
            stat_panel(
                "GPUs throttled now",
                "Selected GPUs with at least one power, thermal or hardware slowdown reason "
                "holding their clocks down now (idle and clock-setting reasons excluded). 0 is "
                "the healthy value.",
                "short",
                Query(
                    f"count(max by ({c.GPU_KEY}) (nvidia_gpu_clock_event_reason_active"
                    f'{{{SEL}, reason=~"{THROTTLE_REASONS}"}}) == 1) or vector(0)'
                ),
                options=Options(width=4, height=4, steps=[Step(None, "green"), Step(1, "orange")]),
            ),
        ],
    )


def _power() -> Section:
    to_gpu = [c.to_gpu()]
    return Section(
        "Power next to utilization",
        [
            timeseries_panel(
                "Utilization",
                "Utilization per GPU: the share of time in which any kernel ran, the true "
                "average from the busy-time counter (every NVML sample counted; the one-sample "
                "gauge where an older exporter has no counter). Compare line for line with the "
                f"power share beside it. {MIG_NOTE}",
                "percentunit",
                Query(UTIL, c.LEGEND_GPU),
                options=Options(width=12, height=8, min=0, max=1, links=to_gpu),
            ),
            timeseries_panel(
                "Power as a share of the enforced limit",
                "Power draw per GPU divided by the power limit the driver enforces after every "
                'limiter (nvidia_gpu_power_limit_watts{limit="enforced"}, not the board\'s '
                "default or maximum). A GPU that computes "
                "hard sits near 1 (and may be capped there: see throttle reasons); one that is "
                "busy but far below is waiting on its inputs.",
                "percentunit",
                Query(POWER_SHARE, c.LEGEND_GPU),
                options=Options(width=12, height=8, min=0, max=1, links=to_gpu),
            ),
            table_panel(
                "Utilization, power and clocks per GPU",
                "One row per GPU, a scatter plot in table form: utilization against power "
                "share, with the watts, the enforced limit, the SM clock share and memory "
                "utilization that explain the gap. High utilization with a low power share is "
                "the row to look at. Click a row for the GPU detail dashboard.",
                "percentunit",
                Query(c.with_model(UTIL)),
                Query(POWER_SHARE),
                Query(POWER),
                Query(LIMIT),
                Query(SM_SHARE),
                Query(MEMORY_UTIL),
                options=Options(width=14, height=9, links=[c.to_gpu_from_table()]),
                columns={
                    **c.headers("node", "gpu", "uuid", "model"),
                    "Value #A": "Utilization",
                    "Value #B": "Power share",
                    "Value #C": "Power",
                    "Value #D": "Enforced limit",
                    "Value #E": "SM clock share",
                    "Value #F": "Memory utilization",
                },
                column_units={"Power": "watt", "Enforced limit": "watt"},
            ),
            bar_panel(
                "Utilization minus power share",
                "Per GPU, utilization minus power share, largest first in your eyes: near 0 "
                "or negative, the GPU works as hard as it looks; a large positive gap (e.g. "
                "0.9 busy, 0.2 power) is a GPU waiting on data loading, the CPU or the network. "
                + MIG_NOTE,
                "percentunit",
                Query(f"({UTIL})\n- on ({c.GPU_KEY})\n({POWER_SHARE})", c.LEGEND_GPU),
                options=Options(
                    width=10,
                    height=9,
                    min=-1,
                    max=1,
                    steps=[Step(None, "green"), Step(0.3, "orange"), Step(0.5, "red")],
                ),
            ),
            bar_panel(
                "Busy but drawing little power",
                f"GPUs with utilization ≥ {BUSY:.0%} and power under {LOW_POWER:.0%} of the "
                "enforced limit, by power share: the seed's rule of thumb (an A100 at 80 W "
                "under 'heavy' load is waiting on something upstream). Empty on a healthy "
                "node: every busy GPU draws a fair share of its power limit.",
                "percentunit",
                Query(BUSY_BUT_COLD, c.LEGEND_GPU),
                options=Options(width=24, height=6, min=0, max=1),
            ),
        ],
    )


def _profiling() -> Section:
    gpm = c.NEEDS_GPM
    tensor = c.profiling("tensor_active", SEL)
    dram = c.profiling("dram_active", SEL)
    measured = f"0 * {SM_ACTIVE}"
    starved_flag = f"(({STARVED}) * 0 + 1)\nor on ({c.GPU_KEY})\n{measured}"
    return Section(
        "Profiling: is the work on the SMs? (Hopper and newer)",
        [
            stat_panel(
                "Busy but starved",
                f"Selected GPUs with utilization above {c.STARVED_UTILIZATION:.0%} while under "
                f"{c.STARVED_SM_ACTIVE:.0%} of their SMs are active (GPM): a kernel is always "
                "resident but the SMs wait, typically on tiny kernels, launch overhead or the "
                "input pipeline (data loading, CPU, network). 0 is the healthy value. Only GPUs "
                "with GPM (Hopper and newer, not in MIG mode) can count; the table names them.",
                "short",
                Query(f"count({STARVED}) or vector(0)"),
                options=Options(width=4, height=8, steps=[Step(None, "green"), Step(1, "orange")]),
            ),
            timeseries_panel(
                "SM active",
                "Share of the SMs that had work, averaged over time (rate of "
                "nvidia_gpu_profiling_sm_active_seconds_total). Far below the utilization above: "
                f"the GPU is busy on paper but its SMs mostly idle. {gpm}",
                "percentunit",
                Query(SM_ACTIVE, c.LEGEND_GPU),
                options=Options(width=8, height=8, min=0, max=1, links=[c.to_gpu()]),
            ),
            table_panel(
                "Profiling per GPU",
                "One row per GPU with GPM, now: utilization next to what the SMs did: SM "
                "active, SM occupancy (resident warps over the maximum), tensor-core and DRAM "
                "activity, and whether the GPU is busy but starved (utilization above "
                f"{c.STARVED_UTILIZATION:.0%}, SM active under {c.STARVED_SM_ACTIVE:.0%}). "
                f"Click a row for the GPU detail dashboard. {gpm}",
                "percentunit",
                Query(f"{UTIL}\nand on ({c.GPU_KEY})\n{SM_ACTIVE}"),
                Query(SM_ACTIVE),
                Query(c.sm_occupancy(SEL)),
                Query(tensor),
                Query(dram),
                Query(starved_flag),
                options=Options(width=12, height=8, links=[c.to_gpu_from_table()]),
                columns={
                    **c.headers("node", "gpu", "uuid"),
                    "Value #A": "Utilization",
                    "Value #B": "SM active",
                    "Value #C": "SM occupancy",
                    "Value #D": "Tensor active",
                    "Value #E": "DRAM active",
                    "Value #F": "Starved",
                },
                column_units={"Starved": "none"},
                column_mappings={"Starved": {"0": ("no", "green"), "1": ("starved", "orange")}},
            ),
        ],
    )


def _clocks() -> Section:
    return Section(
        "Clocks and throttling",
        [
            timeseries_panel(
                "SM clock as a share of its maximum",
                "Current SM clock divided by the GPU's maximum SM clock. Busy and well below 1: "
                "a power cap, a thermal slowdown or an application clock setting holds it back "
                "(see the reasons beside it). Idle GPUs clock down by design.",
                "percentunit",
                Query(SM_SHARE, c.LEGEND_GPU),
                options=Options(width=8, height=8, min=0, max=1),
            ),
            timeseries_panel(
                "Share of time clocks were held down, by reason",
                "For each GPU and reason, the share of time its clocks were held down (rate of "
                "nvidia_gpu_clock_event_duration_seconds_total), idle excluded. sw_power_cap "
                "near the power limit is normal under full load; thermal or hardware slowdown "
                "is not. Empty on a healthy node: no clock was held down in the window.",
                "percentunit",
                Query(
                    f"max by ({c.GPU_KEY}, reason) (rate(nvidia_gpu_clock_event_duration_seconds_"
                    f'total{{{SEL}, reason!="gpu_idle"}}[$__rate_interval])) > 0',
                    "{{node}} GPU {{gpu}} {{reason}}",
                ),
                options=Options(width=8, height=8, min=0, max=1),
            ),
            bar_panel(
                "Throttle reasons active now",
                "How many selected GPUs each clock event reason holds down right now "
                "(nvidia_gpu_clock_event_reason_active), 0 included so that the list of "
                "reasons is always visible. gpu_idle is normal on idle GPUs; power, thermal "
                "and hardware slowdowns under load cost throughput.",
                "short",
                Query(
                    f"sum by (reason) (max by ({c.GPU_KEY}, reason) "
                    f"(nvidia_gpu_clock_event_reason_active{{{SEL}}}))",
                    "{{reason}}",
                ),
                options=Options(width=8, height=8, min=0),
            ),
        ],
    )


def _traffic() -> Section:
    def pcie(direction: str) -> str:
        counter = c.rate(f"nvidia_gpu_pcie_{direction}_bytes_total", SEL)
        sampled = c.per_gpu(
            "nvidia_gpu_pcie_throughput_bytes_per_second", SEL, f'direction="{direction}"'
        )
        return f"{counter}\nor\n{sampled}"

    return Section(
        "Memory and interconnect",
        [
            timeseries_panel(
                "Memory utilization",
                "Share of time device memory was read or written (the busy-time counter of the "
                "memory engine, or its one-sample gauge on older exporters). High "
                "with moderate power: memory-bound kernels. Low together with low power while "
                "utilization is high: the GPU is waiting, not computing.",
                "percentunit",
                Query(MEMORY_UTIL, c.LEGEND_GPU),
                options=Options(width=8, height=8, min=0, max=1),
            ),
            timeseries_panel(
                "PCIe throughput",
                "Bytes per second each GPU moves over PCIe (host transfers: input batches, "
                "checkpoints), from the byte counters, or NVML's 20 ms sample where the "
                "counters are unsupported. A busy-but-cold GPU with a flat line here is "
                "starved upstream of PCIe (CPU, storage, network).",
                "Bps",
                Query(pcie("transmit"), c.LEGEND_GPU + " transmit"),
                Query(pcie("receive"), c.LEGEND_GPU + " receive"),
                options=Options(width=8, height=8, min=0),
            ),
            timeseries_panel(
                "NVLink throughput",
                "Data bytes per second each GPU sends and receives over all its NVLink links "
                "(GPU-to-GPU traffic: all-reduce in data-parallel training). GPUs without "
                "NVLink (PCIe cards such as the T4) have no line.",
                "Bps",
                Query(
                    c.rate("nvidia_gpu_nvlink_transmit_bytes_total", SEL),
                    c.LEGEND_GPU + " transmit",
                ),
                Query(
                    c.rate("nvidia_gpu_nvlink_receive_bytes_total", SEL),
                    c.LEGEND_GPU + " receive",
                ),
                options=Options(width=8, height=8, min=0),
            ),
        ],
    )


def spec() -> DashboardSpec:
    return DashboardSpec(
        uid=c.WORKING,
        title=c.TITLE_PREFIX + "Is it really working?",
        description=(
            "Utilization next to power as a share of the limit, GPM profiling (SM and "
            "tensor-core activity), clocks, throttling, memory and interconnect traffic: is a "
            "busy GPU computing or waiting?"
        ),
        variables=[c.CLUSTER, c.NODE_VAR, c.GPU_VAR],
        sections=[_now(), _power(), _profiling(), _clocks(), _traffic()],
    )
