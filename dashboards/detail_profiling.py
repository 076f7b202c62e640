"""The GPU detail dashboard's profiling row (GPM, Hopper and newer), kept apart from
dashboards/detail.py so that module stays readable: what the SMs, tensor cores and memory did
next to the busy-time utilization, and whether the GPU is busy but starved."""

from __future__ import annotations

from dashboards import common as c
from dashboards.panels import Options, Query, Section, stat_panel, timeseries_panel

SEL = c.GPU_SEL
KEY = c.GPU_KEY
L = c.LEGEND_GPU

STARVED_MAPPINGS = {"0": ("no", "green"), "1": ("starved", "orange")}


def profiling() -> Section:
    gpm = c.NEEDS_GPM
    activity = [
        ("graphics_active", "graphics active"),
        ("sm_active", "SM active"),
        ("tensor_active", "tensor active"),
        ("dram_active", "DRAM active"),
    ]
    sm_active = c.profiling("sm_active", SEL)
    starved = f"(count({c.starved(SEL)}) or vector(0))\nand on ()\ncount({sm_active})"
    return Section(
        "Profiling (GPM, Hopper and newer)",
        [
            timeseries_panel(
                "Activity: utilization vs what the SMs did",
                "Utilization (any kernel resident, from the busy-time counter) next to GPM's "
                "measures of the work, averaged over the rate interval: graphics active (a "
                "context active), SM active (share of SMs with work), SM occupancy (resident "
                "warps over the maximum), tensor active (tensor cores busy) and DRAM active "
                "(memory bandwidth over peak). Utilization high with SM active low: busy but "
                f"starved. {gpm}",
                "percentunit",
                Query(c.utilization(SEL), f"{L} utilization"),
                *[Query(c.profiling(name, SEL), f"{L} {what}") for name, what in activity],
                Query(c.sm_occupancy(SEL), f"{L} SM occupancy"),
                options=Options(width=12, min=0, max=1),
            ),
            timeseries_panel(
                "Math pipe activity",
                "Share of time each math pipe was busy (rate of "
                "nvidia_gpu_profiling_pipe_active_seconds_total): non-tensor FP64, FP32, FP16 "
                "and integer, and the tensor kinds HMMA (FP16/BF16 matrix), IMMA (integer), "
                "DMMA (FP64 matrix) and DFMA. A training job with no tensor_hmma runs without "
                f"mixed precision. {gpm}",
                "percentunit",
                Query(c.profiling("pipe_active", SEL, f"{KEY}, pipe"), f"{L} {{{{pipe}}}}"),
                options=Options(width=8, min=0, max=1),
            ),
            stat_panel(
                "Busy but starved",
                "Whether the GPU is busy but starved now: 'starved' while utilization is "
                f"above {c.STARVED_UTILIZATION:.0%} and under {c.STARVED_SM_ACTIVE:.0%} of the "
                "SMs are active (a kernel is always resident but the SMs wait: tiny kernels, "
                "launch overhead or the input pipeline, i.e. data loading, CPU, network); 'no' "
                f"otherwise. {gpm}",
                "none",
                Query(starved),
                options=Options(width=4, height=8, mappings=STARVED_MAPPINGS, no_value="no GPM"),
            ),
        ],
    )
