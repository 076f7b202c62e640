"""Every panel query of every dashboard, run against a real Prometheus that scraped a small
simulated fleet: each target returns data, unless its panel says `Empty on a healthy node`
and why.

Why a real Prometheus: the lint proves an expression parses and names known metrics; only a
real evaluation shows that its joins match (`on (node, uuid)` against series that really have
those labels), that its recording rules produce series, that a MIG-aware query does not drop
MIG GPUs, and that the variables resolve to values that select something.

The fleet (one stack for the whole module, started once):

- gpu-a100-mig: 8x A100 (two of them MIG-enabled) with a fake kubelet: pods in two namespaces
  (ml-team, inference), two pods time-sharing one idle GPU, pods holding MIG devices, their
  processes attributed through a fake /proc; one GPU busy at 80 W, one with a failed row
  remap. The first GPU Grafana offers (the node and uuid variables sort alphabetically) holds
  a pod and gets an Xid 48 (double-bit ECC error, kernel log and NVML event) and counts
  uncorrectable ECC errors with a row remap pending, so the detail dashboard opens on a GPU
  with data;
- gpu-h100-mig: 8x H100 with the activity metrics (exporter/fakenvml/scenarios/h100-mig.scn):
  GPM profiling, GPU 3 busy but starved (held by ml-team/trainer-2), GPU 5 time-sliced by three
  inference pods whose processes the kubelet's allocations cannot name (they show by pod UID),
  GPUs 6-7 in MIG mode with GPM per GPU instance (inference/notebook-1 on one); the per-process
  collector and a fake /proc as on gpu-a100-mig;
- gpu-h100-nvlink: 8x H100; GPU 7 falls off the bus (Xid 79, then Xid 154: reset required)
  after scraping has begun;
- gpu-t4: one T4 (no NVLink, no MIG; a page retirement pending); a CUDA program crashes
  (Xid 13) and one NVML call fails on every collection.

Variables are resolved as Grafana resolves them when a dashboard opens: query variables by
running their label_values() against Prometheus, All -> allValue, single-select -> the first
value in the variable's sort order; `$__rate_interval` -> 4 scrape intervals (Grafana's
minimum), `$__range` -> the stack's lifetime, `$__interval` -> the scrape interval. Range
targets run as query_range over the stack's lifetime, instant targets as instant queries.

One failing panel fails its dashboard's test with the list of every failing panel of that
dashboard (title, refId, resolved expression, why). Run with
`.venv/bin/pytest tests/dashboards/test_panels_prometheus.py -v` (needs the Debian
`prometheus` and `prometheus-alertmanager` packages: `make system-deps`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
import urllib.parse
import uuid as uuid_module
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.dashboards.grafana import (
    EMPTY_OK,
    Dashboard,
    empty_reason,
    is_instant,
    is_query_panel,
    label_values_query,
    load_dashboards,
    substitute,
    targets,
    variable_query,
    variable_refs,
)
from tests.e2e.stack import (
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
from tests.promql import recording_rule_names
from tests.tools import ExporterProcess, require_tool

pytestmark = pytest.mark.slow
JSON = dict[str, Any]

SCENARIOS = REPO / "exporter" / "fakenvml" / "scenarios"
COMPAT_RULES = REPO / "alerts" / "compat"
SCRAPE_SECONDS = 1
A100 = "gpu-a100-mig"  # sorts first: the node Grafana's single-select node variables open on
H100_MIG = "gpu-h100-mig"
H100 = "gpu-h100-nvlink"
T4 = "gpu-t4"
LOST_GPU = 7  # on H100
SHARED_GPU = 3  # on A100: time-shared by two inference pods, and idle
STARVED_GPU = 4  # on A100: busy at a fifth of its power limit
TRAINER_GPU = 1  # on A100: ml-team/trainer-0 (tests.e2e.stack.POD_GPU)
# On H100_MIG (h100-mig.scn): GPU 3 busy but starved, GPU 5 time-sliced by three processes
# (shares 0.5, 0.3, 0.2), GPU 7 in MIG mode.
H100_STARVED_GPU = 3
H100_SLICED_GPU = 5
H100_SLICED_PIDS = (30501, 30502, 30503)
H100_MIG_GPU = 7
# The phrases of the panels that need GPM (dashboards/common.py NEEDS_GPM, NEEDS_MIG_GPM):
# whole GPUs, and MIG GPU instances.
GPM_PANEL = "Hopper and newer only"
WHOLE_GPU_GPM_PANEL = "Hopper and newer only (GPM profiling)"
# A double-bit error every 10 s: the first lands after Prometheus has scraped the zero.
ECC_RATE = 0.1
DASHBOARDS = load_dashboards()
_SUBQUERY_STEP = re.compile(r"\[[^\]:]*:\s*([0-9]+[smhdwy])\s*\]")
_LEGEND_NODE = re.compile(r"\{\{\s*node\s*\}\}")
# Panel types that draw series over time, where a legend names each series.
TIME_SERIES_TYPES = {"timeseries", "state-timeline", "status-history", "barchart", "graph"}


# -- the fleet ------------------------------------------------------------------------------


def first_gpu(scenario: Path, node: str) -> tuple[int, str]:
    """(index, uuid) of the GPU Grafana's uuid variable lists first on `node`: the smallest
    uuid. The fake driver derives uuids from the node, scenario and GPU names, so a
    short-lived exporter on the same scenario file and node name tells which GPU that is
    before the faults are added to the file."""
    probe = ExporterProcess(
        f"--simulate={scenario}",
        "--collector.pod-attribution=off",
        "--collection.interval=1s",
        env={"FAKE_NVML_NODE": node},
    )
    try:
        probe.wait_ready()
        info = parse_samples(probe.metrics(), "nvidia_gpu_info")
    finally:
        probe.stop()
    return min(((int(labels["gpu"]), labels["uuid"]) for labels, _ in info), key=lambda g: g[1])


def a100_scenario(directory: Path) -> Path:
    """The a100-mig scenario with the GPUs the dashboards look for (none of it changes the
    GPUs' identities): the time-shared inference GPU idles with little memory in use (idle
    while allocated, a MIG candidate), GPU 4 is busy at 80 W (the seed's "waiting on
    something upstream") and GPU 2 failed a row remap. add_dbe() adds the ECC errors."""
    path = directory / "a100-dbe.scn"
    path.write_text(
        (SCENARIOS / "a100-mig.scn").read_text()
        + f"\n[gpu {SHARED_GPU}]\nutilization_gpu = 2 1 60\nmemory_used_mib = 4000 1000 120\n"
        + f"\n[gpu {STARVED_GPU}]\nutilization_gpu = 95 3 60\npower_w = 80 5 60\n"
        + "\n[gpu 2]\nremapped_rows = 2 0 0 1\n"
    )
    return path


def t4_scenario(directory: Path) -> Path:
    """The t4 scenario with a page retirement pending (a double-bit error, retired at the
    next reset): Turing retires pages where Ampere remaps rows."""
    path = directory / "t4-pending.scn"
    path.write_text(
        (SCENARIOS / "t4.scn").read_text()
        + "\n[gpu 0]\nretired_pages_dbe = 1\nretired_pages_pending = 1\n"
    )
    return path


def add_dbe(path: Path, gpu: int) -> None:
    """Uncorrectable ECC errors on `gpu` (from t = 1/ECC_RATE on) and one uncorrectable row
    remap pending, as after a real double-bit error. Later sections override earlier ones."""
    with path.open("a") as scenario:
        scenario.write(
            f"\n[gpu {gpu}]\n"
            f"ecc_uncorrected_volatile = 0 {ECC_RATE}\n"
            f"ecc_uncorrected_aggregate = 0 {ECC_RATE}\n"
            "remapped_rows = 0 1 1 0\n"
            "remap_histogram = 639 1 0 0 0\n"
        )


@dataclass(frozen=True)
class PodPlan:
    """A pod and the device it holds: a whole GPU, replica `replica` of a time-shared GPU, or
    the MIG device with GPU instance `gpu_instance` on GPU `gpu`. The processes on a whole GPU
    or MIG device run in the pod holding it; on a time-shared GPU, only process `pid` does."""

    namespace: str
    pod: str
    container: str
    gpu: int
    gpu_instance: int | None = None
    replica: int | None = None
    pid: int | None = None

    @property
    def uid(self) -> str:
        return str(uuid_module.uuid5(uuid_module.NAMESPACE_URL, f"{self.namespace}/{self.pod}"))

    @property
    def container_id(self) -> str:
        return hashlib.sha256(f"{self.namespace}/{self.pod}/{self.container}".encode()).hexdigest()


def pod_plan(detail_gpu: int) -> list[PodPlan]:
    """Pods in two namespaces: two trainers on whole GPUs (one of them on the GPU the faults
    hit, when that is a whole GPU), two inference servers time-sharing one GPU, a notebook on
    a 1g.10gb MIG device and a fine-tuning job on a 3g.40gb one (GPU instances as in the
    a100-mig scenario)."""
    whole = {0, 1, 2, 4, 5}  # not MIG-enabled, not the shared one
    second = detail_gpu if detail_gpu in whole - {TRAINER_GPU} else 0
    return [
        PodPlan("ml-team", "trainer-0", "main", TRAINER_GPU),
        PodPlan("ml-team", "trainer-1", "main", second),
        PodPlan("inference", "server-0", "server", SHARED_GPU, replica=0),
        PodPlan("inference", "server-1", "server", SHARED_GPU, replica=1),
        PodPlan("inference", "notebook-0", "notebook", 6, gpu_instance=7),
        PodPlan("ml-team", "finetune-0", "main", 7, gpu_instance=2),
    ]


def h100_mig_plan() -> list[PodPlan]:
    """Pods of gpu-h100-mig: a trainer on the starved GPU, three inference workers
    time-slicing GPU 5 (one process each), a notebook on a 1g.10gb MIG device of GPU 6."""
    sliced = [
        PodPlan("inference", f"sliced-{n}", "worker", H100_SLICED_GPU, replica=n, pid=pid)
        for n, pid in enumerate(H100_SLICED_PIDS)
    ]
    return [
        PodPlan("ml-team", "trainer-2", "main", H100_STARVED_GPU),
        *sliced,
        PodPlan("inference", "notebook-1", "notebook", 6, gpu_instance=13),
    ]


def a100_kubelet(plan: Sequence[PodPlan]) -> Callable[[SimulatedNode], KubeletReply]:
    """The kubelet of gpu-a100-mig (see plan_kubelet)."""
    return plan_kubelet(plan, SHARED_GPU, 2)


def plan_kubelet(
    plan: Sequence[PodPlan], shared_gpu: int, replicas: int
) -> Callable[[SimulatedNode], KubeletReply]:
    """A kubelet where every whole GPU, the `replicas` replicas of the time-shared GPU
    `shared_gpu` (resource nvidia.com/gpu.shared, ids `<uuid>::<n>` as the device plugin
    names them) and the MIG devices by profile are allocatable; `plan` says who holds what."""

    def reply(node: SimulatedNode) -> KubeletReply:
        migs = [
            labels
            for labels, _ in parse_samples(
                node.exporter.metrics(), "nvidia_gpu_mig_memory_total_bytes"
            )
        ]
        mig_gpus = {int(labels["gpu"]) for labels in migs}
        whole = [i for i in sorted(node.gpus) if i not in mig_gpus and i != shared_gpu]
        shared = [f"{node.uuid(shared_gpu)}::{n}" for n in range(replicas)]
        groups: list[tuple[str, list[str]]] = [
            ("nvidia.com/gpu", [node.uuid(i) for i in whole]),
            ("nvidia.com/gpu.shared", shared),
        ]
        by_profile: dict[str, list[str]] = {}
        for labels in sorted(migs, key=lambda m: (int(m["gpu"]), int(m["gpu_instance"]))):
            by_profile.setdefault(labels["profile"], []).append(labels["mig_uuid"])
        groups += [(f"nvidia.com/mig-{p}", ids) for p, ids in sorted(by_profile.items())]

        def device(entry: PodPlan) -> tuple[str, list[str]]:
            if entry.replica is not None:
                return "nvidia.com/gpu.shared", [shared[entry.replica]]
            if entry.gpu_instance is None:
                return "nvidia.com/gpu", [node.uuid(entry.gpu)]
            (mig,) = [
                m
                for m in migs
                if int(m["gpu"]) == entry.gpu and int(m["gpu_instance"]) == entry.gpu_instance
            ]
            return f"nvidia.com/mig-{mig['profile']}", [mig["mig_uuid"]]

        pods: list[Pod] = [
            (entry.namespace, entry.pod, [(entry.container, [device(entry)])]) for entry in plan
        ]
        return pods, groups

    return reply


_SECTION = re.compile(r"^\[gpu (\d+)\]\s*$")
_PROCESS = re.compile(r"^process\s*=\s*(.*)$")


def fake_procfs(directory: Path, scenario: Path, plan: Sequence[PodPlan]) -> Path:
    """`<pid>/comm` and `<pid>/cgroup` for every process of the scenario, as the host's /proc
    shows them: a process on a device a planned pod holds (or the one a time-sharing pod
    names) runs in that pod's container cgroup (cgroup v2, systemd driver, containerd), the
    others in a system service. Without an entry the exporter drops a process (it exited), so
    every process gets one."""
    gpu: int | None = None
    for line in scenario.read_text().splitlines():
        section = _SECTION.match(line.strip())
        if section:
            gpu = int(section.group(1))
            continue
        if line.startswith("["):
            gpu = None
        found = _PROCESS.match(line.strip())
        if gpu is None or found is None or found.group(1).strip() == "none":
            continue
        fields = dict(item.split("=", 1) for item in found.group(1).split())
        gi = int(fields["gi"]) if "gi" in fields else None
        pid = int(fields["pid"])
        owners = [e for e in plan if e.pid == pid] or [
            e for e in plan if e.gpu == gpu and e.gpu_instance == gi and e.replica is None
        ]
        if owners:
            owner = owners[0]
            cgroup = (
                "0::/kubepods.slice/kubepods-besteffort.slice/"
                f"kubepods-besteffort-pod{owner.uid.replace('-', '_')}.slice/"
                f"cri-containerd-{owner.container_id}.scope\n"
            )
        else:
            cgroup = "0::/system.slice/inference.service\n"
        entry = directory / fields["pid"]
        entry.mkdir(parents=True)
        (entry / "comm").write_text(fields.get("name", "python3")[:15] + "\n")
        (entry / "cgroup").write_text(cgroup)
    return directory


@dataclass
class Fleet:
    """The started stack, when its data begins, and every dashboard's query results."""

    stack: Stack
    started: float  # wall-clock time Prometheus was ready: the start of every range
    detail_gpu: str  # uuid of the GPU the faults were injected on
    quiet_recordings: list[str]
    results: dict[str, list[TargetResult]] = field(default_factory=dict)
    variables: dict[str, dict[str, str]] = field(default_factory=dict)  # uid -> name -> value

    @property
    def port(self) -> int:
        return self.stack.prom.port


def subquery_steps(dashboards: Sequence[Dashboard]) -> set[str]:
    """Resolutions of the subqueries the dashboards use (`[$__range:1m]` -> 1m)."""
    steps: set[str] = set()
    for dashboard in dashboards:
        for panel in dashboard.panels():
            for target in targets(panel):
                steps.update(_SUBQUERY_STEP.findall(str(target.get("expr", ""))))
    return steps


def present(fleet: Fleet, expr: str) -> bool:
    return bool(instant(fleet.port, expr, time.time())["result"])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """One fleet for the module: it takes about 15 s to start and to show every fault."""
    require_tool("prometheus")
    require_tool("prometheus-alertmanager")
    with started_fleet(tmp_path_factory.mktemp("dashboard-stack"), DASHBOARDS) as fleet:
        yield fleet


@contextlib.contextmanager
def started_fleet(directory: Path, dashboards: Sequence[Dashboard]) -> Iterator[Fleet]:
    """The fleet of the module docstring, its faults visible in Prometheus and every
    recording rule evaluated on them; stopped on exit."""
    scenario = a100_scenario(directory)
    detail_index, detail_uuid = first_gpu(scenario, A100)
    add_dbe(scenario, detail_index)
    plan = pod_plan(detail_index)
    procfs = fake_procfs(directory / "proc", scenario, plan)
    h100_scenario = SCENARIOS / "h100-mig.scn"
    h100_plan = h100_mig_plan()
    h100_procfs = fake_procfs(directory / "proc-h100-mig", h100_scenario, h100_plan)
    specs = [
        NodeSpec(
            A100,
            scenario=str(scenario),
            kubelet=True,
            kubelet_reply=a100_kubelet(plan),
            # Per-process series too (off by default), attributed to pods through the
            # processes' cgroups in a fake /proc.
            env={
                "GPU_NODE_EXPORTER_COLLECTOR_PROCESSES": "true",
                "GPU_NODE_EXPORTER_PATH_PROCFS": str(procfs),
            },
        ),
        NodeSpec(
            H100_MIG,
            scenario=str(h100_scenario),
            kubelet=True,
            kubelet_reply=plan_kubelet(h100_plan, H100_SLICED_GPU, len(H100_SLICED_PIDS)),
            env={
                "GPU_NODE_EXPORTER_COLLECTOR_PROCESSES": "true",
                "GPU_NODE_EXPORTER_PATH_PROCFS": str(h100_procfs),
            },
        ),
        NodeSpec(H100, scenario="h100-nvlink"),
        NodeSpec(T4, scenario=str(t4_scenario(directory))),
    ]
    stack = Stack(
        directory,
        specs,
        scrape_interval=f"{SCRAPE_SECONDS}s",
        evaluation_interval=f"{SCRAPE_SECONDS}s",
        collection_interval=f"{SCRAPE_SECONDS}s",
        extra_rule_files=sorted(COMPAT_RULES.glob("*.yaml")),
    )
    try:
        stack.start()
        started = time.time()
        fleet = Fleet(stack, started, detail_uuid, [])
        stack.wait_scraped()
        assert stack.node(A100).uuid(detail_index) == detail_uuid, "the probe saw other GPUs"
        inject_faults(stack, detail_index)
        wait_for_faults(fleet, detail_index)
        wait_for_activity(fleet)
        stack.prom.wait_rounds(3, timeout=60)
        fleet.quiet_recordings = sorted(
            name for name in recording_rule_names() if not present(fleet, name)
        )
        recorded = sorted(set(recording_rule_names()) - set(fleet.quiet_recordings))
        for step in sorted(subquery_steps(dashboards)):
            # A subquery only has points at multiples of its step: wait for the first one
            # at which every recording rule already had data (up to a step after the start).
            def aligned(step: str = step) -> bool:
                window = f"{int(time.time() - started)}s:{step}"
                return all(present(fleet, f"max_over_time({name}[{window}])") for name in recorded)

            wait_for(f"a [{step}]-aligned subquery point with data", aligned, 180, 1)
    except BaseException:
        print(log_tails(stack))
        stack.stop()
        raise
    try:
        yield fleet
    finally:
        stack.stop()


def inject_faults(stack: Stack, detail_gpu: int) -> None:
    """The faults, as the driver reports them: a kernel-log line and, for Xids NVML reports,
    the NVML event (Xid 79 also leaves the GPU lost until reset, and the driver then asks
    for a GPU reset with Xid 154)."""
    a100 = stack.node(A100)
    a100.xid(detail_gpu, 48, "An uncorrectable double bit error (DBE) has been detected on GPU.")
    a100.faults.xid(detail_gpu, 48)
    h100 = stack.node(H100)
    h100.xid(LOST_GPU, 79, "GPU has fallen off the bus.")
    h100.faults.xid(LOST_GPU, 79)
    h100.xid(LOST_GPU, 154, "GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset)")
    t4 = stack.node(T4)
    t4.xid(0, 13, "Graphics SM Warp Exception on (GPC 0, TPC 0, SM 0): Out Of Range Address")
    # One NVML call failing on every collection (what a flaky driver looks like).
    t4.faults.add_fault("nvmlDeviceGetEncoderUtilization", 0, "UNKNOWN")


def wait_for_faults(fleet: Fleet, detail_gpu: int) -> None:
    stack = fleet.stack
    a100, h100, t4 = stack.node(A100), stack.node(H100), stack.node(T4)
    detail = f'node="{A100}", uuid="{a100.uuid(detail_gpu)}"'
    events = {
        "Xid 48 counted": f'nvidia_gpu_xid_errors_total{{{detail}, xid="48"}} >= 1',
        "uncorrectable ECC errors counted": (
            f'nvidia_gpu_ecc_uncorrected_errors_total{{{detail}, scope="volatile"}} >= 1'
        ),
        "the H100 GPU fallen off the bus": (
            f'nvidia_gpu_fallen_off_bus{{node="{H100}", uuid="{h100.uuid(LOST_GPU)}"}} == 1'
        ),
        "the recovery action": (
            f'nvidia_gpu_recovery_action{{node="{H100}", uuid="{h100.uuid(LOST_GPU)}"}} == 1'
        ),
        "the failing NVML call counted": (
            f'nvidia_gpu_exporter_nvml_errors_total{{node="{T4}", code="UNKNOWN"}} > 0'
        ),
        "Xid 13 counted": (
            f'nvidia_gpu_xid_errors_total{{node="{T4}", uuid="{t4.uuid(0)}", xid="13"}} >= 1'
        ),
        "the Xid recording rule": 'gpu_xid:nvidia_gpu_xid_errors:increase10m{xid="48"} > 0',
        "the ECC recording rule": "gpu:nvidia_gpu_ecc_uncorrected_volatile:increase10m > 0",
    }
    for what, expr in events.items():
        wait_for(f"{what} in Prometheus ({expr})", lambda expr=expr: present(fleet, expr), 90)


def wait_for_activity(fleet: Fleet) -> None:
    """The activity series of gpu-h100-mig in Prometheus, with a rate: GPM profiling from the
    exporter's second collection, per-pod busy time from the second per-process answer once
    the pods are attributed."""
    node = f'node="{H100_MIG}"'
    window = f"[{4 * SCRAPE_SECONDS}s]"
    events = {
        "GPM profiling": (
            f"rate(nvidia_gpu_profiling_pipe_active_seconds_total{{{node}}}{window}) > 0"
        ),
        "GPM per MIG GPU instance": (
            f"rate(nvidia_gpu_mig_profiling_sm_active_seconds_total{{{node}}}{window}) > 0"
        ),
        "the three time-sliced pods' busy time": (
            "count(rate(nvidia_gpu_pod_utilization_busy_seconds_total"
            f'{{{node}, engine="gpu", pod_uid!="", pod=""}}{window}) > 0) == 3'
        ),
        "the starved GPU's trainer's busy time": (
            "rate(nvidia_gpu_pod_utilization_busy_seconds_total"
            f'{{{node}, engine="gpu", pod="trainer-2"}}{window}) > 0'
        ),
    }
    for what, expr in events.items():
        wait_for(f"{what} in Prometheus ({expr})", lambda expr=expr: present(fleet, expr), 90)


def log_tails(stack: Stack, lines: int = 60) -> str:
    """The last lines of every process' log: enough to see why the stack did not come up."""
    parts = []
    for chunk in stack.logs().split("===== ")[1:]:
        head, _, body = chunk.partition("\n")
        parts.append(f"===== {head}\n" + "\n".join(body.splitlines()[-lines:]))
    return "\n".join(parts)


# -- Prometheus' HTTP API -------------------------------------------------------------------


def api(port: int, path: str, params: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """GET /api/v1/<path>; the `data` of a success, ValueError with Prometheus' error else."""
    try:
        reply = http_json(port, f"/api/v1/{path}?" + urllib.parse.urlencode(params))
    except ValueError as err:
        raise QueryError(str(err)) from None
    if reply.get("status") != "success":
        raise QueryError(json.dumps(reply)[:500])
    return dict(reply["data"]) if isinstance(reply["data"], dict) else {"values": reply["data"]}


class QueryError(Exception):
    """Prometheus rejected a query (HTTP 4xx/5xx or status error)."""


def instant(port: int, expr: str, at: float) -> dict[str, Any]:
    return api(port, "query", [("query", expr), ("time", f"{at:.3f}")])


def query_range(port: int, expr: str, start: float, end: float, step: float) -> dict[str, Any]:
    return api(
        port,
        "query_range",
        [("query", expr), ("start", f"{start:.3f}"), ("end", f"{end:.3f}"), ("step", f"{step}")],
    )


def label_values(
    port: int, label: str, selector: str | None, start: float, end: float
) -> list[str]:
    """What Grafana's label_values(selector, label) lists: /api/v1/label/<label>/values with
    match[] over the dashboard's time range."""
    params = [("start", f"{start:.3f}"), ("end", f"{end:.3f}")]
    if selector:
        params.append(("match[]", selector))
    return [str(v) for v in api(port, f"label/{label}/values", params)["values"]]


# -- Grafana's variable resolution ----------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """The dashboard's time range and what Grafana derives from it."""

    start: float
    end: float

    @property
    def step(self) -> float:
        return float(SCRAPE_SECONDS)

    def builtins(self) -> dict[str, str]:
        seconds = max(int(self.end - self.start), 1)
        rate_interval = max(4 * SCRAPE_SECONDS, int(self.step) + SCRAPE_SECONDS)
        return {
            "__rate_interval": f"{rate_interval}s",
            "__rate_interval_ms": str(rate_interval * 1000),
            "__interval": f"{int(self.step)}s",
            "__interval_ms": str(int(self.step * 1000)),
            "__range": f"{seconds}s",
            "__range_s": str(seconds),
            "__range_ms": str(seconds * 1000),
        }


def sort_values(values: list[str], sort: int) -> list[str]:
    """Grafana's variable sort orders (0 none, 1/2 alphabetical, 3/4 numerical, 5/6
    alphabetical case-insensitive; odd ascending)."""

    def number(value: str) -> float:
        found = re.search(r"-?\d+(?:\.\d+)?", value)
        return float(found.group(0)) if found else float("inf")

    if sort in (1, 2):
        return sorted(values, reverse=sort == 2)
    if sort in (3, 4):
        return sorted(values, key=number, reverse=sort == 4)
    if sort in (5, 6):
        return sorted(values, key=str.lower, reverse=sort == 6)
    return values


def regex_all(values: Sequence[str]) -> str:
    """Grafana's Prometheus formatting of several values: escaped and joined into a regex."""
    escaped = [re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def resolve_variables(port: int, dashboard: Dashboard, window: Window) -> dict[str, str]:
    """Each variable's value as the dashboard opens, in definition order (later variables'
    queries may use earlier ones)."""
    values = window.builtins()
    for variable in dashboard.variables():
        name = str(variable.get("name"))
        kind = variable.get("type")
        if kind == "datasource":
            values[name] = "prometheus"
            continue
        if kind == "query":
            query = substitute(variable_query(variable), values.get)
            parsed = label_values_query(query)
            if parsed is None:
                raise AssertionError(f"{dashboard.uid}: variable {name}: cannot run {query!r}")
            selector, label = parsed
            options = label_values(port, label, selector, window.start, window.end)
        else:
            options = [o.strip() for o in variable_query(variable).split(",") if o.strip()]
        if variable.get("regex"):
            pattern = re.compile(str(variable["regex"]).strip("/"))
            options = [o for o in options if pattern.search(o)]
        options = sort_values(options, int(variable.get("sort") or 0))
        if variable.get("includeAll"):
            values[name] = str(variable.get("allValue") or regex_all(options))
        else:
            values[name] = options[0] if options else ""
    return values


# -- running the targets --------------------------------------------------------------------


@dataclass
class TargetResult:
    panel: dict[str, Any]
    target: dict[str, Any]
    expr: str  # with the variables resolved
    series: list[dict[str, str]]  # label sets of the series with data
    error: str = ""

    def describe(self) -> str:
        return (
            f"panel {self.panel.get('id')} {self.panel.get('title')!r} "
            f"target {self.target.get('refId')} "
            f"({'instant' if is_instant(self.target) else 'range'})"
        )


def run_target(port: int, expr: str, instant_query: bool, window: Window) -> list[dict[str, str]]:
    """Label sets of the series the query returns with at least one value."""
    if instant_query:
        data = instant(port, expr, window.end)
    else:
        data = query_range(port, expr, window.start, window.end, window.step)
    if data.get("resultType") == "scalar":
        return [{}]
    return [
        dict(item.get("metric", {}))
        for item in data.get("result", [])
        if item.get("values") or item.get("value")
    ]


def run_dashboard(fleet: Fleet, dashboard: Dashboard) -> list[TargetResult]:
    """Every target of every query panel, run once per dashboard (cached on the fleet)."""
    if dashboard.uid in fleet.results:
        return fleet.results[dashboard.uid]
    window = Window(fleet.started, time.time())
    values = resolve_variables(fleet.port, dashboard, window)
    fleet.variables[dashboard.uid] = values
    results = run_panels(fleet, dashboard, values, window)
    fleet.results[dashboard.uid] = results
    return results


def run_panels(
    fleet: Fleet,
    dashboard: Dashboard,
    values: dict[str, str],
    window: Window,
    only: Callable[[dict[str, Any]], bool] = lambda _panel: True,
) -> list[TargetResult]:
    """Every target of the query panels `only` selects, with the variables `values`."""
    results = []
    for panel in dashboard.panels():
        if not is_query_panel(panel) or not only(panel):
            continue
        for target in targets(panel):
            expr = substitute(str(target.get("expr", "")), values.get)
            result = TargetResult(panel, target, expr, [])
            left = variable_refs(expr)
            if left:
                result.error = f"unresolved variables {sorted(left)}"
            else:
                try:
                    result.series = run_target(fleet.port, expr, is_instant(target), window)
                except QueryError as err:
                    result.error = f"Prometheus rejected it: {err}"
            results.append(result)
    return results


def report(dashboard: Dashboard, failures: Sequence[tuple[TargetResult, str]], fleet: Fleet) -> str:
    lines = [f"{dashboard.path.name}: {len(failures)} failing target(s):"]
    for result, why in failures:
        lines.append(f"- {result.describe()}: {why}\n    expr: {result.expr}")
    lines.append(f"(logs and Prometheus data under {fleet.stack.directory})")
    if fleet.quiet_recordings:
        lines.append(f"recording rules with no series in this fleet: {fleet.quiet_recordings}")
    return "\n".join(lines)


def test_there_are_dashboards_to_query() -> None:
    """The parametrized tests below would be skipped, not failed, with no dashboards."""
    assert DASHBOARDS, "no dashboards/json/*.json: run `python -m dashboards`"


def data_failures(results: Sequence[TargetResult]) -> list[tuple[TargetResult, str]]:
    """Targets that failed to run, returned nothing without leave to, or claim leave to be
    empty without saying why."""
    failures: list[tuple[TargetResult, str]] = []
    for result in results:
        reason = empty_reason(result.panel)
        if result.error:
            failures.append((result, result.error))
        elif reason is not None and len(reason.split()) < 3:
            failures.append((result, f"says {EMPTY_OK!r} without a reason"))
        elif not result.series and reason is None:
            failures.append((result, "no data"))
    return failures


def legend_failures(results: Sequence[TargetResult]) -> list[tuple[TargetResult, str]]:
    """Time-series targets whose series carry a node label that their legend leaves out
    (Grafana's automatic legend, `__auto` or empty, shows every label and so names it)."""
    failures: list[tuple[TargetResult, str]] = []
    for result in results:
        legend = str(result.target.get("legendFormat", ""))
        if (
            result.panel.get("type") in TIME_SERIES_TYPES
            and not is_instant(result.target)
            and any("node" in series for series in result.series)
            and legend not in ("", "__auto")
            and not _LEGEND_NODE.search(legend)
        ):
            failures.append((result, f"series carry a node label; legend {legend!r} omits it"))
    return failures


@pytest.mark.timeout(420)
@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda d: d.path.stem)
def test_every_panel_returns_data(fleet: Fleet, dashboard: Dashboard) -> None:
    """Each target returns data; a panel that may be empty says `Empty on a healthy node`
    and why (and then its targets only have to run without an error)."""
    failures = data_failures(run_dashboard(fleet, dashboard))
    assert not failures, report(dashboard, failures, fleet)


@pytest.mark.timeout(420)
@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda d: d.path.stem)
def test_time_series_legends_name_the_node(fleet: Fleet, dashboard: Dashboard) -> None:
    """A time-series target whose result keeps a node label names the node in its legend: a
    legend without the host is the most asked-for fix of the public GPU dashboards."""
    failures = legend_failures(run_dashboard(fleet, dashboard))
    assert not failures, report(dashboard, failures, fleet)


@pytest.mark.timeout(420)
def test_checks_flag_empty_broken_and_unnamed_panels(fleet: Fleet, tmp_path: Path) -> None:
    """The checks above against deliberately bad panels, on the same Prometheus: a query that
    selects nothing, one Prometheus rejects, an unknown variable, a leave to be empty without
    a reason and a legend that drops the node are each reported; a documented empty panel
    and a good one are not."""
    ds = {"type": "prometheus", "uid": "${datasource}"}

    def panel(pid: int, expr: str, description: str = "x", legend: str = "{{node}}") -> JSON:
        target = {"expr": expr, "refId": "A", "instant": False, "legendFormat": legend}
        return {
            "id": pid,
            "type": "timeseries",
            "title": f"p{pid}",
            "description": description,
            "datasource": ds,
            "targets": [{**target, "datasource": ds}],
        }

    model = {
        "uid": "self-test",
        "templating": {
            "list": [
                {
                    "type": "query",
                    "name": "node",
                    "query": "label_values(nvidia_gpu_info, node)",
                    "includeAll": True,
                    "allValue": ".+",
                }
            ]
        },
        "panels": [
            panel(1, 'max by (node) (nvidia_gpu_up{node=~"$node"})'),
            panel(2, 'nvidia_gpu_up{node="no-such-node"}'),
            panel(3, "sum(rate(nvidia_gpu_energy_joules_total[$__rate_interval])"),
            panel(4, 'nvidia_gpu_up{node=~"$host"}'),
            panel(5, 'nvidia_gpu_up{node="no-such-node"}', f"{EMPTY_OK}."),
            panel(6, 'nvidia_gpu_up{node="no-such-node"}', f"{EMPTY_OK}: no GPU is lost."),
            panel(7, 'max by (node, gpu) (nvidia_gpu_up{node=~"$node"})', legend="GPU {{gpu}}"),
        ],
    }
    dashboard = Dashboard(tmp_path / "self-test.json", model)
    results = run_dashboard(fleet, dashboard)
    flagged = {r.panel["title"]: why for r, why in data_failures(results)}
    assert set(flagged) == {"p2", "p3", "p4", "p5"}, flagged
    assert flagged["p2"] == "no data"
    assert "rejected" in flagged["p3"]
    assert flagged["p4"] == "unresolved variables ['host']"
    assert "without a reason" in flagged["p5"]
    assert [r.panel["title"] for r, _ in legend_failures(results)] == ["p7"]
    assert results[0].series and all(s["node"] for s in results[0].series)


def test_fleet_has_what_the_dashboards_are_about(fleet: Fleet) -> None:
    """The stack is what the module docstring promises: three nodes with distinct GPUs, pods
    in two namespaces including MIG and time-shared ones, and the injected faults."""
    nodes = {r["metric"]["node"] for r in fleet.stack.prom.query("nvidia_gpu_info")}
    assert nodes == {A100, H100_MIG, H100, T4}
    uuids = [r["metric"]["uuid"] for r in fleet.stack.prom.query("nvidia_gpu_info")]
    assert len(uuids) == len(set(uuids)) == 25
    pods = fleet.stack.prom.query("nvidia_gpu_pod_info")
    assert {r["metric"]["namespace"] for r in pods} == {"ml-team", "inference"}
    assert any(r["metric"].get("mig_uuid") for r in pods)
    shared = [r for r in pods if r["metric"]["uuid"] == fleet.stack.node(A100).uuid(SHARED_GPU)]
    assert {r["metric"]["pod"] for r in shared} == {"server-0", "server-1"}
    assert any(r["metric"]["uuid"] == fleet.detail_gpu for r in pods)
    sliced_uuid = fleet.stack.node(H100_MIG).uuid(H100_SLICED_GPU)
    sliced = {r["metric"]["pod"] for r in pods if r["metric"]["uuid"] == sliced_uuid}
    assert sliced == {"sliced-0", "sliced-1", "sliced-2"}


def single_gpu(dashboard: Dashboard) -> bool:
    return any(v.get("name") == "gpu" and not v.get("includeAll") for v in dashboard.variables())


@pytest.mark.parametrize(
    "dashboard", [d for d in DASHBOARDS if single_gpu(d)], ids=lambda d: d.path.stem
)
def test_single_gpu_dashboards_open_on_the_faulty_gpu(fleet: Fleet, dashboard: Dashboard) -> None:
    """Where a dashboard shows one GPU (a single-select gpu variable), it opens on the GPU
    the faults were injected on, so its ECC, Xid and pod panels are checked with data."""
    run_dashboard(fleet, dashboard)
    assert fleet.variables[dashboard.uid]["gpu"] == fleet.detail_gpu, fleet.variables[dashboard.uid]


# -- the activity panels on the Hopper node ---------------------------------------------------


def needs_gpm(panel: dict[str, Any]) -> bool:
    return GPM_PANEL in str(panel.get("description", ""))


def dashboard_by_uid(uid: str) -> Dashboard:
    (found,) = [d for d in DASHBOARDS if d.uid == uid]
    return found


def no_data(results: Sequence[TargetResult]) -> list[tuple[TargetResult, str]]:
    """Every target that failed or returned nothing, its leave to be empty notwithstanding."""
    return [(r, r.error or "no data") for r in results if r.error or not r.series]


def test_gpm_panels_show_the_hopper_node() -> None:
    """Panels that need GPM say so (and may be empty on older GPUs), and a dashboard that
    opens on every node has one."""
    marked = {d.uid: [p for p in d.panels() if needs_gpm(p)] for d in DASHBOARDS}
    assert all(empty_reason(p) is not None for panels in marked.values() for p in panels), (
        "a GPM panel without leave to be empty on older GPUs"
    )
    assert {uid for uid, panels in marked.items() if panels} >= {
        "nvidia-gpu-detail",
        "nvidia-gpu-working",
        "nvidia-gpu-mig-pods",
    }


@pytest.mark.timeout(420)
@pytest.mark.parametrize(
    "dashboard",
    [d for d in DASHBOARDS if any(needs_gpm(p) for p in d.panels()) and not single_gpu(d)],
    ids=lambda d: d.path.stem,
)
def test_gpm_panels_return_data_with_a_hopper_node(fleet: Fleet, dashboard: Dashboard) -> None:
    """On the dashboards as they open (every node), every target of a GPM panel returns data:
    gpu-h100-mig has GPM, whole and per MIG GPU instance."""
    results = [r for r in run_dashboard(fleet, dashboard) if needs_gpm(r.panel)]
    assert results
    failures = no_data(results)
    assert not failures, report(dashboard, failures, fleet)


def detail_on(fleet: Fleet, gpu: int) -> tuple[list[TargetResult], Window]:
    """The GPU detail dashboard opened on GPU `gpu` of gpu-h100-mig, GPM panels only."""
    dashboard = dashboard_by_uid("nvidia-gpu-detail")
    window = Window(fleet.started, time.time())
    values = resolve_variables(fleet.port, dashboard, window)
    values.update(node=H100_MIG, gpu=fleet.stack.node(H100_MIG).uuid(gpu))
    return run_panels(fleet, dashboard, values, window, needs_gpm), window


def value_of(fleet: Fleet, result: TargetResult, at: float) -> float:
    (series,) = instant(fleet.port, result.expr, at)["result"]
    return float(series["value"][1])


@pytest.mark.timeout(420)
def test_detail_dashboard_on_the_starved_hopper_gpu(fleet: Fleet) -> None:
    """Opened on the busy-but-starved H100 (utilization 95 %, SMs 5 % active), the detail
    dashboard's profiling panels have data and its starved stat says so."""
    results, window = detail_on(fleet, H100_STARVED_GPU)
    whole = [r for r in results if WHOLE_GPU_GPM_PANEL in str(r.panel.get("description"))]
    assert whole
    failures = no_data(whole)
    assert not failures, report(dashboard_by_uid("nvidia-gpu-detail"), failures, fleet)
    (stat,) = [r for r in results if r.panel.get("title") == "Busy but starved"]
    assert value_of(fleet, stat, window.end) == 1


@pytest.mark.timeout(420)
def test_detail_dashboard_on_a_hopper_mig_gpu(fleet: Fleet) -> None:
    """Opened on an H100 in MIG mode, the GPU instance activity has a line per GPU instance
    (3g.40gb and two 2g.20gb), and the whole-GPU profiling panels have none (MIG mode)."""
    results, _ = detail_on(fleet, H100_MIG_GPU)
    by_title = {r.panel.get("title"): r for r in results}
    instances = by_title["GPU instance activity"].series
    assert {(s["profile"], s["gpu_instance"]) for s in instances} == {
        ("3g.40gb", "2"),
        ("2g.20gb", "3"),
        ("2g.20gb", "5"),
    }
    assert not by_title["Math pipe activity"].series


@pytest.mark.timeout(420)
def test_time_sliced_pods_share_their_gpu(fleet: Fleet) -> None:
    """The MIG and pods dashboard splits the time-sliced H100 between its three pods, named
    by pod UID (the kubelet's allocations cannot tell them apart), as 0.5, 0.3 and 0.2 of its
    busy time (h100-mig.scn), and the starved GPU's trainer, alone on it, has all of it."""
    dashboard = dashboard_by_uid("nvidia-gpu-mig-pods")
    (share,) = [
        r
        for r in run_dashboard(fleet, dashboard)
        if r.panel.get("title") == "Each pod's share of its GPU"
    ]
    node = fleet.stack.node(H100_MIG)
    on_gpu = {node.uuid(H100_SLICED_GPU): "sliced", node.uuid(H100_STARVED_GPU): "starved"}
    # Over 10 s rather than the 4 s rate interval: the per-pod counters advance on the
    # attribution thread's interval, the GPU's on the NVML collection's.
    expr = share.expr.replace(f"[{Window(0, 1).builtins()['__rate_interval']}]", "[10s]")
    values: dict[tuple[str, str], float] = {}
    for series in instant(fleet.port, expr, time.time())["result"]:
        labels = series["metric"]
        if labels.get("node") == H100_MIG and labels["uuid"] in on_gpu:
            values[(on_gpu[labels["uuid"]], labels["pod"])] = float(series["value"][1])
    sliced = sorted((v for (gpu, _), v in values.items() if gpu == "sliced"), reverse=True)
    assert all(pod.startswith("uid ") for gpu, pod in values if gpu == "sliced"), values
    assert sliced == pytest.approx([0.5, 0.3, 0.2], abs=0.08), values
    assert values.get(("starved", "trainer-2")) == pytest.approx(1, abs=0.1), values


def test_variable_resolution_follows_grafana() -> None:
    """All -> allValue (or an escaped alternation without one); single-select -> first value
    in the sort order."""
    assert sort_values(["b", "a", "C"], 1) == ["C", "a", "b"]
    assert sort_values(["b", "a", "C"], 5) == ["a", "b", "C"]
    assert sort_values(["gpu10", "gpu9"], 3) == ["gpu9", "gpu10"]
    assert regex_all(["a.b", "c"]) == r"(a\\.b|c)"
    window = Window(1000.0, 1090.0)
    assert window.builtins()["__rate_interval"] == "4s"
    assert window.builtins()["__range"] == "90s"
