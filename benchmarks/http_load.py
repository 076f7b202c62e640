"""HTTP load on the real exporter: N keep-alive scrapers at a total request rate, percentiles.

Starts `python -m exporter --simulate` (8 GPUs, 2 in MIG mode by default) in its own process,
then drives it from this process with asyncio (one task per scraper, each on its own
keep-alive connection, paced on a fixed schedule so a slow answer does not lower the offered
load), and prints latency percentiles from request written to body read, plus the exporter's
CPU, resident memory and thread count. `--tls` and `--auth` put a web config in front
(throwaway certificates, a bcrypt cost-10 user), so the cost of TLS and of auth can be seen.

    python benchmarks/http_load.py                      # 50 scrapers, 500 req/s, 20 s
    python benchmarks/http_load.py --tls --auth --gzip  # what a Prometheus over HTTPS sends
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import bcrypt
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures.tls.certs import generate  # noqa: E402

PASSWORD = "benchmark-password"  # noqa: S105 - a throwaway local user


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def scraper(
    port: int,
    interval: float,
    start: float,
    end: float,
    request: bytes,
    context: ssl.SSLContext | None,
    latencies: list[float],
    errors: list[str],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    next_at = start
    try:
        while next_at < end:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            began = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b" ", 2)[1]
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - began)
            if status != b"200":
                errors.append(status.decode())
    except (OSError, asyncio.IncompleteReadError) as err:
        errors.append(repr(err))
    finally:
        writer.close()


async def drive(args: argparse.Namespace, port: int, context: ssl.SSLContext | None) -> None:
    headers = [b"GET /metrics HTTP/1.1", b"Host: 127.0.0.1", b"User-Agent: http_load"]
    if args.gzip:
        headers.append(b"Accept-Encoding: gzip")
    if args.auth:
        token = base64.b64encode(f"prometheus:{PASSWORD}".encode())
        headers.append(b"Authorization: Basic " + token)
    request = b"\r\n".join(headers) + b"\r\n\r\n"
    interval = args.scrapers / args.rate
    latencies: list[float] = []
    errors: list[str] = []
    start = time.monotonic() + 0.5
    end = start + args.seconds
    tasks = [
        scraper(
            port,
            interval,
            start + n * interval / args.scrapers,  # spread the scrapers over one interval
            end,
            request,
            context,
            latencies,
            errors,
        )
        for n in range(args.scrapers)
    ]
    await asyncio.gather(*tasks)
    ms = [value * 1000 for value in latencies]
    print(
        f"requests {len(ms)} in {args.seconds:g} s ({len(ms) / args.seconds:.0f}/s), "
        f"errors {len(errors)} {sorted(set(errors))[:3]}"
    )
    print(
        "latency ms: "
        + ", ".join(
            f"p{int(q * 100) if q < 0.999 else 99.9} {percentile(ms, q):.2f}"
            for q in (0.5, 0.9, 0.99, 0.999)
        )
        + f", max {max(ms):.2f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapers", type=int, default=50)
    parser.add_argument("--rate", type=float, default=500.0, help="requests/s in total")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--scenario", default="a100-mig")
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--auth", action="store_true")
    parser.add_argument("--gzip", action="store_true")
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {ssl.OPENSSL_VERSION}"
    )
    print(
        f"load: {args.scrapers} keep-alive scrapers, {args.rate:g} req/s total, "
        f"{args.seconds:g} s, scenario {args.scenario}, tls={args.tls}, auth={args.auth}, "
        f"gzip={args.gzip}"
    )
    workdir = Path(tempfile.mkdtemp(prefix="http-load-"))
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "exporter",
        f"--simulate={args.scenario}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--collector.pod-attribution=off",
        "--log.level=warning",
    ]
    context = None
    if args.tls or args.auth:
        lines = []
        if args.tls:
            files = generate(workdir / "tls")
            lines += [
                "tls_server_config:",
                f"  cert_file: {files.server.cert}",
                f"  key_file: {files.server.key}",
            ]
            context = ssl.create_default_context(cafile=str(files.ca))
        if args.auth:
            hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
            lines += ["basic_auth_users:", f"  prometheus: {hashed}"]
        config = workdir / "web.yml"
        config.write_text("\n".join(lines) + "\n")
        command.append(f"--web.config.file={config}")
    exporter = subprocess.Popen(command, cwd=ROOT)
    try:
        wait_ready(port, context, args.auth)
        process = psutil.Process(exporter.pid)
        cpu_before = process.cpu_times()
        asyncio.run(drive(args, port, context))
        cpu_after = process.cpu_times()
        cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
        print(
            f"exporter: CPU {cpu / args.seconds * 100:.0f}% of one core, "
            f"RSS {process.memory_info().rss / 2**20:.1f} MiB, threads {process.num_threads()}"
        )
    finally:
        exporter.terminate()
        exporter.wait(10)
    return 0


def wait_ready(port: int, context: ssl.SSLContext | None, auth: bool) -> None:
    scheme = "https" if context else "http"
    request = urllib.request.Request(f"{scheme}://127.0.0.1:{port}/readyz")  # noqa: S310
    if auth:
        token = base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the exporter did not become ready within 60 s")


if __name__ == "__main__":
    sys.exit(main())
