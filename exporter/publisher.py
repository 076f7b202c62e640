"""The publisher: the latest samples of every source, rendered on demand, served to every scraper.

Why render on the first scrape after a change instead of on every change: a node exporter
collects far more often than anyone reads it (every second, scraped every 15 s, or not at all),
and the render (both formats, plus gzip) was most of the process's CPU with nobody scraping. So
sources only publish immutable sample maps (a swap under the lock); the first reader after a
change (a scrape, /readyz, the status page) takes a new generation of the state, and each format,
and its gzip variant, is rendered at most once per generation, only when a client asks for it.
A scrape never waits on NVML or on a slow source (they publish finished maps); it waits at most
for one render of the format it asked for, which the scrapers after it then share. The
exporter's own health (stalls, heartbeats, process metrics) is re-read when the last generation
is older than `refresh_seconds`, so it stays as current as it was with a render thread.
"""

from __future__ import annotations

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


class Exposition:
    """One rendered exposition in one format; its gzip variant is compressed on first use.

    Why lazily: Prometheus asks for gzip, curl and most probes do not; compressing every
    generation whether or not a client wants it was CPU spent for nobody. A benign race may
    compress one body twice (same bytes); no lock is needed.
    """

    __slots__ = ("_gzipped", "body", "content_type")

    def __init__(self, body: bytes, content_type: str) -> None:
        self.body = body
        self.content_type = content_type
        self._gzipped: bytes | None = None

    @property
    def gzipped(self) -> bytes:
        """The body gzip-compressed (level GZIP_LEVEL, no timestamp: same bytes every time)."""
        gzipped = self._gzipped
        if gzipped is None:
            import gzip  # loaded by the first client that asks for it

            gzipped = self._gzipped = gzip.compress(self.body, compresslevel=GZIP_LEVEL, mtime=0)
        return gzipped


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


class _Generation:
    """One capture of the publisher's state and the formats rendered from it so far."""

    __slots__ = ("openmetrics", "parts", "rendered_at", "snapshot", "text", "version")

    def __init__(
        self, version: int, parts: Sequence[SampleMap], snapshot: Snapshot, rendered_at: float
    ) -> None:
        self.version = version
        self.parts = parts
        self.snapshot = snapshot
        self.rendered_at = rendered_at  # time.monotonic() of the capture
        self.text: Exposition | None = None
        self.openmetrics: Exposition | None = None


class Publisher:
    """Holds each source's state and the rendered exposition; thread-safe."""

    def __init__(
        self,
        refresh_seconds: float = 5.0,
        pynvml_version: str = "",
        process_metrics: bool = True,
    ) -> None:
        self._lock = threading.Lock()
        # Held while capturing a generation or rendering a format, never while a source
        # publishes: concurrent scrapers of one generation wait for one render, not one each.
        self._render_lock = threading.Lock()
        self._sources: dict[str, SourceState] = {}
        self._version = 0
        self._refresh_seconds = refresh_seconds
        self._requests: dict[tuple[str, str], int] = {}
        self._process = ProcessMetrics() if process_metrics else None
        self._build_info: Sample = (
            (__version__, platform.python_version(), pynvml_version),
            1.0,
        )
        self._render_seconds = 0.0
        self._first_collection_version: int | None = None
        self._generation: _Generation | None = None

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

        Why not a publish: event sources wake several times a second and a publish makes the
        next scrape render a new generation. A heartbeat only stamps the time; the next
        generation (taken at least every `refresh_seconds` while someone reads) shows it as
        `source_last_success_timestamp_seconds`, and `collections_total` counts the cycles.
        So one freshness rule holds for every source: the timestamp stays within seconds of
        now while the source works.
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
            current = self._generation
            return first is not None and current is not None and current.version >= first

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
        """Take a new generation of the current state now; formats render from it on demand."""
        with self._render_lock:
            self._capture()

    def refresh(self) -> None:
        """Take a new generation if something changed or the last one is `refresh_seconds` old.

        Called by every reader (scrape, /readyz, status page) before it reads; cheap when
        nothing changed (one comparison under the lock).
        """
        if self._is_stale():
            with self._render_lock:
                if self._is_stale():  # another reader may have taken it while we waited
                    self._capture()

    def _is_stale(self) -> bool:
        with self._lock:
            current = self._generation
            return (
                current is None
                or current.version != self._version
                or time.monotonic() - current.rendered_at >= self._refresh_seconds
            )

    def _capture(self) -> _Generation:
        """Copy references to every source's samples and the health (render lock held)."""
        now = time.monotonic()
        with self._lock:
            version = self._version
            parts: list[SampleMap] = [state.samples for _, state in sorted(self._sources.items())]
            parts.append(self._health_samples(now))
            healths = {name: state.health for name, state in self._sources.items()}
            previous = self._generation
        number = previous.snapshot.generation + 1 if previous is not None else 1
        snapshot = Snapshot(number, _merge(parts), healths, time.time())
        current = _Generation(version, parts, snapshot, now)
        with self._lock:
            self._generation = current
        return current

    def snapshot(self) -> Snapshot:
        """The samples and source health of the last generation; one attribute read, no copy.

        Why from the last generation and not from the sources: a page built from it shows the
        same numbers /metrics serves, and reading it never waits on a source or on NVML.
        Readers call `refresh()` first when they want it current.
        """
        current = self._generation
        return current.snapshot if current is not None else EMPTY_SNAPSHOT

    def exposition(self, openmetrics: bool) -> Exposition:
        """The exposition of the current generation in one format, rendered on first request."""
        self.refresh()
        current = self._generation
        if current is None:  # refresh always leaves a generation
            raise RuntimeError("no generation to render")
        exposition = current.openmetrics if openmetrics else current.text
        if exposition is not None:
            return exposition
        with self._render_lock:
            exposition = current.openmetrics if openmetrics else current.text
            if exposition is None:
                exposition = self._render(current, openmetrics)
        return exposition

    def _render(self, current: _Generation, openmetrics: bool) -> Exposition:
        """Render one format of a generation (render lock held)."""
        started = time.perf_counter()
        tail = self._process.render(openmetrics=openmetrics) if self._process else ""
        body = render(current.parts, openmetrics=openmetrics, tail=tail).encode()
        if openmetrics:
            exposition = current.openmetrics = Exposition(body, OPENMETRICS_CONTENT_TYPE)
        else:
            exposition = current.text = Exposition(body, TEXT_CONTENT_TYPE)
        with self._lock:
            self._render_seconds = time.perf_counter() - started
        return exposition
