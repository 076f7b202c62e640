"""diagnose's readers: bounded waits, the kernel-log backlog, the PCI bus, /dev."""

from __future__ import annotations

import os
import threading
import time

from exporter.diagnose.inputs import (
    gpu_device_files,
    read_dev,
    read_kmsg,
    read_pci,
    run_bounded,
)
from tests.diagnose.conftest import kmsg_record, xid_line


def test_run_bounded_returns_results_errors_and_timeouts():
    assert run_bounded(lambda: 42, time.monotonic() + 5, "t") == ("done", 42, None)
    state, result, error = run_bounded(lambda: 1 / 0, time.monotonic() + 5, "t")
    assert (state, result, type(error)) == ("done", None, ZeroDivisionError)
    release = threading.Event()
    started = time.monotonic()
    state, result, error = run_bounded(lambda: release.wait(30), time.monotonic() + 0.2, "t")
    release.set()
    assert (state, result, error) == ("timeout", None, None)
    assert time.monotonic() - started < 2.0


def test_kmsg_backlog_records_dmesg_lines_and_continuations(tmp_path):
    log = tmp_path / "kmsg"
    log.write_text(
        kmsg_record(xid_line("07", 79, "GPU has fallen off the bus."), 60, seq=5)
        + " SUBSYSTEM=pci\n"
        + "[ 4321.5] "
        + xid_line("0f", 31, "MMU Fault")
        + "\n"
        + "NVRM: GPU 0000:47:00.0: GPU has fallen off the bus.\n"
        + "4,6,100,-;usb 1-1: new device\n"
    )
    reading = read_kmsg(str(log), time.monotonic() + 5)
    assert reading.status == "ok"
    assert reading.records == 5
    found = [(x.event.xid, x.event.pci, x.uptime) for x in reading.xids]
    assert found == [
        (79, "0000:07:00", 10_000.0 - 60),
        (31, "0000:0f:00", 4321.5),
        (79, "0000:47:00", None),
    ]


def test_kmsg_unreadable_is_missing_not_an_error(tmp_path):
    reading = read_kmsg(str(tmp_path / "absent"), time.monotonic() + 5)
    assert reading.status == "missing"
    assert reading.detail.startswith(f"cannot read {tmp_path / 'absent'}: ")


def test_kmsg_fifo_without_writer_does_not_block(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    reading = read_kmsg(str(fifo), time.monotonic() + 5)
    assert (reading.status, reading.records) == ("ok", 0)
    assert time.monotonic() - started < 1.0


def test_pci_scan_counts_nvidia_display_and_3d_controllers(node):
    node.pci(
        buses=("07",),
        extra=(
            ("0000:08:00.0", "0x10de", "0x030000"),  # VGA-compatible
            ("0000:09:00.0", "0x10de", "0x068000"),  # NVSwitch: a bridge, not a GPU
            ("0000:0a:00.1", "0x10de", "0x040300"),  # the GPU's audio function
            ("0000:00:02.0", "0x8086", "0x030000"),  # another vendor's GPU
        ),
    )
    reading = read_pci(str(node.sysfs))
    assert (reading.status, reading.names) == ("ok", ("0000:07:00.0", "0000:08:00.0"))
    assert read_pci(str(node.root / "none")).status == "missing"


def test_dev_listing(node):
    node.devices(("nvidiactl", "nvidia-uvm", "nvidia10", "nvidia2", "null", "nvidia-caps"))
    reading = read_dev(str(node.dev))
    assert reading.names == ("nvidia-caps", "nvidia-uvm", "nvidia10", "nvidia2", "nvidiactl")
    assert gpu_device_files(reading.names) == ["nvidia2", "nvidia10"]
    assert read_dev(str(node.root / "none")).status == "missing"
