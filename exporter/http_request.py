"""HTTP/1.1 request parsing and response framing for one complete request head.

Why not http.server.BaseHTTPRequestHandler: it parses headers with the email package, and
importing it loads http.client, email, mimetypes, socketserver and html, about 1 MB of resident
memory in a process whose requests are four GETs (README "Measured"). This is the part of it the
exporter used, with the same answers: the request line rules (version checks, 400, 505,
HTTP/0.9 only for GET), at most 100 header lines (431), `Connection` and `Expect: 100-continue`,
the status line with the reason given, the Server and Date headers, and plain-text error
bodies. The server (exporter/server.py) has already bounded the head's size and line length.
"""

from __future__ import annotations

import io
import re
import time
from http import HTTPStatus
from typing import Protocol

MAX_HEADERS = 100  # as http.client: more is an abuse, answered 431
_HEADER_NAME = re.compile(r"[\041-\071\073-\176]*:")  # email.feedparser's headerRE
_STATUS = {status.value: status for status in HTTPStatus}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class Writer(Protocol):
    """Where the response bytes go (the server's collector)."""

    def write(self, data: bytes) -> int:
        """Take `data`; returns its length."""

    def flush(self) -> None:
        """Nothing is buffered below this point; kept for the handler protocol."""


class Headers:
    """Request headers in arrival order; names compare case-insensitively, first one wins."""

    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items

    def get(self, name: str, default: str = "") -> str:
        """The first value of header `name`, or `default` (empty: absent and empty alike)."""
        wanted = name.lower()
        for key, value in self._items:
            if key.lower() == wanted:
                return value
        return default

    def __len__(self) -> int:
        return len(self._items)


def http_date(now: float | None = None) -> str:
    """RFC 9110 IMF-fixdate, independent of the locale (as email.utils.formatdate(usegmt))."""
    t = time.gmtime(now)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def parse_header_lines(rfile: io.BytesIO) -> list[tuple[str, str]] | None:
    """Header lines up to the blank line; None if there are more than MAX_HEADERS.

    Like email's compat32 parser: the value keeps its trailing blanks, a line starting with
    a blank continues the previous value, and a line that is not `name:` (printable, no
    blanks) ends the headers, the rest being ignored.
    """
    items: list[tuple[str, str]] = []
    count = 0
    for raw in iter(rfile.readline, b""):
        count += 1  # http.client counts the blank line too: 100 headers are one too many
        if count > MAX_HEADERS:
            return None
        if raw in (b"\r\n", b"\n"):
            break
        line = raw.decode("iso-8859-1").rstrip("\r\n")
        if line[:1] in (" ", "\t"):
            if items:
                name, value = items[-1]
                items[-1] = (name, f"{value}\r\n{line}")
            continue
        if not _HEADER_NAME.match(line):
            break  # as email's parser: a line that is no header ends the headers
        name, _, value = line.partition(":")
        items.append((name, value.lstrip(" \t")))
    return items


class HTTPRequestBase:
    """What BaseHTTPRequestHandler did per request; subclasses define do_GET and friends."""

    protocol_version = "HTTP/1.1"
    server_version = "gpu-node-exporter"
    default_request_version = "HTTP/1.0"
    error_message_format = "%(code)d %(message)s\n"
    error_content_type = "text/plain; charset=utf-8"

    rfile: io.BytesIO
    wfile: Writer
    client_address: tuple[str, int]
    close_connection: bool
    command: str | None
    path: str
    request_version: str
    requestline: str
    raw_requestline: bytes
    headers: Headers
    _headers_buffer: list[bytes]

    def version_string(self) -> str:
        """The Server header's value."""
        return self.server_version

    def handle_one_request(self) -> None:
        """Parse one request from `rfile` and answer it on `wfile`."""
        self._headers_buffer = []
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = ""
            self.command = ""
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if not self.parse_request():
            return
        method = getattr(self, f"do_{self.command}", None)
        if method is None:
            self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"Unsupported method ({self.command!r})")
            return
        method()
        self.wfile.flush()

    def parse_request(self) -> bool:
        """Parse the request line and headers; False (answered already) when malformed."""
        self.command = None
        self.request_version = version = self.default_request_version
        self.close_connection = True
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        self.requestline = requestline
        words = requestline.split()
        if not words:
            return False
        if len(words) >= 3:
            version = words[-1]
            number = _version_number(version)
            if number is None:
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({version!r})")
                return False
            if number >= (1, 1):
                self.close_connection = False
            if number >= (2, 0):
                self.send_error(
                    HTTPStatus.HTTP_VERSION_NOT_SUPPORTED,
                    f"Invalid HTTP version ({version.split('/', 1)[1]})",
                )
                return False
            self.request_version = version
        if not 2 <= len(words) <= 3:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({requestline!r})")
            return False
        command, path = words[:2]
        if len(words) == 2:
            self.close_connection = True
            if command != "GET":
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad HTTP/0.9 request type ({command!r})")
                return False
        self.command, self.path = command, path
        if self.path.startswith("//"):
            self.path = "/" + self.path.lstrip("/")
        return self._parse_headers()

    def _parse_headers(self) -> bool:
        """Headers, then `Connection` and `Expect`; False (answered 431) on too many."""
        items = parse_header_lines(self.rfile)
        if items is None:
            self.send_error(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                "Too many headers",
                f"got more than {MAX_HEADERS} headers",
            )
            return False
        self.headers = Headers(items)
        connection = self.headers.get("Connection").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        expect = self.headers.get("Expect").lower()
        if expect == "100-continue" and self.request_version >= "HTTP/1.1":
            self.send_response_only(HTTPStatus.CONTINUE)
            self.end_headers()
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """An error response with a plain-text body (none for HEAD); closes the connection."""
        status = _STATUS.get(code)
        short = status.phrase if status else "???"
        long = status.description if status else "???"
        message = short if message is None else message
        explain = long if explain is None else explain
        self.send_response(code, message)
        self.send_header("Connection", "close")
        body = b""
        if code >= 200 and code not in (204, 205, 304):
            content = self.error_message_format % {
                "code": code,
                "message": _escape(message),
                "explain": _escape(explain),
            }
            body = content.encode("utf-8", "replace")
            self.send_header("Content-Type", self.error_content_type)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def send_response(self, code: int, message: str | None = None) -> None:
        """Status line, then the Server and Date headers."""
        self.send_response_only(code, message)
        self.send_header("Server", self.version_string())
        self.send_header("Date", http_date())

    def send_response_only(self, code: int, message: str | None = None) -> None:
        """The status line alone (buffered until end_headers)."""
        if message is None:
            status = _STATUS.get(code)
            message = status.phrase if status else ""
        self._headers_buffer.append(
            f"{self.protocol_version} {code} {message}\r\n".encode("latin-1", "strict")
        )

    def send_header(self, keyword: str, value: str) -> None:
        """Buffer one header; `Connection` also decides whether the connection stays open."""
        self._headers_buffer.append(f"{keyword}: {value}\r\n".encode("latin-1", "strict"))
        if keyword.lower() == "connection":
            if value.lower() == "close":
                self.close_connection = True
            elif value.lower() == "keep-alive":
                self.close_connection = False

    def end_headers(self) -> None:
        """End the head and hand it to `wfile`."""
        self._headers_buffer.append(b"\r\n")
        self.wfile.write(b"".join(self._headers_buffer))
        self._headers_buffer = []


def _version_number(version: str) -> tuple[int, int] | None:
    """(major, minor) of `HTTP/x.y`, or None when it is not one (as the stdlib checks it)."""
    if not version.startswith("HTTP/"):
        return None
    parts = version.split("/", 1)[1].split(".")
    if len(parts) != 2 or any(
        not (part.isascii() and part.isdigit()) or len(part) > 10 for part in parts
    ):
        return None
    return int(parts[0]), int(parts[1])
