"""The dcgm-exporter compatibility rules (alerts/compat/dcgm-exporter.yaml) in a real
Prometheus: every compat series equals its source series in dcgm-exporter's unit, for every
GPU and GPU instance, label for label.

The fleet (one stack for the module):
- dcgm-a100: 8x A100 (GPUs 6 and 7 in MIG mode) with a fake kubelet: ml-team/trainer-0 holds
  GPU 1, inference/server-0 and server-1 time-share GPU 3, ml-team/notebook-0 holds the MIG
  device of GPU instance 7 on GPU 6. The scenario is tuned so that every source a mapping
  could be confused with reads differently (SM vs graphics clock, corrected vs uncorrected
  ECC, current vs enforced power limit, ...), else a swapped mapping would pass. Xid 13 and
  then Xid 31 on GPU 2: dcgm-exporter's value is the last code, 31.
- dcgm-t4: one T4 (retired pages, no PCIe byte counters: the throughput gauge stands in,
  no memory temperature sensor): Xid 109, a three-digit code.
- dcgm-h100: 8x H100 (scenario h100-mig: GPM on every GPU, GPUs 6 and 7 in MIG mode with 7 and
  3 GPU instances), for the profiling fields per GPU and per GPU instance; the A100 and the T4
  have no GPM, so there those fields must have no series at all. The tweaks give the FP64 and
  DMMA pipes their own values, so that every pipe a mapping could be confused with differs.

The expectations below are written independently of scripts/gen_dcgm_compat.py: our source,
and the factor that dcgm-exporter's unit asks for.

Same evaluation, no race: a recording rule evaluated at T reads the samples that were in the
TSDB at T, and a scrape stamped just before T may not have been committed yet. So each node is
compared at a rule evaluation time T (read from the recorded samples' timestamps) whose last
scrape of that node is at least SAFE_GAP older, querying both sides with `time=T`. Rules are
evaluated every 1.1 s and scraped every 1 s, so such times come round every few evaluations.
"""

from __future__ import annotations

import math
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.stack import (
    JOB,
    POD_CONTAINER,
    POD_GPU,
    POD_NAME,
    POD_NAMESPACE,
    REPO,
    KubeletReply,
    NodeSpec,
    Pod,
    SimulatedNode,
    Stack,
    http_json,
    parse_samples,
    wait_for,
)
from tests.tools import require_tool

pytestmark = pytest.mark.slow

RULE_FILE = REPO / "alerts" / "compat" / "dcgm-exporter.yaml"
SCENARIOS = REPO / "exporter" / "fakenvml" / "scenarios"
A100 = "dcgm-a100"
T4 = "dcgm-t4"
H100 = "dcgm-h100"
NODES = (A100, T4, H100)
SHARED_GPU = 3
MIG_GPU, MIG_GI = 6, 7
XID_GPU = 2
SAFE_GAP = 0.4  # seconds between a node's last scrape and the evaluation compared
MiB = 2.0**-20

# Every differently named source reads differently on dcgm-a100 (appended sections override).
A100_TWEAKS = """
[gpu *]
clock_graphics = 1250 90 40
clock_max = 1410 1400 1593 1290
utilization_encoder = 12 5 30
utilization_decoder = 20 5 30
pcie_current = 3 8
nvlink_rx_kibps = 3000000 2000000 45
nvlink_crc_flit = 5 0.1
nvlink_crc_data = 3 0.1
nvlink_replay = 11 0.1
nvlink_recovery = 2 0.05
ecc_corrected_volatile = 5 0.5
ecc_uncorrected_volatile = 1 0.2
ecc_corrected_aggregate = 50 0.5
ecc_uncorrected_aggregate = 7 0.2
remapped_rows = 3 1 1 0
power_limit_w = 350
power_enforced_w = 340
power_max_w = 450
throttle_thermal_ns = 0 3000000
throttle_sync_boost_ns = 0 1000000
throttle_board_limit_ns = 0 2000000
throttle_reliability_ns = 0 4000000
throttle_hw_thermal_ns = 0 5000000
throttle_hw_power_brake_ns = 0 6000000
clocks_event_reasons = 0x25

[gpu 0]
fan_present = on
fan = 40 10 60

[gpu 2]
remapped_rows = 4 2 0 1
"""
T4_TWEAKS = """
[gpu 0]
retired_pages_sbe = 3
retired_pages_dbe = 1
retired_pages_pending = 1
"""
# h100-mig leaves FP64 at 0.01 and DMMA (FP64 tensor) at 0 on every GPU and GPU instance.
H100_TWEAKS = """
[gpu *]
gpm_fp64 = 0.07
gpm_tensor_dmma = 0.04
"""
H100_MIG_INSTANCES = 7 + 3

# NVML's clock event reason bits (nvml.h nvmlClocksEventReason*), by our reason label.
REASON_BITS = {
    "gpu_idle": 0x1,
    "applications_clocks_setting": 0x2,
    "sw_power_cap": 0x4,
    "hw_slowdown": 0x8,
    "sync_boost": 0x10,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80,
    "display_clock_setting": 0x100,
    "board_limit": 0x200,
    "reliability": 0x400,
}


@dataclass(frozen=True)
class Expect:
    """Our source (PromQL, one value per node and uuid after `max by (node, uuid)`) and the
    factor into dcgm-exporter's unit. `mig`: what a MIG GPU instance shows: "copy" the GPU's
    value, "none" nothing, "instance" its own value from `per_instance` (by gpu_instance)."""

    source: str
    factor: float = 1.0
    mig: str = "copy"
    per_instance: str = ""


def _clock(domain: str, metric: str = "nvidia_gpu_clock_hertz") -> Expect:
    return Expect(f'{metric}{{clock="{domain}"}}', 1e-6)


def _violation(reason: str) -> Expect:
    return Expect(f'nvidia_gpu_clock_event_duration_seconds_total{{reason="{reason}"}}', 1e9)


def _util(metric: str) -> Expect:
    return Expect(metric, 100.0, mig="none")


def _gpm_ratio(what: str) -> Expect:
    """A GPM gauge: the GPU's own, or each GPU instance's own (dcgm-exporter reports its
    profiling fields per GPU instance)."""
    return Expect(
        f"nvidia_gpu_profiling_{what}_ratio",
        mig="instance",
        per_instance=f"nvidia_gpu_mig_profiling_{what}_ratio",
    )


def _gpm_pipe(pipe: str) -> Expect:
    """A math pipe: the rate of its busy-seconds counter (there is no gauge per pipe)."""
    return Expect(
        f'rate(nvidia_gpu_profiling_pipe_active_seconds_total{{pipe="{pipe}"}}[1m])',
        mig="instance",
        per_instance=f'rate(nvidia_gpu_mig_profiling_pipe_active_seconds_total{{pipe="{pipe}"}}[1m])',
    )


XID = "xid"  # computed here from nvidia_gpu_xid_last_seen_timestamp_seconds
BITMASK = "bitmask"  # computed here from nvidia_gpu_clock_event_reason_active
RATE = "[1m]"
PCIE_THROUGHPUT = "nvidia_gpu_pcie_throughput_bytes_per_second"

EXPECTED: dict[str, Expect] = {
    "DCGM_FI_DEV_SM_CLOCK": _clock("sm"),
    "DCGM_FI_DEV_MEM_CLOCK": _clock("memory"),
    "DCGM_FI_DEV_VIDEO_CLOCK": _clock("video"),
    "DCGM_FI_DEV_MAX_SM_CLOCK": _clock("sm", "nvidia_gpu_max_clock_hertz"),
    "DCGM_FI_DEV_MAX_MEM_CLOCK": _clock("memory", "nvidia_gpu_max_clock_hertz"),
    "DCGM_FI_DEV_MAX_VIDEO_CLOCK": _clock("video", "nvidia_gpu_max_clock_hertz"),
    "DCGM_FI_DEV_MEMORY_TEMP": Expect("nvidia_gpu_memory_temperature_celsius"),
    "DCGM_FI_DEV_GPU_TEMP": Expect("nvidia_gpu_temperature_celsius"),
    "DCGM_FI_DEV_SLOWDOWN_TEMP": Expect(
        'nvidia_gpu_temperature_threshold_celsius{threshold="slowdown"}'
    ),
    "DCGM_FI_DEV_SHUTDOWN_TEMP": Expect(
        'nvidia_gpu_temperature_threshold_celsius{threshold="shutdown"}'
    ),
    "DCGM_FI_DEV_GPU_MAX_OP_TEMP": Expect(
        'nvidia_gpu_temperature_threshold_celsius{threshold="gpu_max"}'
    ),
    "DCGM_FI_DEV_MEM_MAX_OP_TEMP": Expect(
        'nvidia_gpu_temperature_threshold_celsius{threshold="memory_max"}'
    ),
    "DCGM_FI_DEV_POWER_USAGE": Expect("nvidia_gpu_power_usage_watts"),
    "DCGM_FI_DEV_POWER_MGMT_LIMIT": Expect('nvidia_gpu_power_limit_watts{limit="current"}'),
    "DCGM_FI_DEV_POWER_MGMT_LIMIT_MIN": Expect('nvidia_gpu_power_limit_watts{limit="min"}'),
    "DCGM_FI_DEV_POWER_MGMT_LIMIT_MAX": Expect('nvidia_gpu_power_limit_watts{limit="max"}'),
    "DCGM_FI_DEV_POWER_MGMT_LIMIT_DEF": Expect('nvidia_gpu_power_limit_watts{limit="default"}'),
    "DCGM_FI_DEV_ENFORCED_POWER_LIMIT": Expect('nvidia_gpu_power_limit_watts{limit="enforced"}'),
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": Expect("nvidia_gpu_energy_joules_total", 1000.0),
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": Expect("nvidia_gpu_pcie_replays_total"),
    "DCGM_FI_DEV_GPU_UTIL": _util("nvidia_gpu_utilization_ratio"),
    "DCGM_FI_DEV_MEM_COPY_UTIL": _util("nvidia_gpu_memory_utilization_ratio"),
    "DCGM_FI_DEV_ENC_UTIL": _util("nvidia_gpu_encoder_utilization_ratio"),
    "DCGM_FI_DEV_DEC_UTIL": _util("nvidia_gpu_decoder_utilization_ratio"),
    "DCGM_FI_DEV_XID_ERRORS": Expect(XID),
    "DCGM_FI_DEV_FB_TOTAL": Expect(
        "nvidia_gpu_memory_total_bytes", MiB, "instance", "nvidia_gpu_mig_memory_total_bytes"
    ),
    "DCGM_FI_DEV_FB_FREE": Expect(
        "nvidia_gpu_memory_free_bytes", MiB, "instance", "nvidia_gpu_mig_memory_free_bytes"
    ),
    "DCGM_FI_DEV_FB_USED": Expect(
        "nvidia_gpu_memory_used_bytes", MiB, "instance", "nvidia_gpu_mig_memory_used_bytes"
    ),
    "DCGM_FI_DEV_FB_RESERVED": Expect("nvidia_gpu_memory_reserved_bytes", MiB, "none"),
    "DCGM_FI_DEV_BAR1_TOTAL": Expect("nvidia_gpu_bar1_memory_total_bytes", MiB),
    "DCGM_FI_DEV_BAR1_USED": Expect("nvidia_gpu_bar1_memory_used_bytes", MiB),
    "DCGM_FI_DEV_BAR1_FREE": Expect(
        "max by (node, uuid) (nvidia_gpu_bar1_memory_total_bytes)"
        " - max by (node, uuid) (nvidia_gpu_bar1_memory_used_bytes)",
        MiB,
    ),
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL": Expect(
        f"max by (node, uuid) (rate(nvidia_gpu_nvlink_transmit_bytes_total{RATE}))"
        f" + max by (node, uuid) (rate(nvidia_gpu_nvlink_receive_bytes_total{RATE}))",
        1e-6,
    ),
    "DCGM_FI_PROF_NVLINK_TX_BYTES": Expect(f"rate(nvidia_gpu_nvlink_transmit_bytes_total{RATE})"),
    "DCGM_FI_PROF_NVLINK_RX_BYTES": Expect(f"rate(nvidia_gpu_nvlink_receive_bytes_total{RATE})"),
    # The T4 has no PCIe byte counters: NVML's throughput sample stands in. None on MIG
    # instances: DCGM answers N/A there (NVIDIA/DCGM#88), and GPM's per-instance PCIe bytes
    # (on the H100) must not stand in.
    "DCGM_FI_PROF_PCIE_TX_BYTES": Expect(
        f"max by (node, uuid) (rate(nvidia_gpu_pcie_transmit_bytes_total{RATE})) or "
        f'max by (node, uuid) ({PCIE_THROUGHPUT}{{direction="transmit"}})',
        mig="none",
    ),
    "DCGM_FI_PROF_PCIE_RX_BYTES": Expect(
        f"max by (node, uuid) (rate(nvidia_gpu_pcie_receive_bytes_total{RATE})) or "
        f'max by (node, uuid) ({PCIE_THROUGHPUT}{{direction="receive"}})',
        mig="none",
    ),
    # GPM (the H100 only), in dcgm-exporter's 0-1 ratio: per GPU and per GPU instance.
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": _gpm_ratio("graphics_active"),
    "DCGM_FI_PROF_SM_ACTIVE": _gpm_ratio("sm_active"),
    "DCGM_FI_PROF_SM_OCCUPANCY": _gpm_ratio("sm_occupancy"),
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": _gpm_ratio("tensor_active"),
    "DCGM_FI_PROF_DRAM_ACTIVE": _gpm_ratio("dram_active"),
    "DCGM_FI_PROF_PIPE_FP64_ACTIVE": _gpm_pipe("fp64"),
    "DCGM_FI_PROF_PIPE_FP32_ACTIVE": _gpm_pipe("fp32"),
    "DCGM_FI_PROF_PIPE_FP16_ACTIVE": _gpm_pipe("fp16"),
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": Expect(
        'nvidia_gpu_remapped_rows{cause="uncorrectable"}'
    ),
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": Expect(
        'nvidia_gpu_remapped_rows{cause="correctable"}'
    ),
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": Expect("nvidia_gpu_remapped_rows_failure"),
    "DCGM_FI_DEV_ROW_REMAP_PENDING": Expect("nvidia_gpu_remapped_rows_pending"),
    "DCGM_FI_DEV_POWER_VIOLATION": _violation("sw_power_cap"),
    "DCGM_FI_DEV_THERMAL_VIOLATION": _violation("thermal"),
    "DCGM_FI_DEV_SYNC_BOOST_VIOLATION": _violation("sync_boost"),
    "DCGM_FI_DEV_BOARD_LIMIT_VIOLATION": _violation("board_limit"),
    "DCGM_FI_DEV_LOW_UTIL_VIOLATION": _violation("gpu_idle"),
    "DCGM_FI_DEV_RELIABILITY_VIOLATION": _violation("reliability"),
    "DCGM_FI_DEV_CLOCKS_EVENT_REASON_SW_POWER_CAP_NS": _violation("sw_power_cap"),
    "DCGM_FI_DEV_CLOCKS_EVENT_REASON_SYNC_BOOST_NS": _violation("sync_boost"),
    "DCGM_FI_DEV_CLOCKS_EVENT_REASON_SW_THERM_SLOWDOWN_NS": _violation("sw_thermal_slowdown"),
    "DCGM_FI_DEV_CLOCKS_EVENT_REASON_HW_THERM_SLOWDOWN_NS": _violation("hw_thermal_slowdown"),
    "DCGM_FI_DEV_CLOCKS_EVENT_REASON_HW_POWER_BRAKE_SLOWDOWN_NS": _violation(
        "hw_power_brake_slowdown"
    ),
    "DCGM_FI_DEV_CLOCKS_EVENT_REASONS": Expect(BITMASK),
    "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS": Expect(BITMASK),
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL": Expect(
        'nvidia_gpu_ecc_corrected_errors_total{scope="volatile"}'
    ),
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": Expect(
        'nvidia_gpu_ecc_uncorrected_errors_total{scope="volatile"}'
    ),
    "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL": Expect(
        'nvidia_gpu_ecc_corrected_errors_total{scope="aggregate"}'
    ),
    "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL": Expect(
        'nvidia_gpu_ecc_uncorrected_errors_total{scope="aggregate"}'
    ),
    "DCGM_FI_DEV_ECC_CURRENT": Expect("nvidia_gpu_ecc_enabled"),
    "DCGM_FI_DEV_RETIRED_SBE": Expect('nvidia_gpu_retired_pages{cause="single_bit"}'),
    "DCGM_FI_DEV_RETIRED_DBE": Expect('nvidia_gpu_retired_pages{cause="double_bit"}'),
    "DCGM_FI_DEV_RETIRED_PENDING": Expect("nvidia_gpu_retired_pages_pending"),
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL": Expect(
        'nvidia_gpu_nvlink_errors_total{error="crc_flit"}'
    ),
    "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL": Expect(
        'nvidia_gpu_nvlink_errors_total{error="crc_data"}'
    ),
    "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL": Expect(
        'nvidia_gpu_nvlink_errors_total{error="replay"}'
    ),
    "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL": Expect(
        'nvidia_gpu_nvlink_errors_total{error="recovery"}'
    ),
    "DCGM_FI_DEV_PSTATE": Expect("nvidia_gpu_performance_state"),
    "DCGM_FI_DEV_FAN_SPEED": Expect("nvidia_gpu_fan_speed_ratio", 100.0),
    "DCGM_FI_DEV_PCIE_LINK_GEN": Expect("nvidia_gpu_pcie_link_generation"),
    "DCGM_FI_DEV_PCIE_LINK_WIDTH": Expect("nvidia_gpu_pcie_link_width"),
    "DCGM_FI_DEV_PCIE_MAX_LINK_GEN": Expect("nvidia_gpu_pcie_link_max_generation"),
    "DCGM_FI_DEV_PCIE_MAX_LINK_WIDTH": Expect("nvidia_gpu_pcie_link_max_width"),
}
POD_LABELS: tuple[str, ...] = ("namespace", "pod", "container")
IDENTITY = (
    "UUID",
    "gpu",
    "device",
    "modelName",
    "Hostname",
    "pci_bus_id",
    "DCGM_FI_DRIVER_VERSION",
)


# -- the fleet ------------------------------------------------------------------------------


def scenario(directory: Path, base: str, tweaks: str) -> str:
    path = directory / f"{base}-dcgm.scn"
    path.write_text((SCENARIOS / f"{base}.scn").read_text() + tweaks)
    return str(path)


def a100_kubelet(node: SimulatedNode) -> KubeletReply:
    """Every device allocatable; the trainer on a whole GPU, two servers time-sharing one
    (device plugin ids `<uuid>::<n>`), a notebook on one MIG device."""
    migs = [
        labels
        for labels, _ in parse_samples(node.exporter.metrics(), "nvidia_gpu_mig_memory_total_bytes")
    ]
    mig_gpus = {int(labels["gpu"]) for labels in migs}
    whole = [node.uuid(i) for i in sorted(node.gpus) if i not in mig_gpus and i != SHARED_GPU]
    replicas = [f"{node.uuid(SHARED_GPU)}::{n}" for n in range(2)]
    by_profile: dict[str, list[str]] = {}
    for labels in migs:
        by_profile.setdefault(labels["profile"], []).append(labels["mig_uuid"])
    groups = [("nvidia.com/gpu", whole), ("nvidia.com/gpu.shared", replicas)]
    groups += [(f"nvidia.com/mig-{profile}", ids) for profile, ids in sorted(by_profile.items())]
    (notebook,) = [m for m in migs if int(m["gpu"]) == MIG_GPU and int(m["gpu_instance"]) == MIG_GI]
    pods: list[Pod] = [
        (POD_NAMESPACE, POD_NAME, [(POD_CONTAINER, [("nvidia.com/gpu", [node.uuid(POD_GPU)])])]),
        ("inference", "server-0", [("server", [("nvidia.com/gpu.shared", [replicas[0]])])]),
        ("inference", "server-1", [("server", [("nvidia.com/gpu.shared", [replicas[1]])])]),
        (
            "ml-team",
            "notebook-0",
            [("notebook", [(f"nvidia.com/mig-{notebook['profile']}", [notebook["mig_uuid"]])])],
        ),
    ]
    return pods, groups


@dataclass
class Fleet:
    stack: Stack
    ready: float  # wall-clock time every injected Xid was in Prometheus
    times: dict[str, float] = field(default_factory=dict)  # node -> evaluation time to compare

    @property
    def port(self) -> int:
        return self.stack.prom.port


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    require_tool("prometheus")
    require_tool("prometheus-alertmanager")
    directory = tmp_path_factory.mktemp("dcgm-compat")
    stack = Stack(
        directory,
        [
            NodeSpec(
                A100,
                scenario=scenario(directory, "a100-mig", A100_TWEAKS),
                kubelet=True,
                kubelet_reply=a100_kubelet,
            ),
            NodeSpec(T4, scenario=scenario(directory, "t4", T4_TWEAKS)),
            NodeSpec(H100, scenario=scenario(directory, "h100-mig", H100_TWEAKS)),
        ],
        scrape_interval="1s",
        evaluation_interval="1100ms",
        collection_interval="1s",
        extra_rule_files=[RULE_FILE],
    )
    try:
        stack.start()
        stack.wait_scraped()
        a100, t4 = stack.node(A100), stack.node(T4)
        a100.xid(XID_GPU, 13, "Graphics Exception: ESR 0x404600=0x80000002")
        wait_for("Xid 13 in Prometheus", seen(stack, last_seen(A100, a100.uuid(XID_GPU), 13)), 30)
        a100.xid(XID_GPU, 31, "MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_0 faulted @ 0x7f_00000000")
        t4.xid(0, 109, "Ch 00000010, errorString CTX SWITCH TIMEOUT, Info 0x2c004")
        for node, gpu, code in ((a100, XID_GPU, 31), (t4, 0, 109)):
            wait_for(
                f"Xid {code} in Prometheus",
                seen(stack, last_seen(node.name, node.uuid(gpu), code)),
                30,
            )
        # GPM needs two collections, rate() two scrapes: wait for both kinds of source.
        for what, expr in (
            ("GPM gauges", f'nvidia_gpu_profiling_sm_active_ratio{{node="{H100}"}}'),
            (
                "GPM pipe rates",
                f'rate(nvidia_gpu_profiling_pipe_active_seconds_total{{node="{H100}"}}[1m])',
            ),
            (
                "GPM rates per GPU instance",
                f'rate(nvidia_gpu_mig_profiling_pipe_active_seconds_total{{node="{H100}"}}[1m])',
            ),
        ):
            wait_for(f"{what} of {H100} in Prometheus", seen(stack, expr), 30)
        fleet = Fleet(stack, time.time())
        fleet.times = wait_for(
            "a safe evaluation time per node", lambda: safe_times(fleet), 60, 0.5
        )
    except BaseException:
        print(stack.logs()[-20000:])
        stack.stop()
        raise
    try:
        yield fleet
    finally:
        stack.stop()


def seen(stack: Stack, expr: str) -> Callable[[], list[dict[str, Any]]]:
    return lambda: query(stack.prom.port, expr)


def last_seen(node: str, uuid: str, code: int) -> str:
    return (
        f'nvidia_gpu_xid_last_seen_timestamp_seconds{{node="{node}", uuid="{uuid}", xid="{code}"}}'
    )


# -- Prometheus at one time -----------------------------------------------------------------


def query(port: int, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
    reply = http_json(port, "/api/v1/query?" + urllib.parse.urlencode(params))
    assert reply["status"] == "success", reply
    return list(reply["data"]["result"])


def safe_times(fleet: Fleet) -> dict[str, float] | None:
    """Per node, the latest compat evaluation after `fleet.ready` whose last scrape of that
    node is at least SAFE_GAP older (so the evaluation saw it committed)."""
    evaluations = sorted(
        {
            float(t)
            for series in query(fleet.port, "DCGM_FI_DEV_GPU_TEMP[30s]")
            for t, _ in series["values"]
        },
        reverse=True,
    )
    times: dict[str, float] = {}
    for node in NODES:
        for at in evaluations:
            if at < fleet.ready or at > time.time() - 1:
                continue
            (up,) = query(fleet.port, f'timestamp(up{{job="{JOB}", node="{node}"}})', at)
            if at - float(up["value"][1]) >= SAFE_GAP:
                times[node] = at
                break
    return times if len(times) == len(NODES) else None


Key = tuple[str, str]  # (node, uuid)


def per_gpu(fleet: Fleet, expect: Expect, at: float) -> dict[Key, tuple[float, dict[str, str]]]:
    """Our value per GPU at `at`, in dcgm-exporter's unit, with the labels only this metric
    adds."""
    if expect.source == XID:
        newest: dict[Key, tuple[float, int]] = {}
        for r in query(fleet.port, "nvidia_gpu_xid_last_seen_timestamp_seconds", at):
            key = (r["metric"]["node"], r["metric"]["uuid"])
            stamp, code = float(r["value"][1]), int(r["metric"]["xid"])
            if key[1] and (key not in newest or stamp > newest[key][0]):
                newest[key] = (stamp, code)
        out: dict[Key, tuple[float, dict[str, str]]] = {key: (0.0, {}) for key in gpus(fleet, at)}
        out.update(
            {key: (float(code), {"err_code": str(code)}) for key, (_, code) in newest.items()}
        )
        return out
    if expect.source == BITMASK:
        masks: dict[Key, float] = {}
        for r in query(fleet.port, "nvidia_gpu_clock_event_reason_active", at):
            key = (r["metric"]["node"], r["metric"]["uuid"])
            masks[key] = masks.get(key, 0.0) + REASON_BITS[r["metric"]["reason"]] * float(
                r["value"][1]
            )
        return {key: (value, {}) for key, value in masks.items()}
    rows = query(fleet.port, f"max by (node, uuid) ({expect.source})", at)
    return {
        (r["metric"]["node"], r["metric"]["uuid"]): (float(r["value"][1]) * expect.factor, {})
        for r in rows
    }


def gpus(fleet: Fleet, at: float) -> list[Key]:
    return [
        (r["metric"]["node"], r["metric"]["uuid"]) for r in query(fleet.port, "nvidia_gpu_info", at)
    ]


def per_instance(fleet: Fleet, expect: Expect, at: float) -> dict[tuple[str, str, str], float]:
    rows = query(fleet.port, f"max by (node, uuid, gpu_instance) ({expect.per_instance})", at)
    return {
        (r["metric"]["node"], r["metric"]["uuid"], r["metric"]["gpu_instance"]): float(
            r["value"][1]
        )
        * expect.factor
        for r in rows
    }


@dataclass(frozen=True)
class Entity:
    """What dcgm-exporter monitors by default: a GPU, or a GPU instance of a MIG GPU."""

    labels: dict[str, str]  # the dcgm-exporter labels it has before pod attribution
    node: str
    uuid: str
    gpu_instance: str  # "" for a whole GPU
    pods: list[dict[str, str]]  # namespace, pod, container of each container holding it


def entities(fleet: Fleet, node: str, at: float) -> list[Entity]:
    """Built from what the exporter serves (nvidia_gpu_info, the MIG memory series and
    nvidia_gpu_pod_info), the way dcgm-exporter labels a GPU."""
    instance = f"127.0.0.1:{fleet.stack.node(node).port}"
    infos = [r["metric"] for r in query(fleet.port, f'nvidia_gpu_info{{node="{node}"}}', at)]
    migs = [
        r["metric"]
        for r in query(fleet.port, f'nvidia_gpu_mig_memory_total_bytes{{node="{node}"}}', at)
    ]
    pods = [r["metric"] for r in query(fleet.port, f'nvidia_gpu_pod_info{{node="{node}"}}', at)]
    out = []
    for info in infos:
        base = {
            "instance": instance,
            "job": JOB,
            "gpu": info["gpu"],
            "UUID": info["uuid"],
            "device": f"nvidia{info['gpu']}",
            "modelName": info["model"],
            "Hostname": node,
            "pci_bus_id": info["pci_bus_id"],
            "DCGM_FI_DRIVER_VERSION": info["driver_version"],
        }
        instances = sorted(
            {(m["gpu_instance"], m["profile"]) for m in migs if m["uuid"] == info["uuid"]}
        )
        if not instances:
            holders = [p for p in pods if p["uuid"] == info["uuid"] and not p.get("mig_uuid")]
            out.append(Entity(base, node, info["uuid"], "", holders))
        for gi, profile in instances:
            devices = {
                m["mig_uuid"] for m in migs if m["uuid"] == info["uuid"] and m["gpu_instance"] == gi
            }
            holders = [p for p in pods if p.get("mig_uuid") in devices]
            labels = {**base, "GPU_I_ID": gi, "GPU_I_PROFILE": profile}
            out.append(Entity(labels, node, info["uuid"], gi, holders))
    return out


Series = frozenset[tuple[str, str]]


def expected_series(fleet: Fleet, expect: Expect, node: str, at: float) -> dict[Series, float]:
    values = per_gpu(fleet, expect, at)
    instances = per_instance(fleet, expect, at) if expect.mig == "instance" else {}
    out: dict[Series, float] = {}
    extra: dict[str, str]
    nobody: list[dict[str, str]] = [{}]
    for entity in entities(fleet, node, at):
        key = (entity.node, entity.uuid)
        if entity.gpu_instance and expect.mig == "none":
            continue
        if entity.gpu_instance and expect.mig == "instance":
            found = instances.get((*key, entity.gpu_instance))
            if found is None:
                continue
            value, extra = found, {}
        elif key in values:
            value, extra = values[key]
        else:
            continue
        for holder in entity.pods or nobody:
            pod: dict[str, str] = {k: holder[k] for k in POD_LABELS if k in holder}
            labels: dict[str, str] = {**entity.labels, **pod, **extra}
            out[frozenset(labels.items())] = value
    return out


def actual_series(fleet: Fleet, name: str, node: str, at: float) -> dict[Series, float]:
    rows = query(fleet.port, f'{name}{{Hostname="{node}"}}', at)
    out: dict[Series, float] = {}
    for r in rows:
        labels = {k: v for k, v in r["metric"].items() if k != "__name__"}
        assert r["metric"].get("__name__") == name
        out[frozenset(labels.items())] = float(r["value"][1])
    return out


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def differences(expected: dict[Series, float], actual: dict[Series, float]) -> list[str]:
    def show(series: Series) -> str:
        return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(series)) + "}"

    problems = [f"missing {show(s)} = {v}" for s, v in expected.items() if s not in actual]
    problems += [f"unexpected {show(s)} = {v}" for s, v in actual.items() if s not in expected]
    problems += [
        f"{show(s)}: {actual[s]} != expected {v}"
        for s, v in expected.items()
        if s in actual and not close(actual[s], v)
    ]
    return problems


def compare(fleet: Fleet, name: str, expect: Expect) -> tuple[list[str], int]:
    """Differences between the compat series and our source on every node, and how many
    series were compared."""
    problems: list[str] = []
    count = 0
    for node, at in sorted(fleet.times.items()):
        expected = expected_series(fleet, expect, node, at)
        actual = actual_series(fleet, name, node, at)
        count += len(expected)
        problems += [f"{node} @ {at:.3f}: {p}" for p in differences(expected, actual)]
    return problems, count


# -- the tests ------------------------------------------------------------------------------


def compat_names() -> set[str]:
    document = yaml.safe_load(RULE_FILE.read_text())
    return {
        rule["record"]
        for group in document["groups"]
        for rule in group["rules"]
        if rule["record"].startswith("DCGM_")
    }


def test_every_compat_metric_has_an_expectation() -> None:
    assert set(EXPECTED) == compat_names()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_compat_series_equals_its_source(fleet: Fleet, name: str) -> None:
    """Label for label and value for value, on every GPU and GPU instance of both nodes."""
    problems, count = compare(fleet, name, EXPECTED[name])
    assert count > 0, f"{name}: no source series in this fleet, nothing was compared"
    assert not problems, f"{name}:\n" + "\n".join(problems[:20])


def test_a_wrong_unit_or_source_is_caught(fleet: Fleet) -> None:
    """The comparison itself: MB instead of MiB, the graphics instead of the SM clock, a
    GPU-wide value where dcgm-exporter has one per GPU instance, and no pod labels."""
    wrong = {
        "DCGM_FI_DEV_FB_USED": Expect(
            "nvidia_gpu_memory_used_bytes", 1e-6, "instance", "nvidia_gpu_mig_memory_used_bytes"
        ),
        "DCGM_FI_DEV_SM_CLOCK": _clock("graphics"),
        "DCGM_FI_DEV_FB_TOTAL": Expect("nvidia_gpu_memory_total_bytes", MiB),
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": Expect(
            'nvidia_gpu_ecc_corrected_errors_total{scope="volatile"}'
        ),
        # SM active instead of graphics activity, DMMA (FP64 tensor) instead of the FP64 pipe
        # on whole GPUs, FP32 instead of FP16, and the GPU-wide PCIe rate copied onto GPU
        # instances
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE": _gpm_ratio("sm_active"),
        "DCGM_FI_PROF_PIPE_FP64_ACTIVE": Expect(
            'rate(nvidia_gpu_profiling_pipe_active_seconds_total{pipe="tensor_dmma"}[1m])',
            mig="instance",
            per_instance=EXPECTED["DCGM_FI_PROF_PIPE_FP64_ACTIVE"].per_instance,
        ),
        "DCGM_FI_PROF_PIPE_FP16_ACTIVE": _gpm_pipe("fp32"),
        "DCGM_FI_PROF_PCIE_TX_BYTES": Expect(EXPECTED["DCGM_FI_PROF_PCIE_TX_BYTES"].source),
    }
    for name, expect in wrong.items():
        problems, _ = compare(fleet, name, expect)
        assert problems, f"{name}: a wrong expectation went unnoticed"
    at = fleet.times[A100]
    expected = expected_series(fleet, EXPECTED["DCGM_FI_DEV_GPU_TEMP"], A100, at)
    stripped = {
        frozenset((k, v) for k, v in s if k not in ("pod", "namespace", "container")): v
        for s, v in expected.items()
    }
    assert differences(stripped, actual_series(fleet, "DCGM_FI_DEV_GPU_TEMP", A100, at))


def test_labels_and_pods_on_the_attributed_devices_only(fleet: Fleet) -> None:
    at = fleet.times[A100]
    a100 = fleet.stack.node(A100)
    rows = [
        r["metric"] for r in query(fleet.port, f'DCGM_FI_DEV_GPU_TEMP{{Hostname="{A100}"}}', at)
    ]
    assert rows
    for labels in rows:
        assert all(labels.get(name) for name in IDENTITY), labels
        assert labels["DCGM_FI_DRIVER_VERSION"] == "550.54.15"
        assert labels["modelName"] == "NVIDIA A100-SXM4-80GB"
    held = {
        (r["UUID"], r.get("GPU_I_ID", ""), r["namespace"], r["pod"], r["container"])
        for r in rows
        if "pod" in r
    }
    assert held == {
        (a100.uuid(POD_GPU), "", POD_NAMESPACE, POD_NAME, POD_CONTAINER),
        (a100.uuid(SHARED_GPU), "", "inference", "server-0", "server"),
        (a100.uuid(SHARED_GPU), "", "inference", "server-1", "server"),
        (a100.uuid(MIG_GPU), str(MIG_GI), "ml-team", "notebook-0", "notebook"),
    }
    unheld = [r for r in rows if "pod" not in r]
    assert all("namespace" not in r and "container" not in r for r in unheld)
    # 6 whole GPUs (GPU 3 twice, once per pod), 7 + 3 GPU instances of the MIG GPUs
    assert len(rows) == 6 + 1 + 7 + 3
    assert {r["GPU_I_PROFILE"] for r in rows if r.get("GPU_I_ID")} == {
        "1g.10gb",
        "2g.20gb",
        "3g.40gb",
    }


def test_xid_is_the_code_of_the_last_xid(fleet: Fleet) -> None:
    """dcgm-exporter's DCGM_FI_DEV_XID_ERRORS is the last Xid's code: 31 after 13, and a
    three-digit code read right; 0 on a GPU without an Xid."""
    a100, t4 = fleet.stack.node(A100), fleet.stack.node(T4)

    def value(node: SimulatedNode, gpu: int) -> Callable[[], list[dict[str, Any]]]:
        expr = f'DCGM_FI_DEV_XID_ERRORS{{Hostname="{node.name}", UUID="{node.uuid(gpu)}"}}'
        return lambda: query(fleet.port, expr)

    (last,) = wait_for("the A100's compat Xid", value(a100, XID_GPU), 30)
    assert last["value"][1] == "31" and last["metric"]["err_code"] == "31", last
    (three,) = wait_for("the T4's compat Xid", value(t4, 0), 30)
    assert three["value"][1] == "109" and three["metric"]["err_code"] == "109", three
    (none,) = value(a100, 0)()
    assert none["value"][1] == "0" and "err_code" not in none["metric"], none


def test_profiling_only_where_gpm_is_and_per_gpu_instance(fleet: Fleet) -> None:
    """GPM exists on the H100 only: the profiling fields have one series per whole GPU and per
    GPU instance there, none on the A100 and the T4 (absent, never 0); PCIe bytes have none on
    GPU instances."""
    profiling = [
        name for name in EXPECTED if name.startswith("DCGM_FI_PROF_") and "_BYTES" not in name
    ]
    assert len(profiling) == 8
    for name in profiling:
        for node in (A100, T4):
            assert actual_series(fleet, name, node, fleet.times[node]) == {}, (name, node)
        rows = actual_series(fleet, name, H100, fleet.times[H100])
        instances = [s for s in rows if dict(s).get("GPU_I_ID")]
        assert (len(rows), len(instances)) == (6 + H100_MIG_INSTANCES, H100_MIG_INSTANCES), name
        assert all(0.0 <= value <= 1.0 for value in rows.values()), name
    pcie = actual_series(fleet, "DCGM_FI_PROF_PCIE_TX_BYTES", H100, fleet.times[H100])
    assert len(pcie) == 6 and not [s for s in pcie if dict(s).get("GPU_I_ID")]
