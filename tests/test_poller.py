"""The poll loop with a scripted source: no driver needed to test its rules."""

from __future__ import annotations

import threading

from exporter import metrics
from exporter.model import SampleMap
from exporter.poller import Poller, SourceUnavailableError
from exporter.publisher import Publisher


class ScriptedSource:
    name = "scripted"

    def __init__(self, opens: list[bool], collects: list[object]) -> None:
        self.opens = opens
        self.collects = collects
        self.closed = 0

    def open(self) -> None:
        if not self.opens.pop(0):
            raise SourceUnavailableError("driver not loaded")

    def collect(self) -> SampleMap:
        step = self.collects.pop(0)
        if isinstance(step, Exception):
            raise step
        assert isinstance(step, dict)
        return step

    def close(self) -> None:
        self.closed += 1


GOOD = {metrics.UP.name: ((("0", "GPU-a"), 1.0),)}


def _poller(source: ScriptedSource) -> tuple[Poller, Publisher]:
    publisher = Publisher(process_metrics=False)
    return Poller(source, publisher, interval=5.0, stop=threading.Event()), publisher


def test_unavailable_source_backs_off_exponentially_then_recovers() -> None:
    source = ScriptedSource(opens=[False, False, False, True], collects=[GOOD])
    poller, publisher = _poller(source)
    waits = [poller.run_once() for _ in range(3)]
    assert waits == [1.0, 2.0, 4.0]
    health = publisher.source_health("scripted")
    assert health is not None and not health.up and "driver not loaded" in health.detail
    assert poller.run_once() <= 5.0
    health = publisher.source_health("scripted")
    assert health is not None and health.up and health.last_success_timestamp is not None
    assert health.collections == 4 and health.errors == 3


def test_a_failed_collection_drops_samples_and_the_loop_goes_on() -> None:
    source = ScriptedSource(opens=[True], collects=[GOOD, RuntimeError("boom"), GOOD])
    poller, publisher = _poller(source)
    poller.run_once()
    poller.run_once()
    health = publisher.source_health("scripted")
    assert health is not None and not health.up and "boom" in health.detail
    publisher.render_now()
    assert b"nvidia_gpu_up{" not in publisher.exposition(openmetrics=False).body
    poller.run_once()
    publisher.render_now()
    assert b'nvidia_gpu_up{gpu="0"' in publisher.exposition(openmetrics=False).body


def test_source_lost_mid_run_is_closed_and_reopened() -> None:
    source = ScriptedSource(
        opens=[True, True], collects=[SourceUnavailableError("count failed"), GOOD]
    )
    poller, publisher = _poller(source)
    poller.run_once()
    assert source.closed == 1
    poller.run_once()
    health = publisher.source_health("scripted")
    assert health is not None and health.up


def test_thread_stops_promptly() -> None:
    source = ScriptedSource(opens=[True], collects=[GOOD] * 100)
    publisher = Publisher(process_metrics=False)
    stop = threading.Event()
    poller = Poller(source, publisher, interval=30.0, stop=stop)
    poller.start()
    stop.set()
    assert poller.join(1.0)
