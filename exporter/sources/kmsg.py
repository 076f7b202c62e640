"""The kernel log follower: reads /dev/kmsg (or a FIFO or file of records) in its own thread.

Event-driven: the thread sleeps in poll() on the descriptor and wakes when a record arrives,
so an Xid reaches /metrics within milliseconds (it never re-reads the log on a timer). It also
polls a stop pipe that join() writes to, so the poll timeout (HEARTBEAT_SECONDS) only sets how
often the source heartbeats: every wake-up costs CPU whether or not a record came.

What the descriptor kinds mean:
- /dev/kmsg (a character device): one record per read(). The records present when the follower
  opens it are the *backlog* (they happened before the exporter started): they set last-seen
  times and recovery actions but are not counted. EPIPE means records were overwritten before we
  read them; the next record's sequence number tells how many, counted in
  nvidia_gpu_exporter_kmsg_records_lost_total, and reading goes on.
- a FIFO: a stream of newline-terminated records (for tests and replay); everything is live.
- a regular file: its content at open is the backlog, records appended later are live (the file
  is checked for growth every 50 ms: a file is a replay/test path, not the production one).

Stream input is framed by lines: a line starting with a space is a continuation (` KEY=value`
metadata, skipped); a line longer than MAX_RECORD_BYTES is dropped up to its newline, so memory
stays bounded whatever the bytes are; a line without a kmsg header is still scanned for NVRM
text (a saved `dmesg` log works) and counted as `unframed`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import stat
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

import structlog

from exporter import metrics
from exporter.model import SampleBuilder, SourceHealth
from exporter.publisher import Publisher
from exporter.worker import ThreadWorker
from exporter.xid.parser import (
    GpuUuidHint,
    KmsgRecord,
    XidEvent,
    XidParser,
    parse_record,
    unescape,
)
from exporter.xid.state import SOURCE_NAME as XID_SOURCE_NAME
from exporter.xid.state import XidState

log = structlog.get_logger(__name__)

SOURCE_NAME = "kmsg"
READ_BYTES = 65536  # above any kernel record (the kernel caps a record near 8 KiB)
MAX_RECORD_BYTES = 16384  # stream mode: longer lines are garbage and dropped
POLL_TIMEOUT_MS = 250  # readers that cannot watch the stop pipe (test doubles)
# Readers that also watch the stop pipe wake this often only to heartbeat: each wake-up costs
# ~0.1 ms of CPU on a small VM, and a stop request ends the wait at once through the pipe.
HEARTBEAT_SECONDS = 1.0
FILE_GROWTH_CHECK_SECONDS = 0.05
COUNTERS_PUBLISH_SECONDS = 1.0
BACKOFF_START_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
XID_MARKER = "NVRM: Xid"
UNPARSED_LOG_FIRST = 10
UNPARSED_LOG_EVERY = 1000
UNPARSED_LOG_CHARS = 300


class Reader(Protocol):
    """A kernel-log input: yields framed records, signals EPIPE as OSError."""

    kind: str

    def wait(self, timeout_seconds: float) -> None:
        """Block until input may be available or the timeout passes."""

    def records(self) -> Iterator[bytes]:
        """Records available now (each one whole record or line); raises OSError(EPIPE)."""

    def at_backlog_end(self) -> bool:
        """True once everything present at open has been read."""

    def close(self) -> None:
        """Release the descriptor(s)."""


class DeviceReader:
    """/dev/kmsg: non-blocking descriptor, one record per read()."""

    kind = "device"

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN | select.POLLPRI | select.POLLERR)
        self._drained = False

    def wait(self, timeout_seconds: float) -> None:
        self._poll.poll(int(timeout_seconds * 1000))

    def watch(self, fd: int) -> None:
        """Also end `wait` when `fd` becomes readable (the follower's stop pipe)."""
        self._poll.register(fd, select.POLLIN)

    def records(self) -> Iterator[bytes]:
        while True:
            try:
                record = os.read(self._fd, READ_BYTES)
            except BlockingIOError:
                self._drained = True
                return
            if not record:
                self._drained = True
                return
            yield record

    def at_backlog_end(self) -> bool:
        return self._drained

    def close(self) -> None:
        os.close(self._fd)


class _LineFramer:
    """Splits a byte stream into lines with a hard bound on buffered bytes."""

    __slots__ = ("_buffer", "_skipping", "oversized")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skipping = False
        self.oversized = 0

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        start = 0
        while True:
            newline = chunk.find(b"\n", start)
            if newline < 0:
                break
            if self._skipping:
                self._skipping = False
            elif self._buffer:
                self._buffer += chunk[start:newline]
                yield self._take()
            else:
                yield chunk[start:newline]
            start = newline + 1
        if start < len(chunk) and not self._skipping:
            self._buffer += chunk[start:]
            if len(self._buffer) > MAX_RECORD_BYTES:
                self._buffer.clear()
                self._skipping = True
                self.oversized += 1

    def _take(self) -> bytes:
        line = bytes(self._buffer)
        self._buffer.clear()
        if len(line) > MAX_RECORD_BYTES:
            self.oversized += 1
            return b""
        return line


class StreamReader:
    """A FIFO or regular file holding newline-terminated records."""

    def __init__(self, path: str, fifo: bool) -> None:
        self.kind = "fifo" if fifo else "file"
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        # Holding a write end ourselves keeps read() from returning EOF whenever the last
        # writer closes: poll() then blocks until data comes instead of spinning on POLLHUP.
        self._keepalive = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC) if fifo else -1
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)
        self._framer = _LineFramer()
        self._at_eof = False

    @property
    def oversized(self) -> int:
        return self._framer.oversized

    def wait(self, timeout_seconds: float) -> None:
        if self.kind == "file":
            if self._at_eof:
                time.sleep(min(timeout_seconds, FILE_GROWTH_CHECK_SECONDS))
            return
        self._poll.poll(int(timeout_seconds * 1000))

    def watch(self, fd: int) -> None:
        """Also end `wait` when `fd` becomes readable; a regular file's wait is short anyway."""
        if self.kind == "fifo":
            self._poll.register(fd, select.POLLIN)

    def records(self) -> Iterator[bytes]:
        while True:
            try:
                chunk = os.read(self._fd, READ_BYTES)
            except BlockingIOError:
                self._at_eof = True
                return
            if not chunk:
                self._at_eof = True
                return
            self._at_eof = False
            yield from self._framer.feed(chunk)

    def at_backlog_end(self) -> bool:
        return self.kind == "fifo" or self._at_eof

    def close(self) -> None:
        os.close(self._fd)
        if self._keepalive >= 0:
            os.close(self._keepalive)


def open_reader(path: str) -> Reader:
    """Open the kernel log at `path` as the reader its file type needs."""
    mode = os.stat(path).st_mode
    if stat.S_ISCHR(mode):
        return DeviceReader(path)
    if stat.S_ISFIFO(mode):
        return StreamReader(path, fifo=True)
    if stat.S_ISREG(mode):
        return StreamReader(path, fifo=False)
    raise OSError(errno.EINVAL, f"{path} is not a character device, FIFO or regular file")


class KmsgFollower(ThreadWorker):
    """Follows the kernel log and feeds every Xid to `XidState`; one thread."""

    name = SOURCE_NAME

    def __init__(
        self,
        path: str,
        state: XidState,
        publisher: Publisher,
        stop: threading.Event,
        opener: Callable[[str], Reader] = open_reader,
    ) -> None:
        self._path = path
        self._state = state
        self._publisher = publisher
        self._stop = stop
        self._opener = opener
        self._parser = XidParser()
        self._boot_wall = time.time() - time.monotonic()
        self._results: dict[str, int] = {
            "xid": 0,
            "other": 0,
            "malformed": 0,
            "unframed": 0,
            "unparsed_xid": 0,
        }
        self._lost = 0
        self._last_seq: int | None = None
        self._gap_pending = False
        self._up = False
        self._detail = "not opened yet"
        self._last_success: float | None = None
        self._dirty = False
        self._published_at = 0.0
        self._errors = 0
        # The stop pipe: join() writes a byte so a reader blocked for HEARTBEAT_SECONDS returns
        # at once. Opened and closed by the thread, under the lock, so join never writes to a
        # descriptor number that was closed and reused, and a follower never started holds none.
        self._wake_lock = threading.Lock()
        self._wake_r = self._wake_w = -1
        self._thread = threading.Thread(target=self._run, name="kmsg", daemon=True)
        publisher.register(SOURCE_NAME, stall_after=float("inf"))

    def join(self, timeout: float) -> bool:
        """Wake the reader if the stop event is set, then wait up to `timeout`."""
        with self._wake_lock:
            if self._wake_w >= 0 and self._stop.is_set():  # a byte without a stop would spin
                with contextlib.suppress(OSError):  # full: a byte is already waiting
                    os.write(self._wake_w, b"\0")
        return super().join(timeout)

    def _close_wake_pipe(self) -> None:
        with self._wake_lock:
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._wake_r = self._wake_w = -1

    @property
    def lost_records(self) -> int:
        """Records lost to ring-buffer overruns so far."""
        return self._lost

    def results(self) -> dict[str, int]:
        """Records read so far, by result (a copy)."""
        return dict(self._results)

    # -- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        with self._wake_lock:
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_w, False)
        try:
            self._run_until_stopped()
        finally:
            self._close_wake_pipe()

    def _run_until_stopped(self) -> None:
        backoff = BACKOFF_START_SECONDS
        while not self._stop.is_set():
            try:
                reader = self._opener(self._path)
            except OSError as err:
                self._set_health(False, f"cannot open {self._path}: {err.strerror or err}")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)
                continue
            backoff = BACKOFF_START_SECONDS
            log.info("kmsg_following", path=self._path, kind=reader.kind)
            self._set_health(True, "")
            try:
                self._follow(reader)
            except Exception as err:
                self._errors += 1
                log.error("kmsg_follow_failed", path=self._path, error=str(err))
                self._set_health(False, f"read failed: {err}")
                self._stop.wait(backoff)
            finally:
                reader.close()
        self._publish(force=True)

    def _follow(self, reader: Reader) -> None:
        backlog = not reader.at_backlog_end()  # a FIFO has no history: everything is live
        timeout = POLL_TIMEOUT_MS / 1000.0
        watch = getattr(reader, "watch", None)  # test doubles may not have it
        if watch is not None:
            watch(self._wake_r)
            timeout = HEARTBEAT_SECONDS
        while not self._stop.is_set():
            try:
                for raw in reader.records():
                    self._handle_safely(raw, backlog)
                    if self._stop.is_set():
                        return
            except OSError as err:
                if err.errno != errno.EPIPE:
                    raise
                self._gap_pending = True  # overwritten: the next record's seq tells how many
                self._dirty = True
                continue
            if backlog and reader.at_backlog_end():
                backlog = False
                log.info("kmsg_backlog_read", records=sum(self._results.values()))
                self._dirty = True
            self._last_success = time.time()
            self._publish()
            self._state.refresh()
            self._publisher.heartbeat(SOURCE_NAME, XID_SOURCE_NAME)
            reader.wait(timeout)

    def _handle_safely(self, raw: bytes, backlog: bool) -> None:
        try:
            self._handle(raw, backlog)
        except Exception as err:
            self._results["malformed"] += 1
            self._errors += 1
            log.warning("kmsg_record_failed", error=str(err), record=raw[:200].hex())

    def _handle(self, raw: bytes, backlog: bool) -> None:
        if not raw:
            self._results["malformed"] += 1
            return
        if raw[:1] == b" ":
            return  # a continuation line (stream mode): KEY=value metadata
        record = parse_record(raw)
        if record is None:
            text = unescape(raw[:MAX_RECORD_BYTES])
            result = "unframed"
            when = time.time()
        else:
            self._account_seq(record)
            text = record.text
            result = "other"
            when = self._boot_wall + record.usec / 1e6
        self._dirty = True
        items = self._parser.feed(text)
        if XID_MARKER in text and not any(isinstance(item, XidEvent) for item in items):
            self._unparsed(text)
            return
        for item in items:
            if isinstance(item, GpuUuidHint):
                self._state.observe_hint(item)
                continue
            result = "xid" if record is not None else result
            if backlog:
                self._state.observe_backlog(item, when)
            else:
                self._state.observe(item, when, origin="kmsg")
        self._results[result] += 1

    def _unparsed(self, text: str) -> None:
        """An NVRM Xid line we cannot read: a new driver format must not silence Xid counts.

        Counted as `unparsed_xid` (an alert watches it) and logged with the text, the first
        UNPARSED_LOG_FIRST times and then every UNPARSED_LOG_EVERY-th, so a flood of them
        cannot flood the log.
        """
        self._results["unparsed_xid"] += 1
        count = self._results["unparsed_xid"]
        if count <= UNPARSED_LOG_FIRST or count % UNPARSED_LOG_EVERY == 0:
            start = text.find(XID_MARKER)
            log.warning(
                "xid_line_unparsed",
                text=text[max(0, start) : max(0, start) + UNPARSED_LOG_CHARS],
                total=count,
            )

    def _account_seq(self, record: KmsgRecord) -> None:
        if self._gap_pending and self._last_seq is not None:
            gap = record.seq - self._last_seq - 1
            if gap > 0:
                self._lost += gap
                log.warning("kmsg_records_lost", lost=gap, total=self._lost)
        self._gap_pending = False
        self._last_seq = record.seq

    # -- health and counters ----------------------------------------------------------------

    def _set_health(self, up: bool, detail: str) -> None:
        if (up, detail) != (self._up, self._detail):
            if not up:
                log.warning("kmsg_unavailable", path=self._path, detail=detail)
            self._up, self._detail = up, detail
            self._state.set_input(SOURCE_NAME, up, detail)
        self._publish(force=True)

    def _publish(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and not (self._dirty and now - self._published_at >= COUNTERS_PUBLISH_SECONDS):
            return
        self._dirty = False
        self._published_at = now
        out = SampleBuilder()
        for result, total in self._results.items():
            out.add(metrics.KMSG_RECORDS.name, (result,), float(total))
        out.add(metrics.KMSG_RECORDS_LOST.name, (), float(self._lost))
        health = SourceHealth(  # collections: the publisher counts completed waits
            up=self._up,
            last_success_timestamp=self._last_success,
            errors=self._errors,
            detail=self._detail,
        )
        self._publisher.publish(SOURCE_NAME, out.freeze(), health)
