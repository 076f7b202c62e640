"""Resident memory of the exporter on the simulated node, side by side with other checkouts.

Starts `python -m exporter --simulate` from each tree in turn (this checkout first, then every
`--peer` directory, e.g. a `git worktree` of an older commit), scrapes /metrics every 0.25 s
while the exporter collects every second, and reads VmRSS and VmHWM from /proc/<pid>/status at
the end. Each tree runs `--rounds` times, interleaved, and the medians are printed with the
ratio to this checkout, so a claim like "N MB less" comes from one run on one machine.

`--all-features` turns on everything that costs memory: pod attribution against a fake kubelet
(a real gRPC server on a unix socket, every GPU allocated to a pod), per-process series, and a
web config with TLS and a bcrypt basic-auth user (scrapes then go over HTTPS with auth).
DESIGN's budgets: about 32 MB in simulate mode without a kubelet, under 50 MB with every feature.

    python benchmarks/memory.py                                     # this checkout alone
    python benchmarks/memory.py --all-features
    git worktree add /tmp/peer HEAD~3 && python benchmarks/memory.py --peer /tmp/peer
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import re
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import bcrypt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakekubelet import Behaviour, FakeKubelet, pods_reply  # noqa: E402
from tests.fixtures.tls.certs import generate  # noqa: E402

PASSWORD = "benchmark-password"  # noqa: S105 - a throwaway local user


@dataclass
class Features:
    """Extra flags, and how to reach /metrics with them."""

    flags: list[str]
    scheme: str = "http"
    context: ssl.SSLContext | None = None
    headers: dict[str, str] | None = None
    kubelet: FakeKubelet | None = None


def all_features(workdir: Path) -> Features:
    """A fake kubelet, per-process series, TLS and basic auth."""
    tls = generate(workdir / "tls")
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    web = workdir / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {tls.server.cert}\n  key_file: {tls.server.key}\n"
        f"basic_auth_users:\n  prometheus: {hashed}\n"
    )
    socket_path = workdir / "kubelet.sock"
    kubelet = FakeKubelet(socket_path, Behaviour()).start()
    token = base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
    return Features(
        flags=[
            f"--path.pod-resources-socket={socket_path}",
            "--collector.pod-attribution=on",
            "--collector.processes=true",
            f"--web.config.file={web}",
        ],
        scheme="https",
        context=ssl.create_default_context(cafile=str(tls.ca)),
        headers={"Authorization": f"Basic {token}"},
        kubelet=kubelet,
    )


def allocate_every_gpu(features: Features, body: str) -> None:
    """Give each GPU of the exposition to its own pod in the fake kubelet."""
    if features.kubelet is None:
        return
    uuids = sorted(set(re.findall(r'nvidia_gpu_info\{[^}]*uuid="(GPU-[^"]+)"', body)))
    features.kubelet.behaviour.list_reply = pods_reply(
        *(
            ("bench", f"train-{n}", [("main", [("nvidia.com/gpu", [uuid])])])
            for n, uuid in enumerate(uuids)
        )
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def status_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in kB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def get(features: Features, port: int, path: str) -> tuple[int, str]:
    request = urllib.request.Request(  # noqa: S310 - a local URL built here
        f"{features.scheme}://127.0.0.1:{port}{path}", headers=features.headers or {}
    )
    with urllib.request.urlopen(request, timeout=5, context=features.context) as response:  # noqa: S310
        return response.status, response.read().decode()


def measure(tree: Path, scenario: str, seconds: float, features: Features) -> dict[str, int]:
    """One exporter run from `tree`; its memory after `seconds` of collection and scraping."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(tree)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter",
            f"--simulate={scenario}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--collection.interval=1s",
            "--log.level=warning",
            *features.flags,
        ],
        cwd=tree,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if get(features, port, "/readyz")[0] == 200:
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"exporter from {tree} did not become ready") from None
                time.sleep(0.05)
        allocate_every_gpu(features, get(features, port, "/metrics")[1])
        end = time.monotonic() + seconds
        body = ""
        while time.monotonic() < end:
            body = get(features, port, "/metrics")[1]
            time.sleep(0.25)
        if features.kubelet is not None and "nvidia_gpu_pod_info{" not in body:
            raise RuntimeError("pod attribution never showed up: the measurement would be wrong")
        return status_kb(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peer", action="append", default=[], type=Path, help="another tree")
    parser.add_argument("--scenario", default="a100-mig")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--all-features", action="store_true", help="kubelet, processes, TLS")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="memory-bench-"))
    features = all_features(workdir) if args.all_features else Features(flags=[])
    trees = [ROOT, *(peer.resolve() for peer in args.peer)]
    results: dict[Path, list[dict[str, int]]] = {tree: [] for tree in trees}
    for _ in range(args.rounds):
        for tree in trees:
            results[tree].append(measure(tree, args.scenario, args.seconds, features))
    if features.kubelet is not None:
        features.kubelet.stop()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()};"
        f" scenario {args.scenario}, all features {args.all_features}, {args.seconds:.0f} s each,"
        f" {args.rounds} rounds (medians)"
    )
    base = statistics.median(run["VmRSS"] for run in results[ROOT])
    for tree, runs in results.items():
        rss = statistics.median(run["VmRSS"] for run in runs)
        hwm = statistics.median(run["VmHWM"] for run in runs)
        print(
            f"{tree!s:40s} RSS {rss / 1024:6.1f} MiB  peak {hwm / 1024:6.1f} MiB"
            f"  ratio to this checkout {rss / base:.2f}"
        )


if __name__ == "__main__":
    main()
