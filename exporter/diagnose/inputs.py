"""What diagnose reads, each input on its own and bounded: NVML, the kubelet, the kernel log
backlog, the PCI bus and this container's /dev.

Why every reader returns a Reading instead of raising: a missing input (no kubelet socket on a
plain host, a kernel log the container may not read) is an answer ("skipped: no socket"), not
a crash, and one broken input must not hide what the others say. NVML and the kubelet can hang
(a GPU stuck in reset, a kubelet restarting), so both run in daemon threads that the caller
waits on with one shared deadline; a thread still inside a hung call is left behind and the
process exits without it.
"""

from __future__ import annotations

import errno
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from exporter.attribution import KubeletView
from exporter.model import GpuIdentity, SampleMap
from exporter.xid.parser import XidEvent, XidParser, parse_record, unescape

Status = Literal["ok", "missing", "failed", "timeout"]
T = TypeVar("T")

MAX_BACKLOG_RECORDS = 100_000  # a ring buffer holds a few thousand; a FIFO could be endless
NVIDIA_VENDOR = 0x10DE
GPU_CLASSES = frozenset({0x0300, 0x0302})  # VGA-compatible and 3D controller (as udev.py)
_DMESG_TIME = re.compile(r"^\s*\[\s*(\d+(?:\.\d+)?)\]\s?")


@dataclass(frozen=True, slots=True)
class NvmlReading:
    """One NVML collection, as the exporter's first collection would publish it."""

    status: Status
    detail: str = ""
    samples: SampleMap = field(default_factory=dict)
    directory: tuple[GpuIdentity, ...] = ()


@dataclass(frozen=True, slots=True)
class KubeletReading:
    """One List + GetAllocatableResources answer (allocatable None: the kubelet lacks it)."""

    status: Status
    detail: str = ""
    view: KubeletView | None = None


@dataclass(frozen=True, slots=True)
class BacklogXid:
    """An Xid in the kernel log backlog; `uptime` is when it happened, in seconds since boot."""

    event: XidEvent
    uptime: float | None  # None: a line without a timestamp


@dataclass(frozen=True, slots=True)
class KmsgReading:
    """The Xids of the kernel log's backlog."""

    status: Status
    detail: str = ""
    records: int = 0
    xids: tuple[BacklogXid, ...] = ()


@dataclass(frozen=True, slots=True)
class ListReading:
    """Names found on a bus or in a directory (PCI slots, device files)."""

    status: Status
    detail: str = ""
    names: tuple[str, ...] = ()
    # /dev only: NVIDIA_DRIVER_CAPABILITIES of this container (None: unset). Without `compute`
    # the NVIDIA runtime injects no nvidia-uvm, rightly (the exporter's own pod: `utility`).
    capabilities: str | None = None


def run_bounded(
    work: Callable[[], T], deadline: float, name: str
) -> tuple[Literal["done", "timeout"], T | None, BaseException | None]:
    """Run `work` in a daemon thread; wait until the monotonic `deadline` at most."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["result"] = work()
        except BaseException as err:  # reported to the caller, never lost in the thread
            box["error"] = err

    thread = threading.Thread(target=target, name=f"diagnose-{name}", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    if thread.is_alive():
        return "timeout", None, None
    error = box.get("error")
    if isinstance(error, BaseException):
        return "done", None, error
    return "done", box.get("result"), None  # type: ignore[return-value]


# -- NVML ------------------------------------------------------------------------------------


def read_nvml(library_path: str | None, deadline: float, timeout: float) -> NvmlReading:
    """nvmlInit, one collection, nvmlShutdown, through the exporter's own NvmlSource."""
    from exporter.poller import SourceUnavailableError
    from exporter.sources.nvml import NvmlSource

    source = NvmlSource(library_path=library_path)

    def work() -> NvmlReading:
        source.open()
        try:
            samples = source.collect()
            return NvmlReading("ok", samples=samples, directory=source.directory())
        finally:
            source.close()

    state, result, error = run_bounded(work, deadline, "nvml")
    if state == "timeout":
        return NvmlReading("timeout", f"no answer in {timeout:g} s")
    if isinstance(error, SourceUnavailableError):
        return NvmlReading("failed", str(error))
    if error is not None:
        return NvmlReading("failed", f"{type(error).__name__}: {error}")
    assert result is not None  # noqa: S101 - run_bounded returns a result or an error
    return result


# -- kubelet ---------------------------------------------------------------------------------


def read_kubelet(socket_path: str, deadline: float, timeout: float) -> KubeletReading:
    """List and GetAllocatableResources through the exporter's pod-resources client."""
    if not os.path.exists(socket_path):
        return KubeletReading("missing", f"no kubelet socket at {socket_path}")
    from exporter.publisher import Publisher
    from exporter.sources.podresources import (
        DEFAULT_DEADLINE_SECONDS,
        SOURCE_NAME,
        PodResourcesSource,
    )

    publisher = Publisher(process_metrics=False)
    stop = threading.Event()
    # the client's own per-call deadline is at most DEFAULT_DEADLINE_SECONDS
    call_deadline = max(0.1, min(deadline - time.monotonic(), DEFAULT_DEADLINE_SECONDS))
    client = PodResourcesSource(
        socket_path,
        publisher,
        stop=stop,
        deadline_seconds=call_deadline,
        ttl_seconds=float("inf"),
    )

    def work() -> KubeletReading:
        client.refresh_once()
        view = client.view()
        if view is not None:
            return KubeletReading("ok", view=view)
        health = publisher.source_health(SOURCE_NAME)
        detail = health.detail if health is not None else "no answer"
        if "DEADLINE_EXCEEDED" in detail:
            return KubeletReading(
                "timeout", f"no answer in {round(min(call_deadline, timeout), 1):g} s"
            )
        return KubeletReading("failed", detail)

    try:
        state, result, error = run_bounded(work, deadline, "kubelet")
    finally:
        stop.set()  # a call still in flight is cancelled within ~50 ms
    if state == "timeout":
        return KubeletReading("timeout", f"no answer in {timeout:g} s")
    if error is not None or result is None:
        return KubeletReading("failed", f"{type(error).__name__}: {error}")
    client.close()
    return result


# -- kernel log ------------------------------------------------------------------------------


def read_kmsg(path: str, deadline: float) -> KmsgReading:
    """Read what the kernel log holds now (never waits for more) and parse its Xids."""
    from exporter.sources.kmsg import open_reader

    try:
        reader = open_reader(path)
    except OSError as err:
        return KmsgReading("missing", f"cannot read {path}: {err.strerror or err}")
    parser = XidParser()
    xids: list[BacklogXid] = []
    records = 0
    try:
        while records < MAX_BACKLOG_RECORDS and time.monotonic() < deadline:
            try:
                for raw in reader.records():
                    records += 1
                    xids.extend(_parse(parser, raw))
                    if records >= MAX_BACKLOG_RECORDS or time.monotonic() >= deadline:
                        break
                break
            except OSError as err:
                if err.errno != errno.EPIPE:  # EPIPE: records overwritten; read on
                    return KmsgReading("failed", f"reading {path}: {err.strerror or err}")
    finally:
        reader.close()
    return KmsgReading("ok", records=records, xids=tuple(xids))


def _parse(parser: XidParser, raw: bytes) -> list[BacklogXid]:
    if not raw or raw[:1] == b" ":
        return []  # continuation lines carry metadata only
    record = parse_record(raw)
    uptime: float | None
    if record is not None:
        text, uptime = record.text, record.usec / 1e6
    else:  # a saved `dmesg` log: "[  123.456789] NVRM: ..." or no time at all
        text = unescape(raw)
        stamp = _DMESG_TIME.match(text)
        uptime = float(stamp.group(1)) if stamp else None
        if stamp:
            text = text[stamp.end() :]
    return [BacklogXid(item, uptime) for item in parser.feed(text) if isinstance(item, XidEvent)]


# -- PCI bus and /dev ------------------------------------------------------------------------


def read_pci(sysfs: str) -> ListReading:
    """PCI slots of NVIDIA GPUs (vendor 0x10de, display or 3D controller class)."""
    devices = Path(sysfs) / "bus" / "pci" / "devices"
    try:
        entries = sorted(devices.iterdir())
    except OSError as err:
        return ListReading("missing", f"cannot list {devices}: {err.strerror or err}")
    slots = []
    for entry in entries:
        try:
            vendor = int((entry / "vendor").read_text().strip(), 16)
            klass = int((entry / "class").read_text().strip(), 16) >> 8
        except (OSError, ValueError):
            continue
        if vendor == NVIDIA_VENDOR and klass in GPU_CLASSES:
            slots.append(entry.name)
    return ListReading("ok", names=tuple(slots))


def read_dev(dev: str) -> ListReading:
    """The nvidia* device files this process can see (nvidia0..N, nvidiactl, nvidia-uvm...)."""
    try:
        names = sorted(name for name in os.listdir(dev) if name.startswith("nvidia"))
    except OSError as err:
        return ListReading("missing", f"cannot list {dev}: {err.strerror or err}")
    capabilities = os.environ.get("NVIDIA_DRIVER_CAPABILITIES")
    return ListReading("ok", names=tuple(names), capabilities=capabilities)


def gpu_device_files(names: Sequence[str]) -> list[str]:
    """`nvidia0`, `nvidia1`...: one per GPU the container may use (not nvidiactl, -uvm)."""
    return sorted((name for name in names if name[6:].isdigit()), key=lambda n: int(n[6:]))
