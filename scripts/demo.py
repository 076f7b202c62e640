"""A local demo of the whole pipeline, for people who want to see it before they install.

    python scripts/demo.py            # or: make demo
    python scripts/demo.py xid gpu-h100-nvlink 7 79     # in another shell: a GPU falls off

Four simulated nodes (`gpu-node-exporter --simulate`, each its own scenario and kernel log),
a real Prometheus loading alerts/rules/*.yaml and a real Alertmanager loading
alerts/alertmanager.yml, all on 127.0.0.1. The shipped Alertmanager config sends every
notification to webhooks on 127.0.0.1:9099; this script listens there and prints each page,
ticket and record as it arrives, so the headline promise (Xid 79 pages within a minute, naming
node and GPU) is visible in this terminal.

Why a script and not docker compose: no container registry is reachable from our CI machines,
and Prometheus and Alertmanager come from Debian packages (`make system-deps`). Grafana is not
packaged in Debian; dashboards/provisioning/ holds the files a local Grafana needs (the script
prints how to point one at this Prometheus).

Intervals are shorter than production (5 s scrape and rule evaluation instead of 15 s) so the
demo reacts quickly; the rules and routing are the shipped files, unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from exporter.fakenvml.control import FaultFile

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "alerts" / "rules"
ALERTMANAGER_CONFIG = ROOT / "alerts" / "alertmanager.yml"
PROVISIONING = ROOT / "dashboards" / "provisioning"
DASHBOARDS = ROOT / "dashboards" / "json"
JOB = "gpu-node-exporter"  # the job name the shipped rules select on
INTERVAL = "5s"
DRIVER_VERSION = "560.35.03"


@dataclass(frozen=True)
class Node:
    name: str
    scenario: str


NODES = (
    Node("gpu-a100-mig", "a100-mig"),
    Node("gpu-h100-nvlink", "h100-nvlink"),
    Node("gpu-t4", "t4"),
    # Hopper with MIG, a bursty, a starved and a time-sliced GPU: the profiling (GPM) and
    # busy-seconds panels have data (docs/utilization.md).
    Node("gpu-h100-mig", "h100-mig"),
)


@dataclass(frozen=True)
class Ports:
    """Where each process listens; 0 picks a free port (what the tests use)."""

    exporters: tuple[int, ...]
    prometheus: int
    alertmanager: int
    webhook: int


DEFAULT_PORTS = Ports((9445, 9446, 9447, 9448), 9090, 9093, 9099)


class DemoError(RuntimeError):
    """A failure the demo explains in one line (port taken, tool missing, process died)."""


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise DemoError(f"{name} is not installed: run `make system-deps` as root (Debian)")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_free(port: int, what: str) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as err:
            raise DemoError(f"port {port} for {what} is taken ({err.strerror})") from err


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:  # noqa: S310 (loopback URLs only)
            return bool(reply.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def wait_until(what: str, probe: Callable[[], bool], process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DemoError(f"{what} exited with status {process.returncode}")
        if probe():
            return
        time.sleep(0.2)
    raise DemoError(f"{what} not ready within 60 s")


# -- the webhook sink Alertmanager notifies ----------------------------------------------------


def describe_notification(receiver: str, body: dict[str, Any]) -> list[str]:
    """One line per alert of a webhook notification: what a pager would show."""
    lines = []
    for alert in body.get("alerts", []):
        labels = alert.get("labels", {})
        where = " ".join(
            f"{key}={labels[key]}"
            for key in ("node", "gpu", "uuid", "namespace", "pod", "xid")
            if labels.get(key)
        )
        summary = alert.get("annotations", {}).get("summary", "")
        lines.append(
            f"[{receiver}] {alert.get('status', '?').upper()} "
            f"{labels.get('alertname', '?')} ({labels.get('severity', '?')}) {where}: {summary}"
        )
    return lines


def start_webhook(port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            receiver = self.path.strip("/") or "webhook"
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                lines = describe_notification(receiver, body)
            except (ValueError, AttributeError):
                lines = [f"[{receiver}] a notification that is not Alertmanager JSON"]
            for line in lines:
                print(line, flush=True)
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as err:
        raise DemoError(f"port {port} for the webhook sink is taken ({err.strerror})") from err
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# -- the processes -----------------------------------------------------------------------------


class Demo:
    """Everything the demo starts, stopped together."""

    def __init__(self, workdir: Path, ports: Ports) -> None:
        self.workdir = workdir
        self.ports = ports
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.exporter_ports: dict[str, int] = {}
        self.kmsg_holders: list[int] = []
        self.webhook: ThreadingHTTPServer | None = None
        self.prometheus_port = 0
        self.alertmanager_port = 0

    def spawn(
        self, name: str, command: Sequence[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        process = subprocess.Popen(  # noqa: S603 (our own tools, no shell)
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # Ctrl-C reaches the demo, which stops them in order
        )
        log.close()
        self.processes.append((name, process))
        return process

    def start_nodes(self) -> None:
        for node, wanted in zip(NODES, self.ports.exporters, strict=True):
            directory = self.workdir / node.name
            directory.mkdir(parents=True, exist_ok=True)
            kmsg = directory / "kmsg"
            if not kmsg.exists():
                os.mkfifo(kmsg)
            # Holding the FIFO open read-write keeps a writer alive, so the exporter never
            # reads end-of-file between two `demo.py xid` commands.
            self.kmsg_holders.append(os.open(kmsg, os.O_RDWR | os.O_NONBLOCK))
            faults = FaultFile(directory / "faults")
            process = self.spawn(
                node.name,
                [
                    sys.executable,
                    "-m",
                    "exporter",
                    f"--simulate={node.scenario}",
                    f"--web.listen-address=127.0.0.1:{wanted}",
                    f"--path.kmsg={kmsg}",
                    f"--collection.interval={INTERVAL}",
                    "--collector.pod-attribution=off",
                ],
                # One driver for the whole demo fleet: mixed drivers are a real ticket
                # (NvidiaGpuDriverVersionSkew), not what a first look should show.
                env={
                    "FAKE_NVML_NODE": node.name,
                    "FAKE_NVML_DRIVER_VERSION": DRIVER_VERSION,
                    **faults.env(),
                },
            )
            port = wanted or self._port_from_log(node.name, process)
            wait_until(
                f"exporter {node.name} (log: {self.workdir / node.name}.log)",
                functools.partial(http_ok, f"http://127.0.0.1:{port}/readyz"),
                process,
            )
            self.exporter_ports[node.name] = port

    def _port_from_log(self, name: str, process: subprocess.Popen[bytes]) -> int:
        log = self.workdir / f"{name}.log"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DemoError(f"exporter {name} exited with status {process.returncode}")
            for line in log.read_text(errors="replace").splitlines():
                if '"exporter_started"' in line:
                    with contextlib.suppress(ValueError, KeyError):
                        return int(json.loads(line)["port"])
            time.sleep(0.1)
        raise DemoError(f"exporter {name} did not log its port within 60 s")

    def start_alertmanager(self) -> None:
        config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
        if self.ports.webhook != DEFAULT_PORTS.webhook:
            for receiver in config["receivers"]:
                for hook in receiver.get("webhook_configs", []):
                    hook["url"] = hook["url"].replace(
                        f":{DEFAULT_PORTS.webhook}/", f":{self.ports.webhook}/"
                    )
        path = self.workdir / "alertmanager.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.alertmanager_port = self._service(
            "alertmanager",
            self.ports.alertmanager,
            lambda port: [
                tool("prometheus-alertmanager"),
                f"--config.file={path}",
                f"--storage.path={self.workdir / 'alertmanager-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",  # one instance: no gossip
            ],
        )

    def start_prometheus(self) -> None:
        config = {
            "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
            "rule_files": [str(path) for path in sorted(RULES.glob("*.yaml"))],
            "alerting": {
                "alertmanagers": [
                    {"static_configs": [{"targets": [f"127.0.0.1:{self.alertmanager_port}"]}]}
                ]
            },
            "scrape_configs": [
                {
                    "job_name": JOB,
                    "honor_labels": True,
                    "static_configs": [
                        {"targets": [f"127.0.0.1:{port}"], "labels": {"node": name}}
                        for name, port in self.exporter_ports.items()
                    ],
                }
            ],
        }
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.prometheus_port = self._service(
            "prometheus",
            self.ports.prometheus,
            lambda port: [
                tool("prometheus"),
                f"--config.file={path}",
                f"--storage.tsdb.path={self.workdir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
        )

    def _service(self, name: str, wanted: int, command: Callable[[int], list[str]]) -> int:
        """Start Prometheus or Alertmanager; with port 0, retry when the free port we picked
        was taken before the child bound it."""
        for _attempt in range(5):
            port = wanted or free_port()
            if wanted:
                check_free(port, name)
            process = self.spawn(name, command(port))
            try:
                wait_until(
                    f"{name} (log: {self.workdir / name}.log)",
                    functools.partial(http_ok, f"http://127.0.0.1:{port}/-/ready"),
                    process,
                )
                return port
            except DemoError:
                log = (self.workdir / f"{name}.log").read_text(errors="replace")
                if wanted or "address already in use" not in log:
                    raise
        raise DemoError(f"{name}: no free port after 5 attempts")

    def start(self) -> None:
        for port, what in [
            *((p, "an exporter") for p in self.ports.exporters if p),
            (self.ports.prometheus, "Prometheus"),
            (self.ports.alertmanager, "Alertmanager"),
        ]:
            if port:
                check_free(port, what)
        self.webhook = start_webhook(self.ports.webhook)
        self.start_nodes()
        self.start_alertmanager()
        self.start_prometheus()

    def stop(self) -> None:
        for _name, process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for _name, process in reversed(self.processes):
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        for fd in self.kmsg_holders:
            os.close(fd)
        if self.webhook is not None:
            self.webhook.shutdown()
            self.webhook.server_close()

    def banner(self) -> str:
        prom = f"http://127.0.0.1:{self.prometheus_port}"
        lines = ["gpu-node-exporter demo is up (Ctrl-C stops everything):"]
        for name, port in self.exporter_ports.items():
            lines.append(f"  exporter {name:16} http://127.0.0.1:{port}/metrics")
        lines += [
            f"  Prometheus                {prom}/alerts  (rules: alerts/rules/*.yaml)",
            f"  Alertmanager              http://127.0.0.1:{self.alertmanager_port}",
            f"  notifications             printed below (webhook sink :{self.ports.webhook})",
            "",
            "Make a GPU fall off the bus (it pages within a minute, inhibiting its follow-ons):",
            f"  python scripts/demo.py xid gpu-h100-nvlink 7 79 --workdir {self.workdir}",
            "A local Grafana shows the dashboards with (see docs/dashboards.md):",
            f"  GF_PATHS_PROVISIONING={PROVISIONING} GPU_NODE_EXPORTER_PROMETHEUS_URL={prom} \\",
            f"  GPU_NODE_EXPORTER_DASHBOARDS={DASHBOARDS} grafana-server ...",
            f"Logs and data: {self.workdir}",
            "demo ready",
        ]
        return "\n".join(lines)


# -- fault injection into a running demo -------------------------------------------------------

XID_MESSAGES = {
    79: "GPU has fallen off the bus.",
    48: "An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer.",
    13: "Graphics Engine Exception on (GPC 0, TPC 0, SM 0): Illegal Instruction Encoding",
}


def pci_for_kmsg(exporter_port: int, gpu: int) -> str:
    """`PCI:0000:0f:00` for the GPU's NVML bus id `00000000:0F:00.0`, as the driver prints it."""
    url = f"http://127.0.0.1:{exporter_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    for line in text.splitlines():
        if line.startswith("nvidia_gpu_info{") and f'gpu="{gpu}"' in line:
            bus_id = line.split('pci_bus_id="', 1)[1].split('"', 1)[0]
            domain, bus, device = bus_id.split(".")[0].split(":")
            return f"PCI:{int(domain, 16):04x}:{bus.lower()}:{device.lower()}"
    raise DemoError(f"no GPU {gpu} on the exporter at :{exporter_port}")


def inject_xid(workdir: Path, node: str, gpu: int, code: int) -> None:
    """Write the driver's kernel-log line to the node's kmsg FIFO and, for Xid 79, make the
    fake driver report the GPU lost (as a real GPU that fell off the bus does)."""
    directory = workdir / node
    state = json.loads((workdir / "demo.json").read_text())
    port = int(state["exporters"][node])
    message = XID_MESSAGES.get(code, "injected by scripts/demo.py")
    text = (
        f"NVRM: Xid ({pci_for_kmsg(port, gpu)}): {code}, pid='<unknown>', name=<unknown>, {message}"
    )
    seq = time.time_ns() // 1000  # increasing across invocations
    record = f"3,{seq},{int(time.monotonic() * 1e6)},-;{text}\n"
    try:
        fd = os.open(directory / "kmsg", os.O_WRONLY | os.O_NONBLOCK)
    except OSError as err:
        if err.errno in (errno.ENXIO, errno.ENOENT):
            raise DemoError(f"no demo running for node {node} in {workdir}") from err
        raise
    try:
        os.write(fd, record.encode())
    finally:
        os.close(fd)
    faults_path = directory / "faults"
    kept = faults_path.read_text().splitlines() if faults_path.exists() else []
    faults = FaultFile(faults_path)
    faults.lines = kept
    faults.xid(gpu, code, event_id=f"demo-{seq}")
    print(f"{node} GPU {gpu}: Xid {code} written to the kernel log ({message})")


# -- command line ------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gpu-node-exporter-demo-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    ports = Ports((0,) * len(NODES), 0, 0, free_port()) if args.any_ports else DEFAULT_PORTS
    demo = Demo(workdir, ports)
    stopping = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        demo.start()
        (workdir / "demo.json").write_text(
            json.dumps(
                {
                    "exporters": demo.exporter_ports,
                    "prometheus": demo.prometheus_port,
                    "alertmanager": demo.alertmanager_port,
                    "webhook": ports.webhook,
                    "pids": [process.pid for _name, process in demo.processes],
                }
            )
        )
        print(demo.banner(), flush=True)
        while not stopping.wait(1.0):
            for name, process in demo.processes:
                if process.poll() is not None:
                    raise DemoError(
                        f"{name} exited with status {process.returncode}; see {workdir / name}.log"
                    )
    except DemoError as err:
        print(f"demo: {err}", file=sys.stderr, flush=True)
        return 1
    finally:
        demo.stop()
    print("demo stopped", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    up = sub.add_parser("up", help="start the demo (the default)")
    xid = sub.add_parser("xid", help="inject an Xid into a running demo's node")
    for p in (parser, up):
        p.add_argument("--workdir", help="where logs and data go (default: a new temp dir)")
        p.add_argument(
            "--any-ports",
            action="store_true",
            help="listen on free ports instead of 9445-9448, 9090, 9093 and 9099",
        )
    xid.add_argument("node", choices=[node.name for node in NODES])
    xid.add_argument("gpu", type=int)
    xid.add_argument("code", type=int)
    xid.add_argument("--workdir", required=True, help="the running demo's workdir")
    args = parser.parse_args(argv)
    if args.command == "xid":
        try:
            inject_xid(Path(args.workdir), args.node, args.gpu, args.code)
        except (DemoError, OSError, KeyError, ValueError) as err:
            print(f"demo: {err}", file=sys.stderr)
            return 1
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
