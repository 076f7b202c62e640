"""The Xid parser on every line of tests/fixtures/kmsg-samples.txt and on the driver's formats."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.xid.parser import (
    GpuUuidHint,
    XidEvent,
    XidParser,
    normalize_pci,
    parse_record,
    parse_xid_line,
    unescape,
)

SAMPLES = Path(__file__).parent.parent / "fixtures" / "kmsg-samples.txt"
U = "<unknown>"

# Per sample block, one entry per line: None (nothing for us), ("hint", pci, uuid), or
# (xid, pci, gpu_instance, compute_instance, pid, name, extras) where extras checks other fields.
EXPECTED: dict[int, list[object]] = {
    1: [
        ("hint", "0000:2b:00", "GPU-0b11d014-1685-04bd-26ed-5fc0bc1c44ae"),
        (79, "0000:2b:00", None, None, None, None, {"message": "GPU has fallen off the bus."}),
        (79, "0000:2b:00", None, None, None, None, {"fallen_off_bus_text": True}),
    ],
    2: [(79, "0000:05:00", None, None, None, U, {"fallen_off_bus_text": False})],
    4: [(79, "0000:44:00", None, None, None, None, {"message": "GPU has fallen off the bus"})],
    5: [
        (79, "0000:01:00", None, None, None, None, {"fallen_off_bus_text": True}),
        (
            3,
            "0000:01:00",
            None,
            None,
            None,
            None,
            {"message": "C 00000005 SC 00000007 M 00001ffc Data ffffffff"},
        ),
    ],
    6: [(13, "0000:01:00", None, None, None, None, {})],
    7: [
        (
            13,
            "0000:cb:00",
            None,
            None,
            None,
            U,
            {
                "message": "Graphics SM Warp Exception on "
                "(GPC 7, TPC 7, SM 0): Illegal Instruction "
                "Parameter"
            },
        ),
        (13, "0000:cb:00", None, None, None, U, {}),
        (13, "0000:cb:00", None, None, None, U, {}),
        (109, "0000:cb:00", None, None, 1797828, "pt_main_thread", {}),
    ],
    8: [
        (13, "0009:01:00", None, None, None, None, {}),
        (13, "0002:00:00", None, None, 2519562, "python3", {}),
        (31, "0000:b5:00", None, None, 2079991, "pt_main_thread", {}),
    ],
    9: [
        ("hint", "0000:00:05", "GPU-efbdfde9-5798-a6e7-4c46-12518fa15375"),
        None,
        (43, "0000:00:05", None, None, 1045242, "pt_main_thread", {"message": "Ch 00000008"}),
        (31, "0000:00:07", None, None, 2512125, "python3.10", {}),
        (
            94,
            "0000:00:08",
            None,
            None,
            None,
            U,
            {"message": "Contained: SM (0x1). RST: No, D-RST: No"},
        ),
    ],
    10: [(43, "0009:01:00", None, None, 3188489, "trigger_xid", {"message": "channel 0x0b00000a"})],
    11: [(31, "0000:01:00", None, None, 35097, "SpaceEngine.exe", {})],
    13: [
        (32, "0000:01:00", None, None, None, None, {}),
        (69, "0000:01:00", None, None, None, None, {}),
        (62, "0000:01:00", None, None, None, None, {"message": "0096(1c54) 00000000 00000000"}),
    ],
    14: [
        (45, "0000:61:00", None, None, 1496200, "distprovers-gpu", {"message": "Ch 0000000a"}),
        (45, "0000:61:00", None, None, 1496200, "distprovers-gpu", {"message": "Ch 0000000b"}),
    ],
    15: [
        (
            45,
            "0000:dc:00",
            None,
            None,
            1818990,
            "python3",
            {"caused_by": 149, "message": "Ch 00000001"},
        ),
        (45, "0000:ed:00", None, None, 1818992, "python3", {"caused_by": 145}),
    ],
    16: [(48, "0000:07:00", None, None, None, U, {})],
    17: [(63, "0000:10:1c", None, None, 1896, None, {})],
    18: [(74, "0003:00:00", None, None, None, U, {})],
    20: [
        ("hint", "0000:9b:00", "GPU-509665ad-b600-ac93-3616-d754b23d636d"),
        None,
        (119, "0000:9b:00", None, None, 2024380, "nvidia-smi", {}),
        None,
        None,
        (119, "0000:9b:00", None, None, 2024380, "nvidia-smi", {}),
    ],
    21: [(119, "0002:00:00", None, None, 67769, "nvidia-smi", {})],
    23: [
        (119, "0000:97:00", None, None, 5220, "cache_mgr_main", {}),
        (
            154,
            "0000:97:00",
            None,
            None,
            None,
            None,
            {"recovery_action": 1, "previous_recovery_action": 0},
        ),
    ],
    25: [
        (
            145,
            "0000:3f:00",
            None,
            None,
            None,
            None,
            {"nvlink_unit": "RLW_SRC_TRACK", "nvlink_fatal": False, "nvlink_link": 10},
        )
    ],
    27: [
        (154, "0008:01:00", None, None, None, None, {"recovery_action": 1}),
        (154, "0009:01:00", None, None, None, None, {"recovery_action": 4}),
        (
            154,
            "0008:01:00",
            None,
            None,
            None,
            None,
            {"recovery_action": 1, "previous_recovery_action": 4},
        ),
    ],
    28: [
        (79, "0000:01:00", None, None, None, None, {"fallen_off_bus_text": False}),
        (79, "0000:01:00", None, None, None, None, {"fallen_off_bus_text": True}),
        (154, "0000:01:00", None, None, None, None, {"recovery_action": 2}),
        (51, "0000:0d:00", None, None, None, None, {}),
        (154, "0000:0d:00", None, None, None, None, {"recovery_action": 1}),
    ],
    29: [None, None, None, None],
    30: [(79, "0000:1a:00", None, None, None, U, {})],
}


def _blocks() -> list[tuple[int, list[str]]]:
    blocks: list[tuple[int, list[str]]] = []
    for line in SAMPLES.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        header = re.match(r"SAMPLE (\d+) ", line)
        if header:
            blocks.append((int(header.group(1)), []))
        else:
            blocks[-1][1].append(line)
    return blocks


def _check(item: object, expected: object) -> None:
    if expected is None:
        assert item is None
        return
    assert isinstance(expected, tuple)
    if expected[0] == "hint":
        assert item == GpuUuidHint(expected[1], expected[2])
        return
    assert isinstance(item, XidEvent)
    xid, pci, gi, ci, pid, name, extras = expected
    assert (item.xid, item.pci, item.gpu_instance, item.compute_instance) == (xid, pci, gi, ci)
    assert (item.pid, item.process_name) == (pid, name)
    for field, value in extras.items():
        assert getattr(item, field) == value, field


def test_every_sample_block_has_expectations() -> None:
    blocks = _blocks()
    assert [number for number, _ in blocks] == sorted(EXPECTED)
    for number, lines in blocks:
        assert len(lines) == len(EXPECTED[number]), number


@pytest.mark.parametrize(("number", "lines"), _blocks(), ids=str)
def test_sample_lines_parse(number: int, lines: list[str]) -> None:
    parser = XidParser()
    for line, expected in zip(lines, EXPECTED[number], strict=True):
        items = parser.feed(line)
        assert len(items) <= 1, line
        _check(items[0] if items else None, expected)


# Formats from the driver's printf (kernel_rc.c krcReportXid, osapi.c), not in the fixture file.
DRIVER_FORMATS = [
    (
        "NVRM: Xid (PCI:0000:07:00 GPU-I:03): 13, pid=42, name=python3, Graphics Exception",
        (13, "0000:07:00", 3, None, 42, "python3", {}),
    ),
    (
        "NVRM: Xid (PCI:0000:07:00 GPU-I:01 GPU-CI:02): 31, pid=7, name=ray::DTensorPolicy, Ch 1",
        (31, "0000:07:00", 1, 2, 7, "ray::DTensorPolicy", {"message": "Ch 1"}),
    ),
    (
        "NVRM: Xid (PCI:0000:87:00 GPU-I:05): 43, channel 0x0000005c",
        (43, "0000:87:00", 5, None, None, None, {}),
    ),
    (
        "NVRM: Xid (PCI:0000:07:00): 13, pid=9, name=runc:[2:INIT], Graphics Exception",
        (13, "0000:07:00", None, None, 9, "runc:[2:INIT]", {"message": "Graphics Exception"}),
    ),
    (
        "NVRM: Xid (PCI:0000:07:00): 13, pid=9, name=a,b[c, d]:e, ESR 0x1",
        (13, "0000:07:00", None, None, 9, "a,b[c, d]:e", {"message": "ESR 0x1"}),
    ),
    (
        "NVRM: Xid (PCI:0000:07:00): 45, pid='<unknown>', name=<unknown>, Ch 0000000a caused by "
        "previous Xid 79",
        (45, "0000:07:00", None, None, None, U, {"caused_by": 79}),
    ),
    (
        "NVRM: Xid (PCI:0000:07:00): 149, NETIR_LINK_EVT Fatal XC0 i0 Link 3 (0x004505c6 "
        "0x00000000 0x00000000 0x00000000 0x00000000 0x00000000)",
        (
            149,
            "0000:07:00",
            None,
            None,
            None,
            None,
            {"nvlink_unit": "NETIR_LINK_EVT", "nvlink_fatal": True, "nvlink_link": 3},
        ),
    ),
    (
        "NVRM: Xid (PCI:0000:07:00): 154, GPU recovery action changed from 0x0 (None) to 0x3 "
        "(Drain P2P)",
        (154, "0000:07:00", None, None, None, None, {"recovery_action": 3}),
    ),
    (
        "NVRM: Xid (PCI:0000:07:00): 154, GPU recovery action changed from 0x1 (PF FLR) to 0xa "
        "(Some New Label)",
        (154, "0000:07:00", None, None, None, None, {"recovery_action": 10}),
    ),
]


@pytest.mark.parametrize(("line", "expected"), DRIVER_FORMATS)
def test_driver_formats(line: str, expected: tuple[object, ...]) -> None:
    _check(parse_xid_line(line), expected)


def test_probe_time_fallen_off_bus_in_one_record() -> None:
    raw = (
        b"3,99,1000,-;NVRM: The NVIDIA GPU 0000:2b:00.0\\x0aNVRM: (PCI ID: 10de:2204) installed"
        b" in this system has\\x0aNVRM: fallen off the bus and is not responding to commands."
    )
    record = parse_record(raw)
    assert record is not None
    items = XidParser().feed(record.text)
    assert len(items) == 1
    _check(items[0], (79, "0000:2b:00", None, None, None, None, {"fallen_off_bus_text": True}))


def test_probe_time_fallen_off_bus_split_over_lines() -> None:
    parser = XidParser()
    assert parser.feed("NVRM: The NVIDIA GPU 0000:2b:00.0") == []
    assert parser.feed("NVRM: (PCI ID: 10de:2204) installed in this system has") == []
    items = parser.feed("NVRM: fallen off the bus and is not responding to commands.")
    _check(items[0], (79, "0000:2b:00", None, None, None, None, {"fallen_off_bus_text": True}))


def test_xid_79_line_in_same_record_as_text_is_one_event() -> None:
    text = (
        "NVRM: Xid (PCI:0000:2b:00): 79, GPU has fallen off the bus.\n"
        "NVRM: GPU 0000:2b:00.0: GPU has fallen off the bus."
    )
    items = XidParser().feed(text)
    assert [item.xid for item in items if isinstance(item, XidEvent)] == [79]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("00000000:07:00.0", "0000:07:00"),
        ("0000:2B:00", "0000:2b:00"),
        ("PCI:0009:01:00", "0009:01:00"),
        ("07:00.0", "0000:07:00"),
        ("00010000:c1:1f.0", "10000:c1:1f"),
        ("nonsense", None),
        ("0000:zz:00", None),
    ],
)
def test_normalize_pci(text: str, key: str | None) -> None:
    assert normalize_pci(text) == key


def test_record_header_with_extra_fields_and_continuation() -> None:
    record = parse_record(
        b"4,1227,5000,c,caller=T12;NVRM: Xid (PCI:0000:07:00): 13, x\n"
        b" SUBSYSTEM=pci\n DEVICE=+pci:0000:07:00.0"
    )
    assert record is not None
    assert (record.prefix, record.seq, record.usec) == (4, 1227, 5000)
    assert record.text == "NVRM: Xid (PCI:0000:07:00): 13, x"


def test_unescape_bytes_and_invalid_utf8() -> None:
    assert unescape(b"a\\x0ab\\x5c") == "a\nb\\"
    assert unescape(b"\xff\xfeok\x00") == "\ufffd\ufffdok"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_crash(raw: bytes) -> None:
    record = parse_record(raw)
    XidParser().feed(record.text if record else unescape(raw))


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.text(max_size=80),
    gpu_instance=st.none() | st.integers(0, 99),
    pid=st.none() | st.integers(1, 2**22),
    name=st.text(
        alphabet=st.characters(blacklist_characters="\n\r,", blacklist_categories=("Cs",)),
        min_size=1,
        max_size=20,
    ),
    xid=st.integers(1, 999),
    bus=st.integers(0, 255),
)
def test_generated_lines_roundtrip(
    prefix: str, gpu_instance: int | None, pid: int | None, name: str, xid: int, bus: int
) -> None:
    where = f"PCI:0000:{bus:02x}:00" + (
        f" GPU-I:{gpu_instance:02d}" if gpu_instance is not None else ""
    )
    context = f"pid={pid}, name={name}, " if pid is not None else ""
    line = f"{prefix.replace(chr(10), ' ')}NVRM: Xid ({where}): {xid}, {context}some message"
    event = parse_xid_line(line)
    assert event is not None
    assert (event.xid, event.pci, event.gpu_instance) == (xid, f"0000:{bus:02x}:00", gpu_instance)
    assert event.pid == pid
