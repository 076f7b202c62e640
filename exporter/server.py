"""The HTTP server: /metrics from memory, /healthz, /readyz and a landing page.

Why the standard library server: every answer is bytes already rendered by the publisher, so a
request costs a header parse and a socket write; a thread per connection is enough at the
scrape rates a node sees. Bounds against misbehaving clients: a cap on concurrent connections
(extra ones get an immediate 503 and are closed), a socket timeout for slow or idle clients, a
cap on request-line and header size, and only GET and HEAD.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import structlog

from exporter import __version__
from exporter.config import ListenAddress
from exporter.publisher import Publisher

log = structlog.get_logger(__name__)

MAX_CONNECTIONS = 128
SOCKET_TIMEOUT_SECONDS = 15.0
MAX_REQUEST_LINE = 8192
KNOWN_PATHS = ("/metrics", "/healthz", "/readyz", "/")

LANDING_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>gpu-node-exporter</title></head>
<body><h1>gpu-node-exporter {version}</h1>
<p>Prometheus exporter for NVIDIA GPU nodes.</p>
<ul>
<li><a href="/metrics">/metrics</a> - Prometheus and OpenMetrics exposition</li>
<li><a href="/healthz">/healthz</a> - the process is alive</li>
<li><a href="/readyz">/readyz</a> - the first collection finished and NVML answers</li>
</ul></body></html>
"""


def _wants_openmetrics(accept: str) -> bool:
    return "application/openmetrics-text" in accept


def _accepts_gzip(accept_encoding: str) -> bool:
    for part in accept_encoding.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


class _Handler(BaseHTTPRequestHandler):
    server: ExporterHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "gpu-node-exporter"
    sys_version = ""
    timeout = SOCKET_TIMEOUT_SECONDS
    # Answer malformed requests with a real status line, never an HTTP/0.9 headerless body.
    default_request_version = "HTTP/1.0"
    error_message_format = "%(code)d %(message)s\n"
    error_content_type = "text/plain; charset=utf-8"

    def log_message(self, format: str, *args: object) -> None:
        """Access logs are off: scrapes every few seconds would drown the useful events."""

    def _send(
        self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        path = self.path.split("?", 1)[0]
        self.server.publisher.count_request(path if path in KNOWN_PATHS else "other", status)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._metrics()
        elif path == "/healthz":
            self._send(HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8")
        elif path == "/readyz":
            ready, reason = self.server.readiness()
            status = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
            self._send(status, (reason + "\n").encode(), "text/plain; charset=utf-8")
        elif path == "/":
            body = LANDING_PAGE.format(version=__version__).encode()
            self._send(HTTPStatus.OK, body, "text/html; charset=utf-8")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    def do_HEAD(self) -> None:
        self.do_GET()

    def _not_allowed(self) -> None:
        self._send(
            HTTPStatus.METHOD_NOT_ALLOWED,
            b"method not allowed\n",
            "text/plain; charset=utf-8",
            {"Allow": "GET, HEAD"},
        )

    # Every other method gets 405 (stdlib naming, hence noqa).
    do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed  # noqa: N815
    do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed  # noqa: N815

    def _metrics(self) -> None:
        exposition = self.server.publisher.exposition(
            _wants_openmetrics(self.headers.get("Accept", ""))
        )
        headers = {"Vary": "Accept, Accept-Encoding", "Cache-Control": "no-store"}
        if _accepts_gzip(self.headers.get("Accept-Encoding", "")):
            headers["Content-Encoding"] = "gzip"
            self._send(HTTPStatus.OK, exposition.gzipped, exposition.content_type, headers)
        else:
            self._send(HTTPStatus.OK, exposition.body, exposition.content_type, headers)


class ExporterHTTPServer(ThreadingHTTPServer):
    """A threading server with a connection cap; readiness comes from a callback."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        listen: ListenAddress,
        publisher: Publisher,
        readiness: Callable[[], tuple[bool, str]],
    ) -> None:
        self.publisher = publisher
        self.readiness = readiness
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        host = listen.host
        if host == "" and socket.has_ipv6:
            self.address_family = socket.AF_INET6
            host = "::"
        elif ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, listen.port), _Handler, bind_and_activate=False)
        if self.address_family == socket.AF_INET6 and host == "::":
            with contextlib.suppress(OSError):  # kernels without dual stack keep IPv6 only
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            self.server_bind()
            self.server_activate()
        except OSError:
            self.server_close()
            raise

    @property
    def port(self) -> int:
        """The bound port (useful with port 0 in tests)."""
        return int(self.server_address[1])

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        """Refuse connections over the cap at once instead of queueing unbounded threads."""
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                    b"Connection: close\r\n\r\n"
                )
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        """Release the connection slot however the request ends."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()
