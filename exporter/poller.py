"""The poll loop that drives a polled source: timing, health, backoff, stall watch.

Why separate from the NVML adapter: the loop's rules (catch per iteration, back off while the
source cannot open, publish health every time, stop within a second of SIGTERM) are the same for
every polled source, and they are easier to test without a driver behind them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

import structlog

from exporter.model import SampleMap, SourceHealth
from exporter.publisher import Publisher
from exporter.worker import ThreadWorker

log = structlog.get_logger(__name__)

BACKOFF_START_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
# A collection running longer than max(3 intervals, this) counts as stalled (a hung call).
STALL_FLOOR_SECONDS = 5.0


class SourceUnavailableError(Exception):
    """The source cannot be opened now (driver not loaded, socket absent); retry later."""


class PolledSource(Protocol):
    """What the poll loop needs from a source."""

    name: str

    def open(self) -> None:
        """Acquire the foreign resource; raise SourceUnavailableError if it is not there."""

    def collect(self) -> SampleMap:
        """Read everything once and return the samples; raise on a failure of the whole read."""

    def close(self) -> None:
        """Release the foreign resource; must not raise."""


class Poller(ThreadWorker):
    """Runs one source every `interval` seconds in its own thread and publishes the result."""

    def __init__(
        self,
        source: PolledSource,
        publisher: Publisher,
        interval: float,
        stop: threading.Event,
        stall_after: float | None = None,
        on_first_collection: Callable[[], None] | None = None,
    ) -> None:
        self._source = source
        self._publisher = publisher
        self._interval = interval
        self._stop = stop
        self._opened = False
        self._collections = 0
        self._errors = 0
        self._cpu_seconds = 0.0
        self._last_success: float | None = None
        self._backoff = BACKOFF_START_SECONDS
        self._first_done = on_first_collection
        self._thread = threading.Thread(target=self._run, name=f"poll-{source.name}", daemon=True)
        publisher.register(source.name, stall_after or max(3 * interval, STALL_FLOOR_SECONDS))

    def close_source(self) -> None:
        """Release the source, only after the thread has ended (no call in flight)."""
        if self._opened:
            self._source.close()
            self._opened = False

    def _health(self, up: bool, duration: float, detail: str = "") -> SourceHealth:
        return SourceHealth(
            up=up,
            duration_seconds=duration,
            last_success_timestamp=self._last_success,
            collections=self._collections,
            errors=self._errors,
            cpu_seconds=self._cpu_seconds,
            detail=detail,
        )

    def run_once(self) -> float:
        """One iteration: open if needed, collect, publish. Returns seconds to wait next."""
        name = self._source.name
        if not self._opened:
            try:
                self._source.open()
            except SourceUnavailableError as err:
                self._collections += 1
                self._errors += 1
                self._publisher.publish(name, {}, self._health(False, 0.0, str(err)))
                log.warning(
                    "source_unavailable",
                    source=name,
                    error=str(err),
                    retry_in_seconds=self._backoff,
                )
                wait = self._backoff
                self._backoff = min(self._backoff * 2, BACKOFF_MAX_SECONDS)
                return wait
            self._opened = True
            self._backoff = BACKOFF_START_SECONDS
            log.info("source_opened", source=name)
        self._publisher.begin(name)
        started = time.perf_counter()
        cpu_started = time.thread_time()
        self._collections += 1
        try:
            samples = self._source.collect()
        except Exception as err:
            # Like node_exporter's failed collector: its series disappear and source_up says
            # why, rather than serving values that are no longer true.
            self._errors += 1
            self._cpu_seconds += time.thread_time() - cpu_started
            duration = time.perf_counter() - started
            self._publisher.publish(name, {}, self._health(False, duration, repr(err)))
            if isinstance(err, SourceUnavailableError):
                log.warning("source_lost", source=name, error=str(err))
                self.close_source()
            else:
                log.exception("collection_failed", source=name)
            return self._interval
        self._cpu_seconds += time.thread_time() - cpu_started
        duration = time.perf_counter() - started
        self._last_success = time.time()
        self._publisher.publish(name, samples, self._health(True, duration))
        return max(0.0, self._interval - duration)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.run_once()
            except Exception:
                log.exception("poll_loop_error", source=self._source.name)
                wait = self._interval
            if self._first_done is not None:
                self._first_done()
            self._stop.wait(wait)
