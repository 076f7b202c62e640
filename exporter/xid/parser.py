"""Parse kernel log records and NVIDIA's NVRM Xid lines into events.

Two layers, both pure (no I/O), so every variant is tested from text alone:

- `parse_record` reads one /dev/kmsg record: the `prio,seq,usec,flags[,...];text` header, the
  `\\xNN`-escaped text, and the ` KEY=value` continuation lines (metadata, dropped).
- `XidParser.feed` turns record text into `XidEvent`s and `GpuUuidHint`s. It parses only up to
  the Xid code (`NVRM: Xid (<where>): <code>,`) and keeps the rest as the message; pid, process
  name, MIG instance, root cause, recovery action and NVLink5 unit are extracted when present and
  never required. docs/xid.md lists the accepted formats with examples.

Why so lenient: the format changed across driver generations (pid='<unknown>', no `PCI:`
prefix, MIG attribution inside the parentheses, no pid/name at all) and two widely used parsers
miss the MIG variant. A line we cannot fully take apart still yields its code and GPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_MESSAGE_CHARS = 1024  # a message is kept for logs only; bound it against garbage

_ADDR = r"(?P<addr>[0-9a-fA-F]{1,8}:[0-9a-fA-F]{1,2}:[0-9a-fA-F]{1,2}(?:\.[0-7])?)"
_XID = re.compile(
    r"NVRM: Xid \((?:PCI:)?" + _ADDR + r"(?P<mig>(?:\s+GPU-C?I:\s*\d+)*)\s*\):\s*(?P<xid>\d{1,6})"
    r"(?:,\s?|\s+|$)(?P<rest>[^\n]*)"
)
_MIG_PART = re.compile(r"GPU-(C?I):\s*(\d+)")
_PID = re.compile(r"pid=('<unknown>'|<unknown>|'?-?\d+'?|[^,\s]*),\s?")
_CAUSED_BY = re.compile(r"\s*caused by previous Xid (\d{1,6})\s*$")
_RECOVERY = re.compile(
    r"GPU recovery action changed from 0x(?P<old>[0-9a-fA-F]{1,8})\s*(?:\([^)]*\))?\s*"
    r"to 0x(?P<new>[0-9a-fA-F]{1,8})"
)
_NVLINK5 = re.compile(
    r"^(?P<unit>[A-Z0-9_]+(?:/[A-Z0-9_]+)*)\s+(?P<severity>Fatal|Nonfatal)\s+XC(?P<xc>\d)"
    r"\s+i(?P<instance>\d+)\s+Link\s+(?P<link>-?\d+)"
)
_UUID_HINT = re.compile(r"NVRM: GPU at PCI:" + _ADDR + r":\s*(?P<uuid>GPU-[0-9a-fA-F-]{8,64})")
_FALLEN = "fallen off the bus"
# "NVRM: GPU 0000:2b:00.0: GPU has fallen off the bus.", "NVRM: GPU at 0000:01:00.0 has fallen
# off the bus." and the probe-time "NVRM: The NVIDIA GPU 0000:2b:00.0" (text on later lines).
_FALLEN_GPU = re.compile(r"NVRM: (?:The NVIDIA )?GPU (?:at )?(?:PCI:)?" + _ADDR)
_PROBE_GPU = re.compile(r"NVRM: The NVIDIA GPU (?:PCI:)?" + _ADDR)
_PROBE_FOLLOW_LINES = 4  # the probe message's "fallen off the bus" comes within 2 lines
_NVLINK5_CODES = range(144, 151)
_RECOVERY_XID = 154
FALLEN_OFF_BUS_XID = 79


def normalize_pci(text: str) -> str | None:
    """One key for a PCI address in any spelling: `dddd:bb:dd` in lower-case hex.

    The Xid line prints domain:bus:device (`0000:2b:00`), other NVRM lines add the function
    (`0000:2b:00.0`) and NVML's bus id has an 8-digit domain (`00000000:2B:00.0`). A GPU is
    function 0, so the function is dropped. Returns None for text that is not an address.
    """
    head = text.strip().removeprefix("PCI:").split(".", 1)[0]
    parts = head.split(":")
    if len(parts) == 2:
        parts = ["0", *parts]
    if len(parts) != 3:
        return None
    try:
        domain, bus, device = (int(part, 16) for part in parts)
    except ValueError:
        return None
    if domain > 0xFFFFFFFF or bus > 0xFF or device > 0xFF:
        return None
    return f"{domain:04x}:{bus:02x}:{device:02x}"


@dataclass(frozen=True, slots=True)
class KmsgRecord:
    """One kernel log record: `prefix` is (facility << 3) | level; `usec` is since boot."""

    prefix: int
    seq: int
    usec: int
    text: str


_HEADER = re.compile(rb"^(\d{1,4}),(\d{1,20}),(\d{1,20}),([^;,]*)(?:,[^;]*)?;")
_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")


def unescape(raw: bytes) -> str:
    """Undo /dev/kmsg's `\\xNN` escaping, then decode; invalid UTF-8 becomes U+FFFD."""
    if b"\\x" in raw:
        raw = _ESCAPE.sub(lambda match: bytes((int(match.group(1), 16),)), raw)
    return raw.replace(b"\x00", b"").decode("utf-8", errors="replace")


def parse_record(raw: bytes) -> KmsgRecord | None:
    """Parse one record (header line plus optional continuation lines); None if malformed."""
    line, _, _continuation = raw.partition(b"\n")  # " KEY=value" lines: metadata, unused
    match = _HEADER.match(line)
    if match is None:
        return None
    text = line[match.end() :]
    return KmsgRecord(int(match.group(1)), int(match.group(2)), int(match.group(3)), unescape(text))


@dataclass(frozen=True, slots=True)
class XidEvent:
    """One Xid as the kernel log reported it (or fallen-off-bus text, as Xid 79).

    `pci` is the normalised key (`normalize_pci`); `gpu_instance`/`compute_instance` are set for
    MIG-attributed lines; `recovery_action` is the new action of an Xid 154 line.
    """

    xid: int
    pci: str
    message: str = ""
    gpu_instance: int | None = None
    compute_instance: int | None = None
    pid: int | None = None
    process_name: str | None = None
    caused_by: int | None = None
    recovery_action: int | None = None
    previous_recovery_action: int | None = None
    nvlink_unit: str | None = None
    nvlink_fatal: bool | None = None
    nvlink_link: int | None = None
    fallen_off_bus_text: bool = False


@dataclass(frozen=True, slots=True)
class GpuUuidHint:
    """`NVRM: GPU at PCI:<addr>: GPU-<uuid>`: the driver names a GPU before its first Xid."""

    pci: str
    uuid: str


ParsedItem = XidEvent | GpuUuidHint


def _split_name(text: str) -> tuple[str, str]:
    """Split `name=<...>, message` at the first `, ` outside brackets.

    Process names may contain commas, colons and brackets (`ray::Worker`, `runc:[2:INIT]`);
    a `, ` inside brackets does not end the name. With unbalanced brackets (a truncated name)
    the first `, ` wins.
    """
    depth = 0
    for position, char in enumerate(text):
        if char in "[(<{":
            depth += 1
        elif char in "])>}":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0 and text[position + 1 : position + 2] in (" ", ""):
            return text[:position], text[position + 2 :]
    comma = text.find(", ")
    if comma >= 0:
        return text[:comma], text[comma + 2 :]
    return text, ""


def _parse_pid(text: str) -> int | None:
    stripped = text.strip("'")
    return int(stripped) if stripped.lstrip("-").isdigit() else None


def parse_xid_line(line: str) -> XidEvent | None:
    """Parse one `NVRM: Xid (...)` line anywhere in `line`; None if there is none."""
    match = _XID.search(line)
    if match is None:
        return None
    pci = normalize_pci(match.group("addr"))
    if pci is None:
        return None
    gpu_instance = compute_instance = None
    for kind, number in _MIG_PART.findall(match.group("mig")):
        if kind == "I":
            gpu_instance = int(number)
        else:
            compute_instance = int(number)
    xid = int(match.group("xid"))
    rest = match.group("rest")
    pid: int | None = None
    name: str | None = None
    pid_match = _PID.match(rest)
    if pid_match is not None:
        pid = _parse_pid(pid_match.group(1))
        rest = rest[pid_match.end() :]
    if rest.startswith("name="):
        name, rest = _split_name(rest[len("name=") :])
    message = rest.strip()
    caused_by = None
    caused = _CAUSED_BY.search(message)
    if caused is not None:
        caused_by = int(caused.group(1))
        message = message[: caused.start()]
    recovery = previous = None
    if xid == _RECOVERY_XID:
        action = _RECOVERY.search(message)
        if action is not None:
            recovery = int(action.group("new"), 16)
            previous = int(action.group("old"), 16)
    unit = fatal = link = None
    if xid in _NVLINK5_CODES:
        nvlink = _NVLINK5.match(message)
        if nvlink is not None:
            unit = nvlink.group("unit")
            fatal = nvlink.group("severity") == "Fatal"
            link = int(nvlink.group("link"))
    return XidEvent(
        xid=xid,
        pci=pci,
        message=message[:MAX_MESSAGE_CHARS],
        gpu_instance=gpu_instance,
        compute_instance=compute_instance,
        pid=pid,
        process_name=name,
        caused_by=caused_by,
        recovery_action=recovery,
        previous_recovery_action=previous,
        nvlink_unit=unit,
        nvlink_fatal=fatal,
        nvlink_link=link,
    )


def parse_uuid_hint(line: str) -> GpuUuidHint | None:
    """Parse `NVRM: GPU at PCI:<addr>: GPU-<uuid>`; None if the line is something else."""
    match = _UUID_HINT.search(line)
    if match is None:
        return None
    pci = normalize_pci(match.group("addr"))
    return GpuUuidHint(pci, match.group("uuid")) if pci else None


class XidParser:
    """Turns record texts into events; keeps just enough state for split probe messages.

    The probe-time fallen-off-bus message is one printk with embedded newlines (one record),
    but a saved log or a FIFO may carry it as separate lines: the GPU address is on the first
    line and the words "fallen off the bus" on the third. The parser remembers the address of
    the last `NVRM: The NVIDIA GPU <addr>` line for a few lines.
    """

    __slots__ = ("_probe_lines_left", "_probe_pci")

    def __init__(self) -> None:
        self._probe_pci: str | None = None
        self._probe_lines_left = 0

    def feed(self, text: str) -> list[ParsedItem]:
        """Parse one record's text (it may hold several lines); returns what it found."""
        if "NVRM" not in text and (self._probe_pci is None or _FALLEN not in text):
            self._age_probe(text.count("\n") + 1)
            return []
        items: list[ParsedItem] = []
        saw_xid = False
        for line in text.split("\n"):
            if "NVRM" not in line and self._probe_pci is None:
                continue
            event = parse_xid_line(line)
            if event is not None:
                items.append(event)
                saw_xid = True
                continue
            hint = parse_uuid_hint(line)
            if hint is not None:
                items.append(hint)
        if not saw_xid:
            fallen = self._fallen_off_bus(text)
            if fallen is not None:
                items.append(fallen)
        return items

    def _age_probe(self, lines: int) -> None:
        if self._probe_pci is not None:
            self._probe_lines_left -= lines
            if self._probe_lines_left <= 0:
                self._probe_pci = None

    def _fallen_off_bus(self, text: str) -> XidEvent | None:
        """Fallen-off-bus text without an Xid line in the same record counts as Xid 79."""
        probe = _PROBE_GPU.search(text)
        if _FALLEN not in text:
            if probe is not None:
                self._probe_pci = normalize_pci(probe.group("addr"))
                self._probe_lines_left = _PROBE_FOLLOW_LINES
            else:
                self._age_probe(text.count("\n") + 1)
            return None
        gpu = _FALLEN_GPU.search(text)
        pci = normalize_pci(gpu.group("addr")) if gpu is not None else self._probe_pci
        self._probe_pci = None
        if pci is None:
            return None
        start = text.find("NVRM")
        message = text[start if start >= 0 else 0 :].replace("\n", " ").strip()
        return XidEvent(
            xid=FALLEN_OFF_BUS_XID,
            pci=pci,
            message=message[:MAX_MESSAGE_CHARS],
            fallen_off_bus_text=True,
        )
