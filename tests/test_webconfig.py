"""Parsing and validation of the exporter-toolkit web config, the auth cache and the reload."""

from __future__ import annotations

import base64
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from exporter.webconfig import (
    Authenticator,
    AuthResult,
    ClientAuth,
    WebConfigError,
    WebConfigWatcher,
    load_web_config,
    parse_basic_auth,
    parse_web_config,
)
from tests.fixtures.tls.certs import TlsFiles, generate
from tests.tools import replace_file

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return generate(tmp_path_factory.mktemp("tls"))


def _error(text: str, base: Path) -> str:
    with pytest.raises(WebConfigError) as info:
        parse_web_config(text, base)
    return str(info.value)


def test_empty_file_means_plain_http_without_auth(tmp_path: Path) -> None:
    for text in ("", "{}", "tls_server_config: {}\n", "basic_auth_users:\n"):
        config = parse_web_config(text, tmp_path)
        assert config.tls is None and config.ssl_context is None
        assert not config.auth_required


def test_full_config_builds_a_context(tls: TlsFiles) -> None:
    text = f"""
tls_server_config:
  cert_file: {tls.server.cert.name}
  key_file: {tls.server.key}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {tls.ca}
  client_allowed_sans: [prometheus.monitoring.svc]
  min_version: TLS13
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]
  prefer_server_cipher_suites: false
http_server_config:
  http2: true
  headers:
    X-Frame-Options: deny
    Strict-Transport-Security: max-age=31536000
basic_auth_users:
  prometheus: {HASH}
"""
    config = parse_web_config(text, tls.server.cert.parent)  # cert_file relative to the file
    assert config.tls is not None
    assert config.tls.client_auth is ClientAuth.REQUIRE_AND_VERIFY
    assert config.tls.client_allowed_sans == ("prometheus.monitoring.svc",)
    context = config.ssl_context
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert not context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 == {"ECDHE-ECDSA-AES128-GCM-SHA256"}
    assert config.headers == (
        ("X-Frame-Options", "deny"),
        ("Strict-Transport-Security", "max-age=31536000"),
    )
    assert config.users == {"prometheus": HASH.encode()}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tls_server_config: [a]", "tls_server_config: expected a mapping"),
        ("bogus: 1", "unknown key 'bogus'"),
        ("tls_server_config:\n  cert_fil: x", "tls_server_config: unknown key 'cert_fil'"),
        ("http_server_config:\n  h2: true", "http_server_config: unknown key 'h2'"),
        ("tls_server_config:\n  key_file: k", "cert_file: missing"),
        ("basic_auth_users:\n  alice: plaintext", "basic_auth_users.alice: not a bcrypt hash"),
        ("basic_auth_users:\n  'a:b': x", "contains ':'"),
        ("rate_limit:\n  burst: 2", "rate_limit: not supported"),
        ("http_server_config:\n  headers:\n    X-Evil: 1", "header 'X-Evil' is not allowed"),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow",
            "X-Frame-Options: 'allow' is not one of deny, sameorigin",
        ),
        ("tls_server_config:\n  cert: PEM", "inline certificates are not supported"),
        ("tls_server_config:\n  curve_preferences: [X25519]", "curve_preferences"),
        ("a: [", "not valid YAML at line"),
        ("- 1", "web config: expected a mapping"),
    ],
)
def test_invalid_configs_name_the_key(text: str, expected: str, tmp_path: Path) -> None:
    assert expected in _error(text, tmp_path)


def test_plaintext_password_is_never_echoed(tmp_path: Path) -> None:
    message = _error("basic_auth_users:\n  alice: hunter2-plain\n", tmp_path)
    assert "hunter2" not in message


@pytest.mark.parametrize(
    ("tls_extra", "expected"),
    [
        ("client_auth_type: RequireAnyClientCert", "accepts unverified client certificates"),
        ("client_auth_type: RequestClientCert", "RequireAndVerifyClientCert"),
        ("client_auth_type: Sometimes", "'Sometimes' is not one of NoClientCert"),
        ("client_auth_type: RequireAndVerifyClientCert", "needs client_ca_file"),
        ("client_ca_file: {ca}", "client_auth_type is NoClientCert"),
        ("client_allowed_sans: [x]", "needs client_auth_type RequireAndVerifyClientCert"),
        ("min_version: TLS14", "'TLS14' is not one of TLS10, TLS11, TLS12, TLS13"),
        ("min_version: TLS13\n  max_version: TLS12", "min_version is above max_version"),
        ("cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]", "unsupported cipher suite"),
        ("prefer_server_cipher_suites: maybe", "expected true or false"),
    ],
)
def test_invalid_tls_settings(tls: TlsFiles, tls_extra: str, expected: str) -> None:
    text = (
        f"tls_server_config:\n  cert_file: {tls.server.cert}\n  key_file: {tls.server.key}\n"
        f"  {tls_extra.format(ca=tls.ca)}\n"
    )
    assert expected in _error(text, tls.ca.parent)


def test_missing_or_mismatched_certificate_files(tls: TlsFiles, tmp_path: Path) -> None:
    missing = f"tls_server_config:\n  cert_file: nope.crt\n  key_file: {tls.server.key}\n"
    assert "cert_file: 'nope.crt' is not a readable file" in _error(missing, tmp_path)
    mismatched = (
        f"tls_server_config:\n  cert_file: {tls.server.cert}\n  key_file: {tls.client.key}\n"
    )
    assert "cannot load the certificate and key" in _error(mismatched, tmp_path)
    garbage_ca = tmp_path / "ca.pem"
    garbage_ca.write_text("not a certificate\n")
    bad_ca = (
        f"tls_server_config:\n  cert_file: {tls.server.cert}\n  key_file: {tls.server.key}\n"
        f"  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: {garbage_ca}\n"
    )
    assert "cannot load the CA" in _error(bad_ca, tmp_path)


def test_verify_if_given_is_optional_verification(tls: TlsFiles) -> None:
    text = (
        f"tls_server_config:\n  cert_file: {tls.server.cert}\n  key_file: {tls.server.key}\n"
        f"  client_auth_type: VerifyClientCertIfGiven\n  client_ca: |\n"
        + "".join(f"    {line}\n" for line in tls.ca.read_text().splitlines())
    )
    config = parse_web_config(text, tls.ca.parent)
    assert config.ssl_context is not None
    assert config.ssl_context.verify_mode == ssl.CERT_OPTIONAL


def test_parse_basic_auth_header() -> None:
    token = base64.b64encode(b"alice:pa:ss").decode()
    assert parse_basic_auth(f"Basic {token}") == ("alice", "pa:ss")
    assert parse_basic_auth(f"basic {token}") == ("alice", "pa:ss")
    assert parse_basic_auth("Bearer abc") is None
    assert parse_basic_auth("Basic !!!") is None
    assert parse_basic_auth("Basic " + base64.b64encode(b"nocolon").decode()) is None
    assert parse_basic_auth(None) is None


def test_authenticator_caches_verdicts_without_keeping_passwords() -> None:
    auth = Authenticator({"alice": HASH.encode()})
    assert auth.cached("alice", "s3cret") is AuthResult.NEEDS_BCRYPT
    assert auth.verify("alice", "s3cret")
    assert auth.cached("alice", "s3cret") is AuthResult.ALLOW
    assert not auth.verify("alice", "wrong")
    assert auth.cached("alice", "wrong") is AuthResult.DENY
    assert not auth.verify("mallory", "s3cret")  # unknown user: a dummy bcrypt check, denied
    assert auth.cached("mallory", "s3cret") is AuthResult.DENY
    for n in range(1100):  # a flood of wrong passwords cannot evict the good verdict
        assert not auth.verify("alice", f"wrong-{n}")
    assert auth.cached("alice", "s3cret") is AuthResult.ALLOW
    assert auth.cached("alice", "wrong-1099") is AuthResult.DENY
    assert len(auth._bad) <= 1024
    held = repr(auth._good) + repr(auth._bad)
    assert "s3cret" not in held


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def _wait_for(predicate: object, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_watcher_reloads_good_files_and_keeps_the_last_good_one(
    tmp_path: Path, stop: threading.Event
) -> None:
    path = tmp_path / "web.yml"
    replace_file(path, f"basic_auth_users:\n  alice: {HASH}\n")
    events: list[tuple[bool, str]] = []
    watcher = WebConfigWatcher(path, check_seconds=0.05)
    watcher.set_listener(lambda ok, error, _at: events.append((ok, error)))
    watcher.start(stop)
    first = watcher.active
    assert set(first.config.users) == {"alice"}
    replace_file(path, f"basic_auth_users:\n  bob: {HASH}\n  carol: {HASH}\n")
    # Wait for the reload count, not the new config: the watcher puts the config in force,
    # then fingerprints the file, then counts; a write before the fingerprint would be missed.
    assert _wait_for(lambda: watcher.reloads == 1)
    assert set(watcher.active.config.users) == {"bob", "carol"}
    replace_file(path, "basic_auth_users:\n  dave: plaintext\n")
    # The listener hears of the failure last (after last_reload_ok and last_error are set).
    assert _wait_for(lambda: events[-1][0] is False)
    assert not watcher.last_reload_ok
    assert set(watcher.active.config.users) == {"bob", "carol"}  # last good config kept
    assert "basic_auth_users.dave: not a bcrypt hash" in watcher.last_error
    assert "basic_auth_users.dave: not a bcrypt hash" in events[-1][1]
    assert events[0] == (True, "")
    replace_file(path, "{}\n")
    assert _wait_for(lambda: watcher.last_reload_ok and not watcher.active.config.users)
    stop.set()
    watcher.join(1.0)


def test_watcher_start_refuses_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    replace_file(path, "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n")
    with pytest.raises(WebConfigError, match="cert_file"):
        WebConfigWatcher(path)
    with pytest.raises(WebConfigError, match="cannot read"):
        load_web_config(tmp_path / "absent.yml")


def test_watcher_picks_up_a_rotated_certificate(
    tls: TlsFiles, tmp_path: Path, stop: threading.Event
) -> None:
    cert = tmp_path / "server.crt"
    cert.write_bytes(tls.server.cert.read_bytes())
    path = tmp_path / "web.yml"
    replace_file(
        path, f"tls_server_config:\n  cert_file: server.crt\n  key_file: {tls.server.key}\n"
    )
    watcher = WebConfigWatcher(path, check_seconds=0.05)
    watcher.start(stop)
    before = watcher.active
    replace_file(cert, tls.server.cert.read_bytes() + b"\n")  # same cert, new file: a rotation
    # `reloads` is counted after the new config is put in force: wait for the count.
    assert _wait_for(lambda: watcher.reloads >= 1)
    assert watcher.active is not before
    assert watcher.reloads == 1


def test_a_write_landing_during_a_reload_is_loaded_at_the_next_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import exporter.webconfig as webconfig

    path = tmp_path / "web.yml"
    replace_file(path, f"basic_auth_users:\n  alice: {HASH}\n")
    watcher = WebConfigWatcher(path)
    real_load = webconfig.load_web_config
    written: list[str] = []

    def load_then_write(target: Path) -> webconfig.WebConfig:
        config = real_load(target)
        if not written and "bob" in config.users:  # the reload has read bob's file...
            replace_file(path, f"basic_auth_users:\n  carol: {HASH}\n")  # ...and carol's lands now
            written.append("carol")
        return config

    monkeypatch.setattr(webconfig, "load_web_config", load_then_write)
    replace_file(path, f"basic_auth_users:\n  bob: {HASH}\n")
    for _ in range(6):  # checks driven by hand: each change settles for one check, then loads
        watcher.check()
    assert written == ["carol"]
    assert set(watcher.active.config.users) == {"carol"}
