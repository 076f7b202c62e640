"""The kernel log follower on real FIFOs, files and /dev/kmsg, plus EPIPE and garbage."""

from __future__ import annotations

import errno
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.model import GpuIdentity
from exporter.publisher import Publisher
from exporter.sources import kmsg as kmsg_module
from exporter.sources.kmsg import MAX_RECORD_BYTES, KmsgFollower, _LineFramer
from exporter.xid.state import XidState
from tests.xid.expo import exposition, values

GPUS = (
    GpuIdentity(0, "GPU-aaaa", "00000000:07:00.0"),
    GpuIdentity(1, "GPU-bbbb", "00000000:0F:00.0"),
)


def record(seq: int, text: str, usec: int | None = None) -> bytes:
    if usec is None:
        usec = int(time.monotonic() * 1e6)
    return f"4,{seq},{usec},-;{text}\n".encode()


def xid_line(xid: int, bus: str = "07") -> str:
    return f"NVRM: Xid (PCI:0000:{bus}:00): {xid}, pid=1, name=python3, Ch 00000001"


def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


class Rig:
    def __init__(self, path: str, opener=None) -> None:  # type: ignore[no-untyped-def]
        self.stop = threading.Event()
        self.publisher = Publisher(process_metrics=False)
        self.state = XidState(self.publisher, lambda: GPUS)
        kwargs = {"opener": opener} if opener else {}
        self.follower = KmsgFollower(path, self.state, self.publisher, self.stop, **kwargs)
        self.follower.start()

    def close(self) -> None:
        self.stop.set()
        started = time.monotonic()
        assert self.follower.join(2.0)
        assert time.monotonic() - started < 1.0


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "kmsg.fifo"
    os.mkfifo(path)
    return path


def test_fifo_records_are_counted_live(fifo: Path) -> None:
    rig = Rig(str(fifo))
    try:
        with open(fifo, "wb", buffering=0) as writer:
            writer.write(record(1, xid_line(13)) + b" SUBSYSTEM=pci\n DEVICE=+pci:0000:07:00.0\n")
            writer.write(record(2, xid_line(79, "0f")))
            writer.write(record(3, "NVRM: GPU 0000:0f:00.0: GPU has fallen off the bus."))
            writer.write(record(4, "usb 1-1: new device"))
        # The last record written is the "other" one: once it is read, all four are in (a
        # wait for two counted Xids could check the 79 before its fallen-off-bus line came).
        wait_for(lambda: rig.follower.results()["other"] == 1)
        assert rig.follower.results()["xid"] == 3
        assert rig.state.total_counted() == 2
        text = exposition(rig.publisher)
        counts = values(text, "nvidia_gpu_xid_errors_total", "gpu", "uuid", "xid")
        assert counts[("0", "GPU-aaaa", "13")] == 1
        assert counts[("1", "GPU-bbbb", "79")] == 1
    finally:
        rig.close()
    health = rig.publisher.source_health("kmsg")
    assert health is not None
    assert health.up


def test_regular_file_content_is_backlog_and_appended_records_count(tmp_path: Path) -> None:
    path = tmp_path / "kmsg.log"
    usec = int((time.monotonic() - 60) * 1e6)  # a minute ago
    happened = time.time() - 60  # the same moment on the wall clock
    path.write_bytes(record(1, xid_line(48), usec))
    rig = Rig(str(path))
    try:
        wait_for(lambda: rig.follower.results()["xid"] == 1)
        text = exposition(rig.publisher)
        last = values(text, "nvidia_gpu_xid_last_seen_timestamp_seconds", "gpu", "xid")
        assert abs(last[("0", "48")] - happened) < 2.0
        assert values(text, "nvidia_gpu_xid_errors_total", "gpu", "xid")[("0", "48")] == 0
        with path.open("ab") as writer:
            writer.write(record(2, xid_line(48)))
        wait_for(lambda: rig.state.total_counted() == 1)
    finally:
        rig.close()


def test_missing_path_reports_down_and_keeps_retrying(tmp_path: Path) -> None:
    rig = Rig(str(tmp_path / "absent"))
    try:
        wait_for(
            lambda: (
                rig.publisher.source_health("kmsg") is not None
                and "cannot open" in rig.publisher.source_health("kmsg").detail
            )
        )  # type: ignore[union-attr]
        health = rig.publisher.source_health("xid")
        assert health is not None
        assert not health.up
    finally:
        rig.close()


class FakeDevice:
    """A /dev/kmsg stand-in for overruns: a script of records and EPIPE errors."""

    kind = "device"

    def __init__(self, script: list[bytes | int]) -> None:
        self._script = script
        self._done = threading.Event()

    def wait(self, timeout_seconds: float) -> None:
        self._done.wait(timeout_seconds)

    def records(self) -> Iterator[bytes]:
        while self._script:
            item = self._script.pop(0)
            if isinstance(item, int):
                raise OSError(item, os.strerror(item))
            yield item
        self._done.set()

    def at_backlog_end(self) -> bool:
        return True

    def close(self) -> None:
        pass


def test_epipe_counts_the_sequence_gap_and_goes_on() -> None:
    script: list[bytes | int] = [record(1, "boot")]
    # An EPIPE storm: each overrun skips 10 records, the last record after it is an Xid.
    seq = 1
    for _ in range(50):
        script.append(errno.EPIPE)
        seq += 11
        script.append(record(seq, "noise"))
    script.append(record(seq + 1, xid_line(62)))
    device = FakeDevice(list(script))
    rig = Rig("/dev/fake", opener=lambda _path: device)
    try:
        wait_for(device._done.is_set)
        assert rig.follower.lost_records == 50 * 10
        text = exposition(rig.publisher)
        assert values(text, "nvidia_gpu_xid_last_seen_timestamp_seconds", "xid")[("62",)] > 0
    finally:
        rig.close()
    text = exposition(rig.publisher)
    assert values(text, "nvidia_gpu_exporter_kmsg_records_lost_total") == {(): 500}


def test_dev_kmsg_backlog_is_read_without_counting() -> None:
    if not os.access("/dev/kmsg", os.R_OK):
        pytest.skip("/dev/kmsg is not readable here (needs CAP_SYSLOG with dmesg_restrict=1)")
    rig = Rig("/dev/kmsg")
    try:
        wait_for(lambda: sum(rig.follower.results().values()) > 0)
        health = rig.publisher.source_health("xid")
        assert health is not None
        assert health.up
    finally:
        rig.close()
    assert rig.state.total_counted() == 0  # history sets last-seen only


def garbage_stream(size: int, xids: int, seed: int) -> Iterator[bytes]:
    """Random bytes, truncated and oversized records, NUL bytes, continuation lines, and
    `xids` valid Xid records, each after a newline (records are newline-terminated)."""
    rng = random.Random(seed)
    per_gap = size // (xids + 1)
    for index in range(xids + 1):
        written = 0
        while written < per_gap:
            kind = rng.randrange(6)
            if kind == 0:
                chunk = rng.randbytes(rng.randrange(1, 4096))
            elif kind == 1:
                chunk = record(rng.randrange(10**6), xid_line(13))[: rng.randrange(5, 40)]
            elif kind == 2:
                chunk = b"6,1,1,-;" + b"A" * rng.randrange(MAX_RECORD_BYTES, 3 * MAX_RECORD_BYTES)
            elif kind == 3:
                chunk = b"\x00" * rng.randrange(1, 512) + b"\xff\xfe\xc3(\n"
            elif kind == 4:
                chunk = b" SUBSYSTEM=pci\n DEVICE=+pci:0000:07:00.0\n"
            else:
                chunk = record(rng.randrange(10**6), "NVRM: GPU4 RPC history \\xff\\x0a")
            written += len(chunk)
            yield chunk
        if index < xids:
            yield b"\n" + record(index, xid_line(31, "0f"))


def test_five_megabytes_of_garbage_keep_every_valid_xid(fifo: Path) -> None:
    rig = Rig(str(fifo))
    try:
        with open(fifo, "wb", buffering=0) as writer:
            for chunk in garbage_stream(5 * 1024 * 1024, 200, seed=7):
                writer.write(chunk)
            # A last valid record (another code) after all the garbage: once it is counted,
            # the follower has read everything before it.
            writer.write(b"\n" + record(200, xid_line(43, "0f")))
        wait_for(lambda: rig.state.counted("0000:0f:00", 43) == 1, timeout=60)
        assert rig.state.counted("0000:0f:00", 31) == 200
        assert rig.state.counted("0000:07:00", 13) == 0  # truncated Xid records never count
    finally:
        rig.close()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=3 * MAX_RECORD_BYTES // 2), max_size=8))
def test_framer_never_buffers_more_than_a_record(chunks: list[bytes]) -> None:
    framer = _LineFramer()
    for chunk in chunks:
        for line in framer.feed(chunk):
            assert len(line) <= MAX_RECORD_BYTES
        assert len(framer._buffer) <= MAX_RECORD_BYTES


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=5), st.integers(1, 170))
def test_valid_record_after_garbage_is_found(garbage: list[bytes], xid: int) -> None:
    framer = _LineFramer()
    valid = record(1, xid_line(xid), usec=5)
    lines = []
    for chunk in [*garbage, b"\n" + valid]:
        lines.extend(framer.feed(chunk))
    assert lines[-1] == valid[:-1]


def test_join_wakes_a_follower_waiting_for_its_next_heartbeat(
    fifo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A heartbeat far beyond the join's timeout: only the stop pipe can end the wait in time.
    monkeypatch.setattr(kmsg_module, "HEARTBEAT_SECONDS", 60.0)
    rig = Rig(str(fifo))
    wait_for(lambda: rig.publisher._sources["kmsg"].heartbeats >= 1)  # at its wait, or in it
    rig.stop.set()
    assert rig.follower.join(5.0)
