"""The paging pipeline of docs/alerting.md as real processes on loopback.

simulated nodes (`python -m exporter --simulate`, one fake kubelet) -> Prometheus with the
repo's alerts/rules/*.yaml -> Alertmanager with the repo's alerts/alertmanager.yml -> a webhook
receiver in this process that records every notification.

Only what a test has to change is changed: the receivers' webhook URLs point at the recorder,
and a test may shorten the `for:` of ONE named rule in its copy of the rules (the real `for:`
is covered by the promtool unit tests in alerts/tests/).
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import yaml

from exporter.fakenvml.control import FaultFile
from tests.fakekubelet import Behaviour, FakeKubelet, allocatable_reply, pods_reply
from tests.tools import ExporterProcess, http_get, require_tool

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "alerts" / "rules"
ALERTMANAGER_CONFIG = REPO / "alerts" / "alertmanager.yml"
JOB = "gpu-node-exporter"  # the job name the shipped rules select on (up{job=...})

POD_NAMESPACE = "ml-team"
POD_NAME = "trainer-0"
POD_CONTAINER = "main"
POD_GPU = 1  # the GPU index the fake kubelet gives to ml-team/trainer-0

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.2) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except (OSError, http.client.HTTPException, ValueError, KeyError) as err:
            last_error = err
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


def free_port() -> int:
    """A port free right now. Prometheus and Alertmanager cannot listen on port 0 and report
    it, so the callers retry with another port when the child loses the race for this one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(port: int, path: str) -> Any:
    status, body = http_get(port, path)
    if status != 200:
        raise ValueError(f"GET {path}: HTTP {status}: {body[:300]!r}")
    return json.loads(body)


def parse_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Samples of one family from a text exposition (labels, value)."""
    from prometheus_client.parser import text_string_to_metric_families

    out = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out.append((dict(sample.labels), float(sample.value)))
    return out


# -- webhook receiver -------------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    """One POST from Alertmanager: the receiver (URL path) and its JSON body."""

    received: float  # time.monotonic() when the request arrived
    receiver: str
    body: dict[str, Any]

    @property
    def alerts(self) -> list[dict[str, Any]]:
        return list(self.body.get("alerts", []))

    def describe(self) -> str:
        names = [
            f"{a['status']} {a['labels'].get('alertname')}"
            f"{{node={a['labels'].get('node')},gpu={a['labels'].get('gpu')}}}"
            for a in self.alerts
        ]
        return f"/{self.receiver}: {self.body.get('status')} {names}"


class WebhookReceiver:
    """http.server on 127.0.0.1:0 recording every notification Alertmanager POSTs."""

    def __init__(self) -> None:
        self.notifications: list[Notification] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"unparsable": raw.decode(errors="replace")}
                path = urllib.parse.urlsplit(self.path).path.strip("/")
                with receiver._lock:
                    receiver.notifications.append(Notification(arrived, path, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook", daemon=True
        )

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def url(self, receiver: str) -> str:
        return f"http://127.0.0.1:{self.port}/{receiver}"

    def received(self) -> list[Notification]:
        with self._lock:
            return list(self.notifications)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def log(self) -> str:
        return "\n".join(
            json.dumps({"receiver": n.receiver, **n.body}, sort_keys=True) for n in self.received()
        )


# -- configuration derived from the repo's files ----------------------------------------------


def copy_rules(destination: Path, shorten: dict[str, str] | None = None) -> list[Path]:
    """alerts/rules/*.yaml into `destination`, verbatim except `for:` of the rules named in
    `shorten` (alert name -> new duration). Raises if a named alert does not exist."""
    sources = sorted(RULES_DIR.glob("*.yaml"))
    assert sources, f"no rule files in {RULES_DIR}"
    destination.mkdir(parents=True, exist_ok=True)
    pending = dict(shorten or {})
    copies = []
    for source in sources:
        target = destination / source.name
        document = yaml.safe_load(source.read_text())
        touched = False
        for group in document.get("groups", []):
            for rule in group.get("rules", []):
                name = rule.get("alert")
                if name in pending:
                    rule["for"] = pending.pop(name)
                    touched = True
        if touched:
            target.write_text(yaml.safe_dump(document, sort_keys=False, width=1000))
        else:
            shutil.copyfile(source, target)
        copies.append(target)
    assert not pending, f"alert(s) {sorted(pending)} not found in {RULES_DIR}"
    return copies


def alert_rules() -> dict[str, dict[str, Any]]:
    """Every alerting rule of the repo by name (to read severities and `for:`)."""
    rules: dict[str, dict[str, Any]] = {}
    for source in sorted(RULES_DIR.glob("*.yaml")):
        for group in yaml.safe_load(source.read_text()).get("groups", []):
            for rule in group.get("rules", []):
                if "alert" in rule:
                    rules[rule["alert"]] = rule
    return rules


def alertmanager_config(webhook: WebhookReceiver) -> dict[str, Any]:
    """The shipped Alertmanager config with each receiver's webhook URL pointed at `webhook`
    (http://127.0.0.1:<port>/<receiver name>); everything else is kept as it is."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    for receiver in config.get("receivers", []):
        hooks = receiver.get("webhook_configs") or []
        assert len(hooks) == 1, f"receiver {receiver['name']}: expected one webhook_configs entry"
        hooks[0]["url"] = webhook.url(receiver["name"])
    return config


def route_of(config: dict[str, Any], receiver: str) -> dict[str, Any]:
    """The first route (depth first) sending to `receiver`, with the parents' settings inherited."""

    def walk(route: dict[str, Any], inherited: dict[str, Any]) -> dict[str, Any] | None:
        merged = {**inherited, **{k: v for k, v in route.items() if k != "routes"}}
        for child in route.get("routes", []) or []:
            found = walk(child, merged)
            if found:
                return found
        return merged if merged.get("receiver") == receiver else None

    found = walk(config["route"], {})
    assert found, f"no route to receiver {receiver}"
    return found


def parse_duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    total, number = 0.0, ""
    index = 0
    while index < len(text):
        char = text[index]
        if char.isdigit() or char == ".":
            number += char
            index += 1
            continue
        unit = "ms" if text.startswith("ms", index) else char
        total += float(number) * units[unit]
        number = ""
        index += len(unit)
    return total


# -- processes ---------------------------------------------------------------------------------


class ServiceProcess:
    """A Prometheus or Alertmanager child on 127.0.0.1:<port>, retried on another port when
    the one picked is taken before the child binds it."""

    name = "service"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = directory / f"{self.name}.log"
        self._log: Any = None

    def command(self, port: int) -> list[str]:
        raise NotImplementedError

    def ready_path(self) -> str:
        return "/-/ready"

    def start(self, timeout: float = 60.0) -> ServiceProcess:
        for _attempt in range(5):
            port = free_port()
            self._log = self.log_path.open("ab")
            self.process = subprocess.Popen(
                self.command(port), stdout=self._log, stderr=subprocess.STDOUT
            )
            self.port = port
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                with contextlib.suppress(OSError, http.client.HTTPException):
                    if http_get(port, self.ready_path())[0] == 200:
                        return self
                time.sleep(0.1)
            else:
                raise AssertionError(f"{self.name} not ready in {timeout}s:\n{self.log()}")
            self._log.close()
            if "address already in use" not in self.log():
                raise AssertionError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log()}"
                )
        raise AssertionError(f"{self.name}: no free port after 5 attempts:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._log is not None:
            self._log.close()

    def log(self) -> str:
        if self._log is not None and not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def self_metric(self, name: str) -> list[tuple[dict[str, str], float]]:
        status, body = http_get(self.port, "/metrics")
        assert status == 200
        return parse_samples(body.decode(), name)


class Alertmanager(ServiceProcess):
    name = "alertmanager"

    def __init__(self, directory: Path, config: dict[str, Any]) -> None:
        super().__init__(directory)
        self.config = config
        self.config_path = directory / "alertmanager.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def command(self, port: int) -> list[str]:
        return [
            require_tool("prometheus-alertmanager"),
            f"--config.file={self.config_path}",
            f"--storage.path={self.directory / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no clustering: it would try to gossip
            "--log.level=debug",
        ]

    def alerts(self) -> list[dict[str, Any]]:
        """/api/v2/alerts: active, suppressed (inhibited/silenced) and unprocessed alerts."""
        return list(http_json(self.port, "/api/v2/alerts"))

    def webhook_notifications_sent(self) -> float:
        """Webhook notifications Alertmanager has attempted (successful or not)."""
        return sum(
            value
            for labels, value in self.self_metric("alertmanager_notifications_total")
            if labels.get("integration") == "webhook"
        )


class Prometheus(ServiceProcess):
    name = "prometheus"

    def __init__(
        self,
        directory: Path,
        targets: dict[str, int],
        alertmanager_port: int | None,
        scrape_interval: str,
        evaluation_interval: str,
        shorten: dict[str, str] | None = None,
        extra_rule_files: Sequence[Path] = (),
        target_labels: dict[str, str] | None = None,
        log_level: str = "debug",
    ) -> None:
        super().__init__(directory)
        rules = copy_rules(directory / "rules", shorten)
        # Loaded as they are, after the repo's rules (e.g. alerts/compat/*.yaml).
        rules += [Path(path).resolve() for path in extra_rule_files]
        self.config = {
            "global": {
                "scrape_interval": scrape_interval,
                "scrape_timeout": scrape_interval
                if parse_duration(scrape_interval) < 10
                else "10s",
                "evaluation_interval": evaluation_interval,
            },
            "rule_files": [str(path) for path in rules],
            "scrape_configs": [
                {
                    "job_name": JOB,
                    "honor_labels": True,
                    "static_configs": [
                        {
                            "targets": [f"127.0.0.1:{port}"],
                            "labels": {"node": node, **(target_labels or {})},
                        }
                        for node, port in targets.items()
                    ],
                }
            ],
        }
        if alertmanager_port is not None:  # None: rules only, no notifications (benchmarks)
            self.config["alerting"] = {
                "alertmanagers": [
                    {"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}
                ]
            }
        self.log_level = log_level
        self.config_path = directory / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    def command(self, port: int) -> list[str]:
        return [
            require_tool("prometheus"),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.directory / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--log.level={self.log_level}",
        ]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector."""
        reply = http_json(self.port, "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert reply["status"] == "success", reply
        return list(reply["data"]["result"])

    def alerts(self) -> list[dict[str, Any]]:
        """/api/v1/alerts: pending and firing alerts with their labels."""
        return list(http_json(self.port, "/api/v1/alerts")["data"]["alerts"])

    def rule_iterations(self) -> float:
        """Evaluation rounds every rule group has completed (the slowest group's count)."""
        counts = self.self_metric("prometheus_rule_group_iterations_total")
        assert counts, "no rule groups loaded"
        return min(value for _labels, value in counts)

    def wait_rounds(self, rounds: int, timeout: float) -> None:
        """Wait until every rule group has been evaluated `rounds` more times."""
        start = self.rule_iterations()
        wait_for(
            f"{rounds} more rule evaluations",
            lambda: self.rule_iterations() >= start + rounds,
            timeout,
        )


# -- simulated nodes ---------------------------------------------------------------------------


# What a fake kubelet serves: pods as tests.fakekubelet.pods_reply takes them
# ((namespace, pod, [(container, [(resource, [device ids])])]), ...) and the allocatable
# device groups ([(resource, [device ids])]).
Pod = tuple[str, str, list[tuple[str, list[tuple[str, list[str]]]]]]
KubeletReply = tuple[list[Pod], list[tuple[str, list[str]]]]


@dataclass
class NodeSpec:
    name: str
    scenario: str = "a100-mig"
    driver_version: str | None = None  # FAKE_NVML_DRIVER_VERSION; None: the scenario's
    kubelet: bool = False  # serve pod-resources; GPU POD_GPU goes to ml-team/trainer-0
    env: dict[str, str] = field(default_factory=dict)
    # With kubelet=True: what the kubelet serves instead of ml-team/trainer-0 on GPU POD_GPU,
    # computed once the node's GPUs (uuids, MIG devices) are known.
    kubelet_reply: Callable[[SimulatedNode], KubeletReply] | None = None


class SimulatedNode:
    """One exporter on the fake driver with its own kernel-log FIFO and faults file."""

    def __init__(self, spec: NodeSpec, directory: Path, collection_interval: str) -> None:
        self.spec = spec
        self.name = spec.name
        directory.mkdir(parents=True, exist_ok=True)
        self.kmsg = directory / "kmsg"
        os.mkfifo(self.kmsg)
        self.faults = FaultFile(directory / "faults")
        self.kubelet: FakeKubelet | None = None
        args = [
            f"--simulate={spec.scenario}",
            f"--path.kmsg={self.kmsg}",
            f"--collection.interval={collection_interval}",
            "--log.level=info",
        ]
        if spec.kubelet:
            sock = directory / "pod-resources" / "kubelet.sock"
            sock.parent.mkdir()
            self.kubelet = FakeKubelet(sock, Behaviour(list_reply=pods_reply())).start()
            args.append(f"--path.pod-resources-socket={sock}")
        else:
            args.append("--collector.pod-attribution=off")
        env = {"FAKE_NVML_NODE": spec.name, **self.faults.env(), **spec.env}
        if spec.driver_version:
            env["FAKE_NVML_DRIVER_VERSION"] = spec.driver_version
        self.exporter = ExporterProcess(*args, env=env)
        self._writer: int | None = None
        self._seq = 0
        self.gpus: dict[int, dict[str, str]] = {}  # index -> nvidia_gpu_info labels
        self.units: list[dict[str, str]] = []  # nvidia_gpu_allocated labels: GPUs and MIG devices
        self.pods: list[dict[str, str]] = []  # labels of the pods the kubelet serves (node-local)

    @property
    def port(self) -> int:
        return self.exporter.port

    def wait_ready(self) -> None:
        self.exporter.wait_ready()
        info = parse_samples(self.exporter.metrics(), "nvidia_gpu_info")
        self.gpus = {int(labels["gpu"]): labels for labels, _ in info}
        assert self.gpus, "the simulated node shows no GPU"
        if self.kubelet is not None:
            self._give_pod_its_gpu()

    def _give_pod_its_gpu(self) -> None:
        """The kubelet offers every GPU and MIG device and gives GPU POD_GPU to the pod (or
        serves what the spec's kubelet_reply computes)."""
        assert self.kubelet is not None
        units = parse_samples(self.exporter.metrics(), "nvidia_gpu_allocated")
        self.units = [labels for labels, _ in units]
        if self.spec.kubelet_reply is not None:
            pods, groups = self.spec.kubelet_reply(self)
        else:
            whole = [labels["uuid"] for labels, _ in units if not labels["mig_uuid"]]
            migs = [labels["mig_uuid"] for labels, _ in units if labels["mig_uuid"]]
            groups = [("nvidia.com/gpu", whole)]
            if migs:
                groups.append(("nvidia.com/mig-1g.10gb", migs))
            pods = [
                (
                    POD_NAMESPACE,
                    POD_NAME,
                    [(POD_CONTAINER, [("nvidia.com/gpu", [self.uuid(POD_GPU)])])],
                )
            ]
        self.pods = [{"namespace": namespace, "pod": name} for namespace, name, _ in pods]
        if self.spec.kubelet_reply is None:
            self.pods[0]["uuid"] = self.uuid(POD_GPU)
        # Allocatable first: a refresh calls List, then GetAllocatableResources, so the refresh
        # that shows the pods (what we wait for) also shows every device allocatable.
        self.kubelet.behaviour.allocatable_reply = allocatable_reply(groups)
        self.kubelet.behaviour.list_reply = pods_reply(*pods)

        def every_pod_shown() -> bool:
            shown = [
                labels
                for labels, _ in parse_samples(self.exporter.metrics(), "nvidia_gpu_pod_info")
            ]
            return all(
                any(all(labels.get(k) == v for k, v in pod.items()) for labels in shown)
                for pod in self.pods
            )

        names = ", ".join(f"{pod['namespace']}/{pod['pod']}" for pod in self.pods)
        wait_for(f"{self.name}: pod_info of {names} on /metrics", every_pod_shown, 30)

    def uuid(self, gpu: int) -> str:
        return self.gpus[gpu]["uuid"]

    def kmsg_pci(self, gpu: int) -> str:
        """`PCI:0000:0f:00` for NVML's `00000000:0F:00.0`, as the driver prints it."""
        domain, bus, device = self.gpus[gpu]["pci_bus_id"].split(".")[0].split(":")
        return f"PCI:{int(domain, 16):04x}:{bus.lower()}:{device.lower()}"

    def write_kmsg(self, text: str, priority: int = 3) -> None:
        """One kernel log record, stamped now (monotonic usec, as /dev/kmsg)."""
        if self._writer is None:
            self._writer = wait_for(
                f"{self.name}: the exporter to open its kmsg FIFO",
                self._open_writer,
                10,
                0.05,
            )
        self._seq += 1
        record = f"{priority},{self._seq},{int(time.monotonic() * 1e6)},-;{text}\n"
        os.write(self._writer, record.encode())

    def _open_writer(self) -> int | None:
        try:
            return os.open(self.kmsg, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as err:
            if err.errno == errno.ENXIO:  # no reader yet
                return None
            raise

    def xid(self, gpu: int, code: int, message: str) -> None:
        self.write_kmsg(
            f"NVRM: Xid ({self.kmsg_pci(gpu)}): {code}, pid='<unknown>', name=<unknown>, {message}"
        )

    def stop(self) -> None:
        if self._writer is not None:
            os.close(self._writer)
            self._writer = None
        if self.exporter.process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.exporter.stop()
        if self.exporter.process.poll() is None:
            self.exporter.process.kill()
        if self.kubelet is not None:
            self.kubelet.stop()

    def log(self) -> str:
        return self.exporter.log()


# -- the whole pipeline ------------------------------------------------------------------------


class Stack:
    """Nodes, Prometheus, Alertmanager and the webhook recorder of one test."""

    def __init__(
        self,
        directory: Path,
        nodes: Iterable[NodeSpec],
        *,
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        collection_interval: str = "1s",
        shorten: dict[str, str] | None = None,
        extra_rule_files: Sequence[Path] = (),
    ) -> None:
        self.directory = directory
        self.specs = list(nodes)
        self.extra_rule_files = list(extra_rule_files)
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.collection_interval = collection_interval
        self.shorten = shorten
        self.webhook = WebhookReceiver()
        self.nodes: dict[str, SimulatedNode] = {}
        self.alertmanager: Alertmanager | None = None
        self.prometheus: Prometheus | None = None

    def start(self) -> Stack:
        self.webhook.start()
        for spec in self.specs:  # all exporters start at once; they are ready in ~0.3 s each
            self.nodes[spec.name] = SimulatedNode(
                spec, self.directory / spec.name, self.collection_interval
            )
        self.alertmanager = Alertmanager(self.directory, alertmanager_config(self.webhook))
        self.alertmanager.start()
        for node in self.nodes.values():
            node.wait_ready()
        self.prometheus = Prometheus(
            self.directory,
            {name: node.port for name, node in self.nodes.items()},
            self.alertmanager.port,
            self.scrape_interval,
            self.evaluation_interval,
            self.shorten,
            self.extra_rule_files,
        )
        self.prometheus.start()
        return self

    @property
    def prom(self) -> Prometheus:
        assert self.prometheus is not None
        return self.prometheus

    @property
    def am(self) -> Alertmanager:
        assert self.alertmanager is not None
        return self.alertmanager

    def node(self, name: str) -> SimulatedNode:
        return self.nodes[name]

    def wait_scraped(self, timeout: float = 90) -> None:
        """Every target up, every GPU counted by the recording rules, the pod visible."""
        names = set(self.nodes)

        def all_up() -> bool:
            result = self.prom.query(f'up{{job="{JOB}"}}')
            return {r["metric"]["node"] for r in result if r["value"][1] == "1"} == names

        wait_for("every target scraped with up == 1", all_up, timeout)

        def gpus_counted() -> bool:
            result = self.prom.query("node:nvidia_gpu_up:sum")
            seen = {r["metric"]["node"]: float(r["value"][1]) for r in result}
            return all(seen.get(name) == len(node.gpus) for name, node in self.nodes.items())

        wait_for("node:nvidia_gpu_up:sum == GPU count on every node", gpus_counted, timeout)
        for node in self.nodes.values():
            for pod in node.pods:
                matchers = ",".join(f'{k}="{v}"' for k, v in {"node": node.name, **pod}.items())
                expr = f"nvidia_gpu_pod_info{{{matchers}}}"
                wait_for(f"{expr} in Prometheus", lambda expr=expr: self.prom.query(expr), timeout)

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()
        for service in (self.prometheus, self.alertmanager):
            if service is not None:
                service.stop()
        self.webhook.stop()

    def logs(self) -> str:
        parts = []
        for service in (self.prometheus, self.alertmanager):
            if service is not None:
                parts.append(f"===== {service.name} ({service.log_path}) =====\n{service.log()}")
        for node in self.nodes.values():
            parts.append(f"===== exporter {node.name} =====\n{node.log()}")
        parts.append(f"===== webhook notifications =====\n{self.webhook.log()}")
        return "\n".join(parts)
