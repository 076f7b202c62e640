"""TLS, client certificates and basic auth against the real server, with real TLS clients."""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest

from exporter import metrics
from exporter.config import ListenAddress
from exporter.model import SourceHealth
from exporter.publisher import Publisher
from exporter.server import ExporterHTTPServer, ServerLimits
from exporter.webconfig import WebConfigWatcher
from tests.fixtures.tls.certs import Pair, TlsFiles, generate
from tests.tools import replace_file

PASSWORD = "correct horse"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return generate(tmp_path_factory.mktemp("tls"))


class Running:
    def __init__(self, server: ExporterHTTPServer, watcher: WebConfigWatcher, path: Path) -> None:
        self.server, self.watcher, self.path = server, watcher, path

    @property
    def port(self) -> int:
        return self.server.port


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[[str], Running]]:
    stop = threading.Event()
    started: list[Running] = []

    def _start(text: str) -> Running:
        path = tmp_path / "web.yml"
        replace_file(path, text)
        watcher = WebConfigWatcher(path, check_seconds=0.05)
        watcher.start(stop)
        publisher = Publisher(process_metrics=False)
        publisher.publish("nvml", {metrics.UP.name: ((("0", "GPU-a"), 1.0),)}, SourceHealth(True))
        publisher.render_now()
        server = ExporterHTTPServer(
            ListenAddress("127.0.0.1", 0),
            publisher,
            lambda: (True, "ready"),
            watcher,
            ServerLimits(handshake_timeout=2.0, header_timeout=2.0),
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        running = Running(server, watcher, path)
        started.append(running)
        return running

    yield _start
    stop.set()
    for running in started:
        running.server.shutdown()
        running.server.server_close()


def _client_context(tls: TlsFiles, cert: Pair | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(tls.ca))
    if cert is not None:
        context.load_cert_chain(str(cert.cert), str(cert.key))
    return context


def _auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _https(
    port: int,
    context: ssl.SSLContext,
    path: str = "/metrics",
    headers: dict[str, str] | None = None,
) -> tuple[int, http.client.HTTPResponse, bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response, response.read()
    finally:
        conn.close()


def _server_tls(tls: TlsFiles, extra: str = "") -> str:
    return (
        f"tls_server_config:\n  cert_file: {tls.server.cert}\n  key_file: {tls.server.key}\n"
        + extra
    )


def test_basic_auth_over_tls(tls: TlsFiles, start: Callable[[str], Running]) -> None:
    running = start(
        _server_tls(tls)
        + f"basic_auth_users:\n  prometheus: {HASH}\n"
        + "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
    )
    context = _client_context(tls)
    status, response, body = _https(running.port, context, headers=_auth("prometheus", PASSWORD))
    assert status == 200
    assert b'nvidia_gpu_up{gpu="0",uuid="GPU-a"} 1' in body
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    for headers in ({}, _auth("prometheus", "wrong"), _auth("mallory", PASSWORD)):
        status, response, body = _https(running.port, context, headers=headers)
        assert status == 401
        assert response.getheader("WWW-Authenticate", "").startswith("Basic realm=")
        assert b"nvidia_gpu" not in body
    # Every path is protected, as in exporter-toolkit; unknown paths do not leak a 404.
    for path in ("/healthz", "/readyz", "/", "/nope"):
        assert _https(running.port, context, path)[0] == 401
    assert _https(running.port, context, "/nope", _auth("prometheus", PASSWORD))[0] == 404


def test_keep_alive_scrapes_reuse_the_cached_verdict(
    tls: TlsFiles, start: Callable[[str], Running]
) -> None:
    running = start(_server_tls(tls) + f"basic_auth_users:\n  prometheus: {HASH}\n")
    conn = http.client.HTTPSConnection(
        "127.0.0.1", running.port, timeout=5, context=_client_context(tls)
    )
    for _ in range(50):
        conn.request("GET", "/metrics", headers=_auth("prometheus", PASSWORD))
        response = conn.getresponse()
        assert response.status == 200 and response.read()
    conn.close()
    auth = running.watcher.active.authenticator
    assert len(auth._good) == 1  # one bcrypt check, 49 cache hits


def test_plain_http_on_the_tls_port_gets_a_clear_400(
    tls: TlsFiles, start: Callable[[str], Running]
) -> None:
    running = start(_server_tls(tls))
    conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=5)
    conn.request("GET", "/metrics")
    response = conn.getresponse()
    assert response.status == 400
    assert b"Client sent an HTTP request to an HTTPS server." in response.read()
    assert _https(running.port, _client_context(tls))[0] == 200


def _handshake_refused(port: int, context: ssl.SSLContext) -> bool:
    """True when the server refuses the client (TLS 1.3 reports it on the first read)."""
    try:
        status, _, _ = _https(port, context)
    except (ssl.SSLError, ConnectionError, http.client.RemoteDisconnected):
        return True
    return status != 200


def test_client_certificates_are_required_and_verified(
    tls: TlsFiles, start: Callable[[str], Running]
) -> None:
    running = start(
        _server_tls(
            tls, f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {tls.ca}\n"
        )
    )
    assert _https(running.port, _client_context(tls, tls.client))[0] == 200
    assert _handshake_refused(running.port, _client_context(tls))  # no certificate
    assert _handshake_refused(running.port, _client_context(tls, tls.client_other_ca))
    assert _handshake_refused(running.port, _client_context(tls, tls.client_expired))
    assert _https(running.port, _client_context(tls, tls.client))[0] == 200


def test_verify_if_given_and_allowed_sans(tls: TlsFiles, start: Callable[[str], Running]) -> None:
    optional = start(
        _server_tls(
            tls, f"  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: {tls.ca}\n"
        )
    )
    assert _https(optional.port, _client_context(tls))[0] == 200
    assert _https(optional.port, _client_context(tls, tls.client))[0] == 200
    assert _handshake_refused(optional.port, _client_context(tls, tls.client_expired))
    pinned = start(
        _server_tls(
            tls,
            f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {tls.ca}\n"
            "  client_allowed_sans: [someone-else.example]\n",
        )
    )
    assert _handshake_refused(pinned.port, _client_context(tls, tls.client))


def test_expired_server_certificate_is_refused_by_clients(
    tls: TlsFiles, start: Callable[[str], Running]
) -> None:
    running = start(
        f"tls_server_config:\n  cert_file: {tls.server_expired.cert}\n"
        f"  key_file: {tls.server_expired.key}\n"
    )
    context = _client_context(tls)
    with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
        _https(running.port, context)


def test_minimum_tls_version_is_enforced(tls: TlsFiles, start: Callable[[str], Running]) -> None:
    running = start(_server_tls(tls, "  min_version: TLS13\n"))
    old = _client_context(tls)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    assert _handshake_refused(running.port, old)
    assert _https(running.port, _client_context(tls))[0] == 200


def test_stalled_handshake_does_not_block_other_clients(
    tls: TlsFiles, start: Callable[[str], Running]
) -> None:
    running = start(_server_tls(tls))
    stalled = [socket.create_connection(("127.0.0.1", running.port), timeout=5) for _ in range(20)]
    for sock in stalled:
        sock.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
    started = time.monotonic()
    assert _https(running.port, _client_context(tls))[0] == 200
    assert time.monotonic() - started < 1.0
    stalled[0].settimeout(5)
    assert stalled[0].recv(10) == b""  # closed by the handshake deadline (2 s here)
    for sock in stalled:
        sock.close()


def _wait_for(predicate: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_reload_applies_new_users_and_keeps_the_last_good_config(
    tls: TlsFiles, start: Callable[[str], Running]
) -> None:
    running = start(f"basic_auth_users:\n  prometheus: {HASH}\n")
    conn = lambda headers: _plain_get(running.port, headers)  # noqa: E731
    assert conn(_auth("prometheus", PASSWORD)) == 200
    new_hash = bcrypt.hashpw(b"rotated", bcrypt.gensalt(4)).decode()
    replace_file(running.path, f"basic_auth_users:\n  prometheus: {new_hash}\n")
    # The reload count comes after the file's fingerprint: the next write cannot be missed.
    assert _wait_for(lambda: running.watcher.reloads == 1)
    assert conn(_auth("prometheus", "rotated")) == 200
    assert conn(_auth("prometheus", PASSWORD)) == 401
    replace_file(running.path, "basic_auth_users: [broken\n")
    # last_reload_ok turns False a moment before last_error is set: wait for both.
    assert _wait_for(
        lambda: not running.watcher.last_reload_ok and bool(running.watcher.last_error)
    )
    assert "not valid YAML" in running.watcher.last_error
    assert conn(_auth("prometheus", "rotated")) == 200  # the last good config still applies
    # Turning TLS on by reload: new connections get TLS.
    replace_file(running.path, _server_tls(tls))
    assert _wait_for(lambda: running.watcher.active.config.tls is not None)
    assert _https(running.port, _client_context(tls))[0] == 200


def _plain_get(port: int, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics", headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_a_broken_file_at_start_exits_2_naming_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    replace_file(path, "basic_auth_users:\n  alice: not-a-hash\n")
    result = subprocess.run(
        [sys.executable, "-m", "exporter", f"--web.config.file={path}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--web.config.file" in lines[0]
    assert "basic_auth_users.alice: not a bcrypt hash" in lines[0]
