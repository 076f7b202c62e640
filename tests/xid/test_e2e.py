"""End to end on the simulated node: kernel log records in, /metrics out, across a restart."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.app import Application
from exporter.config import Config, ListenAddress
from exporter.xid.parser import normalize_pci
from tests.tools import http_get
from tests.xid.expo import values


def make_config(kmsg: Path) -> Config:
    return Config(
        listen=ListenAddress("127.0.0.1", 0),
        interval_seconds=0.2,
        simulate="a100-mig",
        kmsg_path=str(kmsg),
        pod_resources_socket="/nonexistent/kubelet.sock",
        log_level="warning",
        pod_attribution="off",
        udev=False,
    )


def scrape(app: Application) -> str:
    status, body = http_get(app.server.port, "/metrics")
    assert status == 200
    return body.decode()


def wait_for(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def record(seq: int, text: str, usec: int | None = None) -> bytes:
    usec = int(time.monotonic() * 1e6) if usec is None else usec
    return f"6,{seq},{usec},-;{text}\n".encode()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Application, Path]]:
    fifo = tmp_path / "kmsg"
    os.mkfifo(fifo)
    app = Application(make_config(fifo))
    app.start()
    try:
        wait_for(lambda: app.readiness()[0])
        yield app, fifo
    finally:
        app.stop()


def test_xid_records_appear_on_metrics_with_gpu_and_uuid(
    running: tuple[Application, Path],
) -> None:
    app, fifo = running
    gpus = {gpu.index: gpu for gpu in app.nvml.directory()}
    mig_gpu = next(gpu for gpu in gpus.values() if gpu.migs)
    mig = mig_gpu.migs[0]
    pci3 = (normalize_pci(gpus[3].pci_bus_id) or "").replace("0000:", "PCI:0000:", 1)
    pci_mig = normalize_pci(mig_gpu.pci_bus_id)
    with open(fifo, "wb", buffering=0) as writer:
        writer.write(record(1, f"NVRM: Xid ({pci3}): 48, pid='<unknown>', name=<unknown>, DBE"))
        writer.write(
            record(
                2,
                f"NVRM: Xid (PCI:{pci_mig} GPU-I:{mig.gpu_instance:02d} "
                f"GPU-CI:{mig.compute_instance:02d}): 13, pid=1, name=x, SM",
            )
        )
        writer.write(record(3, "NVRM: Xid (PCI:0000:ee:00): 31, pid=2, name=y, MMU Fault"))
        writer.write(
            record(
                4,
                f"NVRM: Xid ({pci3}): 154, GPU recovery action changed from "
                "0x0 (None) to 0x2 (OS Reboot)",
            )
        )

    def seen() -> bool:  # the last record written is the recovery action: all four are in
        return ("3", gpus[3].uuid) in values(
            scrape(app), "nvidia_gpu_recovery_action", "gpu", "uuid"
        )

    wait_for(seen)
    text = scrape(app)
    counts = values(text, "nvidia_gpu_xid_errors_total", "gpu", "uuid", "xid")
    assert counts[("3", gpus[3].uuid, "48")] == 1
    assert counts[("", "", "31")] == 1  # an address no GPU has: counted, never dropped
    assert counts[(str(mig_gpu.index), mig_gpu.uuid, "13")] == 1
    assert counts[("0", gpus[0].uuid, "79")] == 0  # critical codes start at 0
    mig_counts = values(text, "nvidia_gpu_mig_xid_errors_total", "gpu", "mig_uuid", "xid")
    assert mig_counts[(str(mig_gpu.index), mig.uuid, "13")] == 1
    actions = values(text, "nvidia_gpu_recovery_action", "gpu", "uuid")
    assert actions[("3", gpus[3].uuid)] == 2
    assert values(text, "nvidia_gpu_exporter_source_up", "source")[("xid",)] == 1


def test_xid_79_sets_up_to_zero_and_raises_fallen_off_bus(
    running: tuple[Application, Path],
) -> None:
    app, fifo = running
    gpu = next(gpu for gpu in app.nvml.directory() if gpu.index == 6)
    pci = normalize_pci(gpu.pci_bus_id)
    with open(fifo, "wb", buffering=0) as writer:
        writer.write(record(1, f"NVRM: Xid (PCI:{pci}): 79, GPU has fallen off the bus."))
        writer.write(record(2, f"NVRM: GPU {pci}.0: GPU has fallen off the bus."))

    def lost() -> bool:  # and both records read: the second must not count the Xid again
        text = scrape(app)
        reports = values(text, "nvidia_gpu_exporter_xid_reports_total", "source")
        return values(text, "nvidia_gpu_up", "gpu").get(("6",)) == 0 and reports.get(("kmsg",)) == 2

    wait_for(lost)
    text = scrape(app)
    assert values(text, "nvidia_gpu_fallen_off_bus", "gpu")[("6",)] == 1
    assert values(text, "nvidia_gpu_xid_errors_total", "gpu", "xid")[("6", "79")] == 1
    assert values(text, "nvidia_gpu_up", "gpu")[("5",)] == 1


def test_restart_keeps_last_seen_from_the_ring_buffer_but_counts_from_zero(
    tmp_path: Path,
) -> None:
    log = tmp_path / "kmsg.log"
    app = Application(make_config(log.with_suffix(".absent")))  # only to learn the PCI ids
    app.start()
    try:
        wait_for(lambda: app.readiness()[0])
        gpu = next(gpu for gpu in app.nvml.directory() if gpu.index == 2)
    finally:
        app.stop()
    pci = normalize_pci(gpu.pci_bus_id)
    happened = time.monotonic() - 120  # two minutes before this "restart"
    happened_wall = time.time() - 120  # the same moment on the wall clock
    log.write_bytes(
        record(1, f"NVRM: Xid (PCI:{pci}): 79, GPU has fallen off the bus.", int(happened * 1e6))
    )
    app = Application(make_config(log))
    app.start()
    try:
        wait_for(lambda: app.readiness()[0])

        def last_seen() -> dict[tuple[str, ...], float]:
            return values(
                scrape(app), "nvidia_gpu_xid_last_seen_timestamp_seconds", "gpu", "uuid", "xid"
            )

        wait_for(lambda: ("2", gpu.uuid, "79") in last_seen())
        # Against the record's own time: starting the exporter may take seconds on a busy box.
        assert abs(last_seen()[("2", gpu.uuid, "79")] - happened_wall) < 2
        text = scrape(app)
        assert values(text, "nvidia_gpu_xid_errors_total", "gpu", "xid")[("2", "79")] == 0
        assert values(text, "nvidia_gpu_up", "gpu")[("2",)] == 1  # history is not a live loss
        with log.open("ab") as writer:
            writer.write(record(2, f"NVRM: Xid (PCI:{pci}): 79, GPU has fallen off the bus."))

        def counted() -> bool:
            counts = values(scrape(app), "nvidia_gpu_xid_errors_total", "gpu", "xid")
            return counts.get(("2", "79")) == 1

        wait_for(counted)
    finally:
        app.stop()
