"""exporter/http_request.py answers every request head as http.server did (Date aside)."""

from __future__ import annotations

import email.utils
import io
import re
from http.server import BaseHTTPRequestHandler

import pytest

from exporter.http_request import HTTPRequestBase, http_date


class _Collector:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> int:
        self.data += bytes(data)
        return len(data)

    def flush(self) -> None:
        pass


class _Answers:
    """What both handlers do with a request: GET and HEAD echo two headers."""

    def do_GET(self) -> None:
        body = f"{self.headers.get('Accept', '')}|{self.headers.get('X-Fold', '')}\n".encode()  # type: ignore[attr-defined]
        self.send_response(200)  # type: ignore[attr-defined]
        self.send_header("Content-Length", str(len(body)))  # type: ignore[attr-defined]
        self.end_headers()  # type: ignore[attr-defined]
        if self.command != "HEAD":  # type: ignore[attr-defined]
            self.wfile.write(body)  # type: ignore[attr-defined]

    do_HEAD = do_GET  # noqa: N815


class Stdlib(_Answers, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gpu-node-exporter"
    sys_version = ""
    default_request_version = "HTTP/1.0"
    error_message_format = "%(code)d %(message)s\n"
    error_content_type = "text/plain; charset=utf-8"

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: object) -> None:
        pass


class Ours(_Answers, HTTPRequestBase):
    pass


def answer(cls: type, head: bytes) -> tuple[bytes, bool]:
    handler = cls.__new__(cls)
    handler.rfile = io.BytesIO(head)
    out = _Collector()
    handler.wfile = out
    handler.client_address = ("127.0.0.1", 1)
    handler.close_connection = True
    handler.handle_one_request()
    return re.sub(rb"Date: [^\r]*\r\n", b"", out.data), handler.close_connection


HEADS = [
    b"GET /metrics HTTP/1.1\r\nAccept: text/plain \r\n\r\n",
    b"GET /metrics HTTP/1.0\r\n\r\n",
    b"GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n",
    b"HEAD /metrics HTTP/1.1\r\n\r\n",
    b"GET /metrics\r\n\r\n",
    b"POST /metrics\r\n\r\n",
    b"GET\r\n\r\n",
    b"\r\n",
    b"GET / HTTP/2.0\r\n\r\n",
    b"GET / HTTP/1.1.1\r\n\r\n",
    b"GET / HTTP/x.y\r\n\r\n",
    b"GET / FTP/1.1\r\n\r\n",
    b"GET / HTTP/1.\xb2\r\n\r\n",
    b"GET / HTTP/12345678901.1\r\n\r\n",
    b"GET / / HTTP/1.1\r\n\r\n",
    b"BREW /pot HTTP/1.1\r\n\r\n",
    b"HEAD /pot<b> HTTP/x\r\n\r\n",
    b"GET //metrics HTTP/1.1\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
    b"GET /metrics HTTP/1.0\r\nExpect: 100-continue\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nX-Fold: a\r\n  b\r\nAccept: first\r\nAccept: second\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nno colon here\r\naccept:\tlower\r\n\r\n",
    b"GET /metrics HTTP/1.1\n\n",
    b"GET /metrics HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % n for n in range(100)) + b"\r\n",
    b"GET /metrics HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % n for n in range(101)) + b"\r\n",
    b"GET /\xe9t\xe9 HTTP/1.1\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nbad name: x\r\nAccept: after\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\n: empty name\r\nAccept: a\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nAccept: \xe9\r\n\r\n",
]


@pytest.mark.parametrize("head", HEADS, ids=range(len(HEADS)))
def test_the_same_answer_as_http_server(head: bytes) -> None:
    assert answer(Ours, head) == answer(Stdlib, head)


def test_the_date_header_is_imf_fixdate() -> None:
    assert http_date(0) == email.utils.formatdate(0, usegmt=True)
    assert http_date(1_800_000_000.5) == email.utils.formatdate(1_800_000_000.5, usegmt=True)
