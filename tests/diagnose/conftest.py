"""Fixtures for diagnose tests: a node made of files (kernel log, sysfs, /dev, scenarios).

Every run goes through the real pynvml over the fake driver, in this process: main() inits
NVML, collects once and shuts it down, so each run reloads its scenario (FAKE_NVML_SCENARIO)
and faults file (FAKE_NVML_FAULTS). The scenario clock is frozen (FAKE_NVML_TIME) and the host
(now, uptime, node name) is injected, so output is the same on every run. Runs that hang NVML
on purpose go through a subprocess (test_run.py): a hung call would hold NVML's lock here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from exporter.diagnose import main
from exporter.diagnose.base import Host
from exporter.fakenvml.build import SCENARIO_SOURCE_DIR

HOST = Host(now=1_700_000_000.0, uptime=10_000.0, node="gpu-node-1")
FROZEN_SCENARIO_TIME = "100"
# The fake driver's default PCI buses, by GPU index (exporter/fakenvml/scenario.c)
BUSES = ("07", "0f", "47", "4e", "87", "90", "b7", "bd")


def kmsg_record(text: str, seconds_ago: float, seq: int = 1, host: Host = HOST) -> str:
    """One /dev/kmsg record (priority 3: error) that happened `seconds_ago` before host.now."""
    usec = int((host.uptime - seconds_ago) * 1e6)
    return f"3,{seq},{usec},-;{text}\n"


def xid_line(bus: str, code: int, message: str) -> str:
    """The driver's Xid line for domain 0, device 0 on `bus`."""
    return f"NVRM: Xid (PCI:0000:{bus}:00): {code}, pid='<unknown>', name=<unknown>, {message}"


@dataclass
class Node:
    """Files standing in for a node: pass `args()` to diagnose."""

    root: Path
    kmsg: Path = field(init=False)
    socket: Path = field(init=False)
    sysfs: Path = field(init=False)
    dev: Path = field(init=False)

    def __post_init__(self) -> None:
        self.kmsg = self.root / "kmsg"
        self.kmsg.write_text("")
        self.socket = self.root / "kubelet" / "kubelet.sock"
        self.socket.parent.mkdir()
        self.sysfs = self.root / "sys"
        self.dev = self.root / "dev"

    def args(self, *extra: str) -> list[str]:
        return [
            "--path.kmsg",
            str(self.kmsg),
            "--path.pod-resources-socket",
            str(self.socket),
            *extra,
        ]

    def scenario(self, extra: str = "", base: str = "h100-nvlink", name: str = "s") -> str:
        """A scenario file: a built-in one with `extra` sections appended (they win)."""
        text = (SCENARIO_SOURCE_DIR / f"{base}.scn").read_text()
        path = self.root / f"{name}.scn"
        path.write_text(f"{text}\n{extra}\n")
        return str(path)

    def write_kmsg(self, *records: str) -> None:
        self.kmsg.write_text("".join(records))

    def pci(self, buses: tuple[str, ...] = BUSES, extra: tuple[tuple[str, str, str], ...] = ()):
        """sysfs PCI devices: NVIDIA 3D controllers on `buses`, plus (slot, vendor, class)."""
        devices = self.sysfs / "bus" / "pci" / "devices"
        devices.mkdir(parents=True, exist_ok=True)
        rows = [(f"0000:{bus}:00.0", "0x10de", "0x030200") for bus in buses]
        for slot, vendor, klass in (*rows, *extra):
            (devices / slot).mkdir()
            (devices / slot / "vendor").write_text(vendor + "\n")
            (devices / slot / "class").write_text(klass + "\n")

    def devices(self, names: tuple[str, ...] | None = None) -> None:
        """Device files (plain files: the check looks at names)."""
        self.dev.mkdir(exist_ok=True)
        for name in names or ("nvidiactl", "nvidia-uvm", *(f"nvidia{i}" for i in range(8))):
            (self.dev / name).write_text("")


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Node:
    for name in list(os.environ):
        if name.startswith(("GPU_NODE_EXPORTER_", "FAKE_NVML_")) or name == (
            "NVIDIA_DRIVER_CAPABILITIES"
        ):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FAKE_NVML_TIME", FROZEN_SCENARIO_TIME)
    return Node(tmp_path)


@dataclass
class Run:
    rc: int
    out: str
    err: str

    @property
    def doc(self) -> dict[str, Any]:
        return json.loads(self.out)

    def findings(self, check: str) -> list[dict[str, Any]]:
        return [entry for entry in self.doc["checks"] if entry["check"] == check]

    def one(self, check: str, gpu: str | None = None) -> dict[str, Any]:
        matches = [entry for entry in self.findings(check) if entry["gpu"] == gpu]
        assert len(matches) == 1, (check, gpu, self.findings(check))
        return matches[0]

    def levels(self, check: str) -> dict[str | None, str]:
        return {entry["gpu"]: entry["level"] for entry in self.findings(check)}


@pytest.fixture
def diagnose(capsys: pytest.CaptureFixture[str]):
    """Run main() in this process; returns the exit code and what it printed."""

    def run(*args: str, host: Host = HOST) -> Run:
        capsys.readouterr()
        rc = main(list(args), host=host)
        captured = capsys.readouterr()
        return Run(rc, captured.out, captured.err)

    return run
