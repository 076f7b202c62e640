"""The publisher: the latest samples of every source, rendered once, served to every scraper.

Why a render thread instead of rendering on scrape: a scrape must never wait on NVML, on a lock
held by a slow source, or on the render itself. Sources publish immutable sample maps; the render
thread turns them into bytes (plain and gzip) as soon as something changes, and at least every
`refresh_seconds` so the exporter's own health (stalls, process metrics) stays current. A scrape
only picks up the last bytes: one attribute read.
"""

from __future__ import annotations

import gzip
import platform
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from exporter import __version__, metrics
from exporter.model import Sample, SampleBuilder, SampleMap, SourceHealth, SourceState
from exporter.render import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, render
from exporter.selfmetrics import ProcessMetrics

GZIP_LEVEL = 1  # most of the size win for a fraction of the CPU of the default level 9


@dataclass(frozen=True, slots=True)
class Exposition:
    """One rendered exposition in one format, plain and gzip-compressed."""

    body: bytes
    gzipped: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the last render saw, for readers other than /metrics (the status page).

    `generation` counts renders (0: none yet), so a reader can cache what it derives from a
    snapshot and redo it at most once per render. `samples` is every source's samples and the
    exporter's health merged into one map; families only one source publishes keep that
    source's own tuple, so building it copies no samples.
    """

    generation: int
    samples: SampleMap
    sources: Mapping[str, SourceHealth]
    rendered_at: float  # Unix time of the render


EMPTY_SNAPSHOT = Snapshot(0, {}, {}, 0.0)


def _merge(parts: Sequence[SampleMap]) -> dict[str, Sequence[Sample]]:
    merged: dict[str, Sequence[Sample]] = {}
    for part in parts:
        for family, samples in part.items():
            previous = merged.get(family)
            merged[family] = samples if previous is None else (*previous, *samples)
    return merged


def _encode(text: str, content_type: str) -> Exposition:
    body = text.encode()
    return Exposition(body, gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0), content_type)


class Publisher:
    """Holds each source's state and the rendered exposition; thread-safe."""

    def __init__(
        self,
        refresh_seconds: float = 5.0,
        pynvml_version: str = "",
        process_metrics: bool = True,
    ) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._sources: dict[str, SourceState] = {}
        self._version = 0
        self._rendered_version = -1
        self._refresh_seconds = refresh_seconds
        self._requests: dict[tuple[str, str], int] = {}
        self._process = ProcessMetrics() if process_metrics else None
        self._build_info: Sample = (
            (__version__, platform.python_version(), pynvml_version),
            1.0,
        )
        self._want_openmetrics = False
        self._text: Exposition | None = None
        self._openmetrics: Exposition | None = None
        self._render_seconds = 0.0
        self._first_collection_version: int | None = None
        self._snapshot = EMPTY_SNAPSHOT

    # -- sources -------------------------------------------------------------------------

    def register(self, source: str, stall_after: float) -> None:
        """Announce a source so its health shows (as down) before its first collection."""
        with self._lock:
            state = self._sources.setdefault(source, SourceState())
            state.stall_after = stall_after
            self._bump()

    def begin(self, source: str) -> None:
        """Mark the start of a collection: if it does not end in time, the source is stalled."""
        with self._lock:
            self._sources.setdefault(source, SourceState()).busy_since = time.monotonic()

    def publish(
        self, source: str, samples: Mapping[str, Sequence[Sample]] | None, health: SourceHealth
    ) -> None:
        """Replace a source's samples (None keeps the previous ones) and health; render soon."""
        with self._lock:
            state = self._sources.setdefault(source, SourceState())
            if samples is not None:
                state.samples = samples
            state.health = health
            state.busy_since = None
            self._bump()

    def heartbeat(self, *sources: str) -> None:
        """An event source finished one wait cycle: it is alive, whether or not events came.

        Why not a publish: event sources wake several times a second and a publish renders
        the whole exposition. A heartbeat only stamps the time; the periodic render (at least
        every `refresh_seconds`) shows it as `source_last_success_timestamp_seconds`, and
        `collections_total` counts the cycles. So one freshness rule holds for every source:
        the timestamp stays within seconds of now while the source works.
        """
        now = time.time()
        with self._lock:
            for source in sources:
                state = self._sources.setdefault(source, SourceState())
                state.heartbeat_at = now
                state.heartbeats += 1

    def mark_first_collection(self) -> None:
        """Called after each NVML collection attempt; the first one starts readiness."""
        with self._lock:
            if self._first_collection_version is None:
                self._first_collection_version = self._version

    def first_collection_done(self) -> bool:
        """True once the first NVML collection finished and /metrics serves its samples.

        Readiness waits for the render too: a scraper told "ready" must not get the
        exposition from before the first collection.
        """
        with self._lock:
            first = self._first_collection_version
            return first is not None and self._rendered_version >= first

    def source_health(self, source: str) -> SourceHealth | None:
        """The last published health of a source, or None if it never published."""
        with self._lock:
            state = self._sources.get(source)
            return state.health if state else None

    def count_request(self, path: str, code: int) -> None:
        """Count one HTTP request; unknown paths are folded into "other" to bound cardinality."""
        key = (path, str(code))
        with self._lock:
            self._requests[key] = self._requests.get(key, 0) + 1

    def _bump(self) -> None:
        self._version += 1
        self._changed.notify_all()

    # -- rendering -----------------------------------------------------------------------

    def _health_samples(self, now_monotonic: float) -> SampleMap:
        builder = SampleBuilder()
        for name, state in sorted(self._sources.items()):
            health = state.health
            stalled = (
                state.busy_since is not None
                and now_monotonic - state.busy_since > state.stall_after
            )
            key = (name,)
            builder.add(metrics.SOURCE_UP.name, key, 1.0 if health.up and not stalled else 0.0)
            builder.add(metrics.SOURCE_STALLED.name, key, 1.0 if stalled else 0.0)
            builder.add(metrics.SOURCE_DURATION.name, key, health.duration_seconds)
            last_success = health.last_success_timestamp
            if state.heartbeat_at is not None and health.up:
                last_success = max(last_success or 0.0, state.heartbeat_at)
            if last_success is not None:
                builder.add(metrics.SOURCE_LAST_SUCCESS.name, key, last_success)
            builder.add(metrics.COLLECTIONS.name, key, float(health.collections + state.heartbeats))
            builder.add(metrics.COLLECTION_ERRORS.name, key, float(health.errors))
            builder.add(metrics.COLLECTION_CPU.name, key, health.cpu_seconds)
        for (path, code), count in sorted(self._requests.items()):
            builder.add(metrics.SCRAPES.name, (path, code), float(count))
        builder.add(metrics.BUILD_INFO.name, *self._build_info)
        builder.add(metrics.RENDER_DURATION.name, (), self._render_seconds)
        return builder.freeze()

    def render_now(self) -> None:
        """Render every wanted format from the current state (called by the render thread)."""
        started = time.perf_counter()
        with self._lock:
            version = self._version
            parts: list[SampleMap] = [state.samples for _, state in sorted(self._sources.items())]
            parts.append(self._health_samples(time.monotonic()))
            want_openmetrics = self._want_openmetrics
            healths = {name: state.health for name, state in self._sources.items()}
        tail_text = self._process.render(openmetrics=False) if self._process else ""
        text = _encode(render(parts, openmetrics=False, tail=tail_text), TEXT_CONTENT_TYPE)
        openmetrics_exposition = None
        if want_openmetrics:
            tail_om = self._process.render(openmetrics=True) if self._process else ""
            openmetrics_exposition = _encode(
                render(parts, openmetrics=True, tail=tail_om), OPENMETRICS_CONTENT_TYPE
            )
        with self._lock:
            self._text = text
            if openmetrics_exposition is not None:
                self._openmetrics = openmetrics_exposition
            self._rendered_version = version
            self._render_seconds = time.perf_counter() - started
            self._snapshot = Snapshot(
                self._snapshot.generation + 1, _merge(parts), healths, time.time()
            )

    def snapshot(self) -> Snapshot:
        """The samples and source health of the last render; one attribute read, no copy.

        Why from the last render and not from the sources: a page built from it shows the
        same numbers /metrics serves, and reading it never waits on a source or on NVML.
        """
        return self._snapshot

    def exposition(self, openmetrics: bool) -> Exposition:
        """The last rendered exposition; renders once synchronously only before the first one."""
        if openmetrics:
            current = self._openmetrics
            if current is None:
                with self._lock:
                    self._want_openmetrics = True
                self.render_now()
                current = self._openmetrics
        else:
            current = self._text
            if current is None:
                self.render_now()
                current = self._text
        if current is None:  # render_now always sets both it was asked for
            raise RuntimeError("render produced no exposition")
        return current

    def run(self, stop: threading.Event) -> None:
        """Render loop: re-render on every change and at least every refresh interval."""
        while not stop.is_set():
            with self._lock:
                if self._version == self._rendered_version:
                    self._changed.wait(self._refresh_seconds)
            if stop.is_set():
                return
            try:
                self.render_now()
            except Exception:
                # Keep serving the previous exposition; the next change retries.
                time.sleep(min(1.0, self._refresh_seconds))

    def wake(self) -> None:
        """Wake the render loop (used on shutdown)."""
        with self._lock:
            self._changed.notify_all()
