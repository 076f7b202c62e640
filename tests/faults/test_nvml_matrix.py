"""The NVML fault matrix: every C symbol the NVML source reaches times every plausible error.

The cells are generated from tests/faults/nvml_calls.py (read from the exporter's code), so a new
NVML call gets its cells without anyone remembering to add them. One cell:

1. baseline: enumerate and collect (scenario time frozen, so values repeat exactly);
2. inject the fault on one GPU (or on the system call), enumerate again, collect;
3. check: collect does not raise (or raises SourceUnavailableError where the whole of NVML is
   unusable); no other GPU's series changed; every series of the faulted GPU is either gone or
   has its baseline value (never a wrong value; identity labels may become "" = unknown);
   GPU_IS_LOST / RESET_REQUIRED leave the GPU's identity with nvidia_gpu_up 0; any other error
   except NOT_SUPPORTED / FUNCTION_NOT_FOUND is counted in nvidia_gpu_exporter_nvml_errors_total;
   and the fault had a visible effect (the cell really reached the call);
4. clear the fault, enumerate again, collect: everything is back to the baseline.

Slow calls (a delay without an error) must give exactly the baseline values.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from exporter import metrics
from exporter.fakenvml.control import FakeNvmlControl, NvmlReturn
from exporter.model import SampleMap
from exporter.poller import SourceUnavailableError
from exporter.sources import nvml_fields
from exporter.sources.nvml import NvmlSource
from tests.faults.conftest import SCENARIO
from tests.faults.nvml_calls import NvmlCall, exporter_calls, pynvml_names_used

R = NvmlReturn
LOST = frozenset({R.GPU_IS_LOST, R.RESET_REQUIRED})
SKIPPED = frozenset({R.NOT_SUPPORTED, R.FUNCTION_NOT_FOUND})
# What a per-GPU call can plausibly return on a real driver (nvml.h's documented returns plus
# what broken hardware and old drivers do).
DEVICE_CODES = (
    R.NOT_SUPPORTED,
    R.FUNCTION_NOT_FOUND,
    R.NO_PERMISSION,
    R.GPU_IS_LOST,
    R.RESET_REQUIRED,
    R.UNKNOWN,
    R.TIMEOUT,
    R.INSUFFICIENT_SIZE,
    R.INVALID_ARGUMENT,
    R.UNINITIALIZED,
)
# On the MIG GPU the core three are enough: the code paths differ by class of error only.
MIG_GPU_CODES = (R.NOT_SUPPORTED, R.GPU_IS_LOST, R.UNKNOWN)
SYSTEM_CODES = (
    R.UNINITIALIZED,
    R.DRIVER_NOT_LOADED,
    R.UNKNOWN,
    R.TIMEOUT,
    R.INSUFFICIENT_SIZE,
    R.NOT_SUPPORTED,
    R.FUNCTION_NOT_FOUND,
    R.GPU_IS_LOST,
)
WHOLE_GPU = 0  # a GPU without MIG, 12 NVLinks
MIG_GPU = 7  # MIG enabled, 3 MIG devices and an empty slot
# Calls made only as the fallback of another call: the fallback is reached by making the
# preferred call NOT_SUPPORTED (or, for PCIe throughput, the byte-counter fields).
PREREQUISITES: dict[str, tuple[str, ...]] = {
    "nvmlDeviceGetTemperature": ("nvmlDeviceGetTemperatureV",),
    "nvmlDeviceGetCurrentClocksThrottleReasons": ("nvmlDeviceGetCurrentClocksEventReasons",),
    "nvmlDeviceGetSupportedClocksThrottleReasons": ("nvmlDeviceGetSupportedClocksEventReasons",),
    "nvmlDeviceGetPcieThroughput": ("field:197", "field:198"),
    "nvmlDeviceGetNvLinkState": ("field:165",),
}
# NVML answers no utilization (rates, samples, per process) on a MIG-enabled GPU, and GPM is
# sampled per GPU instance there, so the exporter does not ask these on one.
NOT_ASKED_ON_MIG_GPU = frozenset(
    {
        "nvmlDeviceGetUtilizationRates",
        "nvmlDeviceGetEncoderUtilization",
        "nvmlDeviceGetDecoderUtilization",
        "nvmlDeviceGetSamples",
        "nvmlDeviceGetProcessUtilization",
        "nvmlGpmSampleGet",
    }
)
# Without a GPU handle or UUID the GPU cannot be named at all: it is left out of the
# collection and the failure counted, whatever the code (nvidia_gpu_exporter_gpus drops, and
# the udev PCI count versus the NVML count shows the missing GPU).
IDENTITY = frozenset({"nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetUUID"})
# Families another NVML call may legitimately fill in when a call fails: PCIe throughput is
# read with nvmlDeviceGetPcieThroughput when the byte-counter fields are not available.
FALLBACK_FAMILIES: dict[str, frozenset[str]] = {
    "nvmlDeviceGetFieldValues": frozenset({metrics.PCIE_THROUGHPUT.name}),
    "field:197": frozenset({metrics.PCIE_THROUGHPUT.name}),
    "field:198": frozenset({metrics.PCIE_THROUGHPUT.name}),
    # MIG mode unknown: the GPU is read as a whole GPU, and NVML's process list on it is true.
    "nvmlDeviceGetMigMode": frozenset({metrics.PROCESSES.name}),
}
# Values that differ by NVML's definition when the exporter falls back to an older call:
# nvmlMemory_t (v1) counts the driver-reserved memory as used, nvmlMemory_v2_t does not.
DEFINITION_CHANGES: dict[str, frozenset[str]] = {
    "nvmlDeviceGetMemoryInfo_v2": frozenset({metrics.MEMORY_USED.name}),
}
# Fault codes that leave nothing to see: the scenario has no graphics processes, and the
# retired-page fields are pre-Ampere (NOT_SUPPORTED on the A100 already).
# nvmlDeviceGetProcessUtilization feeds the attribution source's per-pod counters, not the
# GPU's own series (tests/sources/test_nvml_activity.py checks what it feeds).
NO_VISIBLE_EFFECT = frozenset(
    {
        "nvmlDeviceGetGraphicsRunningProcesses_v3",
        "field:29",
        "field:30",
        "field:31",
        "nvmlDeviceGetProcessUtilization",
    }
)
# A NOT_SUPPORTED preferred call whose fallback answers the same value: no visible effect.
HAS_FALLBACK = frozenset(
    {
        "nvmlDeviceGetTemperatureV",
        "nvmlDeviceGetCurrentClocksEventReasons",
        "nvmlDeviceGetSupportedClocksEventReasons",
        "nvmlDeviceGetMemoryInfo_v2",
    }
)
_PER_GPU = frozenset(f.name for f in metrics.CATALOG if f.labels[:1] == ("gpu",))
_EXPORTER_ERRORS = metrics.NVML_ERRORS.name

Series = dict[tuple[str, tuple[str, ...]], float]


def _source_calls() -> list[NvmlCall]:
    return [call for call in exporter_calls() if call.owner == "NvmlSource"]


def _mig_only(call: NvmlCall) -> bool:
    return call.methods <= {"_describe_migs", "_placement", "_sample_instance"}


def _device_cells() -> Iterator[tuple[str, int, int]]:
    for call in _source_calls():
        if call.system:
            continue
        if not _mig_only(call):
            for code in DEVICE_CODES:
                yield call.symbol, WHOLE_GPU, int(code)
        if call.symbol in NOT_ASKED_ON_MIG_GPU:
            continue
        for code in DEVICE_CODES if _mig_only(call) else MIG_GPU_CODES:
            yield call.symbol, MIG_GPU, int(code)


def _field_cells() -> Iterator[tuple[int, int]]:
    ids = {nvml_fields.NVLINK_LINK_COUNT}
    ids.update(spec.field_id for spec in nvml_fields.PER_GPU_FIELDS + nvml_fields.NVLINK_FIELDS)
    for field_id in sorted(ids):
        for code in (R.NOT_SUPPORTED, R.GPU_IS_LOST, R.UNKNOWN, R.NO_PERMISSION):
            yield field_id, int(code)


def _name(code: int) -> str:
    return R(code).name


@dataclass
class Snapshot:
    """One collection split per GPU, plus the exporter's error counter total."""

    per_gpu: dict[str, Series]
    errors: float
    directory: dict[int, object]

    @classmethod
    def of(cls, samples: SampleMap, source: NvmlSource) -> Snapshot:
        per_gpu: dict[str, Series] = {}
        for family, entries in samples.items():
            if family not in _PER_GPU:
                continue
            for labels, value in entries:
                per_gpu.setdefault(labels[0], {})[(family, labels)] = value
        errors = sum(value for _, value in samples.get(_EXPORTER_ERRORS, ()))
        return cls(per_gpu, errors, {gpu.index: gpu for gpu in source.directory()})


class Rig:
    """Drives one cell: prerequisites, baseline, fault, recovery."""

    def __init__(self, source: NvmlSource, control: FakeNvmlControl) -> None:
        self.source = source
        self.control = control

    def collect(self) -> Snapshot:
        self.source.request_enumeration()
        return Snapshot.of(self.source.collect(), self.source)

    def reset(self, prerequisites: tuple[str, ...], gpu: int) -> None:
        self.control.clear_faults()
        for name in prerequisites:
            self.control.set_fault(name, gpu, R.NOT_SUPPORTED)


@pytest.fixture
def rig(matrix_source: NvmlSource, control: FakeNvmlControl) -> Iterator[Rig]:
    yield Rig(matrix_source, control)
    control.clear_faults()


def _assert_never_wrong(before: Series, after: Series, gpu: str, fault: str = "") -> None:
    """Every series of the faulted GPU is gone or unchanged; info labels may become ''."""
    may_appear = FALLBACK_FAMILIES.get(fault, frozenset())
    may_change = DEFINITION_CHANGES.get(fault, frozenset())
    baseline_info = [labels for (family, labels) in before if family == metrics.INFO.name]
    for (family, labels), value in after.items():
        if family == metrics.UP.name:
            continue
        if family == metrics.INFO.name:
            assert baseline_info, f"gpu {gpu}: info appeared from nowhere"
            for now, then in zip(labels, baseline_info[0], strict=True):
                assert now in (then, ""), f"gpu {gpu}: info label {then!r} became {now!r}"
            continue
        if (family, labels) not in before and family in may_appear:
            continue
        assert (family, labels) in before, f"gpu {gpu}: new series {family}{labels}"
        assert before[(family, labels)] == value or family in may_change, (
            f"gpu {gpu}: {family}{labels} = {value}, baseline {before[(family, labels)]}"
        )


def _up(series: Series) -> float | None:
    return next((v for (f, _), v in series.items() if f == metrics.UP.name), None)


# -- the list itself ---------------------------------------------------------------------------


def test_call_list_covers_every_pynvml_call_in_the_nvml_module() -> None:
    calls = exporter_calls()
    assert len(calls) > 40, "the AST scan found suspiciously few NVML calls"
    covered = {call.python_name for call in calls}
    used = pynvml_names_used()
    assert used, "no pynvml call found in the exporter/sources/nvml/ package"
    # Every pynvml name the package uses resolved to at least one C symbol the fake can fault.
    assert used <= covered, f"calls without a C symbol: {sorted(used - covered)}"
    symbols = {call.symbol for call in calls}
    assert {"nvmlInitWithFlags", "nvmlDeviceGetCount_v2", "nvmlDeviceGetFieldValues"} <= symbols
    cells = {symbol for symbol, _, _ in _device_cells()}
    device_symbols = {c.symbol for c in _source_calls() if not c.system}
    assert cells == device_symbols, "a device call of NvmlSource has no matrix cell"


# -- per-GPU calls -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "gpu", "code"),
    list(_device_cells()),
    ids=[f"{s}-gpu{g}-{_name(c)}" for s, g, c in _device_cells()],
)
def test_device_call_fault(rig: Rig, symbol: str, gpu: int, code: int) -> None:
    prerequisites = PREREQUISITES.get(symbol, ())
    rig.reset(prerequisites, gpu)
    before = rig.collect()
    rig.control.set_fault(symbol, gpu, code)
    after = rig.collect()  # must not raise
    _check_fault(before, after, gpu, code, symbol)
    rig.reset(prerequisites, gpu)
    recovered = rig.collect()
    assert recovered.per_gpu == before.per_gpu, "values did not come back after the fault"


@pytest.mark.parametrize(
    ("field_id", "code"),
    list(_field_cells()),
    ids=[f"field{f}-{_name(c)}" for f, c in _field_cells()],
)
def test_field_value_fault(rig: Rig, field_id: int, code: int) -> None:
    rig.reset((), WHOLE_GPU)
    before = rig.collect()
    rig.control.set_field_fault(field_id, WHOLE_GPU, code)
    after = rig.collect()
    _check_fault(before, after, WHOLE_GPU, code, f"field:{field_id}")
    rig.reset((), WHOLE_GPU)
    assert rig.collect().per_gpu == before.per_gpu


def _check_fault(before: Snapshot, after: Snapshot, gpu: int, code: int, fault: str) -> None:
    key = str(gpu)
    for other, series in before.per_gpu.items():
        if other != key:
            assert after.per_gpu.get(other) == series, f"gpu {other} changed by a fault on {key}"
    faulted = after.per_gpu.get(key, {})
    _assert_never_wrong(before.per_gpu[key], faulted, key, fault)
    if fault in IDENTITY:
        # NVML counts the GPU but cannot describe it: it keeps its last identity, up 0.
        assert _up(faulted) == 0.0, "a GPU that cannot be described must stay with up 0"
        assert after.errors > before.errors or code in LOST, "the failure was not counted"
        return
    if code in LOST:
        assert _up(faulted) == 0.0, "a lost GPU must stay with nvidia_gpu_up 0"
        assert after.directory[gpu].lost  # type: ignore[attr-defined]
        return
    if faulted:
        assert _up(faulted) == 1.0, "an error on one value must not mark the GPU down"
    if fault in IDENTITY:
        return
    if code in SKIPPED:
        assert after.errors == before.errors, "NOT_SUPPORTED is not an error"
        if fault not in HAS_FALLBACK and fault not in NO_VISIBLE_EFFECT:
            changed = faulted != before.per_gpu[key] or after.directory.get(
                gpu
            ) != before.directory.get(gpu)
            assert changed, "the fault had no visible effect: is the call still made?"
    else:
        assert after.errors > before.errors, "the error was not counted in nvml_errors_total"


@pytest.mark.parametrize("symbol", sorted({c.symbol for c in _source_calls() if not c.system}))
def test_slow_call_gives_the_same_values(rig: Rig, symbol: str) -> None:
    prerequisites = PREREQUISITES.get(symbol, ())
    gpu = MIG_GPU if _mig_only(next(c for c in _source_calls() if c.symbol == symbol)) else 0
    rig.reset(prerequisites, gpu)
    before = rig.collect()
    rig.control.set_fault(symbol, gpu, R.SUCCESS, delay_ms=20)
    assert rig.collect().per_gpu == before.per_gpu


# -- system calls: open, collect, close -------------------------------------------------------


COLLECT_SYSTEM = sorted(c.symbol for c in _source_calls() if c.system and "collect" in c.methods)


@pytest.mark.parametrize("symbol", COLLECT_SYSTEM)
@pytest.mark.parametrize("code", [int(c) for c in SYSTEM_CODES], ids=_name)
def test_collect_wide_fault_is_unavailable_then_recovers(rig: Rig, symbol: str, code: int) -> None:
    rig.reset((), -1)
    before = rig.collect()
    rig.control.set_fault(symbol, -1, code)
    with pytest.raises(SourceUnavailableError, match=_name(code)):
        rig.source.collect()
    rig.reset((), -1)
    assert rig.collect().per_gpu == before.per_gpu


def test_matrix_runs_on_the_expected_scenario(matrix_source: NvmlSource) -> None:
    samples = matrix_source.collect()
    assert samples[metrics.GPUS.name][0][1] == 8, SCENARIO
    assert samples[metrics.MIG_DEVICES.name][0][1] == 10
