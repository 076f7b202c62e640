"""`--web.config.file`: the Prometheus exporter-toolkit web config (TLS, basic auth, headers).

Why a module of its own: parsing and validation are pure (a file in, a frozen WebConfig or one
WebConfigError naming the key out), so every rule is unit-tested without a socket; the server
only asks "which SSLContext", "are these credentials good" and "which extra headers".

Same file format as exporter-toolkit, so one file serves node_exporter and this exporter alike.
Where Python's ssl module cannot do what Go's crypto/tls does, the key is refused with a clear
message instead of being silently weakened (see docs/web-config.md):
- client_auth_type RequestClientCert and RequireAnyClientCert accept a client certificate
  without verifying it; Python can only verify presented certificates. Both are insecure
  anyway (the toolkit docs say so); use RequireAndVerifyClientCert.
- inline `cert`/`key` (Python loads a key only from a file; a read-only root filesystem leaves
  nowhere to write one), `curve_preferences` (Python 3.11 sets one curve, not a list) and
  `rate_limit` are refused. Inline `client_ca` is supported.

Reload: `WebConfigWatcher` re-reads the file when it or a certificate, key or CA file it names
changes (stat every second in a small thread), so rotated certificates and new users apply
without a restart. A broken file at start is a startup error (exit 2); a broken file at reload
keeps the last good config, is logged and shows as
nvidia_gpu_exporter_web_config_last_reload_successful 0.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import structlog

from exporter.config import WebConfigError

log = structlog.get_logger(__name__)

TOP_LEVEL_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit")
TLS_KEYS = (
    "cert_file",
    "key_file",
    "cert",
    "key",
    "client_auth_type",
    "client_ca_file",
    "client_ca",
    "client_allowed_sans",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
    "curve_preferences",
)
HTTP_KEYS = ("http2", "headers")

TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# Go crypto/tls cipher suite names (tls.CipherSuites(), TLS 1.0-1.2) -> OpenSSL names.
GO_CIPHERS_TO_OPENSSL: dict[str, str] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
}
# TLS 1.3 suites are not configurable in Go either; listing them is accepted and has no effect.
GO_TLS13_CIPHERS = (
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
)

# http_server_config.headers: the toolkit's allow-list, with the values it restricts.
ALLOWED_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Content-Security-Policy": None,
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
    "X-XSS-Protection": None,
    "Strict-Transport-Security": None,
}

_BCRYPT_HASH = re.compile(r"^\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}$")
# Checked for unknown users so that a wrong user name costs as much time as a wrong password.
# (A fixed hash of a random string, cost 10 like htpasswd -B; computing one at import costs 70 ms.)
_DUMMY_HASH = b"$2b$10$AXSo1V1AitsDdGGrlJoaXeJwq9FE5WURsWP4S3n3NXhY2DXTU.Rtq"
SUCCESS_CACHE_SIZE = 64
FAILURE_CACHE_SIZE = 1024


class ClientAuth(Enum):
    """The client_auth_type values Python can honour, mapped to ssl verify modes."""

    NO_CLIENT_CERT = "NoClientCert"
    VERIFY_IF_GIVEN = "VerifyClientCertIfGiven"
    REQUIRE_AND_VERIFY = "RequireAndVerifyClientCert"


UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert")


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """tls_server_config after validation; paths are resolved against the config's folder."""

    cert_file: Path
    key_file: Path
    client_auth: ClientAuth = ClientAuth.NO_CLIENT_CERT
    client_ca_file: Path | None = None
    client_ca_pem: str | None = None
    client_allowed_sans: tuple[str, ...] = ()
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True

    def watched_files(self) -> tuple[Path, ...]:
        """Files whose change must rebuild the SSLContext (certificate rotation)."""
        files = [self.cert_file, self.key_file]
        if self.client_ca_file is not None:
            files.append(self.client_ca_file)
        return tuple(files)


@dataclass(frozen=True, slots=True)
class WebConfig:
    """One loaded web config: TLS (or None for plain HTTP), users and extra headers."""

    tls: TlsConfig | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)
    headers: tuple[tuple[str, str], ...] = ()
    ssl_context: ssl.SSLContext | None = None

    @property
    def auth_required(self) -> bool:
        """Basic auth applies to every path once any user is configured (as in the toolkit)."""
        return bool(self.users)


# -- parsing ----------------------------------------------------------------------------------


def _mapping(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise WebConfigError(f"{where}: expected a mapping of names to values")
    return value


def _check_keys(section: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in section:
        if key not in allowed:
            raise WebConfigError(f"{where}: unknown key {key!r} (known: {', '.join(allowed)})")


def _string(section: dict[str, Any], key: str, where: str) -> str | None:
    value = section.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise WebConfigError(f"{where}.{key}: expected a string, got {type(value).__name__}")
    return value


def _string_list(section: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = section.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise WebConfigError(f"{where}.{key}: expected a list of strings")
    return tuple(value)


def _file(base: Path, text: str, where: str) -> Path:
    path = Path(text)
    if not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise WebConfigError(f"{where}: {text!r} is not a readable file")
    return path


def _parse_tls(raw: object, base: Path) -> TlsConfig | None:
    where = "tls_server_config"
    section = _mapping(raw, where)
    _check_keys(section, TLS_KEYS, where)
    for unsupported, why in (
        ("cert", "inline certificates are not supported; use cert_file"),
        ("key", "inline keys are not supported; use key_file"),
        ("curve_preferences", "Python's ssl module cannot set a curve list; remove it"),
    ):
        if section.get(unsupported) not in (None, "", []):
            raise WebConfigError(f"{where}.{unsupported}: {why}")
    cert_text = _string(section, "cert_file", where)
    key_text = _string(section, "key_file", where)
    if (
        cert_text is None
        and key_text is None
        and not any(section.get(key) not in (None, "", []) for key in section)
    ):
        return None  # an empty tls_server_config means plain HTTP, as in the toolkit
    if cert_text is None:
        raise WebConfigError(f"{where}.cert_file: missing (key_file is set)")
    if key_text is None:
        raise WebConfigError(f"{where}.key_file: missing (cert_file is set)")
    auth_text = _string(section, "client_auth_type", where) or "NoClientCert"
    if auth_text in UNVERIFIED_CLIENT_AUTH:
        raise WebConfigError(
            f"{where}.client_auth_type: {auth_text} accepts unverified client certificates, "
            "which Python's ssl module cannot do (and which is insecure); use "
            "RequireAndVerifyClientCert or VerifyClientCertIfGiven"
        )
    try:
        client_auth = ClientAuth(auth_text)
    except ValueError:
        known = [member.value for member in ClientAuth] + list(UNVERIFIED_CLIENT_AUTH)
        raise WebConfigError(
            f"{where}.client_auth_type: {auth_text!r} is not one of {', '.join(known)}"
        ) from None
    ca_text = _string(section, "client_ca_file", where)
    ca_pem = _string(section, "client_ca", where)
    if ca_text and ca_pem:
        raise WebConfigError(f"{where}: set client_ca_file or client_ca, not both")
    has_ca = bool(ca_text or ca_pem)
    if client_auth is ClientAuth.NO_CLIENT_CERT and has_ca:
        raise WebConfigError(
            f"{where}.client_ca_file: client CAs are configured but client_auth_type is "
            "NoClientCert; set client_auth_type: RequireAndVerifyClientCert"
        )
    if client_auth is not ClientAuth.NO_CLIENT_CERT and not has_ca:
        raise WebConfigError(
            f"{where}.client_ca_file: client_auth_type {client_auth.value} needs client_ca_file"
        )
    sans = _string_list(section, "client_allowed_sans", where)
    if sans and client_auth is not ClientAuth.REQUIRE_AND_VERIFY:
        raise WebConfigError(
            f"{where}.client_allowed_sans: needs client_auth_type RequireAndVerifyClientCert"
        )
    versions = {}
    for key, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        text = _string(section, key, where) or default
        if text not in TLS_VERSIONS:
            raise WebConfigError(f"{where}.{key}: {text!r} is not one of {', '.join(TLS_VERSIONS)}")
        versions[key] = text
    if TLS_VERSIONS[versions["min_version"]] > TLS_VERSIONS[versions["max_version"]]:
        raise WebConfigError(f"{where}: min_version is above max_version")
    suites = _string_list(section, "cipher_suites", where)
    for suite in suites:
        if suite not in GO_CIPHERS_TO_OPENSSL and suite not in GO_TLS13_CIPHERS:
            raise WebConfigError(
                f"{where}.cipher_suites: unknown or unsupported cipher suite {suite!r} "
                "(use Go crypto/tls names such as TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)"
            )
    prefer = section.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError(f"{where}.prefer_server_cipher_suites: expected true or false")
    return TlsConfig(
        cert_file=_file(base, cert_text, f"{where}.cert_file"),
        key_file=_file(base, key_text, f"{where}.key_file"),
        client_auth=client_auth,
        client_ca_file=_file(base, ca_text, f"{where}.client_ca_file") if ca_text else None,
        client_ca_pem=ca_pem,
        client_allowed_sans=sans,
        min_version=versions["min_version"],
        max_version=versions["max_version"],
        cipher_suites=suites,
        prefer_server_cipher_suites=prefer,
    )


def _parse_users(raw: object) -> dict[str, bytes]:
    where = "basic_auth_users"
    section = _mapping(raw, where)
    users: dict[str, bytes] = {}
    for user, hashed in section.items():
        if ":" in user or not user:
            raise WebConfigError(f"{where}: user name {user!r} is empty or contains ':'")
        if not isinstance(hashed, str) or not _BCRYPT_HASH.match(hashed):
            # Never echo the value: it may be a plain-text password pasted by mistake.
            raise WebConfigError(
                f"{where}.{user}: not a bcrypt hash (expected $2y$10$... from htpasswd -nBC 10)"
            )
        cost = int(_BCRYPT_HASH.match(hashed).group(1))  # type: ignore[union-attr]
        if not 4 <= cost <= 31:
            raise WebConfigError(f"{where}.{user}: bcrypt cost {cost} is out of range 4-31")
        users[user] = hashed.encode()
    return users


def _parse_http(raw: object) -> tuple[tuple[str, str], ...]:
    where = "http_server_config"
    section = _mapping(raw, where)
    _check_keys(section, HTTP_KEYS, where)
    if not isinstance(section.get("http2", True), bool):
        raise WebConfigError(f"{where}.http2: expected true or false")
    headers = _mapping(section.get("headers"), f"{where}.headers")
    result: list[tuple[str, str]] = []
    for name, value in headers.items():
        canonical = next(
            (known for known in ALLOWED_HEADERS if known.lower() == name.lower()), None
        )
        if canonical is None:
            raise WebConfigError(
                f"{where}.headers: header {name!r} is not allowed "
                f"(allowed: {', '.join(ALLOWED_HEADERS)})"
            )
        if value is None or value == "":
            continue
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            raise WebConfigError(f"{where}.headers.{canonical}: expected a one-line string")
        choices = ALLOWED_HEADERS[canonical]
        if choices is not None and value.lower() not in choices:
            raise WebConfigError(
                f"{where}.headers.{canonical}: {value!r} is not one of {', '.join(choices)}"
            )
        result.append((canonical, value))
    return tuple(result)


def parse_web_config(text: str, base: Path) -> WebConfig:
    """Parse and validate the YAML text; relative file names are relative to `base`."""
    import yaml  # only when a web config is used: keeps the default exporter smaller

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise WebConfigError(f"not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    top = _mapping(raw, "web config")
    _check_keys(top, TOP_LEVEL_KEYS, "web config")
    if top.get("rate_limit") not in (None, {}):
        raise WebConfigError("rate_limit: not supported by this exporter; remove it")
    tls = _parse_tls(top.get("tls_server_config"), base)
    config = WebConfig(
        tls=tls,
        users=_parse_users(top.get("basic_auth_users")),
        headers=_parse_http(top.get("http_server_config")),
    )
    if tls is None:
        return config
    return WebConfig(tls, config.users, config.headers, build_ssl_context(tls))


def load_web_config(path: Path) -> WebConfig:
    """Read and validate the file; every problem is one WebConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise WebConfigError(f"cannot read {str(path)!r}: {err}") from None
    return parse_web_config(text, path.parent)


def build_ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    """An SSLContext that enforces the config; certificate problems become WebConfigError."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.minimum_version = TLS_VERSIONS[tls.min_version]
        context.maximum_version = TLS_VERSIONS[tls.max_version]
    except (ValueError, ssl.SSLError) as err:
        raise WebConfigError(f"tls_server_config.min_version/max_version: {err}") from None
    try:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except (ssl.SSLError, OSError) as err:
        raise WebConfigError(
            f"tls_server_config.cert_file/key_file: cannot load the certificate and key "
            f"({err.__class__.__name__}: {err}); are they PEM and do they match?"
        ) from None
    if tls.client_auth is not ClientAuth.NO_CLIENT_CERT:
        try:
            if tls.client_ca_file is not None:
                context.load_verify_locations(cafile=str(tls.client_ca_file))
            else:
                context.load_verify_locations(cadata=tls.client_ca_pem)
        except (ssl.SSLError, OSError, ValueError) as err:
            raise WebConfigError(
                f"tls_server_config.client_ca_file: cannot load the CA ({err})"
            ) from None
        context.verify_mode = (
            ssl.CERT_REQUIRED
            if tls.client_auth is ClientAuth.REQUIRE_AND_VERIFY
            else ssl.CERT_OPTIONAL
        )
    names = [GO_CIPHERS_TO_OPENSSL[s] for s in tls.cipher_suites if s in GO_CIPHERS_TO_OPENSSL]
    if names:
        try:
            context.set_ciphers(":".join(names))
        except ssl.SSLError:
            raise WebConfigError(
                "tls_server_config.cipher_suites: none of the listed suites is available in "
                f"this OpenSSL ({ssl.OPENSSL_VERSION})"
            ) from None
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    return context


def peer_sans(peer: Mapping[str, Any] | None) -> tuple[str, ...]:
    """DNS, IP, e-mail and URI subject alternative names of a verified peer certificate."""
    if not peer:
        return ()
    return tuple(str(value) for _kind, value in peer.get("subjectAltName", ()))


# -- basic auth -------------------------------------------------------------------------------


class AuthResult(Enum):
    """What a credential check concluded without or with bcrypt."""

    ALLOW = "allow"
    DENY = "deny"
    NEEDS_BCRYPT = "needs-bcrypt"


class Authenticator:
    """Checks basic-auth credentials against bcrypt hashes, with a cache of verdicts.

    Why the cache: a bcrypt check costs ~70 ms at cost 10, and a node may see hundreds of
    scrapes a second. Verdicts are cached under an HMAC of user and password with a key that
    lives only in this process, so the cache never holds a password, and a new config (a new
    Authenticator) forgets every verdict. Successes and failures have separate bounded caches,
    so a flood of wrong passwords cannot push the good scraper's verdict out.
    """

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self._users = dict(users)
        self._key = secrets.token_bytes(32)
        self._good: OrderedDict[bytes, None] = OrderedDict()
        self._bad: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def _digest(self, user: str, password: str) -> bytes:
        message = user.encode("utf-8", "surrogateescape") + b"\0"
        message += password.encode("utf-8", "surrogateescape")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def cached(self, user: str, password: str) -> AuthResult:
        """The cached verdict, or NEEDS_BCRYPT; cheap enough for the request path."""
        digest = self._digest(user, password)
        with self._lock:
            if digest in self._good:
                self._good.move_to_end(digest)
                return AuthResult.ALLOW
            if digest in self._bad:
                return AuthResult.DENY
        return AuthResult.NEEDS_BCRYPT

    def verify(self, user: str, password: str) -> bool:
        """Check with bcrypt (slow: run off the fast path) and cache the verdict."""
        import bcrypt  # only when basic auth is configured

        hashed = self._users.get(user)
        candidate = password.encode("utf-8", "surrogateescape")
        try:
            matched = bcrypt.checkpw(candidate, hashed if hashed is not None else _DUMMY_HASH)
        except ValueError:
            matched = False
        ok = matched and hashed is not None
        digest = self._digest(user, password)
        with self._lock:
            cache, size = (
                (self._good, SUCCESS_CACHE_SIZE) if ok else (self._bad, FAILURE_CACHE_SIZE)
            )
            cache[digest] = None
            while len(cache) > size:
                cache.popitem(last=False)
        return ok


def parse_basic_auth(header: str | None) -> tuple[str, str] | None:
    """`Basic base64(user:password)` -> (user, password); None when absent or malformed."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token or len(token) > 4096:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8", "surrogateescape")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return user, password


# -- reload -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActiveWebConfig:
    """The config in force with its authenticator (swapped as one reference on reload)."""

    config: WebConfig
    authenticator: Authenticator
    loaded_at: float


def _fingerprint(paths: tuple[Path, ...]) -> tuple[tuple[str, int, int, int], ...]:
    result = []
    for path in paths:
        try:
            st = os.stat(path)
            result.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            result.append((str(path), -1, -1, -1))
    return tuple(result)


ReloadListener = Callable[[bool, str, float], None]


class WebConfigWatcher:
    """Holds the active web config and reloads it when the file or a file it names changes.

    A change is loaded once it has held still for one check (so one to two seconds after the
    write), never half-written. Why stat polling every second rather than inotify: Kubernetes
    updates mounted Secrets by swapping a symlink, which inotify on the file itself misses; a
    stat of three or four files a second costs microseconds and works everywhere (the toolkit
    re-reads the file on every request).
    """

    def __init__(
        self, path: Path, check_seconds: float = 1.0, listener: ReloadListener | None = None
    ) -> None:
        self.path = path
        self.check_seconds = check_seconds
        self._listener = listener
        config, self._fingerprint = self._load()  # raises WebConfigError: a startup error
        self._active = ActiveWebConfig(config, Authenticator(config.users), time.time())
        self._failed_fingerprint: tuple[tuple[str, int, int, int], ...] | None = None
        self._settling: tuple[tuple[str, int, int, int], ...] | None = None
        self.last_reload_ok = True
        self.last_error = ""
        self.reloads = 0
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> ActiveWebConfig:
        """The config in force now (a plain attribute read: safe from any thread)."""
        return self._active

    def set_listener(self, listener: ReloadListener) -> None:
        """Tell `listener(ok, error, loaded_at)` about the current state and every reload."""
        self._listener = listener
        listener(self.last_reload_ok, self.last_error, self._active.loaded_at)

    def _watched(self, config: WebConfig) -> tuple[Path, ...]:
        files = (self.path,)
        return files + (config.tls.watched_files() if config.tls else ())

    def _load(self) -> tuple[WebConfig, tuple[tuple[str, int, int, int], ...]]:
        """The config and a fingerprint taken *before* it was read.

        Why this order: a fingerprint taken after the read could already describe a write that
        landed during the read, and that write would never be loaded. The first load only
        names the files to fingerprint (the certificates too). If the file changed between the
        two loads to name other files, the fingerprint is left empty, so the next checks settle
        and load once more.
        """
        fingerprint = _fingerprint(self._watched(load_web_config(self.path)))
        config = load_web_config(self.path)
        if tuple(entry[0] for entry in fingerprint) != tuple(map(str, self._watched(config))):
            fingerprint = ()
        return config, fingerprint

    def check(self) -> bool:
        """Reload if anything changed; returns True when a new config was put in force."""
        current = _fingerprint(self._watched(self._active.config))
        if current in (self._fingerprint, self._failed_fingerprint):
            self._settling = None
            return False
        if current != self._settling:
            # Changed since the last check: wait until it holds still for one interval, so a
            # file caught half-written (truncated, then written) is not taken for the config.
            self._settling = current
            return False
        self._settling = None
        try:
            config, fingerprint = self._load()
        except WebConfigError as err:
            self._failed_fingerprint = current
            self.last_error = str(err)  # before the flag: a reader that sees False finds why
            self.last_reload_ok = False
            log.error("web_config_reload_failed", path=str(self.path), error=str(err))
            if self._listener is not None:
                self._listener(False, str(err), self._active.loaded_at)
            return False
        self._active = ActiveWebConfig(config, Authenticator(config.users), time.time())
        self._fingerprint = fingerprint
        self._failed_fingerprint = None
        self.last_reload_ok = True
        self.last_error = ""
        self.reloads += 1
        log.info(
            "web_config_reloaded",
            path=str(self.path),
            tls=config.tls is not None,
            users=len(config.users),
        )
        if self._listener is not None:
            self._listener(True, "", self._active.loaded_at)
        return True

    def start(self, stop: threading.Event, on_checked: Callable[[], None] | None = None) -> None:
        """Check every `check_seconds` in a daemon thread until `stop` is set.

        `on_checked` runs after each check that did not raise: the watcher's heartbeat.
        """

        def loop() -> None:
            while not stop.wait(self.check_seconds):
                try:
                    self.check()
                except Exception as err:  # never let the watcher die
                    log.error("web_config_watch_error", error=repr(err))
                    continue
                if on_checked is not None:
                    on_checked()

        self._thread = threading.Thread(target=loop, name="web-config-watch", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        """Wait for the watch thread to leave after `stop` was set."""
        if self._thread is not None:
            self._thread.join(timeout)
