"""The HTTP server: /metrics from memory, /healthz, /readyz, the status page; TLS and auth.

Why this shape (one event loop, plus a thread for bcrypt) rather than a thread per
connection: every answer is bytes the publisher already rendered, so a request costs a header
parse and a socket write, and what can hurt a node exporter is not load but clients that hold
resources while doing nothing: idle keep-alive connections, slow header senders, TLS handshakes
that never finish, clients that never read. A thread per connection lets each of them pin a
thread (and with a connection cap, lock out the real scraper). Here:

- one loop thread ("http") owns every socket, non-blocking: it accepts, sniffs and finishes TLS
  handshakes, reads request heads and writes responses. A connection that is idle, half-sent
  or not reading costs a file descriptor and a buffer, never a thread;
- a complete request head is answered inline by the loop: the handler only parses the head
  and takes a reference to prerendered bytes (tens of microseconds), so handing it to worker
  threads would cost more in GIL switches and wake-ups than it saves (measured: p50 0.96 ms
  and 29% CPU with a 2-thread pool against 0.73 ms and 20% inline, 500 req/s). The one slow
  step, a bcrypt check the verdict cache cannot answer (~70 ms), goes to `auth_workers`
  threads with a bounded queue (full: 503 + Retry-After), so a flood of wrong passwords
  cannot stall the loop that serves /metrics;
- bounds: `max_connections` open connections (at the cap the oldest connection that is not
  being served is closed to make room, so thousands of idlers cannot lock out a scraper); a
  deadline for the whole request head (`header_timeout`, not per recv: a byte a second does not
  keep it alive), for the TLS handshake, for keep-alive idleness and for writing a response
  (`send_timeout`, total); a cap on request-line and head size (414/431) and on header count;
- threads are fixed (the loop, plus auth_workers when a web config is set); memory is bounded
  by max_connections times max_head_bytes plus the responses being written, which share the
  rendered exposition bytes.

Basic auth, when the web config names users, protects every path (as exporter-toolkit does):
/healthz too, so Kubernetes probes then need a tcpSocket probe or an httpGet that sends an
Authorization header (see docs/web-config.md).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import queue
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from http import HTTPStatus
from typing import TYPE_CHECKING

import structlog

from exporter.config import ListenAddress
from exporter.http_handler import NeedsBcryptError, RequestHandler
from exporter.publisher import Publisher

if TYPE_CHECKING:
    from exporter.statuspage import StatusPage
    from exporter.webconfig import WebConfigWatcher

log = structlog.get_logger(__name__)

MAX_REQUEST_LINE = 8192
SEND_CHUNK = 256 * 1024
TLS_HANDSHAKE_RECORD = 0x16


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Every bound the server enforces (tests shorten the timeouts)."""

    max_connections: int = 512
    auth_workers: int = 1
    auth_queue: int = 64
    handshake_timeout: float = 10.0
    header_timeout: float = 10.0
    idle_timeout: float = 75.0
    send_timeout: float = 10.0
    max_request_line: int = MAX_REQUEST_LINE
    max_head_bytes: int = 16384


def _plain_response(status: HTTPStatus, body: str, extra: str = "") -> bytes:
    """A complete response written by the loop itself (errors found before any handler)."""
    payload = body.encode()
    return (
        f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(payload)}\r\n{extra}Connection: close\r\n\r\n"
    ).encode() + payload


class ListenError(OSError):
    """The listen address could not be bound; the message names the address and a way out.

    Why its own type: the bare OSError said `[Errno 98] Address already in use` and left the
    reader to guess which address; the app turns this one into a one-line exit with code 2
    (bad input), like an invalid flag.
    """


_LISTEN_HINTS = {
    errno.EADDRINUSE: "another process holds this port (a second exporter?); stop it or "
    "choose another port with --web.listen-address",
    errno.EACCES: "ports below 1024 need CAP_NET_BIND_SERVICE; choose a port above 1023",
    errno.EADDRNOTAVAIL: "no network interface of this host has that address",
}


def _listen_error(host: str, port: int, err: OSError) -> ListenError:
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    reason = (err.strerror or str(err)).lower()
    hint = _LISTEN_HINTS.get(err.errno or 0)
    error = ListenError(f"cannot listen on {address}: {reason}" + (f": {hint}" if hint else ""))
    error.errno = err.errno
    return error


class _State(Enum):
    SNIFF = "sniff"  # TLS port, waiting for the first byte (handshake or plain HTTP?)
    HANDSHAKE = "handshake"
    READ = "read"  # waiting for (the rest of) a request head
    BUSY = "busy"  # an auth thread has the request
    WRITE = "write"


@dataclass(eq=False, slots=True)
class _Conn:
    ident: int
    sock: socket.socket
    client: tuple[str, int]
    state: _State
    deadline: float
    since: float
    context: ssl.SSLContext | None = None
    allowed_sans: tuple[str, ...] = ()
    buffer: bytearray = field(default_factory=bytearray)
    out: deque[memoryview] = field(default_factory=deque)
    close_after: bool = False
    events: int = 0


_Job = tuple[int, bytes, tuple[str, int]]


def _find_head_end(buffer: bytearray) -> int:
    """Index just past the blank line that ends a request head, or -1."""
    ends = [i for i in (buffer.find(b"\r\n\r\n"), buffer.find(b"\n\n")) if i >= 0]
    if not ends:
        return -1
    first = min(ends)
    return first + (4 if buffer[first : first + 4] == b"\r\n\r\n" else 2)


class ExporterHTTPServer:
    """The exporter's HTTP(S) server: `serve_forever()` in a thread, `shutdown()` to stop."""

    def __init__(
        self,
        listen: ListenAddress,
        publisher: Publisher,
        readiness: Callable[[], tuple[bool, str]],
        web: WebConfigWatcher | None = None,
        limits: ServerLimits | None = None,
    ) -> None:
        self.publisher = publisher
        self._status_page: StatusPage | None = None
        self.readiness = readiness
        self.web = web
        self.limits = limits or ServerLimits()
        host = listen.host
        family = socket.AF_INET
        if host == "" and socket.has_ipv6:
            family, host = socket.AF_INET6, "::"
        elif ":" in host:
            family = socket.AF_INET6
        elif host == "":
            host = "0.0.0.0"  # noqa: S104 - every interface is the documented default
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and host == "::":
                with contextlib.suppress(OSError):  # kernels without dual stack keep IPv6 only
                    self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            self.socket.bind((host, listen.port))
            self.socket.listen(1024)
            self.socket.setblocking(False)
        except OSError as err:
            self.socket.close()
            raise _listen_error(host, listen.port, err) from err
        self.server_address = self.socket.getsockname()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._conns: dict[int, _Conn] = {}
        self._ids = itertools.count(1)
        self._evict_candidates: deque[_Conn] = deque()
        self._done: deque[tuple[int, list[bytes], bool]] = deque()
        self._auth_jobs: queue.Queue[_Job | None] = queue.Queue(self.limits.auth_queue)
        self._threads: list[threading.Thread] = []
        self._stop = False
        self._stopped = threading.Event()
        self._stopped.set()
        self.evictions = 0
        self.refused = 0
        self.timeouts = 0

    @property
    def status_page(self) -> StatusPage:
        """The status page at /, built on first use: most exporters never serve it."""
        if self._status_page is None:
            from exporter.statuspage import StatusPage

            self._status_page = StatusPage(self.publisher)
        return self._status_page

    @property
    def port(self) -> int:
        """The bound port (useful with port 0 in tests)."""
        return int(self.server_address[1])

    @property
    def connection_count(self) -> int:
        """Open client connections (for tests and benchmarks)."""
        return len(self._conns)

    # -- lifecycle ------------------------------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.25) -> None:
        """Run the loop in this thread until `shutdown()`; starts and stops the auth threads."""
        self._stopped.clear()
        self._stop = False
        # Without a web config no request can need bcrypt (a reload cannot add users either:
        # the watcher exists only when a file was given), so no auth thread is started.
        workers = self.limits.auth_workers if self.web is not None else 0
        self._threads = [
            threading.Thread(target=self._work, name=f"http-auth-{n}") for n in range(workers)
        ]
        for thread in self._threads:
            thread.daemon = True
            thread.start()
        self._selector.register(self.socket, selectors.EVENT_READ, None)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        tick = min(max(poll_interval, 0.01), 0.25)
        # Every deadline set from now on lies at least this far ahead (each state's timeout).
        limits = self.limits
        shortest = min(
            limits.handshake_timeout,
            limits.header_timeout,
            limits.idle_timeout,
            limits.send_timeout,
        )
        next_sweep = time.monotonic() + tick
        try:
            while not self._stop:
                # Wake only when a deadline may have passed (no sooner than `tick` apart): an
                # exporter with no connections, or only idle keep-alive ones, then sleeps until
                # a socket, a finished auth job or shutdown wakes it, instead of every tick.
                timeout = max(0.0, next_sweep - time.monotonic()) if self._conns else None
                for key, mask in self._selector.select(timeout):
                    try:
                        self._dispatch_event(key, mask)
                    except Exception as err:  # one bad connection never stops the loop
                        log.warning("http_event_error", error=repr(err))
                        if isinstance(key.data, _Conn):
                            self._close(key.data)
                self._drain_done()
                now = time.monotonic()
                if not self._conns:
                    next_sweep = now + min(tick, shortest)
                elif now >= next_sweep:
                    nearest = self._sweep(now)
                    next_sweep = max(now + tick, min(nearest, now + shortest))
        finally:
            for _ in self._threads:
                with contextlib.suppress(queue.Full):
                    self._auth_jobs.put_nowait(None)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self.socket)
                self._selector.unregister(self._wake_r)
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop the loop and wait (up to 2 s) for it to leave."""
        self._stop = True
        self._wake()
        self._stopped.wait(2.0)

    def server_close(self) -> None:
        """Close the listening socket and every connection."""
        for conn in list(self._conns.values()):
            self._close(conn)
        with contextlib.suppress(OSError):
            self.socket.close()
        for sock in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                sock.close()
        with contextlib.suppress(Exception):
            self._selector.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    # -- answering ------------------------------------------------------------------------

    def _work(self) -> None:
        """An auth thread: answers requests whose credentials need a bcrypt check."""
        while True:
            job = self._auth_jobs.get()
            if job is None:
                return
            self._answer(job, slow=True)

    def _answer(self, job: _Job, slow: bool, wake: bool = True) -> None:
        """Run the handler for one request head and queue the response for the loop."""
        ident, head, client = job
        try:
            chunks, close = RequestHandler.run(self, head, client, slow_ok=slow)
        except NeedsBcryptError:
            try:
                self._auth_jobs.put_nowait(job)
                return
            except queue.Full:
                busy = "authentication backlog full, retry\n"
                chunks = [
                    _plain_response(HTTPStatus.SERVICE_UNAVAILABLE, busy, "Retry-After: 1\r\n")
                ]
                close = True
        except Exception as err:  # a handler bug answers 500, never kills the loop
            log.error("http_handler_error", error=repr(err))
            chunks = [_plain_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error\n")]
            close = True
        self._done.append((ident, chunks, close))
        if wake:
            self._wake()

    # -- the loop ---------------------------------------------------------------------------

    def _dispatch_event(self, key: selectors.SelectorKey, mask: int) -> None:
        if key.fileobj is self.socket:
            self._accept()
        elif key.fileobj is self._wake_r:
            with contextlib.suppress(OSError):
                while self._wake_r.recv(4096):
                    pass
        else:
            conn: _Conn = key.data
            if conn.state is _State.SNIFF:
                self._sniff(conn)
            elif conn.state is _State.HANDSHAKE:
                self._handshake(conn)
            elif conn.state is _State.READ:
                self._read(conn)
            elif conn.state is _State.WRITE:
                self._write(conn)

    def _watch(self, conn: _Conn, events: int) -> None:
        if events == conn.events:
            return
        if conn.events == 0:
            self._selector.register(conn.sock, events, conn)
        elif events == 0:
            self._selector.unregister(conn.sock)
        else:
            self._selector.modify(conn.sock, events, conn)
        conn.events = events

    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, client = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # EMFILE and friends: back off until the next event
                log.warning("http_accept_failed", error=str(err))
                return
            sock.setblocking(False)
            # Headers and body leave in separate sends: without NODELAY, Nagle holds the body
            # until the client's delayed ACK (~40 ms on Linux) on every keep-alive response.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if len(self._conns) >= self.limits.max_connections and not self._evict_one():
                self.refused += 1
                with contextlib.suppress(OSError):
                    sock.send(_plain_response(HTTPStatus.SERVICE_UNAVAILABLE, "busy\n"))
                sock.close()
                continue
            now = time.monotonic()
            context = None
            sans: tuple[str, ...] = ()
            if self.web is not None:
                config = self.web.active.config
                context = config.ssl_context
                sans = config.tls.client_allowed_sans if config.tls else ()
            conn = _Conn(
                ident=next(self._ids),
                sock=sock,
                client=(str(client[0]), int(client[1])),
                state=_State.SNIFF if context is not None else _State.READ,
                deadline=now
                + (self.limits.handshake_timeout if context else self.limits.header_timeout),
                since=now,
                context=context,
                allowed_sans=sans,
            )
            self._conns[conn.ident] = conn
            self._watch(conn, selectors.EVENT_READ)

    def _evict_one(self) -> bool:
        """At the cap, close the oldest connection nobody is serving (idle or still sending).

        Candidates are picked 32 at a time (one sort per 32 evictions), so a flood of new
        connections at the cap costs O(log n) each, not a scan of every connection.
        """
        serving = (_State.BUSY, _State.WRITE)
        while True:
            if not self._evict_candidates:
                waiting = [c for c in self._conns.values() if c.state not in serving]
                waiting.sort(key=lambda c: c.since)
                self._evict_candidates.extend(waiting[:32])
                if not self._evict_candidates:
                    return False
            conn = self._evict_candidates.popleft()
            if conn.ident in self._conns and conn.state not in serving:
                self.evictions += 1
                self._close(conn)
                return True

    def _close(self, conn: _Conn) -> None:
        self._conns.pop(conn.ident, None)
        if conn.events:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(conn.sock)
            conn.events = 0
        with contextlib.suppress(OSError):
            conn.sock.close()
        conn.buffer = bytearray()
        conn.out.clear()

    def _sniff(self, conn: _Conn) -> None:
        try:
            first = conn.sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not first:
            self._close(conn)
            return
        if first[0] != TLS_HANDSHAKE_RECORD:
            # Plain HTTP on the TLS port: say so in plain text, as Go's server does.
            self._respond_and_close(
                conn,
                _plain_response(
                    HTTPStatus.BAD_REQUEST, "Client sent an HTTP request to an HTTPS server.\n"
                ),
            )
            return
        if conn.context is None:  # unreachable: SNIFF is only entered with a context
            self._close(conn)
            return
        self._watch(conn, 0)
        try:
            conn.sock = conn.context.wrap_socket(
                conn.sock, server_side=True, do_handshake_on_connect=False
            )
        except (ssl.SSLError, OSError):
            self._close(conn)
            return
        conn.state = _State.HANDSHAKE
        self._handshake(conn)

    def _handshake(self, conn: _Conn) -> None:
        sock = conn.sock
        if not isinstance(sock, ssl.SSLSocket):  # unreachable: HANDSHAKE follows the wrap
            self._close(conn)
            return
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._watch(conn, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._watch(conn, selectors.EVENT_WRITE)
            return
        except (ssl.SSLError, OSError) as err:
            log.debug("tls_handshake_failed", client=conn.client[0], error=str(err))
            self._close(conn)
            return
        if conn.allowed_sans and not self._san_allowed(sock, conn.allowed_sans):
            log.info("tls_client_san_refused", client=conn.client[0])
            self._close(conn)
            return
        now = time.monotonic()
        conn.state, conn.since, conn.deadline = _State.READ, now, now + self.limits.header_timeout
        self._watch(conn, selectors.EVENT_READ)
        self._read(conn)

    @staticmethod
    def _san_allowed(sock: ssl.SSLSocket, allowed: tuple[str, ...]) -> bool:
        from exporter.webconfig import peer_sans  # loaded already: TLS implies a web config

        return bool(set(peer_sans(sock.getpeercert())) & set(allowed))

    def _read(self, conn: _Conn) -> None:
        limits = self.limits
        while True:
            if self._take_head(conn):
                return
            if len(conn.buffer) >= limits.max_head_bytes:
                self._reject_head(conn)
                return
            try:
                chunk = conn.sock.recv(limits.max_head_bytes - len(conn.buffer))
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                return
            except ssl.SSLWantWriteError:
                return
            except OSError:
                self._close(conn)
                return
            if not chunk:
                self._close(conn)
                return
            if not conn.buffer:  # first byte of a request: the head deadline starts now
                conn.deadline = min(conn.deadline, time.monotonic() + limits.header_timeout)
            conn.buffer += chunk

    def _take_head(self, conn: _Conn) -> bool:
        """If the buffer holds a complete head, answer it; True when it was taken."""
        end = _find_head_end(conn.buffer)
        if end < 0:
            line_limit = self.limits.max_request_line
            if len(conn.buffer) >= line_limit and b"\n" not in conn.buffer[:line_limit]:
                self._reject_head(conn)
                return True
            return False
        line_end = conn.buffer.find(b"\n")
        if line_end > self.limits.max_request_line:
            self._reject_head(conn)
            return True
        head = bytes(conn.buffer[:end])
        del conn.buffer[:end]
        conn.state = _State.BUSY
        self._watch(conn, 0)
        # Answered inline; the loop writes the answer after this event batch (no recursion).
        self._answer((conn.ident, head, conn.client), slow=False, wake=False)
        return True

    def _reject_head(self, conn: _Conn) -> None:
        line_end = conn.buffer.find(b"\n")
        if line_end < 0 or line_end > self.limits.max_request_line:
            status, text = HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long\n"
        else:
            status, text = HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large\n"
        self._respond_and_close(conn, _plain_response(status, text))

    def _respond_and_close(self, conn: _Conn, payload: bytes) -> None:
        conn.buffer = bytearray()
        self._start_write(conn, [payload], close=True)

    def _drain_done(self) -> None:
        while self._done:
            ident, chunks, close = self._done.popleft()
            conn = self._conns.get(ident)
            if conn is not None:
                self._start_write(conn, chunks, close)

    def _start_write(self, conn: _Conn, chunks: list[bytes], close: bool) -> None:
        now = time.monotonic()
        conn.state, conn.since, conn.deadline = _State.WRITE, now, now + self.limits.send_timeout
        conn.out.extend(memoryview(chunk) for chunk in chunks if chunk)
        conn.close_after = close
        self._watch(conn, selectors.EVENT_WRITE)
        self._write(conn)

    def _write(self, conn: _Conn) -> None:
        while conn.out:
            view = conn.out[0]
            try:
                sent = conn.sock.send(view[:SEND_CHUNK])
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                return
            except ssl.SSLWantReadError:
                return
            except OSError:
                self._close(conn)
                return
            if sent >= len(view):
                conn.out.popleft()
            else:
                conn.out[0] = view[sent:]
        if conn.close_after:
            self._close(conn)
            return
        now = time.monotonic()
        conn.state, conn.since, conn.deadline = _State.READ, now, now + self.limits.idle_timeout
        self._watch(conn, selectors.EVENT_READ)
        self._read(conn)  # a pipelined request may already be buffered

    def _sweep(self, now: float) -> float:
        """Close connections past their deadline; returns the nearest deadline left (or inf)."""
        nearest = float("inf")
        for conn in list(self._conns.values()):
            if conn.state is _State.BUSY:
                continue
            if now < conn.deadline:
                nearest = min(nearest, conn.deadline)
                continue
            self.timeouts += 1
            if conn.state is _State.READ and conn.buffer:
                with contextlib.suppress(OSError, ssl.SSLError):
                    conn.sock.send(
                        _plain_response(HTTPStatus.REQUEST_TIMEOUT, "request head too slow\n")
                    )
            self._close(conn)
        return nearest
