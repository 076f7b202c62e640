"""Hostile HTTP clients against the real server: a good scraper must keep its latency budget.

Each test starts the real server on 127.0.0.1 (port 0), runs one kind of abuse in a separate
process (so the abuser's Python threads do not share the server's GIL) for a few seconds, and
meanwhile scrapes /metrics every 20 ms from a fresh connection, as a well-behaved scraper
would. It asserts: no failed scrape, p99 under the budget, a fixed number of threads, bounded
resident memory, and that the server did bound the abuser (timeouts, 414/431, the cap).
Run `python -m tests.test_hostile_clients MODE PORT SECONDS` to run one abuser by hand.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import psutil
import pytest

from exporter import metrics
from exporter.config import ListenAddress
from exporter.model import SourceHealth
from exporter.publisher import Publisher
from exporter.server import ExporterHTTPServer, ServerLimits
from exporter.webconfig import WebConfigWatcher

P99_BUDGET_SECONDS = 0.250
RSS_GROWTH_BUDGET_BYTES = 40 * 1024 * 1024
ABUSE_SECONDS = 4.0
LIMITS = ServerLimits(
    max_connections=512,
    handshake_timeout=2.0,
    header_timeout=2.0,
    idle_timeout=3.0,
    send_timeout=2.0,
)
PASSWORD = "scraper-password"
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Scrapes:
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    max_threads: int = 0
    max_rss: int = 0

    def p(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _big_publisher() -> Publisher:
    """A publisher whose exposition is about 100 KB, like a large node's."""
    publisher = Publisher(process_metrics=False)
    rows = tuple(((str(n), f"GPU-{n:08d}-aaaa-bbbb-cccc-dddddddddddd"), 1.0) for n in range(1500))
    publisher.publish("nvml", {metrics.UP.name: rows}, SourceHealth(up=True))
    publisher.render_now()
    return publisher


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ExporterHTTPServer]:
    srv = ExporterHTTPServer(
        ListenAddress("127.0.0.1", 0), _big_publisher(), lambda: (True, "ready"), None, LIMITS
    )
    thread = threading.Thread(target=srv.serve_forever, name="http", daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _scrape_while(
    port: int, stop: threading.Event, headers: dict[str, str] | None = None
) -> Scrapes:
    result = Scrapes()
    process = psutil.Process()
    while not stop.is_set():
        started = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/metrics", headers=headers or {})
            response = conn.getresponse()
            body = response.read()
            conn.close()
            if response.status != 200 or b"nvidia_gpu_up" not in body:
                result.failures.append(f"status {response.status}")
        except OSError as err:
            result.failures.append(repr(err))
        result.latencies.append(time.perf_counter() - started)
        result.max_threads = max(result.max_threads, threading.active_count())
        result.max_rss = max(result.max_rss, process.memory_info().rss)
        stop.wait(0.01)
    return result


def _scrape_once(port: int, headers: dict[str, str] | None) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics", headers=headers or {})
    assert conn.getresponse().read()
    conn.close()


def _abuse(
    mode: str, port: int, seconds: float = ABUSE_SECONDS, headers: dict[str, str] | None = None
) -> tuple[Scrapes, dict[str, object], int, int]:
    """Run the abuser process and the good scraper together; returns both outcomes."""
    _scrape_once(port, headers)  # the server's threads are all up before the baseline
    baseline_threads = threading.active_count()
    baseline_rss = psutil.Process().memory_info().rss
    abuser = subprocess.Popen(
        [sys.executable, "-m", "tests.test_hostile_clients", mode, str(port), str(seconds)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)  # let the abuse build up before measuring (setup, not an assertion)
    stop = threading.Event()
    box: list[Scrapes] = []
    scraper = threading.Thread(target=lambda: box.append(_scrape_while(port, stop, headers)))
    scraper.start()
    out, _ = abuser.communicate(timeout=seconds + 60)
    stop.set()
    scraper.join(10)
    assert abuser.returncode == 0
    summary = json.loads(out.strip().splitlines()[-1])
    scrapes = box[0]
    print(
        f"\n{mode}: {len(scrapes.latencies)} scrapes, p50 {scrapes.p(0.5) * 1000:.1f} ms, "
        f"p99 {scrapes.p(0.99) * 1000:.1f} ms, max {max(scrapes.latencies) * 1000:.1f} ms, "
        f"threads {baseline_threads}->{scrapes.max_threads}, "
        f"rss +{(scrapes.max_rss - baseline_rss) / 2**20:.1f} MiB, abuser {summary}"
    )
    return scrapes, summary, baseline_threads, baseline_rss


def _assert_good(scrapes: Scrapes, baseline_threads: int, baseline_rss: int) -> None:
    assert scrapes.failures == []
    assert len(scrapes.latencies) >= 20
    assert scrapes.p(0.99) < P99_BUDGET_SECONDS
    # The server's threads are fixed; the scraper thread itself is the only new one.
    assert scrapes.max_threads <= baseline_threads + 1
    assert scrapes.max_rss - baseline_rss < RSS_GROWTH_BUDGET_BYTES


def test_200_concurrent_scrapers(server: ExporterHTTPServer) -> None:
    scrapes, summary, threads, rss = _abuse("concurrent", server.port)
    _assert_good(scrapes, threads, rss)
    assert summary["ok"] > 2000 and summary["errors"] == 0


def test_slow_header_senders_are_cut_at_the_head_deadline(server: ExporterHTTPServer) -> None:
    scrapes, summary, threads, rss = _abuse("slowloris", server.port)
    _assert_good(scrapes, threads, rss)
    # 300 connections sent a byte a second: each was closed about header_timeout (2 s) after
    # its first byte, long before its head could finish.
    assert summary["closed_by_server"] == 300
    assert summary["max_seconds_open"] < LIMITS.header_timeout + 1.5


def test_oversized_request_lines_and_heads(server: ExporterHTTPServer) -> None:
    scrapes, summary, threads, rss = _abuse("oversized", server.port)
    _assert_good(scrapes, threads, rss)
    codes = summary["codes"]
    assert isinstance(codes, dict)
    assert set(codes) == {"414", "431"}, codes


def test_thousands_of_idle_connections(server: ExporterHTTPServer) -> None:
    scrapes, summary, threads, rss = _abuse("idle", server.port)
    _assert_good(scrapes, threads, rss)
    assert summary["opened"] == 3000
    assert server.connection_count <= LIMITS.max_connections
    assert server.evictions > 0


def test_unknown_paths_methods_and_garbage(server: ExporterHTTPServer) -> None:
    scrapes, summary, threads, rss = _abuse("garbage", server.port)
    _assert_good(scrapes, threads, rss)
    codes = summary["codes"]
    assert isinstance(codes, dict)
    assert {"400", "404", "405", "501"} <= set(codes), codes


def test_clients_that_never_read(server: ExporterHTTPServer) -> None:
    scrapes, summary, threads, rss = _abuse("nonreader", server.port, seconds=5.0)
    _assert_good(scrapes, threads, rss)
    # Each non-reader was closed by the send deadline (2 s) once its socket buffers filled,
    # well before the abuser gave up (5 s).
    assert summary["connections"] == 50
    assert server.timeouts >= 50


def test_wrong_password_flood_does_not_slow_the_good_scraper(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  prometheus: {hashed}\n")
    stop = threading.Event()
    watcher = WebConfigWatcher(path)
    watcher.start(stop)
    srv = ExporterHTTPServer(
        ListenAddress("127.0.0.1", 0), _big_publisher(), lambda: (True, "ready"), watcher, LIMITS
    )
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    token = base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
    try:
        scrapes, summary, threads, rss = _abuse(
            "wrongpass", srv.port, headers={"Authorization": f"Basic {token}"}
        )
        _assert_good(scrapes, threads, rss)
        codes = summary["codes"]
        assert isinstance(codes, dict)
        assert set(codes) <= {"401", "503"} and codes.get("401", 0) > 0, codes
    finally:
        stop.set()
        srv.shutdown()
        srv.server_close()


def _exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def test_header_count_bodies_and_pipelining(server: ExporterHTTPServer) -> None:
    many = b"".join(b"X-%d: 1\r\n" % n for n in range(101))
    assert _exchange(server.port, b"GET /metrics HTTP/1.1\r\n" + many + b"\r\n").startswith(
        b"HTTP/1.1 431 "
    )
    # A body is never read as the next request: answer, then close.
    smuggled = b"POST / HTTP/1.1\r\nContent-Length: 27\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n"
    reply = _exchange(server.port, smuggled)
    assert reply.startswith(b"HTTP/1.1 405 ") and reply.count(b"HTTP/1.1 ") == 1
    # Pipelined requests are answered in order on one connection.
    pipelined = b"HEAD /metrics HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"
    reply = _exchange(server.port, pipelined)
    assert reply.count(b"HTTP/1.1 200 ") == 2 and reply.endswith(b"\r\n\r\nok\n")


# -- the abusers (run in their own process) ----------------------------------------------------


def _read_status(sock: socket.socket) -> str:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    parts = data.split(b" ", 2)
    return parts[1].decode() if len(parts) > 1 else "closed"


def _concurrent(port: int, seconds: float) -> dict[str, object]:
    """200 keep-alive scrapers, released together, each scraping 5 times a second."""
    counts = {"ok": 0, "errors": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    barrier = threading.Barrier(200)

    def one() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        ok = errors = 0
        barrier.wait()
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += 0.2
            try:
                conn.request("GET", "/metrics")
                response = conn.getresponse()
                response.read()
                ok += response.status == 200
                errors += response.status != 200
            except (OSError, http.client.HTTPException):
                errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.close()
        with lock:
            counts["ok"] += ok
            counts["errors"] += errors

    workers = [threading.Thread(target=one) for _ in range(200)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return dict(counts)


def _slowloris(port: int, seconds: float) -> dict[str, object]:
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 64 + b"\r\n\r\n"
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]
    opened = {sock.fileno(): time.monotonic() for sock in socks}
    closed: dict[int, float] = {}
    deadline = time.monotonic() + seconds
    position = 0
    while time.monotonic() < deadline and len(closed) < len(socks):
        for sock in socks:
            if sock.fileno() in closed:
                continue
            try:
                sock.sendall(request[position : position + 1])
            except OSError:
                closed[sock.fileno()] = time.monotonic()
        position += 1
        ready = selectors.DefaultSelector()
        for sock in socks:
            if sock.fileno() not in closed:
                ready.register(sock, selectors.EVENT_READ)
        end = time.monotonic() + 1.0
        while time.monotonic() < end and ready.get_map():
            for key, _ in ready.select(max(0.0, end - time.monotonic())):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                with contextlib.suppress(OSError):
                    sock.recv(4096)
                closed[sock.fileno()] = time.monotonic()
                ready.unregister(sock)
        ready.close()
    longest = max((closed[fd] - opened[fd] for fd in closed), default=0.0)
    for sock in socks:
        sock.close()
    return {"closed_by_server": len(closed), "max_seconds_open": round(longest, 2)}


def _oversized(port: int, seconds: float) -> dict[str, object]:
    payloads = [
        b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nX-Big: " + b"b" * 100_000 + b"\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % n for n in range(5000)) + b"\r\n",
    ]
    codes: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            # The server may close before reading it all; the status line is still there.
            with contextlib.suppress(OSError):
                sock.sendall(payloads[n % len(payloads)])
            status = _read_status(sock)
        codes[status] = codes.get(status, 0) + 1
        n += 1
    return {"codes": codes}


def _idle(port: int, seconds: float) -> dict[str, object]:
    socks = []
    for _ in range(3000):
        socks.append(socket.create_connection(("127.0.0.1", port)))
    time.sleep(seconds)
    for sock in socks:
        sock.close()
    return {"opened": len(socks)}


def _garbage(port: int, seconds: float) -> dict[str, object]:
    requests = [
        b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        b"BREW /metrics HTTP/1.1\r\n\r\n",
        b"DELETE / HTTP/1.1\r\n\r\n",
        b"\x00\xff\xfe garbage\r\n\r\n",
        b"GET /metrics HTTP/9.9\r\n\r\n",
        b"GET\r\n\r\n",
    ]
    codes: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(requests[n % len(requests)])
            status = _read_status(sock)
        codes[status] = codes.get(status, 0) + 1
        n += 1
    return {"codes": codes}


def _nonreader(port: int, seconds: float) -> dict[str, object]:
    socks = []
    for _ in range(50):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 200)
        socks.append(sock)
    time.sleep(seconds)
    for sock in socks:
        sock.close()
    return {"connections": len(socks)}


def _wrongpass(port: int, seconds: float) -> dict[str, object]:
    codes: dict[str, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def one(worker: int) -> None:
        n = 0
        while time.monotonic() < deadline:
            token = base64.b64encode(f"prometheus:guess-{worker}-{n}".encode()).decode()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/metrics", headers={"Authorization": f"Basic {token}"})
                status = str(conn.getresponse().status)
                conn.close()
            except (OSError, http.client.HTTPException):
                status = "error"
            with lock:
                codes[status] = codes.get(status, 0) + 1
            n += 1

    workers = [threading.Thread(target=one, args=(w,)) for w in range(20)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return {"codes": codes}


ABUSERS = {
    "concurrent": _concurrent,
    "slowloris": _slowloris,
    "oversized": _oversized,
    "idle": _idle,
    "garbage": _garbage,
    "nonreader": _nonreader,
    "wrongpass": _wrongpass,
}

if __name__ == "__main__":
    mode, port_text, seconds_text = sys.argv[1:4]
    outcome = ABUSERS[mode](int(port_text), float(seconds_text))
    sys.stdout.write(json.dumps(outcome) + "\n")
    sys.stdout.flush()
    os._exit(0)
