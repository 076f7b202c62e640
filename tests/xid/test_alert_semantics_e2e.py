"""The semantics alert rules rest on, end to end on the simulated node over /metrics.

- after a fallen-off-bus line the GPU reports up 0 and no value series, and stays so while
  NVML keeps answering from cached state (the mark is sticky);
- the fake driver's coupling: an Xid 79 makes the GPU answer GPU_IS_LOST; after a reset NVML
  answers again and the fall is over (up 1, fallen_off_bus 0, values back);
- event sources prove freshness: their last-success timestamp advances with no events;
- an NVRM Xid line the parser cannot read is counted as unparsed_xid.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.app import Application
from exporter.fakenvml.control import FakeNvmlControl
from exporter.xid.parser import normalize_pci
from tests.tools import http_get, wait_until
from tests.xid.expo import values
from tests.xid.test_e2e import make_config


def scrape(app: Application) -> str:
    status, body = http_get(app.server.port, "/metrics")
    assert status == 200
    return body.decode()


def record(seq: int, text: str) -> bytes:
    return f"3,{seq},{int(time.monotonic() * 1e6)},-;{text}\n".encode()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Application, Path, FakeNvmlControl]]:
    fifo = tmp_path / "kmsg"
    os.mkfifo(fifo)
    app = Application(make_config(fifo))
    control = FakeNvmlControl()  # the library the application loaded: one per process
    app.start()
    try:
        wait_until(lambda: app.readiness()[0], 20, "ready")
        yield app, fifo, control
    finally:
        app.stop()
        control.clear_faults()


def gpu_series(text: str, family: str) -> set[str]:
    return {gpu for (gpu,) in values(text, family, "gpu")}


def nvml_collections(app: Application) -> float:
    return values(scrape(app), "nvidia_gpu_exporter_collections_total", "source")[("nvml",)]


def test_fallen_off_bus_line_drops_values_and_is_sticky_while_nvml_answers(
    running: tuple[Application, Path, FakeNvmlControl],
) -> None:
    app, fifo, _ = running
    gpu = next(g for g in app.nvml.directory() if g.index == 4)
    with open(fifo, "wb", buffering=0) as writer:
        writer.write(
            record(1, f"NVRM: GPU {normalize_pci(gpu.pci_bus_id)}.0: GPU has fallen off the bus.")
        )
    wait_until(lambda: values(scrape(app), "nvidia_gpu_up", "gpu").get(("4",)) == 0, 10, "up 0")
    # The fake driver still answers for GPU 4 (only the text was written): several more
    # collections must keep it down, without value series.
    later = nvml_collections(app) + 3
    wait_until(lambda: nvml_collections(app) >= later, 10, "three more collections")
    text = scrape(app)
    assert values(text, "nvidia_gpu_up", "gpu")[("4",)] == 0
    assert values(text, "nvidia_gpu_fallen_off_bus", "gpu")[("4",)] == 1
    assert "4" not in gpu_series(text, "nvidia_gpu_power_usage_watts")
    assert "4" not in gpu_series(text, "nvidia_gpu_temperature_celsius")
    assert "4" in gpu_series(text, "nvidia_gpu_info")  # identity stays
    assert "3" in gpu_series(text, "nvidia_gpu_power_usage_watts")
    assert values(text, "nvidia_gpu_up", "gpu")[("3",)] == 1


def test_xid_79_event_loses_the_gpu_and_a_reset_brings_it_back(
    running: tuple[Application, Path, FakeNvmlControl],
) -> None:
    app, _, control = running
    control.inject_xid(2, 79)  # the NVML event; the fake driver now answers GPU_IS_LOST

    def state() -> tuple[float | None, float | None, bool]:
        text = scrape(app)
        return (
            values(text, "nvidia_gpu_up", "gpu").get(("2",)),
            values(text, "nvidia_gpu_fallen_off_bus", "gpu").get(("2",)),
            "2" in gpu_series(text, "nvidia_gpu_power_usage_watts"),
        )

    wait_until(lambda: state() == (0, 1, False), 10, "GPU 2 lost")
    counts = values(scrape(app), "nvidia_gpu_xid_errors_total", "gpu", "xid")
    assert counts[("2", "79")] == 1
    control.set_gpu_lost(2, False)  # a GPU reset
    wait_until(lambda: state() == (1, 0, True), 10, "GPU 2 back")


def test_event_sources_stay_fresh_without_events(
    running: tuple[Application, Path, FakeNvmlControl],
) -> None:
    app, _, _ = running

    def fresh() -> dict[tuple[str, ...], float]:
        return values(
            scrape(app), "nvidia_gpu_exporter_source_last_success_timestamp_seconds", "source"
        )

    first = fresh()
    cycles = values(scrape(app), "nvidia_gpu_exporter_collections_total", "source")
    for source in ("kmsg", "xid", "nvml_events"):
        assert (source,) in first, source
    # No Xid is written: the timestamps must still move on, and the wait cycles are counted.
    wait_until(
        lambda: all(fresh()[(s,)] > first[(s,)] for s in ("kmsg", "xid", "nvml_events")),
        15,
        "event sources refreshed",
    )
    now = time.time()
    for source in ("kmsg", "xid", "nvml_events", "nvml"):
        assert now - fresh()[(source,)] < 10, source
    later = values(scrape(app), "nvidia_gpu_exporter_collections_total", "source")
    for source in ("kmsg", "xid", "nvml_events"):
        assert later[(source,)] > cycles[(source,)] >= 0, source


def test_unparsable_xid_line_is_counted(
    running: tuple[Application, Path, FakeNvmlControl],
) -> None:
    app, fifo, _ = running
    with open(fifo, "wb", buffering=0) as writer:
        writer.write(record(1, "NVRM: Xid [GPU 0000:07:00.0] code=79 a format we do not know"))
        writer.write(record(2, "NVRM: Xid (PCI:0000:07:00): 13, pid=1, name=x, SM"))

    def results() -> dict[tuple[str, ...], float]:
        return values(scrape(app), "nvidia_gpu_exporter_kmsg_records_total", "result")

    wait_until(lambda: results().get(("xid",)) == 1, 10, "the readable line counted")
    assert results()[("unparsed_xid",)] == 1
