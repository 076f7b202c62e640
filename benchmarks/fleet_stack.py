"""The processes of one fleet measurement: simulated nodes and the Prometheus that scrapes them.

One `python -m exporter --simulate` process per node (FAKE_NVML_NODE gives each its own UUIDs,
serials and PCI ids), not one process serving many endpoints: the exporter's real exposition
(families, labels, pod series) is what Prometheus ingests, and a single multiplexing server
would need code the product does not ship. Each node's port comes from its `exporter_started`
log line (tests.e2e.stack.SimulatedNode, the e2e tests' nodes).

Prometheus is the Debian package's binary with the repo's alerts/rules/*.yaml copied verbatim
(tests.e2e.stack.copy_rules) and the scrape config the README documents: honor_labels, a
`node` and a `cluster` label per target. No Alertmanager: alert evaluation costs the same with
nobody to notify, and the benchmark measures the Prometheus side only.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.stack import (
    JOB,
    KubeletReply,
    NodeSpec,
    Pod,
    Prometheus,
    SimulatedNode,
    http_json,
    parse_samples,
    wait_for,
)
from tests.tools import http_get, require_tool

CLUSTER = "bench"
GPU = "nvidia.com/gpu"
MIG = "nvidia.com/mig-1g.10gb"


def node_name(index: int) -> str:
    return f"gpu-node-{index:03d}"


NAMESPACES = ("team-a", "team-b", "team-c", "team-d")


def allocate_all_but_one(node: SimulatedNode) -> KubeletReply:
    """What a busy node's kubelet serves: every MIG device and every whole GPU but the last
    held by a pod of its own, across four namespaces (the cost dashboard and the allocation
    rules then have pods to join against, and one GPU per node shows as unallocated)."""
    whole = [u["uuid"] for u in node.units if not u["mig_uuid"]]
    migs = [u["mig_uuid"] for u in node.units if u["mig_uuid"]]
    pods: list[Pod] = []
    for index, uuid in enumerate(whole[:-1]):
        namespace = NAMESPACES[index % len(NAMESPACES)]
        pods.append((namespace, f"{node.name}-job-{index}", [("main", [(GPU, [uuid])])]))
    for index, mig in enumerate(migs):
        namespace = NAMESPACES[index % len(NAMESPACES)]
        pods.append((namespace, f"{node.name}-mig-{index}", [("main", [(MIG, [mig])])]))
    return pods, [(GPU, whole), (MIG, migs)]


class FleetNode:
    """One simulated node: an exporter on the fake driver with a node identity of its own
    (tests.e2e.stack.SimulatedNode: FAKE_NVML_NODE, a kernel-log FIFO) and, with `pods`, a
    fake kubelet whose pods hold all of its GPUs but one."""

    def __init__(
        self, name: str, scenario: str, collection_interval: str, directory: Path, pods: bool
    ) -> None:
        spec = NodeSpec(
            name=name,
            scenario=scenario,
            kubelet=pods,
            kubelet_reply=allocate_all_but_one if pods else None,
        )
        self.name = name
        self.node = SimulatedNode(spec, directory / name, collection_interval)

    @property
    def port(self) -> int:
        return int(self.node.port)

    def wait_ready(self) -> None:
        self.node.wait_ready()

    def stop(self) -> None:
        self.node.stop()


class FleetPrometheus(Prometheus):
    """Prometheus scraping every node at `interval` and evaluating the repo's rules at it, with
    no Alertmanager and a `cluster` target label (the fleet dashboards select on it)."""

    def __init__(self, directory: Path, targets: dict[str, int], interval: str) -> None:
        super().__init__(
            directory,
            targets,
            alertmanager_port=None,
            scrape_interval=interval,
            evaluation_interval=interval,
            target_labels={"cluster": CLUSTER},
            log_level="warn",
        )

    @staticmethod
    def version() -> str:
        """The first line of `prometheus --version` (recorded with the results)."""
        import subprocess

        done = subprocess.run(
            [require_tool("prometheus"), "--version"],
            capture_output=True,
            text=True,
            check=False,
        )
        return (done.stdout or done.stderr).splitlines()[0] if (done.stdout or done.stderr) else ""

    @staticmethod
    def commit(root: Path) -> str:
        """HEAD of the checkout, marked when the tree has uncommitted changes."""
        import subprocess

        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        return f"{head} + uncommitted changes" if dirty else head

    def slowest_rules(self, count: int = 8) -> list[dict[str, object]]:
        """The rules with the longest last evaluation (/api/v1/rules evaluationTime): which
        rule of a slow group to look at."""
        groups = http_json(self.port, "/api/v1/rules")["data"]["groups"]
        rules = [
            {
                "group": group["name"],
                "rule": rule["name"],
                "ms": float(rule.get("evaluationTime", 0.0)) * 1000,
            }
            for group in groups
            for rule in group["rules"]
        ]
        return sorted(rules, key=lambda r: float(str(r["ms"])), reverse=True)[:count]

    def rss_bytes(self) -> int:
        """VmRSS of the Prometheus process (what an operator's memory limit is set against)."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0


@dataclass(frozen=True)
class SelfMetrics:
    """One read of Prometheus' own /metrics (no self-scrape job: it would add its series)."""

    at: float  # time.monotonic()
    samples_appended: float
    head_series: float
    cpu_seconds: float
    heap_inuse: float
    rule_durations: dict[str, float]  # rule group name -> last evaluation seconds
    rule_iterations: float  # the slowest group's completed rounds
    rule_missed: float  # iterations missed, all groups


def read_self_metrics(port: int) -> SelfMetrics:
    status, body = http_get(port, "/metrics")
    if status != 200:
        raise ValueError(f"Prometheus /metrics: HTTP {status}")
    text = body.decode()

    def one(name: str) -> float:
        return sum(value for _labels, value in parse_samples(text, name))

    durations = {
        labels["rule_group"].split(";")[-1]: value
        for labels, value in parse_samples(text, "prometheus_rule_group_last_duration_seconds")
    }
    iterations = [v for _l, v in parse_samples(text, "prometheus_rule_group_iterations_total")]
    return SelfMetrics(
        at=time.monotonic(),
        samples_appended=one("prometheus_tsdb_head_samples_appended_total"),
        head_series=one("prometheus_tsdb_head_series"),
        cpu_seconds=one("process_cpu_seconds_total"),
        heap_inuse=one("go_memstats_heap_inuse_bytes"),
        rule_durations=durations,
        rule_iterations=min(iterations) if iterations else 0.0,
        rule_missed=one("prometheus_rule_group_iterations_missed_total"),
    )


def wait_all_up(prometheus: FleetPrometheus, names: set[str], timeout: float) -> None:
    def all_up() -> bool:
        result = prometheus.query(f'up{{job="{JOB}"}}')
        seen = set()
        for item in result:
            metric = item["metric"]
            value = item["value"]
            assert isinstance(metric, dict)
            assert isinstance(value, list)
            if value[1] == "1":
                seen.add(str(metric["node"]))
        return seen == names

    wait_for("every node scraped with up == 1", all_up, timeout, 0.5)
