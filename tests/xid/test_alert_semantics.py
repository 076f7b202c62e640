"""The Xid semantics alert rules rest on (issue 8), one test per fix.

Each test pins one property a rule relies on: an unknown code cannot grow the exposition
without bound, every counted Xid is logged with the catalog's name and action, a fall off the
bus is handed to the NVML source and ends only when NVML answered again after losing the GPU.
"""

from __future__ import annotations

import structlog

from exporter.model import GpuIdentity
from exporter.publisher import Publisher
from exporter.xid.catalog import default_catalog
from exporter.xid.parser import XidEvent
from exporter.xid.state import MAX_UNKNOWN_CODES, XidState
from tests.xid.expo import exposition, values

GPUS = (
    GpuIdentity(0, "GPU-aaaa", "00000000:07:00.0"),
    GpuIdentity(1, "GPU-bbbb", "00000000:0F:00.0"),
)
XID = "nvidia_gpu_xid_errors_total"
INFO = "nvidia_gpu_xid_info"


class Directory:
    """NVML's GPU directory as the test wants it to be, changeable between calls."""

    def __init__(self) -> None:
        self.gpus = GPUS

    def __call__(self) -> tuple[GpuIdentity, ...]:
        return self.gpus

    def set_lost(self, index: int, lost: bool) -> None:
        self.gpus = tuple(
            GpuIdentity(g.index, g.uuid, g.pci_bus_id, lost=lost) if g.index == index else g
            for g in self.gpus
        )


def make() -> tuple[XidState, Publisher, Directory, list[tuple[str, bool]]]:
    publisher = Publisher(process_metrics=False)
    directory = Directory()
    calls: list[tuple[str, bool]] = []
    state = XidState(
        publisher,
        directory,
        on_lost=lambda uuid, flag: calls.append((uuid, flag)),
        clock=lambda: 1000.5,  # NVML event reports arrive "now", next to the kmsg ones
    )
    return state, publisher, directory, calls


def test_unknown_codes_beyond_the_bound_share_one_other_series() -> None:
    state, publisher, _, _ = make()
    catalog = default_catalog()
    unknown = [code for code in range(1000, 5000) if code not in catalog][:2000]
    for position, code in enumerate(unknown):
        state.observe(XidEvent(code, "0000:07:00"), 1000.0 + position)
    text = exposition(publisher)
    counts = values(text, XID, "gpu", "xid")
    own = {xid for (gpu, xid) in counts if gpu == "0" and xid not in ("other",)}
    assert {str(code) for code in unknown[:MAX_UNKNOWN_CODES]} <= own
    assert str(unknown[MAX_UNKNOWN_CODES]) not in own
    assert counts[("0", "other")] == len(unknown) - MAX_UNKNOWN_CODES
    info = values(text, INFO, "xid", "category")
    assert len(info) == len(catalog) + MAX_UNKNOWN_CODES + 1
    assert info[("other", "unknown")] == 1
    # The catalog's own codes never fold into "other", however many unknown ones came first.
    state.observe(XidEvent(13, "0000:07:00"), 9000.0)
    assert values(exposition(publisher), XID, "gpu", "xid")[("0", "13")] == 1


def test_every_counted_xid_is_logged_with_catalog_name_and_action() -> None:
    state, _, _, _ = make()
    with structlog.testing.capture_logs() as logs:
        state.observe(XidEvent(79, "0000:07:00", "GPU has fallen off the bus."), 1000.0)
        state.observe(XidEvent(13, "0000:0f:00", "SM Exception", pid=42), 1001.0)
        state.observe_nvml("00000000:07:00.0", 79, None, None)  # same Xid, second source
        state.observe_backlog(XidEvent(48, "0000:07:00"), 900.0)  # before start: not counted
    xids = [entry for entry in logs if entry["event"] == "xid"]
    assert [(e["xid"], e["log_level"], e["uuid"]) for e in xids] == [
        (79, "error", "GPU-aaaa"),
        (13, "warning", "GPU-bbbb"),
    ]
    assert xids[0]["name"].startswith("ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS")
    assert xids[0]["action"] == "reboot_node"
    assert xids[0]["gpu"] == "0"
    assert xids[0]["source"] == "kmsg"
    assert xids[1]["pid"] == 42
    assert xids[1]["action"] == "restart_app"


def test_fall_is_handed_to_nvml_and_ends_only_after_nvml_recovers() -> None:
    state, publisher, directory, calls = make()
    state.observe(XidEvent(79, "0000:07:00"), 1000.0)
    fallen = values(exposition(publisher), "nvidia_gpu_fallen_off_bus", "gpu")
    assert fallen == {("0",): 1, ("1",): 0}
    assert calls == [("GPU-aaaa", True)]
    # The NVML source took the mark: its directory now says lost.
    directory.set_lost(0, True)
    state.refresh()
    assert values(exposition(publisher), "nvidia_gpu_fallen_off_bus", "gpu")[("0",)] == 1
    # NVML answers again after a reset: the fall is over, without anyone clearing it here.
    directory.set_lost(0, False)
    state.refresh()
    assert values(exposition(publisher), "nvidia_gpu_fallen_off_bus", "gpu")[("0",)] == 0
    # A second fall later is reported to the NVML source again.
    state.observe(XidEvent(79, "0000:07:00"), 2000.0)
    assert calls == [("GPU-aaaa", True), ("GPU-aaaa", True)]
    assert values(exposition(publisher), XID, "gpu", "xid")[("0", "79")] == 2
