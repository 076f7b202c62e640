"""Kernel-log faults tests/sources/test_kmsg.py does not cover: the device vanishing mid-run,
permission denied at open, EIO from the device, an EPIPE storm with nothing between the errors.

The reader is injected (KmsgFollower's `opener`), the way /dev/kmsg fails: os.open raising
EACCES without CAP_SYSLOG, read() raising ENODEV/EIO when the device goes away. Each case checks
the thread survives, health says why, and records after the fault are counted again.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable, Iterator

from exporter.model import GpuIdentity
from exporter.publisher import Publisher
from exporter.sources import kmsg
from exporter.sources.kmsg import KmsgFollower, Reader
from exporter.xid.state import XidState

GPUS = (GpuIdentity(0, "GPU-aaaa", "00000000:07:00.0"),)


def record(seq: int, xid: int) -> bytes:
    usec = int(time.monotonic() * 1e6)
    return f"4,{seq},{usec},-;NVRM: Xid (PCI:0000:07:00): {xid}, pid=1, name=x, Ch 1\n".encode()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


class ScriptedDevice:
    """A /dev/kmsg stand-in: yields records, raises the scripted errno, then ends."""

    kind = "device"

    def __init__(self, script: list[bytes | int]) -> None:
        self.script = script
        self.closed = threading.Event()

    def wait(self, timeout_seconds: float) -> None:
        time.sleep(min(timeout_seconds, 0.01))

    def records(self) -> Iterator[bytes]:
        while self.script:
            item = self.script.pop(0)
            if isinstance(item, int):
                raise OSError(item, os.strerror(item))
            yield item

    def at_backlog_end(self) -> bool:
        return True

    def close(self) -> None:
        self.closed.set()


class Rig:
    def __init__(self, opener: Callable[[str], Reader]) -> None:
        self.stop = threading.Event()
        self.publisher = Publisher(process_metrics=False)
        self.state = XidState(self.publisher, lambda: GPUS)
        self.follower = KmsgFollower("/dev/kmsg", self.state, self.publisher, self.stop, opener)
        self.follower.start()

    def detail(self) -> str:
        health = self.publisher.source_health("kmsg")
        return health.detail if health else ""

    def up(self) -> bool:
        health = self.publisher.source_health("kmsg")
        return bool(health and health.up)

    def close(self) -> None:
        self.stop.set()
        started = time.monotonic()
        assert self.follower.join(2.0)
        assert time.monotonic() - started < 1.0


def fast_backoff(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(kmsg, "BACKOFF_START_SECONDS", 0.05)
    monkeypatch.setattr(kmsg, "BACKOFF_MAX_SECONDS", 0.1)


def test_permission_denied_at_open_reports_down_then_recovers(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fast_backoff(monkeypatch)
    allowed = threading.Event()
    opens: list[int] = []
    device = ScriptedDevice([record(1, 13)])

    def opener(path: str) -> Reader:
        opens.append(1)
        if not allowed.is_set():  # what os.open gives without CAP_SYSLOG (dmesg_restrict=1)
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return device

    rig = Rig(opener)
    try:
        wait_for(lambda: "Permission denied" in rig.detail())
        assert not rig.up()
        wait_for(lambda: len(opens) >= 3)  # retried with backoff, thread alive
        allowed.set()
        wait_for(lambda: rig.state.total_counted() == 1)
        assert rig.up()
    finally:
        rig.close()


def test_device_vanishing_mid_run_reconnects_and_counts_again(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fast_backoff(monkeypatch)
    first = ScriptedDevice([record(1, 13), errno.ENODEV])
    second = ScriptedDevice([record(2, 31), errno.EIO])
    third = ScriptedDevice([record(3, 48)])
    readers = [first, second, third]

    def opener(path: str) -> Reader:
        if not readers:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        return readers.pop(0)

    rig = Rig(opener)
    try:
        wait_for(lambda: rig.state.total_counted() == 3)
        assert first.closed.is_set() and second.closed.is_set()  # no descriptor leaked
        assert rig.up()
    finally:
        rig.close()


def test_device_removed_for_good_stays_down_and_alive(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fast_backoff(monkeypatch)
    readers = [ScriptedDevice([record(1, 13), errno.ENODEV])]

    def opener(path: str) -> Reader:
        if readers:
            return readers.pop(0)
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)

    rig = Rig(opener)
    try:
        wait_for(lambda: "No such file" in rig.detail())
        assert not rig.up()
        assert rig.follower._thread.is_alive()
        assert rig.state.total_counted() == 1
    finally:
        rig.close()


def test_epipe_storm_without_records_between_keeps_following() -> None:
    # 10 000 overruns in a row (a flood of kernel messages), then the next record: the loop
    # neither spins forever nor dies, and counts the gap from the sequence numbers.
    script: list[bytes | int] = [record(1, 13)]
    script += [errno.EPIPE] * 10_000
    script.append(record(5001, 48))
    device = ScriptedDevice(script)
    rig = Rig(lambda _path: device)
    try:
        wait_for(lambda: rig.state.total_counted() == 2)
        assert rig.follower.lost_records == 4999
        assert rig.up()
    finally:
        rig.close()
