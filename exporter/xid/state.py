"""Per-GPU Xid state fed by the kernel log and NVML events, published as the Xid families.

Why one state object for both sources: an Xid usually reaches us twice (the NVRM line in the
kernel log and an NVML XidCriticalError event, in either order, milliseconds apart), and it must
be counted once. Each input goes through `observe`, which pairs a report with an unmatched report
of the same (GPU, Xid) from the other source within `DEDUPE_WINDOW_SECONDS`: the first report
counts at once (no waiting), the second is recognised as the same Xid.

Events are kept by PCI address and resolved to `gpu`/`uuid` labels only when publishing, so Xids
read from the ring buffer at start-up (before NVML enumerated anything) still land on the right
GPU once NVML answers. A PCI address no GPU has is counted with empty labels, never dropped.

Every change publishes the whole sample set at once (the publisher renders within
milliseconds), so an Xid reaches /metrics without waiting for the next NVML collection.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from exporter import metrics
from exporter.model import GpuIdentity, SampleBuilder, SampleMap, SourceHealth
from exporter.publisher import Publisher
from exporter.xid.catalog import XidCatalog, XidInfo, default_catalog
from exporter.xid.parser import FALLEN_OFF_BUS_XID, GpuUuidHint, XidEvent, normalize_pci

log = structlog.get_logger(__name__)

SOURCE_NAME = "xid"
DEDUPE_WINDOW_SECONDS = 5.0
FALLEN_TEXT_WINDOW_SECONDS = 300.0  # "fallen off the bus" next to an Xid 79 is the same event
MAX_KEYS = 4096  # distinct (pci, xid) pairs kept; a hostile log cannot grow memory without bound
MAX_PENDING_PER_KEY = 256
MAX_HINTS = 256
UNKNOWN_PCI = "unknown"  # the bucket for PCI addresses beyond MAX_KEYS
# Codes the catalog lacks get their own series up to this many; later ones share xid="other",
# so a log full of invented codes cannot grow the exposition without bound.
MAX_UNKNOWN_CODES = 32
OTHER_XID = -1
OTHER_LABEL = "other"
OTHER_INFO = XidInfo(
    OTHER_XID,
    f"OTHER: codes not in the bundled catalog beyond the first {MAX_UNKNOWN_CODES} seen",
    "unknown",
    "warning",
    "none",
)

Origin = str  # "kmsg" or "nvml"
Directory = Callable[[], tuple[GpuIdentity, ...]]
LostHook = Callable[[str, bool], None]


@dataclass(frozen=True, slots=True)
class _Labels:
    gpu: str
    uuid: str
    identity: GpuIdentity | None


def _noop_lost(_uuid: str, _lost: bool) -> None:
    return None


def _code_label(code: int) -> str:
    return OTHER_LABEL if code == OTHER_XID else str(code)


class XidState:
    """Counters, last-seen times, recovery actions and fallen-off-bus flags; thread-safe."""

    def __init__(
        self,
        publisher: Publisher,
        directory: Directory,
        catalog: XidCatalog | None = None,
        on_lost: LostHook = _noop_lost,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._publisher = publisher
        self._directory = directory
        self._catalog = catalog or default_catalog()
        self._on_lost = on_lost
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], int] = {}
        self._mig_counts: dict[tuple[str, int, int | None, int], int] = {}
        self._last_seen: dict[tuple[str, int], float] = {}
        self._recovery: dict[str, int] = {}
        self._fallen: set[str] = set()  # PCI addresses whose fall is not yet in NVML's directory
        self._fall_reported: set[str] = set()  # of those, the ones the NVML source was told of
        self._last_79: dict[str, tuple[float, bool]] = {}  # pci -> (time, from fallen text)
        self._pending: dict[tuple[str, int], deque[tuple[float, Origin]]] = {}
        self._hints: dict[str, str] = {}
        self._sticky: dict[str, tuple[str, str]] = {}
        self._events: dict[Origin, int] = {}
        self._duplicates = 0
        self._inputs: dict[str, tuple[bool, str]] = {}
        self._seen_codes: set[int] = set()
        self._unknown_codes: set[int] = set()
        self._directory_key: object = None
        self._by_pci: dict[str, GpuIdentity] = {}
        self._logged_overflow = False
        self._logged_other = False
        publisher.register(SOURCE_NAME, stall_after=float("inf"))

    # -- inputs ----------------------------------------------------------------------------

    def set_input(self, name: str, up: bool, detail: str = "") -> None:
        """Record whether an Xid input (kmsg, nvml_events) works; `xid` is up if any does."""
        with self._lock:
            if self._inputs.get(name) == (up, detail):
                return
            self._inputs[name] = (up, detail)
            self._publish_locked()

    def observe_hint(self, hint: GpuUuidHint) -> None:
        """Remember the driver's PCI -> UUID line for GPUs NVML does not list."""
        with self._lock:
            if hint.pci in self._hints or len(self._hints) < MAX_HINTS:
                self._hints[hint.pci] = hint.uuid

    def observe_backlog(self, event: XidEvent, when: float) -> None:
        """An Xid from before the exporter started: last-seen time and recovery action only."""
        with self._lock:
            key = self._key(event.pci, self._code(event.xid))
            if key is None:
                return
            self._seen_codes.add(key[1])
            if when > self._last_seen.get(key, float("-inf")):
                self._last_seen[key] = when
            if event.recovery_action is not None:
                self._recovery[key[0]] = event.recovery_action
            self._publish_locked()

    def observe(self, event: XidEvent, when: float, origin: Origin = "kmsg") -> bool:
        """A live Xid: count it unless it duplicates one already counted; True if counted."""
        with self._lock:
            key = self._key(event.pci, self._code(event.xid))
            if key is None:
                return False
            self._events[origin] = self._events.get(origin, 0) + 1
            self._seen_codes.add(key[1])
            self._last_seen[key] = max(when, self._last_seen.get(key, float("-inf")))
            if event.recovery_action is not None:
                self._recovery[key[0]] = event.recovery_action
            counted = not self._duplicate(key, when, origin) and not self._fallen_duplicate(
                event, key[0], when
            )
            if counted:
                self._counts[key] = self._counts.get(key, 0) + 1
                if event.gpu_instance is not None:
                    mig_key = (key[0], event.gpu_instance, event.compute_instance, key[1])
                    if mig_key in self._mig_counts or len(self._mig_counts) < MAX_KEYS:
                        self._mig_counts[mig_key] = self._mig_counts.get(mig_key, 0) + 1
            else:
                self._duplicates += 1
            if event.xid == FALLEN_OFF_BUS_XID:
                self._fallen.add(key[0])
            self._publish_locked()
            labels = self._resolve(key[0])
        if counted:
            self._log_counted(event, key[1], labels, origin)
        return counted

    def _log_counted(self, event: XidEvent, code: int, labels: _Labels, origin: Origin) -> None:
        """One log line per counted Xid, with what the catalog says to do about it.

        Error level for codes the catalog rates critical, warning for the rest: an Xid is never
        routine. Called outside the lock (a slow log sink must not hold up the other source).
        """
        info = self._info(code)
        fields: dict[str, object] = {
            "xid": event.xid,
            "gpu": labels.gpu,
            "uuid": labels.uuid,
            "pci_bus_id": event.pci,
            "name": info.name,
            "severity": info.severity,
            "action": info.action,
            "source": origin,
        }
        if event.gpu_instance is not None:
            fields["gpu_instance"] = event.gpu_instance
        if event.compute_instance is not None:
            fields["compute_instance"] = event.compute_instance
        if event.pid is not None:
            fields["pid"] = event.pid
        if event.process_name:
            fields["process_name"] = event.process_name
        if event.recovery_action is not None:
            fields["recovery_action"] = event.recovery_action
        if event.message:
            fields["message"] = event.message
        if info.severity == "critical":
            log.error("xid", **fields)
        else:
            log.warning("xid", **fields)

    def observe_nvml(
        self, pci_bus_id: str, xid: int, gpu_instance: int | None, compute_instance: int | None
    ) -> bool:
        """An NVML XidCriticalError event (no message, no history); True if counted."""
        pci = normalize_pci(pci_bus_id) or UNKNOWN_PCI
        event = XidEvent(xid, pci, "", gpu_instance, compute_instance)
        return self.observe(event, self._clock(), origin="nvml")

    def clear_fallen(self, pci_bus_id: str) -> None:
        """The GPU at this address came back on the PCI bus (udev add): clear its lost flag."""
        pci = normalize_pci(pci_bus_id)
        with self._lock:
            if pci is None:
                return
            identity = self._by_pci.get(pci)
            if pci not in self._fallen and (identity is None or not identity.lost):
                return
            self._fallen.discard(pci)
            self._fall_reported.discard(pci)
            labels = self._resolve(pci)
            if labels.uuid:
                self._call_lost(labels.uuid, False)
            self._publish_locked()

    def refresh(self) -> None:
        """Re-publish if NVML's GPU directory changed (labels, lost flags); cheap otherwise."""
        directory = self._directory()
        key = tuple((gpu.index, gpu.uuid, gpu.pci_bus_id, gpu.lost, gpu.migs) for gpu in directory)
        with self._lock:
            if key != self._directory_key:
                self._publish_locked()

    def counted(self, pci_bus_id: str, xid: int) -> int:
        """How many times this Xid was counted on this address (for tests and benchmarks)."""
        pci = normalize_pci(pci_bus_id) or pci_bus_id
        with self._lock:
            return self._counts.get((pci, xid), 0)

    def total_counted(self) -> int:
        """All Xids counted since start."""
        with self._lock:
            return sum(self._counts.values())

    # -- internals (call with the lock held) -------------------------------------------------

    def _code(self, xid: int) -> int:
        """The code to count under: itself, or OTHER_XID once too many unknown codes came."""
        if xid in self._catalog or xid in self._unknown_codes:
            return xid
        if len(self._unknown_codes) < MAX_UNKNOWN_CODES:
            self._unknown_codes.add(xid)
            return xid
        if not self._logged_other:
            self._logged_other = True
            log.warning("xid_unknown_code_limit_reached", limit=MAX_UNKNOWN_CODES, xid=xid)
        return OTHER_XID

    def _info(self, code: int) -> XidInfo:
        return OTHER_INFO if code == OTHER_XID else self._catalog.get(code)

    def _key(self, pci: str, xid: int) -> tuple[str, int] | None:
        key = (pci, xid)
        if key in self._counts or key in self._last_seen:
            return key
        if len(self._last_seen) >= MAX_KEYS:
            if not self._logged_overflow:
                self._logged_overflow = True
                log.warning("xid_key_limit_reached", limit=MAX_KEYS)
            key = (UNKNOWN_PCI, xid)
            if key not in self._last_seen and len(self._last_seen) >= MAX_KEYS + 1024:
                return None
        return key

    def _duplicate(self, key: tuple[str, int], when: float, origin: Origin) -> bool:
        """Pair with an unmatched report from the other source within the window."""
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = deque(maxlen=MAX_PENDING_PER_KEY)
        while pending and when - pending[0][0] > DEDUPE_WINDOW_SECONDS:
            pending.popleft()
        for position, (_, other) in enumerate(pending):
            if other != origin:
                del pending[position]
                return True
        pending.append((when, origin))
        if len(self._pending) > MAX_KEYS:
            self._pending = {k: v for k, v in self._pending.items() if v}
        return False

    def _fallen_duplicate(self, event: XidEvent, pci: str, when: float) -> bool:
        """An Xid 79 line and the fallen-off-bus text next to it are one event."""
        if event.xid != FALLEN_OFF_BUS_XID:
            return False
        previous = self._last_79.get(pci)
        self._last_79[pci] = (when, event.fallen_off_bus_text)
        if previous is None or when - previous[0] > FALLEN_TEXT_WINDOW_SECONDS:
            return False
        # One of the two is text and the other a real Xid line: the pair counts once.
        return previous[1] != event.fallen_off_bus_text

    def _call_lost(self, uuid: str, lost: bool) -> None:
        try:
            self._on_lost(uuid, lost)
        except Exception as err:
            log.warning("xid_lost_hook_failed", uuid=uuid, error=str(err))

    def _resolve(self, pci: str) -> _Labels:
        identity = self._by_pci.get(pci)
        if identity is not None:
            self._sticky[pci] = (str(identity.index), identity.uuid)
            return _Labels(str(identity.index), identity.uuid, identity)
        sticky = self._sticky.get(pci)
        if sticky is not None:
            return _Labels(sticky[0], sticky[1], None)
        return _Labels("", self._hints.get(pci, ""), None)

    def _refresh_directory(self) -> tuple[GpuIdentity, ...]:
        directory = self._directory()
        self._directory_key = tuple(
            (gpu.index, gpu.uuid, gpu.pci_bus_id, gpu.lost, gpu.migs) for gpu in directory
        )
        by_pci: dict[str, GpuIdentity] = {}
        for gpu in directory:
            pci = normalize_pci(gpu.pci_bus_id)
            if pci is not None:
                by_pci[pci] = gpu
        self._by_pci = by_pci
        # Hand each fall over to the NVML source, which owns a known GPU's lost state from
        # then on (it ends the mark when the GPU answers again after a reset).
        for pci in list(self._fallen):
            identity = by_pci.get(pci)
            if identity is None:
                continue
            if identity.lost:
                self._fallen.discard(pci)
                self._fall_reported.discard(pci)
            elif pci not in self._fall_reported:
                self._fall_reported.add(pci)
                self._call_lost(identity.uuid, True)
        return directory

    def _health(self) -> SourceHealth:
        working = [name for name, (up, _) in self._inputs.items() if up]
        detail = "; ".join(
            f"{name}: {detail}" for name, (up, detail) in sorted(self._inputs.items()) if not up
        )
        now = self._clock()
        return SourceHealth(  # collections: the inputs' completed waits (Publisher.heartbeat)
            up=bool(working),
            last_success_timestamp=now if working else None,
            detail=detail,
        )

    def _publish_locked(self) -> None:
        self._publisher.publish(SOURCE_NAME, self._samples(), self._health())

    def _samples(self) -> SampleMap:
        directory = self._refresh_directory()
        out = SampleBuilder()
        counts: dict[tuple[str, str, str], int] = {}
        for gpu in directory:
            for code in self._catalog.critical_codes():
                counts[(str(gpu.index), gpu.uuid, str(code))] = 0
        for (pci, xid), count in self._counts.items():
            labels = self._resolve(pci)
            key = (labels.gpu, labels.uuid, _code_label(xid))
            counts[key] = counts.get(key, 0) + count
        for labels_key, count in counts.items():
            out.add(metrics.XID_ERRORS.name, labels_key, float(count))
        self._mig_samples(out)
        last: dict[tuple[str, str, str], float] = {}
        for (pci, xid), when in self._last_seen.items():
            labels = self._resolve(pci)
            key = (labels.gpu, labels.uuid, _code_label(xid))
            last[key] = max(when, last.get(key, float("-inf")))
        for labels_key, when in last.items():
            out.add(metrics.XID_LAST_SEEN.name, labels_key, when)
        for pci, action in self._recovery.items():
            labels = self._resolve(pci)
            out.add(metrics.RECOVERY_ACTION.name, (labels.gpu, labels.uuid), float(action))
        self._fallen_samples(out, directory)
        for code in sorted(self._seen_codes | {info.code for info in self._catalog.entries()}):
            info = self._info(code)
            out.add(
                metrics.XID_INFO.name,
                (_code_label(code), info.name, info.category, info.severity, info.action),
                1.0,
            )
        for origin, total in sorted(self._events.items()):
            out.add(metrics.XID_EVENTS.name, (origin,), float(total))
        out.add(metrics.XID_DUPLICATES.name, (), float(self._duplicates))
        return out.freeze()

    def _mig_samples(self, out: SampleBuilder) -> None:
        for (pci, gi, ci, xid), count in self._mig_counts.items():
            labels = self._resolve(pci)
            profile = mig_uuid = ""
            if labels.identity is not None:
                matches = [
                    mig
                    for mig in labels.identity.migs
                    if mig.gpu_instance == gi and (ci is None or mig.compute_instance == ci)
                ]
                if len(matches) == 1:
                    profile, mig_uuid = matches[0].profile, matches[0].uuid
            ci_text = "" if ci is None else str(ci)
            out.add(
                metrics.MIG_XID_ERRORS.name,
                (labels.gpu, labels.uuid, str(gi), ci_text, profile, mig_uuid, _code_label(xid)),
                float(count),
            )

    def _fallen_samples(self, out: SampleBuilder, directory: tuple[GpuIdentity, ...]) -> None:
        """1 while NVML reports the GPU lost or its fall is not yet in NVML's directory."""
        emitted: set[tuple[str, str]] = set()
        for gpu in directory:
            pci = normalize_pci(gpu.pci_bus_id)
            lost = gpu.lost or pci in self._fallen
            labels = (str(gpu.index), gpu.uuid)
            emitted.add(labels)
            out.add(metrics.FALLEN_OFF_BUS.name, labels, 1.0 if lost else 0.0)
        for pci in sorted(self._fallen):
            resolved = self._resolve(pci)
            labels = (resolved.gpu, resolved.uuid)
            if labels not in emitted:
                emitted.add(labels)
                out.add(metrics.FALLEN_OFF_BUS.name, labels, 1.0)
