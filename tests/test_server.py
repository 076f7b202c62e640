from __future__ import annotations

import errno
import gzip
import http.client
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from exporter import metrics
from exporter.config import ListenAddress
from exporter.model import SourceHealth
from exporter.publisher import Publisher
from exporter.server import ExporterHTTPServer, ListenError


@pytest.fixture
def server() -> Iterator[ExporterHTTPServer]:
    publisher = Publisher(process_metrics=False)
    publisher.publish("nvml", {metrics.UP.name: ((("0", "GPU-a"), 1.0),)}, SourceHealth(up=True))
    publisher.render_now()
    ready = {"value": (False, "not ready: first collection still running")}
    srv = ExporterHTTPServer(ListenAddress("127.0.0.1", 0), publisher, lambda: ready["value"])
    srv.ready_switch = ready  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _get(
    srv: ExporterHTTPServer, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request(method, path, headers=headers or {})
    return conn.getresponse()


def test_metrics_plain_text(server: ExporterHTTPServer) -> None:
    response = _get(server, "/metrics")
    body = response.read()
    assert response.status == 200
    assert response.getheader("Content-Type", "").startswith("text/plain; version=0.0.4")
    assert b'nvidia_gpu_up{gpu="0",uuid="GPU-a"} 1' in body


def test_metrics_openmetrics_by_negotiation(server: ExporterHTTPServer) -> None:
    response = _get(
        server, "/metrics", headers={"Accept": "application/openmetrics-text;version=1.0.0"}
    )
    body = response.read()
    assert response.getheader("Content-Type", "").startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_metrics_gzip_when_asked(server: ExporterHTTPServer) -> None:
    response = _get(server, "/metrics", headers={"Accept-Encoding": "gzip, deflate"})
    assert response.getheader("Content-Encoding") == "gzip"
    assert b"nvidia_gpu_up" in gzip.decompress(response.read())
    refused = _get(server, "/metrics", headers={"Accept-Encoding": "gzip;q=0"})
    assert refused.getheader("Content-Encoding") is None
    assert b"nvidia_gpu_up" in refused.read()


def test_health_readiness_and_landing_page(server: ExporterHTTPServer) -> None:
    assert _get(server, "/healthz").status == 200
    not_ready = _get(server, "/readyz")
    assert not_ready.status == 503
    assert b"first collection" in not_ready.read()
    server.ready_switch["value"] = (True, "ready")  # type: ignore[attr-defined]
    assert _get(server, "/readyz").status == 200
    landing = _get(server, "/")
    assert landing.status == 200 and b'href="/metrics"' in landing.read()


def test_unknown_paths_and_methods(server: ExporterHTTPServer) -> None:
    assert _get(server, "/nope").status == 404
    response = _get(server, "/metrics", method="POST")
    assert response.status == 405
    assert response.getheader("Allow") == "GET, HEAD"
    head = _get(server, "/metrics", method="HEAD")
    assert head.status == 200 and head.read() == b""


def test_garbage_request_does_not_break_the_server(server: ExporterHTTPServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"\x00\xff garbage \r\n\r\n")
        reply = sock.recv(1024)
    assert reply.startswith(b"HTTP/1.")
    assert b" 400 " in reply.split(b"\r\n")[0]
    oversized = "/" + "a" * 70000
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(f"GET {oversized} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        reply = sock.recv(1024)
    assert b" 414 " in reply.split(b"\r\n")[0]
    assert _get(server, "/metrics").status == 200


def test_keep_alive_connections_disable_nagle(server: ExporterHTTPServer) -> None:
    # Headers and body are separate sends: with Nagle on, each small keep-alive response
    # waited for the client's delayed ACK (~40 ms). The accepted socket must have NODELAY.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() == b"ok\n"
        accepted = list(server._conns.values())
        assert accepted, "the keep-alive connection should still be open"
        for entry in accepted:
            assert entry.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        conn.close()


def test_the_server_header_has_no_trailing_space(server: ExporterHTTPServer) -> None:
    # The stdlib writes server_version + " " + sys_version; with sys_version "" that left
    # "gpu-node-exporter " on every response.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(4096)
            assert chunk, f"connection closed before the head ended: {reply!r}"
            reply += chunk
    lines = reply.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert [line for line in lines if line.lower().startswith(b"server:")] == [
        b"Server: gpu-node-exporter"
    ]


@pytest.fixture
def taken_port() -> Iterator[int]:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    yield holder.getsockname()[1]
    holder.close()


def test_a_taken_port_is_named_in_the_error(taken_port: int) -> None:
    publisher = Publisher(process_metrics=False)
    with pytest.raises(ListenError) as caught:
        ExporterHTTPServer(ListenAddress("127.0.0.1", taken_port), publisher, lambda: (True, ""))
    message = str(caught.value)
    assert message.startswith(f"cannot listen on 127.0.0.1:{taken_port}: address already in use")
    assert "--web.listen-address" in message and "Errno" not in message
    assert caught.value.errno == errno.EADDRINUSE


def test_a_taken_port_exits_2_with_one_line_naming_it(taken_port: int) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exporter", f"--web.listen-address=127.0.0.1:{taken_port}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = (result.stdout + result.stderr).strip().splitlines()
    assert len(output) == 1, output
    assert f"cannot listen on 127.0.0.1:{taken_port}: address already in use" in output[0]
    assert result.returncode == 2, output
