"""XidState: counting, de-duplication across sources, label resolution, restart semantics."""

from __future__ import annotations

from exporter.model import GpuIdentity, MigIdentity
from exporter.publisher import Publisher
from exporter.xid.parser import GpuUuidHint, XidEvent
from exporter.xid.state import DEDUPE_WINDOW_SECONDS, XidState
from tests.xid.expo import exposition, values

GPUS = (
    GpuIdentity(0, "GPU-aaaa", "00000000:07:00.0"),
    GpuIdentity(
        1,
        "GPU-bbbb",
        "00000000:0F:00.0",
        migs=(
            MigIdentity(1, 0, "MIG-1111", "3g.40gb"),
            MigIdentity(2, 0, "MIG-2222", "3g.40gb"),
        ),
    ),
)
XID = "nvidia_gpu_xid_errors_total"
LAST = "nvidia_gpu_xid_last_seen_timestamp_seconds"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(
    directory: tuple[GpuIdentity, ...] = GPUS,
) -> tuple[XidState, Publisher, list[tuple[str, bool]]]:
    publisher = Publisher(process_metrics=False)
    lost: list[tuple[str, bool]] = []
    state = XidState(publisher, lambda: directory, on_lost=lambda u, flag: lost.append((u, flag)))
    return state, publisher, lost


def test_critical_codes_start_at_zero_for_every_gpu() -> None:
    state, publisher, _ = make()
    state.refresh()
    counts = values(exposition(publisher), XID, "gpu", "uuid", "xid")
    assert counts[("0", "GPU-aaaa", "79")] == 0
    assert counts[("1", "GPU-bbbb", "48")] == 0
    assert ("0", "GPU-aaaa", "13") not in counts  # 13 is not critical
    assert len(counts) == 2 * 27


def test_xid_is_counted_on_the_gpu_with_that_pci_address() -> None:
    state, publisher, _ = make()
    assert state.observe(XidEvent(13, "0000:0f:00"), 1500.0)
    assert state.observe(XidEvent(13, "0000:0f:00"), 1501.0)
    text = exposition(publisher)
    assert values(text, XID, "gpu", "uuid", "xid")[("1", "GPU-bbbb", "13")] == 2
    assert values(text, LAST, "gpu", "uuid", "xid")[("1", "GPU-bbbb", "13")] == 1501.0


def test_unknown_pci_is_counted_with_empty_uuid_and_hint_uuid_is_used() -> None:
    state, publisher, _ = make()
    state.observe(XidEvent(31, "0000:99:00"), 1.0)
    state.observe_hint(GpuUuidHint("0000:98:00", "GPU-hint"))
    state.observe(XidEvent(31, "0000:98:00"), 2.0)
    counts = values(exposition(publisher), XID, "gpu", "uuid", "xid")
    assert counts[("", "", "31")] == 1
    assert counts[("", "GPU-hint", "31")] == 1


def test_backlog_sets_last_seen_but_does_not_count() -> None:
    state, publisher, _ = make()
    state.observe_backlog(XidEvent(79, "0000:07:00"), 900.0)
    state.observe_backlog(XidEvent(154, "0000:07:00", recovery_action=2), 901.0)
    text = exposition(publisher)
    assert values(text, XID, "gpu", "uuid", "xid")[("0", "GPU-aaaa", "79")] == 0
    assert values(text, LAST, "gpu", "uuid", "xid")[("0", "GPU-aaaa", "79")] == 900.0
    assert values(text, "nvidia_gpu_recovery_action", "gpu", "uuid")[("0", "GPU-aaaa")] == 2


def test_backlog_before_nvml_enumerated_resolves_later() -> None:
    directory: list[tuple[GpuIdentity, ...]] = [()]
    publisher = Publisher(process_metrics=False)
    state = XidState(publisher, lambda: directory[0])
    state.observe_backlog(XidEvent(48, "0000:07:00"), 10.0)
    assert values(exposition(publisher), LAST, "gpu", "uuid", "xid") == {("", "", "48"): 10.0}
    directory[0] = GPUS
    state.refresh()
    assert values(exposition(publisher), LAST, "gpu", "uuid", "xid") == {
        ("0", "GPU-aaaa", "48"): 10.0
    }


def test_kmsg_and_nvml_reports_of_one_xid_count_once_in_either_order() -> None:
    clock = Clock()
    publisher = Publisher(process_metrics=False)
    state = XidState(publisher, lambda: GPUS, clock=clock)
    assert state.observe(XidEvent(48, "0000:07:00"), clock.now)
    assert not state.observe_nvml("00000000:07:00.0", 48, None, None)
    assert state.observe_nvml("00000000:07:00.0", 48, None, None)  # a second Xid 48
    assert not state.observe(XidEvent(48, "0000:07:00"), clock.now)
    clock.now += DEDUPE_WINDOW_SECONDS + 1
    assert state.observe(XidEvent(48, "0000:07:00"), clock.now)
    assert state.counted("0000:07:00", 48) == 3
    text = exposition(publisher)
    assert values(text, "nvidia_gpu_exporter_xid_duplicates_total") == {(): 2}
    assert values(text, "nvidia_gpu_exporter_xid_reports_total", "source") == {
        ("kmsg",): 3,
        ("nvml",): 2,
    }


def test_fallen_off_bus_text_next_to_xid_79_counts_once_and_marks_lost() -> None:
    state, publisher, lost = make()
    state.observe(XidEvent(79, "0000:07:00"), 10.0)
    state.observe(XidEvent(79, "0000:07:00", fallen_off_bus_text=True), 10.1)
    text = exposition(publisher)
    assert values(text, XID, "gpu", "uuid", "xid")[("0", "GPU-aaaa", "79")] == 1
    fallen = values(text, "nvidia_gpu_fallen_off_bus", "gpu", "uuid")
    assert fallen == {("0", "GPU-aaaa"): 1, ("1", "GPU-bbbb"): 0}
    assert lost == [("GPU-aaaa", True)]
    state.clear_fallen("0000:07:00.0")
    fallen = values(exposition(publisher), "nvidia_gpu_fallen_off_bus", "gpu", "uuid")
    assert fallen[("0", "GPU-aaaa")] == 0
    assert lost == [("GPU-aaaa", True), ("GPU-aaaa", False)]


def test_fallen_off_bus_text_alone_counts_as_xid_79() -> None:
    state, publisher, _ = make()
    state.observe(XidEvent(79, "0000:0f:00", fallen_off_bus_text=True), 10.0)
    assert values(exposition(publisher), XID, "gpu", "uuid", "xid")[("1", "GPU-bbbb", "79")] == 1


def test_nvml_lost_gpu_raises_fallen_off_bus_series() -> None:
    state, publisher, _ = make((GpuIdentity(0, "GPU-aaaa", "00000000:07:00.0", lost=True),))
    state.refresh()
    assert values(exposition(publisher), "nvidia_gpu_fallen_off_bus", "gpu") == {("0",): 1}


def test_mig_attributed_xid_carries_the_mig_device() -> None:
    state, publisher, _ = make()
    state.observe(XidEvent(13, "0000:0f:00", gpu_instance=2, compute_instance=0), 5.0)
    state.observe(XidEvent(13, "0000:0f:00", gpu_instance=1), 6.0)
    text = exposition(publisher)
    mig = values(
        text,
        "nvidia_gpu_mig_xid_errors_total",
        "gpu",
        "gpu_instance",
        "compute_instance",
        "profile",
        "mig_uuid",
        "xid",
    )
    assert mig == {
        ("1", "2", "0", "3g.40gb", "MIG-2222", "13"): 1,
        ("1", "1", "", "3g.40gb", "MIG-1111", "13"): 1,
    }
    assert values(text, XID, "gpu", "xid")[("1", "13")] == 2


def test_info_series_carries_catalog_fields_and_unknown_codes() -> None:
    state, publisher, _ = make()
    state.observe(XidEvent(999, "0000:07:00"), 1.0)
    info = values(
        exposition(publisher), "nvidia_gpu_xid_info", "xid", "category", "severity", "action"
    )
    assert info[("79", "pcie_bus", "critical", "reboot_node")] == 1
    assert info[("999", "unknown", "warning", "none")] == 1
    assert len(info) == 177


def test_xid_source_health_follows_its_inputs() -> None:
    state, publisher, _ = make()
    state.set_input("kmsg", False, "permission denied")
    health = publisher.source_health("xid")
    assert health is not None
    assert not health.up
    assert "permission denied" in health.detail
    state.set_input("nvml_events", True)
    health = publisher.source_health("xid")
    assert health is not None
    assert health.up
