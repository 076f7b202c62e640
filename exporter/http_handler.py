"""One HTTP request, answered from bytes the publisher already rendered: the request handler
the server's loop (or an auth thread) runs over a complete request head.

Why apart from exporter/server.py: the server owns sockets, deadlines and threads; this module
owns what a request means (paths, content negotiation, basic auth, the status page). Neither
touches the other's concern, and each stays small enough to read in one sitting.
"""

from __future__ import annotations

import io
from http import HTTPStatus
from typing import TYPE_CHECKING

from exporter.http_request import HTTPRequestBase

if TYPE_CHECKING:
    from exporter.server import ExporterHTTPServer

KNOWN_PATHS = ("/metrics", "/healthz", "/readyz", "/")
REALM = "gpu-node-exporter"


def _wants_openmetrics(accept: str) -> bool:
    return "application/openmetrics-text" in accept


def _accepts_gzip(accept_encoding: str) -> bool:
    for part in accept_encoding.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


class NeedsBcryptError(Exception):
    """Raised on the loop when credentials need a bcrypt check: re-run on an auth thread."""


class ResponseCollector:
    """The handler's wfile: collects the response so the loop can write it without blocking."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        """Nothing to flush: the loop thread writes the chunks."""


class RequestHandler(HTTPRequestBase):
    """Runs over one complete request head (loop or auth thread); never touches the socket."""

    server: ExporterHTTPServer
    # Answer malformed requests with a real status line, never an HTTP/0.9 headerless body.
    default_request_version = "HTTP/1.0"

    @classmethod
    def run(
        cls, server: ExporterHTTPServer, head: bytes, client: tuple[str, int], slow_ok: bool
    ) -> tuple[list[bytes], bool]:
        """Answer one request; returns the response chunks and whether to close."""
        handler = cls.__new__(cls)
        handler.server = server
        handler.client_address = client
        handler.rfile = io.BytesIO(head)
        collector = ResponseCollector()
        handler.wfile = collector
        handler.close_connection = True
        handler.slow_ok = slow_ok
        active = server.web.active if server.web is not None else None
        handler.extra_headers = active.config.headers if active is not None else ()
        handler.handle_one_request()
        return collector.chunks, handler.close_connection

    slow_ok: bool
    extra_headers: tuple[tuple[str, str], ...]

    # Access logs are off: scrapes every few seconds would drown the useful events.

    def end_headers(self) -> None:
        """Add the web config's security headers to every response."""
        for name, value in self.extra_headers:
            self.send_header(name, value)
        super().end_headers()

    def parse_request(self) -> bool:
        """Parse, then enforce basic auth on every path and method (as exporter-toolkit)."""
        if not super().parse_request():
            return False
        if (
            self.command not in ("GET", "HEAD")
            or self.headers.get("Transfer-Encoding")
            or (self.headers.get("Content-Length", "0").strip() not in ("", "0"))
        ):
            self.close_connection = True  # a body we do not read must not become a request
        return self._authorized()

    def _authorized(self) -> bool:
        web = self.server.web
        if web is None:
            return True
        active = web.active
        if not active.config.auth_required:
            return True
        from exporter.webconfig import AuthResult, parse_basic_auth  # loaded with the web config

        credentials = parse_basic_auth(self.headers.get("Authorization"))
        if credentials is not None:
            verdict = active.authenticator.cached(*credentials)
            if verdict is AuthResult.NEEDS_BCRYPT:
                if not self.slow_ok:
                    raise NeedsBcryptError
                verdict = (
                    AuthResult.ALLOW
                    if active.authenticator.verify(*credentials)
                    else AuthResult.DENY
                )
            if verdict is AuthResult.ALLOW:
                return True
        self._send(
            HTTPStatus.UNAUTHORIZED,
            b"Unauthorized\n",
            "text/plain; charset=utf-8",
            {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
        )
        return False

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

    def do_GET(self) -> None:  # noqa: N802 - the method name dispatches the request
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
            self.server.publisher.refresh()  # the page shows the generation /metrics serves
            self._send(
                HTTPStatus.OK,
                self.server.status_page.body(),
                "text/html; charset=utf-8",
                {"Cache-Control": "no-store"},
            )
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def _not_allowed(self) -> None:
        self._send(
            HTTPStatus.METHOD_NOT_ALLOWED,
            b"method not allowed\n",
            "text/plain; charset=utf-8",
            {"Allow": "GET, HEAD"},
        )

    # Every other standard method gets 405 (stdlib naming, hence noqa); unknown ones get 501.
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
