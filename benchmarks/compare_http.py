"""Scrape latency of /metrics under N concurrent scrapers, and response sizes.

Why closed loop with a new connection per request: the peer's server (prometheus_client on
wsgiref) answers HTTP/1.0-style and closes, so keep-alive would favour one side; and a
closed loop (each scraper sends its next request when the last answer is read) gives
enough samples for a p99 in a few seconds on either. Latency is connect to last byte.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from compare_procs import fetch


@dataclass(frozen=True)
class LoadResult:
    """Latency percentiles (ms) and throughput of one load level."""

    scrapers: int
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    rps: float


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def _one(port: int) -> float:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    await writer.drain()
    head = await reader.readline()
    if b" 200 " not in head:
        writer.close()
        raise RuntimeError(head.decode(errors="replace").strip())
    while await reader.read(65536):
        pass
    writer.close()
    return (time.perf_counter() - started) * 1000


async def _scraper(port: int, end: float, latencies: list[float], errors: list[str]) -> None:
    while time.perf_counter() < end:
        try:
            latencies.append(await _one(port))
        except (OSError, RuntimeError) as err:
            errors.append(str(err))
            await asyncio.sleep(0.01)


async def _load(port: int, scrapers: int, seconds: float) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    errors: list[str] = []
    end = time.perf_counter() + seconds
    await asyncio.gather(*(_scraper(port, end, latencies, errors) for _ in range(scrapers)))
    return latencies, errors


def load(port: int, scrapers: int, seconds: float) -> LoadResult:
    """Run ``scrapers`` closed-loop scrapers for ``seconds``."""
    started = time.perf_counter()
    latencies, errors = asyncio.run(_load(port, scrapers, seconds))
    elapsed = time.perf_counter() - started
    if not latencies:
        latencies = [float("nan")]
    return LoadResult(
        scrapers,
        len(latencies),
        len(errors),
        percentile(latencies, 0.50),
        percentile(latencies, 0.99),
        len(latencies) / elapsed,
    )


def sizes(port: int) -> tuple[int, int | None]:
    """(plain bytes, gzip bytes or None when the server ignores Accept-Encoding: gzip)."""
    _, plain = fetch(port)
    _, zipped = fetch(port, gzip=True)
    served = zipped[:2] == b"\x1f\x8b"
    return len(plain), len(zipped) if served else None
