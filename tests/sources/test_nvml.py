"""The NVML source through the real pynvml over the fake driver, for every scenario."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from exporter import metrics
from exporter.fakenvml import BUILTIN_SCENARIOS
from exporter.fakenvml.control import FakeNvmlControl
from exporter.model import SampleMap
from exporter.poller import SourceUnavailableError
from exporter.sources.nvml import NvmlSource

Factory = Callable[..., NvmlSource]

GPU_IS_LOST = 15
NOT_SUPPORTED = 3
UNKNOWN = 999


def values(samples: SampleMap, family: metrics.Family) -> dict[tuple[str, ...], float]:
    return dict(samples.get(family.name, ()))


def per_gpu(samples: SampleMap, family: metrics.Family) -> dict[str, float]:
    return {labels[0]: value for labels, value in samples.get(family.name, ()) if len(labels) == 2}


@pytest.mark.parametrize("scenario", BUILTIN_SCENARIOS)
def test_every_scenario_collects_consistent_values(open_source: Factory, scenario: str) -> None:
    source = open_source(scenario)
    samples = source.collect()
    up = per_gpu(samples, metrics.UP)
    assert up and set(up.values()) == {1.0}
    info = samples[metrics.INFO.name]
    assert len(info) == len(up)
    uuids = [labels[1] for labels, _ in info]
    assert len(set(uuids)) == len(uuids) and all(uuid.startswith("GPU-") for uuid in uuids)
    bus_ids = [labels[metrics.INFO_LABELS.index("pci_bus_id")] for labels, _ in info]
    assert len(set(bus_ids)) == len(bus_ids) and all(bus_ids)
    total = per_gpu(samples, metrics.MEMORY_TOTAL)
    used = per_gpu(samples, metrics.MEMORY_USED)
    free = per_gpu(samples, metrics.MEMORY_FREE)
    for gpu in up:
        assert total[gpu] > 1e9  # bytes, not MiB
        assert 0 <= used[gpu] <= total[gpu]
        assert free[gpu] <= total[gpu]
        assert 1 <= per_gpu(samples, metrics.POWER_USAGE)[gpu] <= 1000  # watts, not mW
        assert 10 <= per_gpu(samples, metrics.TEMPERATURE)[gpu] <= 110
    for ratio in (metrics.UTILIZATION, metrics.MEMORY_UTILIZATION):
        assert all(0 <= value <= 1 for value in per_gpu(samples, ratio).values())
    clocks = values(samples, metrics.CLOCK)
    assert clocks and all(1e7 < value < 1e10 for value in clocks.values())  # hertz
    assert values(samples, metrics.ENERGY)  # a counter every scenario's GPUs support
    assert samples[metrics.GPUS.name][0][1] == len(up)


def test_a100_mig_node_exports_mig_devices_with_profiles(open_source: Factory) -> None:
    samples = open_source("a100-mig").collect()
    info = {labels[0]: labels for labels, _ in samples[metrics.INFO.name]}
    mig_mode = metrics.INFO_LABELS.index("mig_mode")
    assert [gpu for gpu, labels in info.items() if labels[mig_mode] == "enabled"] == ["6", "7"]
    mig_total = samples[metrics.MIG_MEMORY_TOTAL.name]
    by_gpu: dict[str, list[str]] = {}
    for labels, value in mig_total:
        gpu, _uuid, gi, ci, profile, mig_uuid = labels
        assert mig_uuid.startswith("MIG-") and gi.isdigit() and ci.isdigit()
        assert value > 1e9
        by_gpu.setdefault(gpu, []).append(profile)
    assert sorted(by_gpu["6"]) == ["1g.10gb"] * 7
    assert sorted(by_gpu["7"]) == ["2g.20gb", "2g.20gb", "3g.40gb"]  # the empty slot is skipped
    assert samples[metrics.MIG_DEVICES.name][0][1] == 10
    # NVML has no utilization on MIG-enabled GPUs: omitted, never 0.
    assert set(per_gpu(samples, metrics.UTILIZATION)) == {"0", "1", "2", "3", "4", "5"}
    # Physical values once per physical GPU, never per MIG device.
    assert len(samples[metrics.POWER_USAGE.name]) == 8
    assert len(samples[metrics.TEMPERATURE.name]) == 8
    assert set(per_gpu(samples, metrics.PROCESSES)) == {"0", "1", "2", "3", "4", "5"}
    assert any(value > 0 for _, value in samples[metrics.MIG_PROCESSES.name])


def test_nvlink_links_are_reported_per_link(open_source: Factory) -> None:
    samples = open_source("h100-nvlink").collect()
    links = [labels for labels, _ in samples[metrics.NVLINK_UP.name] if labels[0] == "0"]
    assert len(links) == 18
    errors = {labels[2] for labels, _ in samples[metrics.NVLINK_ERRORS.name]}
    assert {"replay", "recovery", "crc_flit"} <= errors
    assert per_gpu(samples, metrics.NVLINK_TX_BYTES)["0"] >= 0


def test_t4_omits_what_it_does_not_support(open_source: Factory) -> None:
    samples = open_source("t4").collect()
    for absent in (
        metrics.NVLINK_UP,
        metrics.NVLINK_ERRORS,
        metrics.REMAPPED_ROWS,
        metrics.MIG_MEMORY_TOTAL,
        metrics.FAN_SPEED,
    ):
        assert absent.name not in samples, absent.name
    assert values(samples, metrics.RETIRED_PAGES)
    info = samples[metrics.INFO.name][0][0]
    assert info[metrics.INFO_LABELS.index("model")] == "Tesla T4"
    assert info[metrics.INFO_LABELS.index("mig_mode")] == ""  # NVML: MIG not supported


def test_counters_grow_with_time(open_source: Factory, control: FakeNvmlControl) -> None:
    source = open_source("a100-mig", at=100.0)
    first = per_gpu(source.collect(), metrics.ENERGY)
    control.set_time(160.0)
    second = per_gpu(source.collect(), metrics.ENERGY)
    assert all(second[gpu] > first[gpu] for gpu in first)


def test_not_supported_field_is_omitted_not_zero(
    open_source: Factory, control: FakeNvmlControl
) -> None:
    source = open_source("a100-mig")
    assert "0" in per_gpu(source.collect(), metrics.ENERGY)
    control.set_fault("field:83", 0, NOT_SUPPORTED)
    control.set_fault("nvmlDeviceGetPowerUsage", 0, NOT_SUPPORTED)
    samples = source.collect()
    assert "0" not in per_gpu(samples, metrics.ENERGY)
    assert "0" not in per_gpu(samples, metrics.POWER_USAGE)
    assert "1" in per_gpu(samples, metrics.ENERGY)
    assert per_gpu(samples, metrics.UP)["0"] == 1.0
    # Not asked again, not counted as an error.
    assert not [key for key in values(samples, metrics.NVML_ERRORS) if "Power" in key[0]]


def test_other_errors_are_counted_and_the_value_omitted(
    open_source: Factory, control: FakeNvmlControl
) -> None:
    source = open_source("a100-mig")
    control.set_fault("nvmlDeviceGetTemperatureV", 2, UNKNOWN)
    control.set_fault("nvmlDeviceGetTemperature", 2, UNKNOWN)
    samples = source.collect()
    source.collect()
    assert "2" not in per_gpu(samples, metrics.TEMPERATURE)
    errors = values(source.collect(), metrics.NVML_ERRORS)
    assert errors[("nvmlDeviceGetTemperatureV", "UNKNOWN")] == 3
    control.clear_faults()
    assert "2" in per_gpu(source.collect(), metrics.TEMPERATURE)


def test_lost_gpu_keeps_identity_with_up_0_and_recovers(
    open_source: Factory, control: FakeNvmlControl
) -> None:
    source = open_source("a100-mig")
    source.collect()
    control.set_gpu_lost(3, True)
    samples = source.collect()
    up = per_gpu(samples, metrics.UP)
    assert up["3"] == 0.0
    assert all(value == 1.0 for gpu, value in up.items() if gpu != "3")
    assert "3" in {labels[0] for labels, _ in samples[metrics.INFO.name]}
    assert "3" not in per_gpu(samples, metrics.POWER_USAGE)
    assert len(per_gpu(samples, metrics.POWER_USAGE)) == 7
    assert next(g for g in source.directory() if g.index == 3).lost
    control.set_gpu_lost(3, False)
    samples = source.collect()
    assert per_gpu(samples, metrics.UP)["3"] == 1.0
    assert "3" in per_gpu(samples, metrics.POWER_USAGE)


def test_lost_mig_gpu_recovers_its_mig_devices(
    open_source: Factory, control: FakeNvmlControl
) -> None:
    source = open_source("a100-mig")
    source.collect()
    control.set_gpu_lost(7, True)
    samples = source.collect()
    assert {labels[0] for labels, _ in samples[metrics.MIG_MEMORY_TOTAL.name]} == {"6"}
    control.set_gpu_lost(7, False)
    samples = source.collect()
    assert {labels[0] for labels, _ in samples[metrics.MIG_MEMORY_TOTAL.name]} == {"6", "7"}


def test_init_failure_raises_source_unavailable(
    open_source: Factory,
    control: FakeNvmlControl,
    tmp_path: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_NVML_SCENARIO", "/nonexistent/scenario.scn")
    source = NvmlSource()
    with pytest.raises(SourceUnavailableError, match="nvmlInit failed"):
        source.open()


def test_slow_call_delays_only_the_collection(
    open_source: Factory, control: FakeNvmlControl
) -> None:
    source = open_source("t4")
    control.set_fault("nvmlDeviceGetPowerUsage", 0, 0, 300)
    started = time.monotonic()
    samples = source.collect()
    assert time.monotonic() - started >= 0.3
    assert per_gpu(samples, metrics.UP)["0"] == 1.0
    assert "0" in per_gpu(samples, metrics.POWER_USAGE)


def test_directory_and_processes(open_source: Factory, fake_library: object) -> None:
    source = open_source("a100-mig")
    source.capture_processes = True
    source.collect()
    directory = source.directory()
    assert [gpu.index for gpu in directory] == list(range(8))
    assert all(gpu.minor_number is not None for gpu in directory)
    gpu7 = directory[7]
    assert len(gpu7.migs) == 3
    assert all(mig.profile_id is not None and mig.placement_size for mig in gpu7.migs)
    processes = source.processes()
    assert processes and all(process.pid > 0 for process in processes)
    assert any(process.mig_uuid.startswith("MIG-") for process in processes)
